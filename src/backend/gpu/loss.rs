//! Launcher of `shaders/loss.wgsl`: losses fused with their output activation, writing per-row
//! statistics and the gradient in one pass.

use super::WG;
use super::context::{KernelSpec, Shader};
use super::{GpuBackend, check_len, distinct, expect_dtype};
use crate::Result;
use crate::backend::{Buf, DType, STATS_PER_ROW, op_name};
use crate::model::LossKind;

static SHADER: Shader = Shader {
    name: "loss.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/activation_fn.wgsl"),
        include_str!("../../../shaders/loss.wgsl")
    ),
};

/// out, targets (read), grad, stats (written).
const STORAGE: &[(u32, bool)] = &[(1, true), (2, true), (3, false), (4, false)];

const fn spec(label: &'static str) -> KernelSpec {
    KernelSpec {
        label,
        shader: &SHADER,
        entry: label,
        constants: &[],
        storage: STORAGE,
    }
}

static SOFTMAX_CE: KernelSpec = spec("softmax_ce");
static SIGMOID_BCE: KernelSpec = spec("sigmoid_bce");
static REGRESSION: KernelSpec = spec("regression");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    rows: u32,
    cols: u32,
    kind: u32,
    has_grad: u32,
    out_off: u32,
    tgt_off: u32,
    grad_off: u32,
    stats_off: u32,
    scale: f32,
}

// out, grad: (rows, cols); targets: (rows,) u32 or (rows, cols) f32 -> stats: (rows, 2)
#[allow(clippy::too_many_arguments)]
pub(super) fn loss(
    g: &mut GpuBackend,
    kind: LossKind,
    out: Buf,
    targets: Buf,
    rows: usize,
    cols: usize,
    grad: Option<Buf>,
    stats: Buf,
) -> Result<()> {
    let n = rows * cols;
    check_len("loss input", out, n)?;
    check_len("loss stats", stats, rows * STATS_PER_ROW)?;
    expect_dtype("loss input", out, DType::F32);
    expect_dtype("loss stats", stats, DType::F32);
    if let Some(gr) = grad {
        check_len("loss grad", gr, n)?;
        expect_dtype("loss grad", gr, DType::F32);
        distinct(gr, &[out, targets, stats]);
    }
    distinct(stats, &[out, targets]);
    let (spec, code) = match kind {
        LossKind::SoftmaxCrossEntropy => (&SOFTMAX_CE, 0),
        LossKind::SigmoidBce => (&SIGMOID_BCE, 0),
        LossKind::Mse => (&REGRESSION, 0),
        LossKind::Mae => (&REGRESSION, 1),
    };
    if kind.is_classification() {
        check_len("loss labels", targets, rows)?;
        expect_dtype("loss labels", targets, DType::U32);
    } else {
        check_len("loss targets", targets, n)?;
        expect_dtype("loss targets", targets, DType::F32);
    }
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let dims = Dims {
        rows: rows as u32,
        cols: cols as u32,
        kind: code,
        has_grad: grad.is_some() as u32,
        out_off: out.offset,
        tgt_off: targets.offset,
        grad_off: grad.map_or(0, |b| b.offset),
        stats_off: stats.offset,
        scale: 1.0 / rows as f32,
    };
    let groups = g.grid(rows, WG)?;
    g.record(
        spec,
        &[Some(out), Some(targets), grad, Some(stats)],
        &dims,
        groups,
        || op_name::loss(kind, rows, cols),
    )
}
