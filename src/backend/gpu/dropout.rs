//! Launcher of `shaders/dropout.wgsl`: inverted dropout with the counter-based mask of
//! `rng::hash3`, and the masked product of its backward pass.

use super::WG;
use super::context::{KernelSpec, Shader};
use super::{GpuBackend, check_len, distinct, expect_dtype};
use crate::Result;
use crate::backend::{Buf, DType, op_name};

static SHADER: Shader = Shader {
    name: "dropout.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/dropout.wgsl")
    ),
};

static FORWARD: KernelSpec = KernelSpec {
    label: "dropout_forward",
    shader: &SHADER,
    entry: "dropout_forward",
    constants: &[],
    // x (read), y, mask (written)
    storage: &[(1, true), (2, false), (3, false)],
};
static MUL_INPLACE: KernelSpec = KernelSpec {
    label: "mul_inplace",
    shader: &SHADER,
    entry: "mul_inplace",
    constants: &[],
    // x (the `y` binding, updated), mask
    storage: &[(2, false), (3, false)],
};

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
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    g: &mut GpuBackend,
    x: Buf,
    y: Buf,
    mask: Buf,
    n: usize,
    p: f32,
    seed: u32,
    stream: u32,
) -> Result<()> {
    check_len("dropout input", x, n)?;
    check_len("dropout output", y, n)?;
    check_len("dropout mask", mask, n)?;
    for (what, b) in [("input", x), ("output", y), ("mask", mask)] {
        expect_dtype(what, b, DType::F32);
    }
    distinct(mask, &[x, y]);
    distinct(y, &[x]);
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
    let name = || op_name::dropout_forward(n);
    g.record(
        &FORWARD,
        &[Some(x), Some(y), Some(mask)],
        &dims,
        groups,
        name,
    )
}

// x, mask: (n,)
pub(super) fn mul_inplace(g: &mut GpuBackend, x: Buf, mask: Buf, n: usize) -> Result<()> {
    check_len("mul input", x, n)?;
    check_len("mul mask", mask, n)?;
    expect_dtype("mul input", x, DType::F32);
    expect_dtype("mul mask", mask, DType::F32);
    distinct(x, &[mask]);
    if n == 0 {
        return Ok(());
    }
    let dims = Dims {
        n: n as u32,
        x_off: 0,
        y_off: x.offset,
        mask_off: mask.offset,
        p: 0.0,
        keep: 0.0,
        seed: 0,
        stream: 0,
    };
    let groups = g.grid(n, WG)?;
    let name = || op_name::dropout_backward(n);
    g.record(&MUL_INPLACE, &[Some(x), Some(mask)], &dims, groups, name)
}
