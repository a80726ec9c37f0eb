//! Launcher of `shaders/activation.wgsl`: activations forward and backward, elementwise or
//! (softmax) row-wise.

use super::GpuBackend;
use super::WG;
use super::context::{KernelSpec, Shader};
use crate::Result;
use crate::model::Activation;
use crate::ops::{ActBackward, ActForward, Rules};

static SHADER: Shader = Shader {
    name: "activation.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/activation_fn.wgsl"),
        include_str!("../../../shaders/activation.wgsl")
    ),
};

/// src and dst (both writable: they may be one buffer).
const FORWARD_STORAGE: &[(u32, bool)] = &[(1, false), (2, false)];
/// dy, dx (writable, may alias), y (read).
const BACKWARD_STORAGE: &[(u32, bool)] = &[(1, false), (2, false), (3, true)];

static FORWARD: KernelSpec = KernelSpec {
    label: "activation_forward",
    shader: &SHADER,
    entry: "forward",
    constants: &[],
    storage: FORWARD_STORAGE,
};
static BACKWARD: KernelSpec = KernelSpec {
    label: "activation_backward",
    shader: &SHADER,
    entry: "backward",
    constants: &[],
    storage: BACKWARD_STORAGE,
};
static SOFTMAX_FORWARD: KernelSpec = KernelSpec {
    label: "softmax_forward",
    shader: &SHADER,
    entry: "softmax_forward",
    constants: &[],
    storage: FORWARD_STORAGE,
};
static SOFTMAX_BACKWARD: KernelSpec = KernelSpec {
    label: "softmax_backward",
    shader: &SHADER,
    entry: "softmax_backward",
    constants: &[],
    storage: BACKWARD_STORAGE,
};

/// Every kernel this launcher records (the tests check each against WebGPU's limits).
pub(super) static KERNELS: &[&KernelSpec] =
    &[&FORWARD, &BACKWARD, &SOFTMAX_FORWARD, &SOFTMAX_BACKWARD];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    rows: u32,
    cols: u32,
    n: u32,
    act: u32,
    src_off: u32,
    dst_off: u32,
    aux_off: u32,
}

/// The shaders' code of an elementwise activation (activation_fn.wgsl).
pub(super) fn code(act: Activation) -> u32 {
    match act {
        Activation::Relu => 0,
        Activation::LeakyRelu => 1,
        Activation::Sigmoid => 2,
        Activation::Tanh => 3,
        Activation::Linear => 4,
        Activation::Softmax => unreachable!("softmax has its own kernels"),
    }
}

// x: (rows, cols) -> y: (rows, cols), possibly in place
pub(super) fn forward(g: &mut GpuBackend, op: &ActForward) -> Result<()> {
    let ActForward {
        act,
        x,
        y,
        rows,
        cols,
    } = *op;
    let n = rows * cols;
    if n == 0 || (act == Activation::Linear && x == y) {
        return Ok(());
    }
    let mut dims = Dims {
        rows: rows as u32,
        cols: cols as u32,
        n: n as u32,
        act: 0,
        src_off: x.offset,
        dst_off: y.offset,
        aux_off: 0,
    };
    let (spec, groups) = if act == Activation::Softmax {
        (&SOFTMAX_FORWARD, g.grid(rows, WG)?)
    } else {
        dims.act = code(act);
        (&FORWARD, g.grid(n, WG)?)
    };
    g.record(spec, &[Some(x), Some(y)], &dims, groups, || op.cost())
}

// y, dy: (rows, cols) -> dx: (rows, cols); dx may be dy
pub(super) fn backward(g: &mut GpuBackend, op: &ActBackward) -> Result<()> {
    let ActBackward {
        act,
        y,
        dy,
        dx,
        rows,
        cols,
    } = *op;
    let n = rows * cols;
    if n == 0 || (act == Activation::Linear && dx == dy) {
        return Ok(());
    }
    let mut dims = Dims {
        rows: rows as u32,
        cols: cols as u32,
        n: n as u32,
        act: 0,
        src_off: dy.offset,
        dst_off: dx.offset,
        aux_off: y.offset,
    };
    let (spec, groups) = if act == Activation::Softmax {
        (&SOFTMAX_BACKWARD, g.grid(rows, WG)?)
    } else {
        dims.act = code(act);
        (&BACKWARD, g.grid(n, WG)?)
    };
    g.record(spec, &[Some(dy), Some(dx), Some(y)], &dims, groups, || {
        op.cost()
    })
}
