//! How per-op timings name and cost ops: one name per op and shape, shared by the CPU breakdown
//! (`bench::timed`, which times each op alone) and the GPU's timestamp queries (one dispatch
//! per op), so the bench table lines the two backends' rows up; and each op's cost, the FLOPs
//! it must do and the fewest bytes it must move (each input read once, each output written
//! once), from which the bench prints the floor beside each op's time.

use super::{DType, MatmulDims, STATS_PER_ROW};
use crate::model::{Activation, LossKind};
use crate::optim::OptimizerKind;

/// An op of a timing breakdown: its name and the cost of one call.
#[derive(Clone, Debug, PartialEq)]
pub struct OpLabel {
    pub name: String,
    pub flops: f64,
    pub bytes: f64,
}

/// Bytes of `n` f32 (or u32) values.
fn words(n: usize) -> f64 {
    4.0 * n as f64
}

fn label(name: String, flops: f64, bytes: f64) -> OpLabel {
    OpLabel { name, flops, bytes }
}

/// A host-device transfer: timed, but with no device floor.
pub fn transfer(name: &str) -> OpLabel {
    label(name.into(), 0.0, 0.0)
}

pub fn fill(n: usize) -> OpLabel {
    label(format!("fill {n}"), 0.0, words(n))
}

/// Rows of a `src_dtype` data set gathered into f32: the rows read, the batch and the index.
pub fn gather_rows(rows: usize, cols: usize, src_dtype: DType) -> OpLabel {
    let src = match src_dtype {
        DType::U8 => 1.0,
        DType::F32 | DType::U32 => 4.0,
    };
    let n = rows * cols;
    let bytes = src * n as f64 + words(n) + words(rows);
    label(format!("gather rows {rows}x{cols}"), 0.0, bytes)
}

pub fn gather_labels(rows: usize) -> OpLabel {
    label("gather labels".into(), 0.0, words(3 * rows))
}

fn form(d: &MatmulDims) -> &'static str {
    match (d.trans_a, d.trans_b) {
        (false, false) => "A·B",
        (true, false) => "Aᵀ·B",
        (false, true) => "A·Bᵀ",
        (true, true) => "Aᵀ·Bᵀ",
    }
}

/// The product alone: 2mkn FLOPs; a, b read and c written once, plus the bias.
fn product(d: &MatmulDims, name: String, bias: bool) -> OpLabel {
    let MatmulDims { m, k, n, .. } = *d;
    let bytes = words(m * k + k * n + m * n) + if bias { words(n) } else { 0.0 };
    label(name, 2.0 * (m * k * n) as f64, bytes)
}

/// "matmul A·Bᵀ 128x784x256 +bias": the form, then m x k x n.
pub fn matmul(d: &MatmulDims, bias: bool) -> OpLabel {
    let b = if bias { " +bias" } else { "" };
    let name = format!("matmul {} {}x{}x{}{b}", form(d), d.m, d.k, d.n);
    product(d, name, bias)
}

fn act_name(act: Activation) -> String {
    format!("{act:?}").to_lowercase()
}

/// "matmul A·Bᵀ 128x784x256 +bias +relu": a product with its activation fused.
pub fn matmul_act(d: &MatmulDims, bias: bool, act: Activation) -> OpLabel {
    let base = matmul(d, bias);
    label(
        format!("{} +{}", base.name, act_name(act)),
        base.flops,
        base.bytes,
    )
}

/// "matmul A·B 128x128x256 ×relu'": a product times an activation's derivative, fused (which
/// also reads the activation's output).
pub fn matmul_act_grad(d: &MatmulDims, act: Activation) -> OpLabel {
    let base = matmul(d, false);
    label(
        format!("{} ×{}'", base.name, act_name(act)),
        base.flops,
        base.bytes + words(d.m * d.n),
    )
}

/// "matmul Aᵀ·B 256x128x784 +col_sum": a product and the column sums of its `a`, fused.
pub fn matmul_col_sum(d: &MatmulDims) -> OpLabel {
    let base = matmul(d, false);
    label(
        format!("{} +col_sum", base.name),
        base.flops,
        base.bytes + words(d.m),
    )
}

pub fn col_sum(rows: usize, cols: usize) -> OpLabel {
    label(
        format!("col_sum {rows}x{cols}"),
        (rows * cols) as f64,
        words(rows * cols + cols),
    )
}

