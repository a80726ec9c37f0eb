//! Launcher of `shaders/optimizer.wgsl`: one dispatch updates the whole flat parameter buffer;
//! the penalty gradients of L1/L2 regularisation.

use super::GpuBackend;
use super::WG;
use super::context::{KernelSpec, Shader};
use crate::Result;
use crate::ops::{Regularize, Rules, Update};
use crate::optim::OptimizerKind;

static SHADER: Shader = Shader {
    name: "optimizer.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/optimizer.wgsl")
    ),
};

static UPDATE: KernelSpec = KernelSpec {
    label: "update",
    shader: &SHADER,
    entry: "update",
    constants: &[],
    // params, grads, state1, state2 (all declared writable in the shader)
    // params, grads, state1, state2, norm2 (read)
    storage: &[(1, false), (2, false), (3, false), (4, false), (5, true)],
};
static REGULARIZE: KernelSpec = KernelSpec {
    label: "regularize",
    shader: &SHADER,
    entry: "regularize",
    constants: &[],
    // param, grad
    storage: &[(1, false), (2, false)],
};

/// Every kernel this launcher records (the tests check each against WebGPU's limits).
pub(super) static KERNELS: &[&KernelSpec] = &[&UPDATE, &REGULARIZE];

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    n: u32,
    kind: u32,
    nesterov: u32,
    p_off: u32,
    g_off: u32,
    s1_off: u32,
    s2_off: u32,
    lr: f32,
    momentum: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    l1: f32,
    l2: f32,
    has_penalty: u32,
    bias_start: u32,
    l1_weights: f32,
    l2_weights: f32,
    l1_biases: f32,
    l2_biases: f32,
    has_clip: u32,
    max_norm: f32,
    norm_off: u32,
}

fn code(kind: OptimizerKind) -> u32 {
    match kind {
        OptimizerKind::Sgd => 0,
        OptimizerKind::Adagrad => 1,
        OptimizerKind::Rmsprop => 2,
        OptimizerKind::Adam => 3,
        OptimizerKind::Adamw => 4,
    }
}

// params, grads, state1, state2: (n,); norm2: (1,)
pub(super) fn update(g: &mut GpuBackend, op: &Update) -> Result<()> {
    let n = op.params.len();
    if n == 0 {
        return Ok(());
    }
    let u = &op.hyper;
    let pen = op.penalty;
    let mut dims = Dims {
        n: n as u32,
        kind: code(u.kind),
        nesterov: u.nesterov as u32,
        p_off: op.params.offset,
        g_off: op.grads.offset,
        s1_off: op.state1.offset,
        s2_off: op.state2.offset,
        lr: u.lr,
        momentum: u.momentum,
        beta1: u.beta1,
        beta2: u.beta2,
        eps: u.eps,
        // As the CPU computes it.
        decay: if u.kind == OptimizerKind::Adamw {
            1.0 - u.lr * u.weight_decay
        } else {
            1.0
        },
        bias_correction1: u.bias_correction1,
        bias_correction2: u.bias_correction2,
        ..Dims::default()
    };
    if let Some(p) = pen {
        dims.has_penalty = 1;
        dims.bias_start = p.bias_start as u32;
        (dims.l1_weights, dims.l2_weights) = p.weights;
        (dims.l1_biases, dims.l2_biases) = p.biases;
    }
    if let Some(c) = op.clip {
        dims.has_clip = 1;
        dims.max_norm = c.max_norm;
        dims.norm_off = c.norm2.offset;
    }
    let groups = g.grid(n, WG)?;
    g.record(
        &UPDATE,
        &[
            Some(op.params),
            Some(op.grads),
            Some(op.state1),
            Some(op.state2),
            op.clip.map(|c| c.norm2),
        ],
        &dims,
        groups,
        || op.cost(),
    )
}

// param: (n,), grad: (n,) updated
pub(super) fn regularize(g: &mut GpuBackend, op: &Regularize) -> Result<()> {
    let n = op.param.len();
    if n == 0 {
        return Ok(());
    }
    let dims = Dims {
        n: n as u32,
        p_off: op.param.offset,
        g_off: op.grad.offset,
        l1: op.l1,
        l2: op.l2,
        ..Dims::default()
    };
    let groups = g.grid(n, WG)?;
    g.record(
        &REGULARIZE,
        &[Some(op.param), Some(op.grad)],
        &dims,
        groups,
        || op.cost(),
    )
}
