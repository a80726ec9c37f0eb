//! The op set: every computation a backend runs, each in one place with its shapes, its shape
//! rule, its cost and its CPU reference.
//!
//! An op is a plain struct naming its operands by [`Buf`] handles with its shapes beside them,
//! e.g. [`Matmul`] `{ a, b, bias, c, dims, epilogue }`. Each op family has a file here that
//! holds, for each op:
//! - its operands and how it uses each ([`Access`]), which the planner's liveness analysis and
//!   its checker read;
//! - its shape rule ([`Op::check`]): lengths, element types, which operands may share a buffer.
//!   Plans check every op once when they are built; backends trust them and hold only the math;
//! - its cost ([`Op::cost`]): the FLOPs it must do and the fewest bytes it must move, from which
//!   the bench prints the floor beside each op's time;
//! - its CPU reference (the `cpu` functions), the readable specification every GPU kernel is
//!   tested against.
//!
//! The GPU side of an op is its kernel in `shaders/<family>.wgsl` and its launcher in
//! `src/backend/gpu/<family>.rs`. Adding an op is therefore: a struct and its rules here, a
//! variant of [`Op`], a kernel and a launcher.

pub mod activation;
pub mod conv;
pub mod dropout;
pub mod gather;
pub mod loss;
pub mod matmul;
pub mod optimizer;
pub mod permute;
pub mod pool;
pub mod reduce;

pub use activation::{ActBackward, ActForward};
pub use conv::{Im2Row, Row2Im, Window};
pub use dropout::{Dropout, MaskMul};
pub use gather::{Gather, GatherLabels, Shift};
pub use loss::Loss;
pub use matmul::{Epilogue, Matmul, MatmulDims, Patches, SoftmaxCe};
pub use optimizer::{Clip, Penalty, Regularize, Update, UpdateParams};
pub use permute::Flatten;
pub use pool::{AvgPool, AvgPoolGrad, MaxPool, MaxPoolGrad};
pub use reduce::{AccumulateStats, ColSum, Fill, SumSquares};

use crate::backend::cpu::CpuMem;
use crate::backend::{Buf, DType};
use crate::{Error, Result};

/// How an op uses one of its operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only read.
    Read,
    /// Only written: its previous contents do not matter.
    Write,
    /// Read, then written (an accumulator, parameters updated in place).
    ReadWrite,
}

impl Access {
    /// The op reads the operand's previous contents.
    pub fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    /// The op writes the operand.
    pub fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// What one call of an op costs: its name with its shape (e.g. "matmul A·Bᵀ 128x784x256
/// +bias"), the FLOPs it must do and the fewest bytes it must move (each input read once, each
/// output written once). Timing breakdowns gather calls by name.
#[derive(Clone, Debug, PartialEq)]
pub struct OpLabel {
    /// The op and its shape, e.g. "matmul A·Bᵀ 128x784x256 +bias"; timing tables group calls by it.
    pub name: String,
    /// Floating-point operations one call does (a multiply-add counts two).
    pub flops: f64,
    /// The fewest bytes one call must move: each input read once, each output written once.
    pub bytes: f64,
}

impl OpLabel {
    pub(crate) fn new(name: String, flops: f64, bytes: f64) -> OpLabel {
        OpLabel { name, flops, bytes }
    }
}

/// Bytes of `n` f32 (or u32) values.
pub(crate) fn words(n: usize) -> f64 {
    4.0 * n as f64
}

/// The rules every op states: its operands, its shape rule, its cost and its CPU reference.
pub(crate) trait Rules: Clone {
    /// Every operand with how the op uses it, mutably (the planner maps logical buffers to
    /// physical ones through this).
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)>;
    /// The shape rule: operand lengths and element types, and which operands may share an
    /// allocation.
    fn check(&self) -> Result<()>;
    /// What one call costs.
    fn cost(&self) -> OpLabel;
    /// The operand pair `(source, destination)` the op may run in place on (the destination
    /// the same view as the source), if any.
    fn in_place(&self) -> Option<(Buf, Buf)> {
        None
    }
    /// The CPU reference. Runs only ops whose [`Rules::check`] passed.
    fn cpu(&self, m: &mut CpuMem);
}

