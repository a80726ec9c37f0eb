//! The backend boundary: the few ops an MLP trainer needs, on buffers that live wherever the
//! backend keeps them (host memory for the CPU, device memory for the GPU).
//!
//! Ops ([`crate::ops`]) name their operands by [`Buf`] handles and carry their shapes, so nothing
//! here assumes host memory: the GPU backend records each op as a dispatch and runs them when
//! [`Backend::flush`] or a read needs the results. All matrices are row-major.

pub mod cpu;
pub mod gpu;

use crate::Result;
use crate::ops::Op;

/// Element type of an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit floats: activations, parameters, gradients and data stored as floats.
    F32,
    /// 32-bit unsigned integers: labels, row indices.
    U32,
    /// Bytes; the GPU packs four to a word.
    U8,
}

/// A handle to `len` elements at `offset` in allocation `id`. Views of one allocation (the flat
/// parameter buffer) are how the optimizer updates all parameters in one op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Buf {
    /// The allocation this view lies in, as numbered by the backend that made it with
    /// [`Backend::alloc`]. Handles are meaningful only on that backend.
    pub id: u32,
    /// Where the view starts, in elements (not bytes) from the allocation's start.
    pub offset: u32,
    /// Length of the view, in elements.
    pub len: u32,
    /// Element type of the whole allocation; ops check it against what they need.
    pub dtype: DType,
}

impl Buf {
    /// Length of the view, in elements.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the view holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements `start .. start + len` of this view.
    pub fn slice(&self, start: usize, len: usize) -> Buf {
        assert!(
            start + len <= self.len(),
            "slice {start}+{len} of a view of {}",
            self.len
        );
        Buf {
            offset: self.offset + start as u32,
            len: len as u32,
            ..*self
        }
    }
}

/// The check every write to a backend starts with: `dst` must be of `dtype` and hold at least
/// `len` elements (a write too long for its view is the caller's error, reported).
pub(crate) fn check_write(dst: Buf, len: usize, dtype: DType) -> Result<()> {
    crate::ops::need("write destination", dst, len, dtype)
}

/// The device time of one kernel over a timed run: `calls` dispatches named `name` (the op and
/// its shape, [`crate::ops::OpLabel`]) took `seconds` in all; each does `flops` and must move
/// `bytes`.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// The op and its shape, as [`crate::ops::OpLabel::name`] gives it.
    pub name: String,
    /// How many dispatches with this name ran.
    pub calls: usize,
    /// Device time of all those dispatches together, in seconds.
    pub seconds: f64,
    /// Floating-point operations of one call.
    pub flops: f64,
    /// Fewest bytes one call must read and write.
    pub bytes: f64,
    /// Workgroups of all those dispatches together (0 where the backend launches none).
    pub workgroups: u64,
}

/// What a backend that launches kernels (the GPU) has launched so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Launches {
    /// Kernel launches recorded.
    pub dispatches: u64,
    /// Workgroups of all those launches together.
    pub workgroups: u64,
}

/// A compute backend: allocations, transfers, and the ops of [`crate::ops`]. Implementations:
/// [`cpu::CpuBackend`] (the reference) and [`gpu::GpuBackend`].
pub trait Backend {
    /// "cpu" or "gpu".
    fn name(&self) -> &'static str;
    /// The adapter's name on the GPU, `None` on the CPU.
    fn adapter(&self) -> Option<String>;

    /// A new zeroed allocation of `len` elements; returns the whole view.
    fn alloc(&mut self, dtype: DType, len: usize, label: &str) -> Result<Buf>;
    /// Writes `data` to the start of `dst`, an `F32` view at least `data.len()` long; an error
    /// otherwise.
    fn write_f32(&mut self, dst: Buf, data: &[f32]) -> Result<()>;
    /// Writes `data` to the start of `dst`, a `U32` view at least `data.len()` long; an error
    /// otherwise.
    fn write_u32(&mut self, dst: Buf, data: &[u32]) -> Result<()>;
    /// Writes bytes to a `U8` view whose offset is a multiple of 4.
    fn write_u8(&mut self, dst: Buf, data: &[u8]) -> Result<()>;
    /// Runs everything recorded so far and returns the contents of `src`.
    fn read_f32(&mut self, src: Buf) -> Result<Vec<f32>>;
    /// Runs everything recorded so far and returns the contents of `src`, a `U32` view.
    fn read_u32(&mut self, src: Buf) -> Result<Vec<u32>>;
    /// Submits recorded work without waiting for it.
    fn flush(&mut self) -> Result<()>;
    /// Submits recorded work and waits until it is done (for timing).
    fn sync(&mut self) -> Result<()> {
        self.flush()
    }

