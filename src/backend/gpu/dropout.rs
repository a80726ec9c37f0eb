//! Launcher of `shaders/dropout.wgsl`: inverted dropout with the counter-based mask of
//! `rng::hash3`, and the masked product of its backward pass.

use super::GpuBackend;
use super::WG;
use super::context::{KernelSpec, Shader};
use crate::Result;
use crate::ops::{Dropout, MaskMul, Rules};

static SHADER: Shader = Shader {
    name: "dropout.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/hash.wgsl"),
        include_str!("../../../shaders/dropout.wgsl")
    ),
};

static FORWARD: KernelSpec = KernelSpec {
    label: "dropout_forward",
    shader: &SHADER,
    entry: "dropout_forward",
    constants: &[],
    // x, y, mask: x is declared writable, as mask_mul may run in place on it
    storage: &[(1, false), (2, false), (3, false)],
};
static MASK_MUL: KernelSpec = KernelSpec {
    label: "mask_mul",
    shader: &SHADER,
    entry: "mask_mul",
    constants: &[],
    // x, y (both writable: they may be one buffer), mask
    storage: &[(1, false), (2, false), (3, false)],
};

/// Every kernel this launcher records (the tests check each against WebGPU's limits).
pub(super) static KERNELS: &[&KernelSpec] = &[&FORWARD, &MASK_MUL];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    n: u32,
    x_off: u32,
    y_off: u32,
    mask_off: u32,
    p: f32,
    keep: f32,
    seed: u32,
    stream: u32,
}

// x -> y, mask: (n,)
// x: (n,) -> y, mask: (n,)
pub(super) fn forward(g: &mut GpuBackend, op: &Dropout) -> Result<()> {
    let Dropout {
        x,
        y,
        mask,
        n,
        p,
        seed,
        stream,
    } = *op;
    if n == 0 {
        return Ok(());
    }
    let dims = Dims {
        n: n as u32,
        x_off: x.offset,
        y_off: y.offset,
        mask_off: mask.offset,
        p,
        // As the CPU computes it, so kept elements scale by the same f32.
        keep: 1.0 / (1.0 - p),
        seed,
        stream,
    };
    let groups = g.grid(n, WG)?;
    g.record(
        &FORWARD,
        &[Some(x), Some(y), Some(mask)],
        &dims,
        groups,
        || op.cost(),
    )
}

// x, mask: (n,) -> y: (n,); y may be x
pub(super) fn mask_mul(g: &mut GpuBackend, op: &MaskMul) -> Result<()> {
    let MaskMul { x, mask, y, n } = *op;
    if n == 0 {
        return Ok(());
    }
    let dims = Dims {
        n: n as u32,
        x_off: x.offset,
        y_off: y.offset,
        mask_off: mask.offset,
        p: 0.0,
        keep: 0.0,
        seed: 0,
        stream: 0,
    };
    let groups = g.grid(n, WG)?;
    g.record(
        &MASK_MUL,
        &[Some(x), Some(y), Some(mask)],
        &dims,
        groups,
        || op.cost(),
    )
}
