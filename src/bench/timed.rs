//! A backend wrapper that times every op: the per-kernel breakdown of a training step.
//!
//! Each op is followed by [`Backend::sync`], so the time is the op's own (on the GPU this adds
//! one submission and wait per op; the GPU backend's timestamp queries, where supported, give
//! the kernel times without that overhead).

use crate::Result;
use crate::backend::op_name::{self, OpLabel};
use crate::backend::{Backend, Buf, DType, KernelTime, MatmulDims, UpdateParams};
use crate::model::{Activation, LossKind};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

/// Op name -> its calls, total seconds and cost, shared with whoever reads the breakdown.
pub type OpTimes = Rc<RefCell<BTreeMap<String, KernelTime>>>;

pub struct Timed {
    pub inner: Box<dyn Backend>,
    times: OpTimes,
}

impl Timed {
    /// Wraps `inner`; the returned handle sees the times as they accumulate.
    pub fn new(inner: Box<dyn Backend>) -> (Timed, OpTimes) {
        let times = OpTimes::default();
        (
            Timed {
                inner,
                times: times.clone(),
            },
            times,
        )
    }

    fn time<R>(&mut self, op: OpLabel, f: impl FnOnce(&mut dyn Backend) -> Result<R>) -> Result<R> {
        self.inner.sync()?;
        let t = Instant::now();
        let r = f(self.inner.as_mut())?;
        self.inner.sync()?;
        let seconds = t.elapsed().as_secs_f64();
        let mut times = self.times.borrow_mut();
        let e = times.entry(op.name.clone()).or_insert(KernelTime {
            name: op.name,
            calls: 0,
            seconds: 0.0,
            flops: op.flops,
            bytes: op.bytes,
        });
        e.calls += 1;
        e.seconds += seconds;
        Ok(r)
    }
}

impl Backend for Timed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn adapter(&self) -> Option<String> {
        self.inner.adapter()
    }
    fn alloc(&mut self, dtype: DType, len: usize, label: &str) -> Result<Buf> {
        self.inner.alloc(dtype, len, label)
    }
    fn write_f32(&mut self, dst: Buf, data: &[f32]) -> Result<()> {
        self.inner.write_f32(dst, data)
    }
    fn write_u32(&mut self, dst: Buf, data: &[u32]) -> Result<()> {
        self.time(op_name::transfer("upload indices"), |b| {
            b.write_u32(dst, data)
        })
    }
    fn write_u8(&mut self, dst: Buf, data: &[u8]) -> Result<()> {
        self.inner.write_u8(dst, data)
    }
    fn read_f32(&mut self, src: Buf) -> Result<Vec<f32>> {
        self.time(op_name::transfer("read back"), |b| b.read_f32(src))
    }
    fn read_u32(&mut self, src: Buf) -> Result<Vec<u32>> {
        self.inner.read_u32(src)
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn sync(&mut self) -> Result<()> {
        self.inner.sync()
    }
    fn fill(&mut self, dst: Buf, value: f32) -> Result<()> {
        self.time(op_name::fill(dst.len()), |b| b.fill(dst, value))
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
        let name = op_name::gather_rows(rows, cols, src.dtype);
        self.time(name, |b| b.gather_rows(src, idx, rows, cols, affine, dst))
    }
    fn gather_labels(&mut self, src: Buf, idx: Buf, rows: usize, dst: Buf) -> Result<()> {
        self.time(op_name::gather_labels(rows), |b| {
            b.gather_labels(src, idx, rows, dst)
        })
    }
    fn matmul(
        &mut self,
        a: Buf,
        b: Buf,
        bias: Option<Buf>,
        c: Buf,
        dims: MatmulDims,
    ) -> Result<()> {
        let name = op_name::matmul(&dims, bias.is_some());
        self.time(name, |be| be.matmul(a, b, bias, c, dims))
    }
    // The fused ops are timed as one op under the fused name, as the GPU's timestamps see them.
    fn matmul_act(
        &mut self,
        a: Buf,
        b: Buf,
        bias: Option<Buf>,
        c: Buf,
        dims: MatmulDims,
        act: Activation,
    ) -> Result<()> {
        let name = op_name::matmul_act(&dims, bias.is_some(), act);
        self.time(name, |be| be.matmul_act(a, b, bias, c, dims, act))
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
        let name = op_name::matmul_act_grad(&dims, act);
        self.time(name, |be| be.matmul_act_grad(a, b, y, c, dims, act))
    }
    fn matmul_col_sum(
        &mut self,
        a: Buf,
        b: Buf,
        c: Buf,
        dims: MatmulDims,
        sums: Buf,
    ) -> Result<()> {
        let name = op_name::matmul_col_sum(&dims);
        self.time(name, |be| be.matmul_col_sum(a, b, c, dims, sums))
    }
    fn col_sum(&mut self, a: Buf, rows: usize, cols: usize, out: Buf) -> Result<()> {
        self.time(op_name::col_sum(rows, cols), |b| {
            b.col_sum(a, rows, cols, out)
        })
    }
    fn act_forward(
        &mut self,
        act: Activation,
        x: Buf,
        y: Buf,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let name = op_name::act_forward(act, rows, cols);
        self.time(name, |b| b.act_forward(act, x, y, rows, cols))
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
        let name = op_name::act_backward(act, rows, cols);
        self.time(name, |b| b.act_backward(act, y, dy, dx, rows, cols))
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
        self.time(op_name::dropout_forward(n), |b| {
            b.dropout_forward(x, y, mask, n, p, seed, stream)
        })
    }
    fn mul_inplace(&mut self, x: Buf, mask: Buf, n: usize) -> Result<()> {
        self.time(op_name::dropout_backward(n), |b| b.mul_inplace(x, mask, n))
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
        let name = op_name::loss(kind, rows, cols);
        self.time(name, |b| {
            b.loss(kind, out, targets, rows, cols, grad, stats)
        })
    }
    fn accumulate_stats(&mut self, stats: Buf, rows: usize, acc: Buf) -> Result<()> {
        self.time(op_name::accumulate_stats(rows), |b| {
            b.accumulate_stats(stats, rows, acc)
        })
    }
    fn regularize(&mut self, param: Buf, grad: Buf, l1: f32, l2: f32) -> Result<()> {
        self.time(op_name::regularize(param.len()), |b| {
            b.regularize(param, grad, l1, l2)
        })
    }
    fn update(
        &mut self,
        params: Buf,
        grads: Buf,
        state1: Buf,
        state2: Buf,
        p: &UpdateParams,
    ) -> Result<()> {
        let name = op_name::update(p.kind, p.momentum, params.len());
        self.time(name, |b| b.update(params, grads, state1, state2, p))
    }
}
