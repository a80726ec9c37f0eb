// Optimizer updates over the whole flat parameter buffer in one dispatch, with the L1/L2
// penalty gradients and gradient clipping fused in when asked, and the penalties alone. The
// rules are those of `Update` and `update_slices` in src/ops/optimizer.rs.
// param, grad, state1, state2: (n,); norm2: (1,). WG and `flat` are in grid.wgsl, prepended to
// this file.

struct Dims {
    n: u32,
    // Optimizer codes, as in src/backend/gpu/optimizer.rs.
    kind: u32,
    nesterov: u32,
    p_off: u32,
    g_off: u32,
    s1_off: u32,
    s2_off: u32,
    lr: f32,
    momentum: f32,
    beta1: f32,
    // Adam's beta2, RMSprop's rho.
    beta2: f32,
    eps: f32,
    // AdamW's 1 - lr·weight_decay (1 otherwise), as the host computes it.
    decay: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    // regularize's penalty.
    l1: f32,
    l2: f32,
    // The update's fused penalty: weights before bias_start, biases from it.
    has_penalty: u32,
    bias_start: u32,
    l1_weights: f32,
    l2_weights: f32,
    l1_biases: f32,
    l2_biases: f32,
    // Gradient clipping: g *= min(1, max_norm / (sqrt(norm2) + 1e-6)).
    has_clip: u32,
    max_norm: f32,
    norm_off: u32,
}

const SGD: u32 = 0u;
const ADAGRAD: u32 = 1u;
const RMSPROP: u32 = 2u;
@group(0) @binding(0) var<uniform> d: Dims;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> state1: array<f32>;
@group(0) @binding(4) var<storage, read_write> state2: array<f32>;
@group(0) @binding(5) var<storage, read> norm2: array<f32>;

// The penalty gradient of one parameter.
fn penalty(p: f32, l1: f32, l2: f32) -> f32 {
    return l1 * sign(p) + 2.0 * l2 * p;
}

@compute @workgroup_size(256)
fn update(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    let p = param[d.p_off + i];
    // The gradient as the unfused ops would leave it: penalty added, then clipped.
    var g = grad[d.g_off + i];
    if d.has_penalty != 0u {
        // A part without a penalty is left as it is, as the unfused ops leave it.
        var l1 = d.l1_biases;
        var l2 = d.l2_biases;
        if i < d.bias_start {
            l1 = d.l1_weights;
            l2 = d.l2_weights;
        }
        if l1 != 0.0 || l2 != 0.0 {
            g += penalty(p, l1, l2);
        }
    }
    if d.has_clip != 0u {
        g *= min(1.0, d.max_norm / (sqrt(norm2[d.norm_off]) + 1e-6));
    }
    let s1i = d.s1_off + i;
    switch d.kind {
        case SGD: {
            // PyTorch's rule: buf = μ·buf + g; step along buf (or g + μ·buf for Nesterov).
            var step = g;
            if d.momentum > 0.0 {
                let buf = d.momentum * state1[s1i] + g;
                state1[s1i] = buf;
                step = select(buf, g + d.momentum * buf, d.nesterov != 0u);
            }
            param[d.p_off + i] = p - d.lr * step;
        }
        case ADAGRAD: {
            let s = state1[s1i] + g * g;
            state1[s1i] = s;
            param[d.p_off + i] = p - d.lr * g / (sqrt(s) + d.eps);
        }
        case RMSPROP: {
            let s = d.beta2 * state1[s1i] + (1.0 - d.beta2) * g * g;
            state1[s1i] = s;
            param[d.p_off + i] = p - d.lr * g / (sqrt(s) + d.eps);
        }
        default: {
            // Adam and AdamW.
            let s2i = d.s2_off + i;
            let m = d.beta1 * state1[s1i] + (1.0 - d.beta1) * g;
            let v = d.beta2 * state2[s2i] + (1.0 - d.beta2) * g * g;
            state1[s1i] = m;
            state2[s2i] = v;
            // m̂ / (√v̂ + ε) arranged as PyTorch and the CPU backend do it.
            let step = d.lr / d.bias_correction1;
            let inv_sqrt_c2 = 1.0 / sqrt(d.bias_correction2);
            param[d.p_off + i] = p * d.decay - step * m / (sqrt(v) * inv_sqrt_c2 + d.eps);
        }
    }
}

// grad += l1·sign(param) + 2·l2·param.
@compute @workgroup_size(256)
fn regularize(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    grad[d.g_off + i] += penalty(param[d.p_off + i], d.l1, d.l2);
}
