//! The backend boundary: the few ops an MLP trainer needs, on buffers that live wherever the
//! backend keeps them (host memory for the CPU, device memory for the GPU).
//!
//! Ops name their operands by [`Buf`] handles and take their shapes explicitly, so nothing here
//! assumes host memory: the GPU backend records each op as a dispatch and runs them when
//! [`Backend::flush`] or a read needs the results. All matrices are row-major. A destination never
//! shares its allocation with a source unless the op says it works in place.

pub mod cpu;
pub mod gpu;
pub(crate) mod op_name;

use crate::Result;
use crate::model::{Activation, LossKind};
use crate::optim::OptimizerKind;

/// Element type of an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    U32,
    /// Bytes; the GPU packs four to a word.
    U8,
}

/// A handle to `len` elements at `offset` in allocation `id`. Views of one allocation (the flat
/// parameter buffer) are how the optimizer updates all parameters in one op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Buf {
    pub id: u32,
    pub offset: u32,
    pub len: u32,
    pub dtype: DType,
}

impl Buf {
    pub fn len(&self) -> usize {
        self.len as usize
    }

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

/// The shape check every op of both backends starts with: `b` must hold at least `need`
/// elements (a view too short for its op is the caller's error, reported, not a panic).
pub(crate) fn check_len(what: &str, b: Buf, need: usize) -> Result<()> {
    if b.len() < need {
        return Err(crate::Error::Shape(format!(
            "{what} has {} elements, needs {need}",
            b.len
        )));
    }
    Ok(())
}

/// A destination must not share its allocation with a source, on either backend: the CPU
/// writes a destination while reading its sources, and on the GPU a read-only and a writable
/// binding of one buffer would fail validation. A caller's bug, so a panic.
pub(crate) fn distinct(dst: Buf, srcs: &[Buf]) {
    for s in srcs {
        assert_ne!(
            dst.id, s.id,
            "destination shares an allocation with a source"
        );
    }
}

/// `c = op(a) · op(b)` with `op` a transpose where asked; `c` is `(m, n)`, the inner size `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulDims {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// `a` is stored `(k, m)` and used transposed.
    pub trans_a: bool,
    /// `b` is stored `(n, k)` and used transposed.
    pub trans_b: bool,
}

/// What a loss op adds to its statistics buffer, per row: `[loss, metric]` where metric is 1/0
/// for a correct classification or the mean absolute error of a regression row.
pub const STATS_PER_ROW: usize = 2;

/// The slots of a metrics accumulator: sum of row losses, sum of row metrics, rows counted.
pub const ACC_LEN: usize = 3;

/// Hyper-parameters of one optimizer update, with this step's learning rate already decayed
/// and Adam's bias corrections already computed by the host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdateParams {
    pub kind: OptimizerKind,
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    pub nesterov: bool,
    /// Adam beta1 / RMSprop's rho is in `beta2`.
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// AdamW's decoupled weight decay (already multiplied by nothing; the op scales by lr).
    pub weight_decay: f32,
    /// `1 - beta1^t` and `1 - beta2^t` for Adam/AdamW at this step `t`.
    pub bias_correction1: f32,
    pub bias_correction2: f32,
}

/// The device time of one kernel over a timed run: `calls` dispatches named `name` (the op and
/// its shape, as [`Backend::take_kernel_times`] documents) took `seconds` in all; each does
/// `flops` and must move `bytes` ([`op_name::OpLabel`]).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub name: String,
    pub calls: usize,
    pub seconds: f64,
    pub flops: f64,
    pub bytes: f64,
}

/// A compute backend. Implementations: [`cpu::CpuBackend`] (the reference) and the GPU backend.
pub trait Backend {
    /// "cpu" or "gpu".
    fn name(&self) -> &'static str;
    /// The adapter's name on the GPU, `None` on the CPU.
    fn adapter(&self) -> Option<String>;

