//! The GPU backend: every op is a WGSL compute kernel (in `shaders/`, one file per kernel
//! family, launched by the module of the same name here) run through wgpu.
//!
//! Ops are recorded and submitted in batches (see `recorder.rs`); the device, its pipelines and
//! bind-group layouts live in a `Context` (`context.rs`) created once per device. Every call into
//! wgpu in the crate is in this module.

mod activation;
mod context;
mod dropout;
mod gather;
mod loss;
mod matmul;
mod optimizer;
mod recorder;
mod reduce;
mod timing;

pub use context::{AdapterSummary, Traffic, list_adapters};

use super::{Backend, Buf, DType, KernelTime, MatmulDims, UpdateParams, check_len, distinct};
use crate::Result;
use crate::model::{Activation, LossKind};
use context::Context;
use matmul::Epilogue;
pub use matmul::MatmulTiles;
use recorder::Recorder;
use std::sync::Arc;

/// Invocations per workgroup of the 1-D kernels: `WG` of shaders/grid.wgsl.
const WG: usize = 256;

pub struct GpuBackend {
    ctx: Arc<Context>,
    rec: Recorder,
    matmul_tiles: MatmulTiles,
}

impl GpuBackend {
    /// Opens adapter `adapter` (an index into [`list_adapters`]), or by default the first
    /// hardware adapter, or else a software one. [`Error::NoAdapter`] when there is none,
    /// [`Error::Config`] when `adapter` names one that does not exist.
    pub fn new(adapter: Option<usize>) -> Result<GpuBackend> {
        Ok(GpuBackend::on(Context::open(adapter)?))
    }

    fn on(ctx: Arc<Context>) -> GpuBackend {
        let rec = Recorder::new(&ctx.device, &ctx.limits);
        GpuBackend {
            ctx,
            rec,
            matmul_tiles: MatmulTiles::from_env(),
        }
    }

    /// Another backend on the same device, with its own buffers: it shares the compiled
    /// kernels, so opening it costs no shader compilation.
    pub fn share_device(&self) -> GpuBackend {
        GpuBackend::on(self.ctx.clone())
    }

    /// What the backends on this device have created and moved so far.
    pub fn traffic(&self) -> Traffic {
        self.ctx.traffic()
    }

    /// Caps the workgroups per grid dimension below the adapter's limit, so tests can exercise
    /// grids that wrap into a second dimension (or tiled kernels that loop) on small inputs.
    #[doc(hidden)]
    pub fn set_max_workgroups_per_dimension(&mut self, n: u32) {
        assert!(n > 0);
        self.rec.max_groups = n.min(self.ctx.limits.max_compute_workgroups_per_dimension);
    }

    /// Which matmul kernel products use (tests run both on every shape).
    #[doc(hidden)]
    pub fn set_matmul_tiles(&mut self, tiles: MatmulTiles) {
        self.matmul_tiles = tiles;
    }

    /// Test hook: destroys the device, as a driver reset or a removed GPU would, so tests can
    /// check that the loss is reported as an error and nothing is written after it.
    #[doc(hidden)]
    pub fn lose_device(&mut self) {
        self.ctx.device.destroy();
    }
}

impl GpuBackend {
    /// Writes 4-byte values (f32 or u32, as `dtype`) into `dst`.
    fn write_words<T: bytemuck::Pod>(&mut self, dst: Buf, dtype: DType, data: &[T]) -> Result<()> {
        check_len("write destination", dst, data.len())?;
        expect_dtype("write destination", dst, dtype);
        self.alloc_of(dst);
        self.write_bytes(
            dst.id,
            u64::from(dst.offset) * 4,
            bytemuck::cast_slice(data),
        )
    }

