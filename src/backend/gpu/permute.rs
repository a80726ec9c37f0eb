//! Launcher of `shaders/permute.wgsl`: channels-last images to PyTorch-ordered rows and back.

use super::GpuBackend;
use super::WG;
use super::context::{KernelSpec, Shader};
use crate::Result;
use crate::ops::{Flatten, Rules};

static SHADER: Shader = Shader {
    name: "permute.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/permute.wgsl")
    ),
};

static FLATTEN: KernelSpec = KernelSpec {
    label: "flatten",
    shader: &SHADER,
    entry: "flatten",
    constants: &[],
    storage: &[(1, true), (2, false)],
};

/// Every kernel this launcher records (the tests check each against WebGPU's limits).
pub(super) static KERNELS: &[&KernelSpec] = &[&FLATTEN];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    h: u32,
    w: u32,
    c: u32,
    n: u32,
    inverse: u32,
    x_off: u32,
    y_off: u32,
}

// x: (batch, h, w, c) <-> y: (batch, c·h·w)
pub(super) fn flatten(g: &mut GpuBackend, op: &Flatten) -> Result<()> {
    let n = op.batch * op.h * op.w * op.c;
    if n == 0 {
        return Ok(());
    }
    let d = Dims {
        h: op.h as u32,
        w: op.w as u32,
        c: op.c as u32,
        n: n as u32,
        inverse: op.inverse as u32,
        x_off: op.x.offset,
        y_off: op.y.offset,
    };
    let groups = g.grid(n, WG)?;
    g.record(&FLATTEN, &[Some(op.x), Some(op.y)], &d, groups, || {
        op.cost()
    })
}