    /// A new zeroed allocation of `len` elements; returns the whole view.
    fn alloc(&mut self, dtype: DType, len: usize, label: &str) -> Result<Buf>;
    fn write_f32(&mut self, dst: Buf, data: &[f32]) -> Result<()>;
    fn write_u32(&mut self, dst: Buf, data: &[u32]) -> Result<()>;
    /// Writes bytes to a `U8` view whose offset is a multiple of 4.
    fn write_u8(&mut self, dst: Buf, data: &[u8]) -> Result<()>;
    /// Runs everything recorded so far and returns the contents of `src`.
    fn read_f32(&mut self, src: Buf) -> Result<Vec<f32>>;
    fn read_u32(&mut self, src: Buf) -> Result<Vec<u32>>;
    /// Submits recorded work without waiting for it.
    fn flush(&mut self) -> Result<()>;
    /// Submits recorded work and waits until it is done (for timing).
    fn sync(&mut self) -> Result<()> {
        self.flush()
    }

    /// `dst = value` for every element.
    fn fill(&mut self, dst: Buf, value: f32) -> Result<()>;

    /// Batch assembly: `dst[r, :] = a * src[idx[r], :] + b` for `r < rows`, where `src` is
    /// `(_, cols)` of `U8` or `F32` and `idx` is a `U32` view of `rows` row numbers.
    /// dst: (rows, cols).
    fn gather_rows(
        &mut self,
        src: Buf,
        idx: Buf,
        rows: usize,
        cols: usize,
        affine: (f32, f32),
        dst: Buf,
    ) -> Result<()>;
    /// `dst[r] = src[idx[r]]` for `U32` label views. dst: (rows,).
    fn gather_labels(&mut self, src: Buf, idx: Buf, rows: usize, dst: Buf) -> Result<()>;

    /// `c = op(a) · op(b) (+ bias broadcast over rows)`.
    /// a: (m, k) or (k, m) if trans_a; b: (k, n) or (n, k) if trans_b; bias: (n,); c: (m, n).
    fn matmul(&mut self, a: Buf, b: Buf, bias: Option<Buf>, c: Buf, dims: MatmulDims)
    -> Result<()>;

    /// `c = f(op(a) · op(b) + bias)` for an elementwise activation `f` (not softmax): a Dense
    /// layer and the activation after it. Shapes as [`Backend::matmul`]. The default records
    /// the two ops (the reference); a backend may fuse them into one pass.
    fn matmul_act(
        &mut self,
        a: Buf,
        b: Buf,
        bias: Option<Buf>,
        c: Buf,
        dims: MatmulDims,
        act: Activation,
    ) -> Result<()> {
        self.matmul(a, b, bias, c, dims)?;
        self.act_forward(act, c, c, dims.m, dims.n)
    }

    /// `c = (op(a) · op(b)) ⊙ f'(x)` for an elementwise activation `f` (not softmax), its
    /// derivative read through the activation's output `y = f(x)`: the input gradient of a
    /// Dense layer carried back through the activation before it. Shapes as
    /// [`Backend::matmul`]; y: (m, n). The default records the two ops (the reference); a
    /// backend may fuse them into one pass.
    fn matmul_act_grad(
        &mut self,
        a: Buf,
        b: Buf,
        y: Buf,
        c: Buf,
        dims: MatmulDims,
        act: Activation,
    ) -> Result<()> {
        self.matmul(a, b, None, c, dims)?;
        self.act_backward(act, y, c, c, dims.m, dims.n)
    }

    /// `c = aᵀ · op(b)` and `sums = Σ_rows a` (the column sums of `a` as stored): a Dense
    /// layer's weight gradient dYᵀ·X and its bias gradient Σ dY, in one pass over dY.
    /// `dims.trans_a` must be set; a: (k, m); b, c as [`Backend::matmul`]; sums: (m,). The
    /// default records the two ops (the reference); a backend may fuse them into one pass.
    fn matmul_col_sum(
        &mut self,
        a: Buf,
        b: Buf,
        c: Buf,
        dims: MatmulDims,
        sums: Buf,
    ) -> Result<()> {
        assert!(dims.trans_a, "matmul_col_sum takes a stored (k, m)");
        self.matmul(a, b, None, c, dims)?;
        self.col_sum(a, dims.k, dims.m, sums)
    }