/// Defines [`Op`] over the op structs and forwards each of its methods to the struct's
/// [`Rules`], so that adding an op is one line here.
macro_rules! op_set {
    ($($(#[$doc:meta])* $variant:ident($ty:ty),)*) => {
        /// One op of a plan, as backends run it. Each variant's struct documents its operands
        /// and shapes.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op {
            $($(#[$doc])* $variant($ty),)*
        }

        $(impl From<$ty> for Op {
            fn from(op: $ty) -> Op {
                Op::$variant(op)
            }
        })*

        impl Op {
            /// Every operand with how the op uses it, mutably.
            pub(crate) fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
                match self { $(Op::$variant(o) => o.operands_mut(),)* }
            }

            /// Checks the op's shape rule: operand lengths and element types, and which
            /// operands may share an allocation. A failure is a planning bug or a caller's
            /// wrong shapes, reported as [`Error::Shape`].
            pub fn check(&self) -> Result<()> {
                match self { $(Op::$variant(o) => o.check(),)* }
            }

            /// The op's name and shape, FLOPs and fewest bytes moved.
            pub fn cost(&self) -> OpLabel {
                match self { $(Op::$variant(o) => o.cost(),)* }
            }

            /// The `(source, destination)` pair the op may run in place on, if any.
            pub fn in_place(&self) -> Option<(Buf, Buf)> {
                match self { $(Op::$variant(o) => o.in_place(),)* }
            }

            /// Runs the CPU reference.
            pub(crate) fn cpu(&self, m: &mut CpuMem) {
                match self { $(Op::$variant(o) => o.cpu(m),)* }
            }
        }
    };
}

op_set! {
    /// `dst = value`.
    Fill(Fill),
    /// Batch assembly: rows of a resident data set picked by an index (labels too, fused).
    Gather(Gather),
    /// Labels of a resident data set picked by an index.
    GatherLabels(GatherLabels),
    /// A matrix product with an optional bias and epilogue.
    Matmul(Matmul),
    /// Column sums.
    ColSum(ColSum),
    /// An activation, forward.
    ActForward(ActForward),
    /// An activation's input gradient.
    ActBackward(ActBackward),
    /// Inverted dropout, forward.
    Dropout(Dropout),
    /// `y = x ⊙ mask` (dropout's backward).
    MaskMul(MaskMul),
    /// A loss with its output activation: per-row statistics, the gradient, the metrics.
    Loss(Loss),
    /// Adds per-row loss statistics to the metrics accumulator.
    AccumulateStats(AccumulateStats),
    /// L1/L2 penalty gradients.
    Regularize(Regularize),
    /// The sum of squares (gradient clipping's global norm).
    SumSquares(SumSquares),
    /// One optimizer update of the flat parameters.
    Update(Update),
    /// A convolution's patch matrix.
    Im2Row(Im2Row),
    /// The sum of patch-matrix gradients back into the image (col2im).
    Row2Im(Row2Im),
    /// Max pooling.
    MaxPool(MaxPool),
    /// Max pooling's input gradient.
    MaxPoolGrad(MaxPoolGrad),
    /// Average pooling.
    AvgPool(AvgPool),
    /// Average pooling's input gradient.
    AvgPoolGrad(AvgPoolGrad),
    /// Channels-last images to PyTorch-ordered rows, or back.
    Flatten(Flatten),
}

impl Op {
    /// Every operand with how the op uses it.
    pub fn operands(&self) -> Vec<(Buf, Access)> {
        let mut op = self.clone();
        op.operands_mut()
            .into_iter()
            .map(|(b, a)| (*b, a))
            .collect()
    }
}

/// Runs one op on a backend after checking its shape rule: the entry point for ops built by
/// hand (tests, benchmarks). Plans check their ops once when they are built and run them
/// with [`crate::backend::Backend::run`] directly.
///
/// ```
/// use wgtrain::backend::cpu::CpuBackend;
/// use wgtrain::backend::{Backend, DType};
/// use wgtrain::ops::{self, Matmul, MatmulDims};
///
/// let mut b = CpuBackend::new();
/// let x = b.alloc(DType::F32, 6, "x")?;
/// let w = b.alloc(DType::F32, 6, "w")?;
/// let y = b.alloc(DType::F32, 4, "y")?;
/// b.write_f32(x, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?; // (2, 3)
/// b.write_f32(w, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0])?; // (3, 2)
/// let dims = MatmulDims { m: 2, k: 3, n: 2, trans_a: false, trans_b: false };
/// ops::run(&mut b, Matmul::new(x, w, y, dims))?;
/// assert_eq!(b.read_f32(y)?, [4.0, 5.0, 10.0, 11.0]); // (2, 2)
///
/// // An operand too short for the shapes is refused before anything runs.
/// let short = Matmul::new(x.slice(0, 5), w, y, dims);
/// assert!(matches!(ops::run(&mut b, short), Err(wgtrain::Error::Shape(_))));
/// # Ok::<(), wgtrain::Error>(())
/// ```
pub fn run(b: &mut dyn crate::backend::Backend, op: impl Into<Op>) -> Result<()> {
    let op = op.into();
    op.check()?;
    b.run(&op)
}

/// The shape rule's length and type check: `b` must hold at least `len` elements of `dtype`.
pub(crate) fn need(what: &str, b: Buf, len: usize, dtype: DType) -> Result<()> {
    if b.dtype != dtype {
        return Err(Error::Shape(format!(
            "{what} is {:?}, needs {dtype:?}",
            b.dtype
        )));
    }
    if b.len() < len {
        return Err(Error::Shape(format!(
            "{what} has {} elements, needs {len}",
            b.len
        )));
    }
    Ok(())
}

/// A destination must not share its allocation with a source: the CPU writes a destination
/// while reading its sources, and on the GPU a read-only and a writable binding of one buffer
/// fail validation.
pub(crate) fn distinct(what: &str, dst: Buf, srcs: &[Buf]) -> Result<()> {
    match srcs.iter().find(|s| s.id == dst.id) {
        Some(_) => Err(Error::Shape(format!(
            "{what} shares its allocation with a source"
        ))),
        None => Ok(()),
    }
}

/// An in-place destination: the same view as its source, or an allocation of its own.
pub(crate) fn same_or_distinct(what: &str, dst: Buf, src: Buf) -> Result<()> {
    if dst == src {
        Ok(())
    } else {
        distinct(what, dst, &[src])
    }
}

/// Two views that must not overlap (they may lie in one allocation).
pub(crate) fn disjoint(what: &str, x: Buf, y: Buf) -> Result<()> {
    let overlap = x.id == y.id && x.offset < y.offset + y.len && y.offset < x.offset + x.len;
    if overlap {
        return Err(Error::Shape(format!("{what} overlap")));
    }
    Ok(())
}

/// Pushes an optional operand.
pub(crate) fn push_opt<'a>(v: &mut Vec<(&'a mut Buf, Access)>, b: &'a mut Option<Buf>, a: Access) {
    if let Some(b) = b {
        v.push((b, a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, LossKind};
    use crate::optim::{OptimizerConfig, OptimizerKind};

    fn buf(id: u32, len: usize, dtype: DType) -> Buf {
        Buf {
            id,
            offset: 0,
            len: len as u32,
            dtype,
        }
    }

    fn f32s(id: u32, len: usize) -> Buf {
        buf(id, len, DType::F32)
    }

    #[test]
    fn costs_count_each_input_read_and_each_output_written_once() {
        let d = MatmulDims {
            m: 2,
            k: 3,
            n: 5,
            trans_a: true,
            trans_b: false,
        };
        let mm = Matmul {
            bias: Some(f32s(3, 5)),
            ..Matmul::new(f32s(0, 6), f32s(1, 15), f32s(2, 10), d)
        };
        let cost = Op::from(mm.clone()).cost();
        assert_eq!(cost.name, "matmul Aᵀ·B 2x3x5 +bias");
        assert_eq!(
            (cost.flops, cost.bytes),
            (60.0, 4.0 * (6 + 15 + 10 + 5) as f64)
        );
        // The fused forms add only what they read or write besides the product.
        let with = |epilogue| {
            Op::from(Matmul {
                epilogue,
                ..mm.clone()
            })
            .cost()
        };
        assert_eq!(with(Epilogue::Act(Activation::Relu)).bytes, cost.bytes);
        assert_eq!(
            with(Epilogue::Act(Activation::Relu)).name,
            "matmul Aᵀ·B 2x3x5 +bias +relu"
        );
        let grad = Epilogue::ActGrad {
            act: Activation::Tanh,
            y: f32s(4, 10),
        };
        assert_eq!(with(grad).bytes, cost.bytes + 40.0);
        assert_eq!(with(Epilogue::ColSums(f32s(5, 2))).bytes, cost.bytes + 8.0);
        // The loss adds its labels, gradient and accumulator; the logits stay in the kernel.
        let ce = with(Epilogue::SoftmaxCe(SoftmaxCe {
            labels: buf(6, 2, DType::U32),
            grad: Some(f32s(7, 10)),
            acc: f32s(8, 2),
        }));
        assert_eq!(ce.bytes, cost.bytes + 4.0 * (2 + 10 + 4) as f64);
        assert_eq!(ce.name, "matmul Aᵀ·B 2x3x5 +bias +softmax-ce +accumulate");
        // Adam reads p, g, m, v and writes p, m, v; SGD keeps one state vector with momentum,
        // none without.
        let update = |kind, momentum| {
            let mut hyper = OptimizerConfig::new(kind).update_params(0);
            hyper.momentum = momentum;
            Op::from(Update {
                params: f32s(0, 10),
                grads: f32s(1, 10),
                state1: f32s(2, 10),
                state2: f32s(3, 10),
                hyper,
                penalty: None,
                clip: None,
            })
            .cost()
            .bytes
        };
        assert_eq!(update(OptimizerKind::Adam, 0.0), 280.0);
        assert_eq!(update(OptimizerKind::Sgd, 0.9), 200.0);
        assert_eq!(update(OptimizerKind::Sgd, 0.0), 120.0);
        // Byte images are read as bytes, written as floats, with one index per row.
        let gather = |dtype| {
            Op::from(Gather {
                src: buf(0, 6, dtype),
                idx: buf(1, 2, DType::U32),
                start: 0,
                rows: 2,
                cols: 3,
                affine: (1.0, 0.0),
                dst: f32s(2, 6),
                labels: None,
                shift: None,
            })
            .cost()
            .bytes
        };
        assert_eq!(gather(DType::U8), 6.0 + 24.0 + 8.0);
        assert_eq!(gather(DType::F32), 24.0 + 24.0 + 8.0);
        let loss = Op::from(Loss {
            kind: LossKind::SoftmaxCrossEntropy,
            out: f32s(0, 40),
            targets: buf(1, 4, DType::U32),
            rows: 4,
            cols: 10,
            grad: Some(f32s(2, 40)),
            stats: Some(f32s(3, 8)),
            acc: None,
        })
        .cost();
        assert_eq!(loss.bytes, 4.0 * (80 + 4 + 8) as f64);
        assert_eq!(loss.name, "loss softmaxcrossentropy 4x10");
    }

    #[test]
    fn shape_rules_refuse_short_views_wrong_types_and_shared_destinations() {
        let d = MatmulDims {
            m: 2,
            k: 3,
            n: 4,
            trans_a: false,
            trans_b: false,
        };
        let ok = Matmul::new(f32s(0, 6), f32s(1, 12), f32s(2, 8), d);
        assert!(Op::from(ok.clone()).check().is_ok());
        let short = Matmul {
            b: f32s(1, 11),
            ..ok.clone()
        };
        let typed = Matmul {
            a: buf(0, 6, DType::U32),
            ..ok.clone()
        };
        let shared = Matmul {
            c: f32s(0, 8),
            ..ok.clone()
        };
        let softmax = Matmul {
            epilogue: Epilogue::Act(Activation::Softmax),
            ..ok
        };
        for bad in [short, typed, shared, softmax] {
            assert!(
                matches!(Op::from(bad.clone()).check(), Err(Error::Shape(_))),
                "{bad:?}"
            );
        }
        // In place only as the very same view.
        let act = |x: Buf, y: Buf| {
            Op::from(ActForward {
                act: Activation::Tanh,
                x,
                y,
                rows: 2,
                cols: 2,
            })
            .check()
        };
        assert!(act(f32s(0, 4), f32s(0, 4)).is_ok());
        assert!(act(f32s(0, 4), f32s(1, 4)).is_ok());
        assert!(act(f32s(0, 8), f32s(0, 8).slice(4, 4)).is_err());
    }
}
