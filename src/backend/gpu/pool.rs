//! Launcher of `shaders/pool.wgsl`: max and average pooling, forward and backward.

use super::GpuBackend;
use super::WG;
use super::context::{KernelSpec, Shader};
use crate::Result;
use crate::backend::Buf;
use crate::ops::{AvgPool, AvgPoolGrad, MaxPool, MaxPoolGrad, Rules, Window};

static SHADER: Shader = Shader {
    name: "pool.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/window.wgsl"),
        include_str!("../../../shaders/pool.wgsl")
    ),
};

/// Images (x or dx), pooled images (y or dy), the maxima's positions.
const STORAGE: &[(u32, bool)] = &[(1, false), (2, false), (3, false)];

const fn spec(entry: &'static str) -> KernelSpec {
    KernelSpec {
        label: entry,
        shader: &SHADER,
        entry,
        constants: &[],
        storage: STORAGE,
    }
}

static MAX_POOL: KernelSpec = spec("max_pool");
static MAX_POOL_GRAD: KernelSpec = spec("max_pool_grad");
static AVG_POOL: KernelSpec = spec("avg_pool");
static AVG_POOL_GRAD: KernelSpec = spec("avg_pool_grad");

/// Every kernel this launcher records (the tests check each against WebGPU's limits).
pub(super) static KERNELS: &[&KernelSpec] = &[&MAX_POOL, &MAX_POOL_GRAD, &AVG_POOL, &AVG_POOL_GRAD];

/// Records `spec` over `n` invocations, binding the images `x`, the pooled images `y` and the
/// positions `arg`.
#[allow(clippy::too_many_arguments)]
fn launch(
    gpu: &mut GpuBackend,
    spec: &'static KernelSpec,
    g: &Window,
    n: usize,
    x: Buf,
    y: Buf,
    arg: Option<Buf>,
    cost: impl FnOnce() -> crate::ops::OpLabel,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let d = super::conv::window_dims(g, n, x, y, arg);
    let groups = gpu.grid(n, WG)?;
    gpu.record(spec, &[Some(x), Some(y), arg], &d, groups, cost)
}

/// Elements of the pooled batch.
fn pooled(g: &Window) -> usize {
    g.positions() * g.c
}

// x: (batch, h, w, c) -> y, argmax: (batch, oh, ow, c)
pub(super) fn max_pool(g: &mut GpuBackend, op: &MaxPool) -> Result<()> {
    let n = pooled(&op.g);
    launch(g, &MAX_POOL, &op.g, n, op.x, op.y, Some(op.argmax), || {
        op.cost()
    })
}

// dy, argmax: (batch, oh, ow, c) -> dx: (batch, h, w, c)
pub(super) fn max_pool_grad(g: &mut GpuBackend, op: &MaxPoolGrad) -> Result<()> {
    let n = op.g.input_len();
    launch(
        g,
        &MAX_POOL_GRAD,
        &op.g,
        n,
        op.dx,
        op.dy,
        Some(op.argmax),
        || op.cost(),
    )
}

// x: (batch, h, w, c) -> y: (batch, oh, ow, c)
pub(super) fn avg_pool(g: &mut GpuBackend, op: &AvgPool) -> Result<()> {
    let n = pooled(&op.g);
    launch(g, &AVG_POOL, &op.g, n, op.x, op.y, None, || op.cost())
}

// dy: (batch, oh, ow, c) -> dx: (batch, h, w, c)
pub(super) fn avg_pool_grad(g: &mut GpuBackend, op: &AvgPoolGrad) -> Result<()> {
    let n = op.g.input_len();
    launch(g, &AVG_POOL_GRAD, &op.g, n, op.dx, op.dy, None, || {
        op.cost()
    })
}
