//! Launcher of `shaders/optimizer.wgsl`: one dispatch updates the whole flat parameter buffer;
//! the penalty gradients of L1/L2 regularisation.

use super::WG;
use super::context::{KernelSpec, Shader};
use super::{GpuBackend, check_len, distinct, expect_dtype};
use crate::Result;
use crate::backend::{Buf, DType, UpdateParams, op_name};
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
    storage: &[(1, false), (2, false), (3, false), (4, false)],
};
static REGULARIZE: KernelSpec = KernelSpec {
    label: "regularize",
    shader: &SHADER,
    entry: "regularize",
    constants: &[],
    // param, grad
    storage: &[(1, false), (2, false)],
};

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
}

/// The shader's optimizer codes.
fn code(kind: OptimizerKind) -> u32 {
    match kind {
        OptimizerKind::Sgd => 0,
        OptimizerKind::Adagrad => 1,
        OptimizerKind::Rmsprop => 2,
        OptimizerKind::Adam => 3,
        OptimizerKind::Adamw => 4,
    }
}

// params, grads, state1, state2: (n,)
pub(super) fn update(
    g: &mut GpuBackend,
    params: Buf,
    grads: Buf,
    state1: Buf,
    state2: Buf,
    u: &UpdateParams,
) -> Result<()> {
    let n = params.len();
    for (what, b) in [("grads", grads), ("state1", state1), ("state2", state2)] {
        check_len(what, b, n)?;
        expect_dtype(what, b, DType::F32);
    }
    expect_dtype("params", params, DType::F32);
    distinct(params, &[grads, state1, state2]);
    distinct(state1, &[grads, state2]);
    if n == 0 {
        return Ok(());
    }
    let dims = Dims {
        n: n as u32,
        kind: code(u.kind),
        nesterov: u.nesterov as u32,
        p_off: params.offset,
        g_off: grads.offset,
        s1_off: state1.offset,
        s2_off: state2.offset,
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
    let groups = g.grid(n, WG)?;
    g.record(
        &UPDATE,
        &[Some(params), Some(grads), Some(state1), Some(state2)],
        &dims,
        groups,
        || op_name::update(u.kind, u.momentum, n),
    )
}

// param, grad: (n,)
pub(super) fn regularize(
    g: &mut GpuBackend,
    param: Buf,
    grad: Buf,
    l1: f32,
    l2: f32,
) -> Result<()> {
    let n = param.len();
    check_len("regularized grad", grad, n)?;
    expect_dtype("param", param, DType::F32);
    expect_dtype("grad", grad, DType::F32);
    distinct(grad, &[param]);
    if n == 0 {
        return Ok(());
    }
    let dims = Dims {
        n: n as u32,
        p_off: param.offset,
        g_off: grad.offset,
        l1,
        l2,
        ..Dims::default()
    };
    let groups = g.grid(n, WG)?;
    let name = || op_name::regularize(n);
    g.record(&REGULARIZE, &[Some(param), Some(grad)], &dims, groups, name)
}
