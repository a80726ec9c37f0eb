//! A backend wrapper that times every op: the per-kernel breakdown of a training step.
//!
//! Each op is followed by [`Backend::sync`], so the time is the op's own (on the GPU this adds
//! one submission and wait per op; the GPU backend's timestamp queries, where supported, give
//! the kernel times without that overhead).

use crate::Result;
use crate::backend::{Backend, Buf, DType, KernelTime};
use crate::ops::{Op, OpLabel};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

/// Op name -> its calls, total seconds and cost, shared with whoever reads the breakdown.
pub type OpTimes = Rc<RefCell<BTreeMap<String, KernelTime>>>;

/// A backend that runs each op on `inner`, then syncs and records the op's time by name: the per-op
/// breakdown where the device has no timestamp queries.
pub struct Timed {
    /// The backend that runs the ops.
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
        let groups = |b: &dyn Backend| b.launches().map_or(0, |l| l.workgroups);
        let before = groups(self.inner.as_ref());
        let t = Instant::now();
        let r = f(self.inner.as_mut())?;
        self.inner.sync()?;
        let seconds = t.elapsed().as_secs_f64();
        let workgroups = groups(self.inner.as_ref()) - before;
        let mut times = self.times.borrow_mut();
        let e = times.entry(op.name.clone()).or_insert(KernelTime {
            name: op.name,
            calls: 0,
            seconds: 0.0,
            flops: op.flops,
            bytes: op.bytes,
            workgroups: 0,
        });
        e.calls += 1;
        e.seconds += seconds;
        e.workgroups += workgroups;
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
        self.time(OpLabel::new("upload indices".into(), 0.0, 0.0), |b| {
            b.write_u32(dst, data)
        })
    }
    fn write_u8(&mut self, dst: Buf, data: &[u8]) -> Result<()> {
        self.inner.write_u8(dst, data)
    }
    fn read_f32(&mut self, src: Buf) -> Result<Vec<f32>> {
        self.time(OpLabel::new("read back".into(), 0.0, 0.0), |b| {
            b.read_f32(src)
        })
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
    fn launches(&self) -> Option<crate::backend::Launches> {
        self.inner.launches()
    }
    // Fused ops are timed as one op under the fused name, as the GPU's timestamps see them.
    fn run(&mut self, op: &Op) -> Result<()> {
        self.time(op.cost(), |b| b.run(op))
    }
}