    /// Runs (on the GPU: records) one op whose shape rule ([`Op::check`]) has passed: plans
    /// check their ops when they are built, [`crate::ops::run`] checks one made by hand.
    fn run(&mut self, op: &Op) -> Result<()>;

    /// Marks the ops run until the next call as one replay of the compiled program `program`
    /// (`None`: the replay is over). A backend that records kernel launches may remember each
    /// launch by its place in the program and, when the next replay launches the same kernel on
    /// the same buffers with the same uniform block there, reuse what it prepared instead of
    /// looking it up again. The default does nothing.
    fn set_replay(&mut self, _program: Option<u64>) {}

    /// The most bytes one op's operand may take: the GPU adapter's largest storage binding
    /// (128 MiB on many integrated GPUs and on lavapipe). Plans keep every value they can
    /// within it (a convolution's patches are read in place above it). Unbounded on the CPU.
    fn max_buffer_bytes(&self) -> u64 {
        u64::MAX
    }

    /// Kernel launches (and their workgroups) this backend has recorded so far, where it
    /// launches kernels (the GPU); `None` on the CPU, which runs each op as a function call.
    fn launches(&self) -> Option<Launches> {
        None
    }

    /// Starts timing each kernel on the device (GPU timestamp queries) from the next op on.
    /// Returns false, and changes nothing, where the backend or adapter cannot.
    fn start_kernel_timing(&mut self) -> bool {
        false
    }

    /// Runs everything recorded, stops kernel timing and returns the time of each kernel since
    /// [`Backend::start_kernel_timing`], in the order each name first ran. One name (an op and
    /// its shape) may gather several calls. Empty where timing was never started.
    fn take_kernel_times(&mut self) -> Result<Vec<crate::backend::KernelTime>> {
        Ok(Vec::new())
    }
}

/// Which backend to use, as chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The GPU when an adapter exists, else the CPU (with a notice).
    Auto,
    /// The GPU backend, or an error where there is no adapter.
    Gpu,
    /// The CPU reference backend.
    Cpu,
}

/// Opens the backend the user chose. Returns it with a one-line notice when `auto` fell back
/// to the CPU. `adapter` picks a GPU adapter by its index in [`gpu::list_adapters`] (the
/// first hardware one by default).
///
/// [`BackendChoice::Auto`] takes a hardware GPU where there is one and the CPU otherwise; a
/// software GPU driver (lavapipe, WARP, SwiftShader) counts as none unless `adapter` names it.
/// [`BackendChoice::Gpu`] fails with [`crate::Error::NoAdapter`] where there is no adapter.
///
/// ```
/// use wgtrain::backend::{self, BackendChoice, DType};
///
/// let (mut b, notice) = backend::create(BackendChoice::Cpu, None)?;
/// assert_eq!((b.name(), b.adapter(), notice), ("cpu", None, None));
/// let x = b.alloc(DType::F32, 3, "x")?;
/// b.write_f32(x, &[1.0, 2.0, 3.0])?;
/// assert_eq!(b.read_f32(x)?, [1.0, 2.0, 3.0]);
/// # Ok::<(), wgtrain::Error>(())
/// ```
pub fn create(
    choice: BackendChoice,
    adapter: Option<usize>,
) -> Result<(Box<dyn Backend>, Option<String>)> {
    match choice {
        BackendChoice::Cpu => Ok((Box::new(cpu::CpuBackend::new()), None)),
        BackendChoice::Gpu => Ok((Box::new(gpu::GpuBackend::new(adapter)?), None)),
        // A software rasteriser (lavapipe, WARP, SwiftShader) runs our kernels far slower than
        // the CPU backend runs the same model, so `auto` takes a GPU only when a hardware
        // adapter exists (or one was named).
        BackendChoice::Auto
            if adapter.is_none()
                && gpu::list_adapters()
                    .iter()
                    .all(|a| a.device_type == "Cpu") =>
        {
            let notice = match gpu::list_adapters().first() {
                Some(a) => format!(
                    "note: the only GPU adapter is a software one ({}); training on the CPU backend, which is faster (--backend gpu to use it anyway)",
                    a.name
                ),
                None => "note: no GPU adapter found; training on the CPU (--backend cpu to silence this)"
                    .into(),
            };
            Ok((Box::new(cpu::CpuBackend::new()), Some(notice)))
        }
        BackendChoice::Auto => match gpu::GpuBackend::new(adapter) {
            Ok(g) => Ok((Box::new(g), None)),
            Err(crate::Error::NoAdapter(_)) => Ok((
                Box::new(cpu::CpuBackend::new()),
                Some(
                    "note: no GPU adapter found; training on the CPU (--backend cpu to silence this)"
                        .into(),
                ),
            )),
            Err(e) => Err(e),
        },
    }
}
