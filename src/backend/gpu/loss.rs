//! Launcher of `shaders/loss.wgsl`: losses fused with their output activation, writing per-row
//! statistics (or adding them to the metrics accumulator) and the gradient in one pass.

use super::GpuBackend;
use super::WG;
use super::context::{KernelSpec, Shader};
use crate::Result;
use crate::model::LossKind;
use crate::ops::{Loss, Rules};

static SHADER: Shader = Shader {
    name: "loss.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/activation_fn.wgsl"),
        include_str!("../../../shaders/loss.wgsl")
    ),
};

/// out, targets (read), grad, stats (written).
/// out, targets (read), grad, stats, acc (written).
const STORAGE: &[(u32, bool)] = &[(1, true), (2, true), (3, false), (4, false), (5, false)];

const fn spec(label: &'static str) -> KernelSpec {
    KernelSpec {
        label,
        shader: &SHADER,
        entry: label,
        constants: &[],
        storage: STORAGE,
    }
}

static PER_ROW: KernelSpec = spec("per_row");
static ACCUMULATE: KernelSpec = spec("accumulate");

/// Every kernel this launcher records (the tests check each against WebGPU's limits).
pub(super) static KERNELS: &[&KernelSpec] = &[&PER_ROW, &ACCUMULATE];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    rows: u32,
    cols: u32,
    family: u32,
    kind: u32,
    has_grad: u32,
    has_stats: u32,
    out_off: u32,
    tgt_off: u32,
    grad_off: u32,
    stats_off: u32,
    acc_off: u32,
    scale: f32,
}

// out: (rows, cols); targets: (rows,) u32 or (rows, cols) f32 -> grad, stats, acc
pub(super) fn loss(g: &mut GpuBackend, op: &Loss) -> Result<()> {
    let (rows, cols) = (op.rows, op.cols);
    let (family, kind) = match op.kind {
        LossKind::SoftmaxCrossEntropy => (0, 0),
        LossKind::SigmoidBce => (1, 0),
        LossKind::Mse => (2, 0),
        LossKind::Mae => (2, 1),
    };
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let dims = Dims {
        rows: rows as u32,
        cols: cols as u32,
        family,
        kind,
        has_grad: op.grad.is_some() as u32,
        has_stats: op.stats.is_some() as u32,
        out_off: op.out.offset,
        tgt_off: op.targets.offset,
        grad_off: op.grad.map_or(0, |b| b.offset),
        stats_off: op.stats.map_or(0, |b| b.offset),
        acc_off: op.acc.map_or(0, |b| b.offset),
        scale: 1.0 / rows as f32,
    };
    // With an accumulator, one workgroup strides over all rows.
    let (spec, groups) = match op.acc {
        Some(_) => (&ACCUMULATE, [1, 1, 1]),
        None => (&PER_ROW, g.grid(rows, WG)?),
    };
    g.record(
        spec,
        &[Some(op.out), Some(op.targets), op.grad, op.stats, op.acc],
        &dims,
        groups,
        || op.cost(),
    )
}