    /// Reads the 4-byte values (f32 or u32, as `dtype`) of `src`.
    fn read_words<T: bytemuck::Pod>(&mut self, src: Buf, dtype: DType) -> Result<Vec<T>> {
        expect_dtype("read source", src, dtype);
        self.alloc_of(src);
        let bytes = self.read_bytes(src.id, u64::from(src.offset) * 4, u64::from(src.len) * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

fn expect_dtype(what: &str, b: Buf, dtype: DType) {
    assert_eq!(b.dtype, dtype, "{what} must be {dtype:?}");
}

impl Backend for GpuBackend {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn adapter(&self) -> Option<String> {
        let i = &self.ctx.info;
        Some(format!("{} ({:?})", i.name, i.backend))
    }

    fn alloc(&mut self, dtype: DType, len: usize, label: &str) -> Result<Buf> {
        self.allocate(dtype, len, label)
    }

    fn write_f32(&mut self, dst: Buf, data: &[f32]) -> Result<()> {
        self.write_words(dst, DType::F32, data)
    }

    fn write_u32(&mut self, dst: Buf, data: &[u32]) -> Result<()> {
        self.write_words(dst, DType::U32, data)
    }

    fn write_u8(&mut self, dst: Buf, data: &[u8]) -> Result<()> {
        check_len("write destination", dst, data.len())?;
        expect_dtype("write_u8 destination", dst, DType::U8);
        assert!(
            dst.offset.is_multiple_of(4),
            "write_u8 at offset {}",
            dst.offset
        );
        let alloc_len = self.alloc_of(dst).len;
        let start = dst.offset as usize;
        let whole = data.len() / 4 * 4;
        let mut bytes = data[..whole].to_vec();
        if whole < data.len() {
            // Bytes are packed four to a word and writes are whole words: the last word keeps
            // whatever of it lies in the allocation beyond this write.
            let word_at = start + whole;
            let end = start + data.len();
            let mut word = if end < alloc_len {
                let w = self.read_bytes(dst.id, word_at as u64, 4)?;
                [w[0], w[1], w[2], w[3]]
            } else {
                [0; 4]
            };
            word[..data.len() - whole].copy_from_slice(&data[whole..]);
            bytes.extend_from_slice(&word);
        }
        self.write_bytes(dst.id, start as u64, &bytes)
    }

    fn read_f32(&mut self, src: Buf) -> Result<Vec<f32>> {
        self.read_words(src, DType::F32)
    }

    fn read_u32(&mut self, src: Buf) -> Result<Vec<u32>> {
        self.read_words(src, DType::U32)
    }

    fn flush(&mut self) -> Result<()> {
        if self.rec.is_idle() {
            return self.ctx.check();
        }
        self.submit(None).map(|_| ())
    }

    fn sync(&mut self) -> Result<()> {
        self.wait_idle()
    }

    fn fill(&mut self, dst: Buf, value: f32) -> Result<()> {
        reduce::fill(self, dst, value)
    }

    fn gather_rows(
        &mut self,
        src: Buf,
        idx: Buf,
        rows: usize,
        cols: usize,
        affine: (f32, f32),
        dst: Buf,
    ) -> Result<()> {
        gather::gather_rows(self, src, idx, rows, cols, affine, dst)
    }

    fn gather_labels(&mut self, src: Buf, idx: Buf, rows: usize, dst: Buf) -> Result<()> {
        gather::gather_labels(self, src, idx, rows, dst)
    }

    fn matmul(
        &mut self,
        a: Buf,
        b: Buf,
        bias: Option<Buf>,
        c: Buf,
        dims: MatmulDims,
    ) -> Result<()> {
        matmul::matmul(self, a, b, bias, c, dims, Epilogue::None)
    }

    fn matmul_act(
        &mut self,
        a: Buf,
        b: Buf,
        bias: Option<Buf>,
        c: Buf,
        dims: MatmulDims,
        act: Activation,
    ) -> Result<()> {
        if act == Activation::Softmax {
            // Row-wise: it needs the whole row, which one tile does not hold.
            self.matmul(a, b, bias, c, dims)?;
            return self.act_forward(act, c, c, dims.m, dims.n);
        }
        matmul::matmul(self, a, b, bias, c, dims, Epilogue::Act(act))
    }

    fn matmul_col_sum(
        &mut self,
        a: Buf,
        b: Buf,
        c: Buf,
        dims: MatmulDims,
        sums: Buf,
    ) -> Result<()> {
        matmul::matmul(self, a, b, None, c, dims, Epilogue::Sums(sums))
    }

    fn matmul_act_grad(
        &mut self,
        a: Buf,
        b: Buf,
        y: Buf,
        c: Buf,
        dims: MatmulDims,
        act: Activation,
    ) -> Result<()> {
        if act == Activation::Softmax {
            self.matmul(a, b, None, c, dims)?;
            return self.act_backward(act, y, c, c, dims.m, dims.n);
        }
        matmul::matmul(self, a, b, None, c, dims, Epilogue::ActGrad(act, y))
    }

    fn col_sum(&mut self, a: Buf, rows: usize, cols: usize, out: Buf) -> Result<()> {
        reduce::col_sum(self, a, rows, cols, out)
    }

    fn act_forward(
        &mut self,
        act: Activation,
        x: Buf,
        y: Buf,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        activation::forward(self, act, x, y, rows, cols)
    }

    fn act_backward(
        &mut self,
        act: Activation,
        y: Buf,
        dy: Buf,
        dx: Buf,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        activation::backward(self, act, y, dy, dx, rows, cols)
    }

    fn dropout_forward(
        &mut self,
        x: Buf,
        y: Buf,
        mask: Buf,
        n: usize,
        p: f32,
        seed: u32,
        stream: u32,
    ) -> Result<()> {
        dropout::forward(self, x, y, mask, n, p, seed, stream)
    }

    fn mul_inplace(&mut self, x: Buf, mask: Buf, n: usize) -> Result<()> {
        dropout::mul_inplace(self, x, mask, n)
    }

    fn loss(
        &mut self,
        kind: LossKind,
        out: Buf,
        targets: Buf,
        rows: usize,
        cols: usize,
        grad: Option<Buf>,
        stats: Buf,
    ) -> Result<()> {
        loss::loss(self, kind, out, targets, rows, cols, grad, stats)
    }

    fn accumulate_stats(&mut self, stats: Buf, rows: usize, acc: Buf) -> Result<()> {
        reduce::accumulate_stats(self, stats, rows, acc)
    }

    fn regularize(&mut self, param: Buf, grad: Buf, l1: f32, l2: f32) -> Result<()> {
        optimizer::regularize(self, param, grad, l1, l2)
    }

    fn update(
        &mut self,
        params: Buf,
        grads: Buf,
        state1: Buf,
        state2: Buf,
        p: &UpdateParams,
    ) -> Result<()> {
        optimizer::update(self, params, grads, state1, state2, p)
    }

    fn start_kernel_timing(&mut self) -> bool {
        self.start_timing()
    }

    fn take_kernel_times(&mut self) -> Result<Vec<KernelTime>> {
        self.take_times()
    }
}
