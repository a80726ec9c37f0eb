//! The GPU backend: every op is a WGSL compute kernel (in `shaders/`, one file per kernel
//! family, launched by the module of the same name here) run through wgpu.
//!
//! Ops are recorded and submitted in batches (see `recorder.rs`); the device, its pipelines and
//! bind-group layouts live in a `Context` (`context.rs`) created once per device. Every call into
//! wgpu in the crate is in this module.

mod activation;
mod context;
mod conv;
mod dropout;
mod gather;
mod loss;
mod matmul;
mod optimizer;
mod permute;
mod pool;
mod recorder;
mod reduce;
mod reflect;
mod timing;
mod tune;
mod validation;

pub use context::{AdapterSummary, Traffic, auto_pick, list_adapters};

use super::{Backend, Buf, DType, KernelTime, check_write};
use crate::Result;
use crate::ops::Op;
use context::Context;
pub use matmul::{
    MAX_SPLIT as MAX_MATMUL_SPLIT, MatmulTiles, split_from_env as matmul_split_from_env,
};
use recorder::Recorder;
use std::sync::{Arc, Mutex};
pub use tune::{Choice, Tuner, default_path as tune_cache_path};

/// Every kernel the launchers record, each an entry point of a shader with its override
/// constants.
fn kernels() -> impl Iterator<Item = &'static context::KernelSpec> {
    [
        activation::KERNELS,
        conv::KERNELS,
        dropout::KERNELS,
        gather::KERNELS,
        loss::KERNELS,
        matmul::KERNELS,
        optimizer::KERNELS,
        permute::KERNELS,
        pool::KERNELS,
        reduce::KERNELS,
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// Invocations per workgroup of the 1-D kernels: `WG` of shaders/grid.wgsl.
const WG: usize = 256;

/// The GPU backend: buffers in device memory, ops recorded as compute dispatches and submitted in
/// batches. Open one with [`GpuBackend::new`]; several backends on one device share its compiled
/// kernels through [`GpuBackend::share_device`].
pub struct GpuBackend {
    ctx: Arc<Context>,
    rec: Recorder,
    matmul_tiles: MatmulTiles,
    /// The matmul kernel choices of this adapter (shared by the backends on the device), or
    /// `None` where tuning is off.
    tuner: Option<Arc<Mutex<Tuner>>>,
    /// The tuner's choices this backend has used, by shape: a step looks each product up here
    /// instead of formatting its key and locking the tuner.
    chosen: std::collections::HashMap<crate::ops::MatmulDims, matmul::Variant>,
    /// The split-K factor `WGTRAIN_MATMUL_SPLIT` forces, if any.
    matmul_split: Option<usize>,
    /// Where split-K products keep their partial products (allocated by the first).
    split_scratch: Option<Buf>,
    /// A cap below the adapter's binding limit on [`Backend::max_buffer_bytes`] (tests).
    max_buffer: Option<u64>,
}

impl GpuBackend {
    /// Opens adapter `adapter` (an index into [`list_adapters`]), or by default the first
    /// hardware adapter, or else a software one. [`crate::Error::NoAdapter`] when there is
    /// none, [`crate::Error::Config`] when `adapter` names one that does not exist.
    ///
    /// Matmul autotuning is on unless `WGTRAIN_TUNE=off`: the first time a product of a new
    /// shape runs, the matmul kernels (three tile sizes, and split-K where the output is
    /// small) are timed on it and the fastest is kept, also in a cache file
    /// ([`tune_cache_path`], under a key of adapter, driver and wgtrain version) for later
    /// runs.
    pub fn new(adapter: Option<usize>) -> Result<GpuBackend> {
        let ctx = Context::open(adapter)?;
        let tuner = tune::enabled_by_env().then(|| {
            let t = Tuner::open(tune::default_path(), &ctx.info.name, &ctx.driver());
            Arc::new(Mutex::new(t))
        });
        Ok(GpuBackend::on(ctx, tuner))
    }

    fn on(ctx: Arc<Context>, tuner: Option<Arc<Mutex<Tuner>>>) -> GpuBackend {
        let rec = Recorder::new(&ctx.device, &ctx.queue, &ctx.limits);
        GpuBackend {
            ctx,
            rec,
            matmul_tiles: MatmulTiles::from_env(),
            tuner,
            chosen: Default::default(),
            matmul_split: matmul::split_from_env(),
            split_scratch: None,
            max_buffer: None,
        }
    }

    /// Another backend on the same device, with its own buffers: it shares the compiled
    /// kernels (so opening it costs no shader compilation) and the matmul tuning.
    pub fn share_device(&self) -> GpuBackend {
        GpuBackend::on(self.ctx.clone(), self.tuner.clone())
    }

    /// Turns matmul autotuning off (`None`: each product picks its kernel by a rule of thumb)
    /// or on, with the choices kept by `tuner` (e.g. [`Tuner::open`] on a file of your own).
    pub fn set_tuner(&mut self, tuner: Option<Tuner>) {
        self.tuner = tuner.map(|t| Arc::new(Mutex::new(t)));
        self.chosen.clear();
    }

    /// A tuner for this adapter over the cache file `path` (`None`: kept in memory only).
    pub fn open_tuner(&self, path: Option<std::path::PathBuf>) -> Tuner {
        Tuner::open(path, &self.ctx.info.name, &self.ctx.driver())
    }

    /// This adapter's matmul kernel choices so far, by shape; `None` where tuning is off.
    pub fn tuning(&self) -> Option<std::collections::BTreeMap<String, Choice>> {
        let t = self.tuner.as_ref()?;
        let t = t.lock().unwrap_or_else(|p| p.into_inner());
        Some(t.choices().clone())
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
        self.chosen.clear();
    }

    /// Forces split-K by `split` on the products that can be split (`Some(1)`: never split),
    /// or leaves it to tuning and the rule of thumb (`None`), as `WGTRAIN_MATMUL_SPLIT` does.
    #[doc(hidden)]
    pub fn set_matmul_split(&mut self, split: Option<usize>) {
        assert!(split.is_none_or(|s| (1..=matmul::MAX_SPLIT).contains(&s)));
        self.matmul_split = split;
        self.chosen.clear();
    }

    /// Plans on this backend keep their values within `bytes` (and the adapter's limits), as
    /// on an adapter with a smaller binding limit: tests exercise the plans such adapters get
    /// on small models.
    #[doc(hidden)]
    pub fn set_max_buffer_bytes(&mut self, bytes: Option<u64>) {
        self.max_buffer = bytes;
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
        check_write(dst, data.len(), dtype)?;
        self.alloc_of(dst);
        self.write_bytes(
            dst.id,
            u64::from(dst.offset) * 4,
            bytemuck::cast_slice(data),
        )
    }

    /// Reads the 4-byte values (f32 or u32, as `dtype`) of `src`.
    fn read_words<T: bytemuck::Pod>(&mut self, src: Buf, dtype: DType) -> Result<Vec<T>> {
        assert_eq!(src.dtype, dtype, "read source must be {dtype:?}");
        self.alloc_of(src);
        let bytes = self.read_bytes(src.id, u64::from(src.offset) * 4, u64::from(src.len) * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
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
        check_write(dst, data.len(), DType::U8)?;
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

    fn run(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::Fill(o) => reduce::fill(self, o),
            Op::Gather(o) => gather::gather(self, o),
            Op::GatherLabels(o) => gather::gather_labels(self, o),
            Op::Matmul(o) => matmul::matmul(self, o),
            Op::ColSum(o) => reduce::col_sum(self, o),
            Op::ActForward(o) => activation::forward(self, o),
            Op::ActBackward(o) => activation::backward(self, o),
            Op::Dropout(o) => dropout::forward(self, o),
            Op::MaskMul(o) => dropout::mask_mul(self, o),
            Op::Loss(o) => loss::loss(self, o),
            Op::AccumulateStats(o) => reduce::accumulate_stats(self, o),
            Op::Regularize(o) => optimizer::regularize(self, o),
            Op::SumSquares(o) => reduce::sum_squares(self, o),
            Op::Update(o) => optimizer::update(self, o),
            Op::Im2Row(o) => conv::im2row(self, o),
            Op::Row2Im(o) => conv::row2im(self, o),
            Op::MaxPool(o) => pool::max_pool(self, o),
            Op::MaxPoolGrad(o) => pool::max_pool_grad(self, o),
            Op::AvgPool(o) => pool::avg_pool(self, o),
            Op::AvgPoolGrad(o) => pool::avg_pool_grad(self, o),
            Op::Flatten(o) => permute::flatten(self, o),
        }
    }

    fn set_replay(&mut self, program: Option<u64>) {
        self.replay(program);
    }

    fn max_buffer_bytes(&self) -> u64 {
        let l = &self.ctx.limits;
        let limit = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        self.max_buffer.map_or(limit, |b| b.min(limit))
    }

    fn launches(&self) -> Option<crate::backend::Launches> {
        Some(self.rec.launched)
    }

    fn start_kernel_timing(&mut self) -> bool {
        self.start_timing()
    }

    fn take_kernel_times(&mut self) -> Result<Vec<KernelTime>> {
        self.take_times()
    }
}
