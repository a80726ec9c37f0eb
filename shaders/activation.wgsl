// Activations, forward and backward. The elementwise kernels run one invocation per element,
// the softmax kernels one per row. x, y, dy, dx: (rows, cols).
//
// Forward reads `src` (x) and writes `dst` (y); backward reads `src` (dy) and `aux` (the forward
// output y) and writes `dst` (dx). Both `src` and `dst` are read_write so that the in-place
// forms (y = x, dx = dy) may bind one buffer twice. The elementwise functions and the
// activation codes are in activation_fn.wgsl, and WG and `flat` in grid.wgsl, both prepended
// to this file.

struct Dims {
    rows: u32,
    cols: u32,
    // rows * cols
    n: u32,
    act: u32,
    src_off: u32,
    dst_off: u32,
    aux_off: u32,
}

@group(0) @binding(0) var<uniform> d: Dims;
@group(0) @binding(1) var<storage, read_write> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;

@compute @workgroup_size(256)
fn forward(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    dst[d.dst_off + i] = act_apply(d.act, src[d.src_off + i]);
}

@compute @workgroup_size(256)
fn backward(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    dst[d.dst_off + i] = act_grad(d.act, src[d.src_off + i], aux[d.aux_off + i]);
}

// Row-wise softmax, stable: exp(x - max) / Σ exp(x - max).
@compute @workgroup_size(256)
fn softmax_forward(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = flat(wid, nwg, lid);
    if r >= d.rows {
        return;
    }
    let s0 = d.src_off + r * d.cols;
    let d0 = d.dst_off + r * d.cols;
    var m = src[s0];
    for (var j = 1u; j < d.cols; j++) {
        m = max(m, src[s0 + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < d.cols; j++) {
        s += exp(src[s0 + j] - m);
    }
    // When y aliases x, element j is read before it is overwritten.
    for (var j = 0u; j < d.cols; j++) {
        dst[d0 + j] = exp(src[s0 + j] - m) / s;
    }
}

// dx = y ⊙ (dy - Σ_j dy_j y_j), the softmax Jacobian-vector product per row.
@compute @workgroup_size(256)
fn softmax_backward(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = flat(wid, nwg, lid);
    if r >= d.rows {
        return;
    }
    let s0 = d.src_off + r * d.cols;
    let d0 = d.dst_off + r * d.cols;
    let y0 = d.aux_off + r * d.cols;
    var dot = 0.0;
    for (var j = 0u; j < d.cols; j++) {
        dot += src[s0 + j] * aux[y0 + j];
    }
    for (var j = 0u; j < d.cols; j++) {
        dst[d0 + j] = aux[y0 + j] * (src[s0 + j] - dot);
    }
}