    /// Column sums: `out[j] = Σ_r a[r, j]` (bias gradients). a: (rows, cols) -> out: (cols,).
    fn col_sum(&mut self, a: Buf, rows: usize, cols: usize, out: Buf) -> Result<()>;

    /// `y = f(x)` elementwise, or row-wise for softmax. x, y: (rows, cols). May be in place.
    fn act_forward(
        &mut self,
        act: Activation,
        x: Buf,
        y: Buf,
        rows: usize,
        cols: usize,
    ) -> Result<()>;
    /// `dx = f'(x) ⊙ dy`, computed from the forward output `y` (every activation here has a
    /// derivative expressible in its output). y, dy, dx: (rows, cols). `dx` may alias `dy`.
    fn act_backward(
        &mut self,
        act: Activation,
        y: Buf,
        dy: Buf,
        dx: Buf,
        rows: usize,
        cols: usize,
    ) -> Result<()>;

    /// Inverted dropout: draws `mask[i] = (u_i >= p) / (1 - p)` with
    /// `u_i = hash_to_unit(hash3(seed, stream, i))` and writes `y = x ⊙ mask`. x, y, mask: (n,).
    #[allow(clippy::too_many_arguments)]
    fn dropout_forward(
        &mut self,
        x: Buf,
        y: Buf,
        mask: Buf,
        n: usize,
        p: f32,
        seed: u32,
        stream: u32,
    ) -> Result<()>;
    /// `x *= mask` in place (dropout backward). x, mask: (n,).
    fn mul_inplace(&mut self, x: Buf, mask: Buf, n: usize) -> Result<()>;

    /// A loss fused with its output activation where the kind says so (softmax + CE,
    /// sigmoid + BCE). Writes `[loss, metric]` per row to `stats` and, when `grad` is given,
    /// the gradient of the batch mean loss with respect to `out` (the logits for fused kinds).
    /// out, grad: (rows, cols); targets: `U32` labels (rows,) for class losses, `F32`
    /// (rows, cols) for regression; stats: (rows, 2).
    #[allow(clippy::too_many_arguments)]
    fn loss(
        &mut self,
        kind: LossKind,
        out: Buf,
        targets: Buf,
        rows: usize,
        cols: usize,
        grad: Option<Buf>,
        stats: Buf,
    ) -> Result<()>;

    /// `acc[0..3] += (Σ loss, Σ metric, rows)` over the rows of `stats` (rows, 2); acc: (3,).
    fn accumulate_stats(&mut self, stats: Buf, rows: usize, acc: Buf) -> Result<()>;

    /// Penalty gradients: `grad += l1 · sign(param) + 2 · l2 · param`. param, grad: (n,).
    fn regularize(&mut self, param: Buf, grad: Buf, l1: f32, l2: f32) -> Result<()>;

    /// One optimizer update over views of equal length (the whole flat parameter buffer):
    /// params, grads, state1 (momentum / first moment / cache), state2 (second moment).
    fn update(
        &mut self,
        params: Buf,
        grads: Buf,
        state1: Buf,
        state2: Buf,
        p: &UpdateParams,
    ) -> Result<()>;

    /// Starts timing each kernel on the device (GPU timestamp queries) from the next op on.
    /// Returns false, and changes nothing, where the backend or adapter cannot.
    fn start_kernel_timing(&mut self) -> bool {
        false
    }

    /// Runs everything recorded, stops kernel timing and returns the time of each kernel since
    /// [`Backend::start_kernel_timing`], in the order each name first ran. Names are the op and
    /// its shape as `bench::timed` names the ops it times (e.g. "matmul A·Bᵀ 128x784x256
    /// +bias"), so one name may gather several calls. Empty where timing was never started.
    fn take_kernel_times(&mut self) -> Result<Vec<KernelTime>> {
        Ok(Vec::new())
    }
}

/// Which backend to use, as chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The GPU when an adapter exists, else the CPU (with a notice).
    Auto,
    Gpu,
    Cpu,
}

/// Opens the backend the user chose. Returns it with a one-line notice when `auto` fell back
/// to the CPU.
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