pub fn act_forward(act: Activation, rows: usize, cols: usize) -> OpLabel {
    let name = format!("{} forward {rows}x{cols}", act_name(act));
    label(name, 0.0, words(2 * rows * cols))
}

/// Reads dy and the forward output y, writes dx.
pub fn act_backward(act: Activation, rows: usize, cols: usize) -> OpLabel {
    let name = format!("{} backward {rows}x{cols}", act_name(act));
    label(name, 0.0, words(3 * rows * cols))
}

/// Reads x, writes y and the mask.
pub fn dropout_forward(n: usize) -> OpLabel {
    label(format!("dropout forward {n}"), 0.0, words(3 * n))
}

/// Reads the gradient and the mask, writes the gradient.
pub fn dropout_backward(n: usize) -> OpLabel {
    label(format!("dropout backward {n}"), 0.0, words(3 * n))
}

/// Reads the outputs and targets, writes the gradient and the per-row statistics.
pub fn loss(kind: LossKind, rows: usize, cols: usize) -> OpLabel {
    let targets = if kind.is_classification() {
        rows
    } else {
        rows * cols
    };
    let name = format!("loss {kind:?} {rows}x{cols}").to_lowercase();
    let bytes = words(2 * rows * cols + targets + STATS_PER_ROW * rows);
    label(name, 0.0, bytes)
}

pub fn accumulate_stats(rows: usize) -> OpLabel {
    label("accumulate stats".into(), 0.0, words(STATS_PER_ROW * rows))
}

/// Reads the parameters and gradients, writes the gradients.
pub fn regularize(n: usize) -> OpLabel {
    label(format!("regularize {n}"), 0.0, words(3 * n))
}

/// Reads parameters, gradients and each state vector the optimizer keeps (SGD keeps one only
/// with momentum); writes the parameters and the state.
pub fn update(kind: OptimizerKind, momentum: f32, n: usize) -> OpLabel {
    let states = match kind {
        OptimizerKind::Adam | OptimizerKind::Adamw => 2,
        OptimizerKind::Sgd if momentum == 0.0 => 0,
        OptimizerKind::Sgd | OptimizerKind::Adagrad | OptimizerKind::Rmsprop => 1,
    };
    let name = format!("{kind:?} update {n}").to_lowercase();
    label(name, 0.0, words((3 + 2 * states) * n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_count_each_input_read_and_each_output_written_once() {
        let d = MatmulDims {
            m: 2,
            k: 3,
            n: 5,
            trans_a: true,
            trans_b: false,
        };
        let mm = matmul(&d, true);
        assert_eq!(mm.name, "matmul Aᵀ·B 2x3x5 +bias");
        assert_eq!((mm.flops, mm.bytes), (60.0, 4.0 * (6 + 15 + 10 + 5) as f64));
        // The fused forms add only what they read or write besides the product.
        assert_eq!(matmul_act(&d, true, Activation::Relu).bytes, mm.bytes);
        assert_eq!(
            matmul_act_grad(&d, Activation::Tanh).bytes,
            4.0 * (6 + 15 + 10 + 10) as f64
        );
        assert_eq!(matmul_col_sum(&d).bytes, 4.0 * (6 + 15 + 10 + 2) as f64);
        // Adam reads p, g, m, v and writes p, m, v; SGD keeps one state vector with momentum,
        // none without.
        assert_eq!(update(OptimizerKind::Adam, 0.0, 10).bytes, 280.0);
        assert_eq!(update(OptimizerKind::Sgd, 0.9, 10).bytes, 200.0);
        assert_eq!(update(OptimizerKind::Sgd, 0.0, 10).bytes, 120.0);
        // Byte images are read as bytes, written as floats, with one index per row.
        assert_eq!(gather_rows(2, 3, DType::U8).bytes, 6.0 + 24.0 + 8.0);
        assert_eq!(gather_rows(2, 3, DType::F32).bytes, 24.0 + 24.0 + 8.0);
        let l = loss(LossKind::SoftmaxCrossEntropy, 4, 10);
        assert_eq!(l.bytes, 4.0 * (80 + 4 + 8) as f64);
        assert_eq!(l.name, "loss softmaxcrossentropy 4x10");
        assert_eq!(transfer("read back").bytes, 0.0);
    }
}
