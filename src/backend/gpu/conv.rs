//! Launcher of `shaders/conv.wgsl`: a convolution's patch matrix (im2col) and the sum of its
//! gradient back into the image (col2im).

use super::GpuBackend;
use super::WG;
use super::context::{KernelSpec, Shader};
use crate::Result;
use crate::backend::Buf;
use crate::ops::{Im2Row, Row2Im, Rules, Window};

static SHADER: Shader = Shader {
    name: "conv.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/window.wgsl"),
        include_str!("../../../shaders/conv.wgsl")
    ),
};

/// The image and the patch matrix, each written by one of the two kernels.
const STORAGE: &[(u32, bool)] = &[(1, false), (2, false)];

static IM2ROW: KernelSpec = KernelSpec {
    label: "im2row",
    shader: &SHADER,
    entry: "im2row",
    constants: &[],
    storage: STORAGE,
};
static ROW2IM: KernelSpec = KernelSpec {
    label: "row2im",
    shader: &SHADER,
    entry: "row2im",
    constants: &[],
    storage: STORAGE,
};

/// Every kernel this launcher records (the tests check each against WebGPU's limits).
pub(super) static KERNELS: &[&KernelSpec] = &[&IM2ROW, &ROW2IM];

/// The uniform block of `shaders/window.wgsl`, shared with the pooling launcher.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct WindowDims {
    batch: u32,
    h: u32,
    w: u32,
    c: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    oh: u32,
    ow: u32,
    n: u32,
    x_off: u32,
    y_off: u32,
    arg_off: u32,
}

/// The block for `n` invocations over window `g`, with the images `x`, the other tensor `y`
/// (patches, pooled images or their gradient) and the max-pooling positions `arg`.
pub(super) fn window_dims(g: &Window, n: usize, x: Buf, y: Buf, arg: Option<Buf>) -> WindowDims {
    WindowDims {
        batch: g.batch as u32,
        h: g.h as u32,
        w: g.w as u32,
        c: g.c as u32,
        kh: g.kh as u32,
        kw: g.kw as u32,
        sh: g.sh as u32,
        sw: g.sw as u32,
        ph: g.ph as u32,
        pw: g.pw as u32,
        oh: g.oh() as u32,
        ow: g.ow() as u32,
        n: n as u32,
        x_off: x.offset,
        y_off: y.offset,
        arg_off: arg.map_or(0, |a| a.offset),
    }
}

// x: (batch, h, w, c) -> cols: (batch·oh·ow, c·kh·kw)
pub(super) fn im2row(g: &mut GpuBackend, op: &Im2Row) -> Result<()> {
    let n = op.g.positions() * op.g.patch();
    if n == 0 {
        return Ok(());
    }
    let d = window_dims(&op.g, n, op.x, op.cols, None);
    let groups = g.grid(n, WG)?;
    g.record(&IM2ROW, &[Some(op.x), Some(op.cols)], &d, groups, || {
        op.cost()
    })
}

// cols: (batch·oh·ow, c·kh·kw) -> x: (batch, h, w, c)
pub(super) fn row2im(g: &mut GpuBackend, op: &Row2Im) -> Result<()> {
    let n = op.g.input_len();
    if n == 0 {
        return Ok(());
    }
    let d = window_dims(&op.g, n, op.x, op.cols, None);
    let groups = g.grid(n, WG)?;
    g.record(&ROW2IM, &[Some(op.x), Some(op.cols)], &d, groups, || {
        op.cost()
    })
}
