//! The names per-op timings report: one name per op and shape, shared by the CPU breakdown
//! (`bench::timed`, which times each op alone) and the GPU's timestamp queries (one dispatch
//! per op), so the bench table lines the two backends' rows up.

use super::MatmulDims;
use crate::model::{Activation, LossKind};
use crate::optim::OptimizerKind;

pub const FILL: &str = "fill";
pub const GATHER_LABELS: &str = "gather labels";
pub const ACCUMULATE_STATS: &str = "accumulate stats";

pub fn gather_rows(rows: usize, cols: usize) -> String {
    format!("gather rows {rows}x{cols}")
}

/// "matmul A·Bᵀ 128x784x256 +bias": the form, then m x k x n.
pub fn matmul(d: &MatmulDims, bias: bool) -> String {
    let form = match (d.trans_a, d.trans_b) {
        (false, false) => "A·B",
        (true, false) => "Aᵀ·B",
        (false, true) => "A·Bᵀ",
        (true, true) => "Aᵀ·Bᵀ",
    };
    let bias = if bias { " +bias" } else { "" };
    format!("matmul {form} {}x{}x{}{bias}", d.m, d.k, d.n)
}

/// "matmul A·Bᵀ 128x784x256 +bias +relu": a product with its activation fused.
pub fn matmul_act(d: &MatmulDims, bias: bool, act: Activation) -> String {
    let act = format!("{act:?}").to_lowercase();
    format!("{} +{act}", matmul(d, bias))
}

/// "matmul A·B 128x128x256 ×relu'": a product times an activation's derivative, fused.
pub fn matmul_act_grad(d: &MatmulDims, act: Activation) -> String {
    let act = format!("{act:?}").to_lowercase();
    format!("{} ×{act}'", matmul(d, false))
}

/// "matmul Aᵀ·B 256x128x784 +col_sum": a product and the column sums of its `a`, fused.
pub fn matmul_col_sum(d: &MatmulDims) -> String {
    format!("{} +col_sum", matmul(d, false))
}

pub fn col_sum(rows: usize, cols: usize) -> String {
    format!("col_sum {rows}x{cols}")
}

pub fn act_forward(act: Activation, rows: usize, cols: usize) -> String {
    format!("{act:?} forward {rows}x{cols}").to_lowercase()
}

pub fn act_backward(act: Activation, rows: usize, cols: usize) -> String {
    format!("{act:?} backward {rows}x{cols}").to_lowercase()
}

pub fn dropout_forward(n: usize) -> String {
    format!("dropout forward {n}")
}

pub fn dropout_backward(n: usize) -> String {
    format!("dropout backward {n}")
}

pub fn loss(kind: LossKind, rows: usize, cols: usize) -> String {
    format!("loss {kind:?} {rows}x{cols}").to_lowercase()
}

pub fn regularize(n: usize) -> String {
    format!("regularize {n}")
}

pub fn update(kind: OptimizerKind, n: usize) -> String {
    format!("{kind:?} update {n}").to_lowercase()
}
