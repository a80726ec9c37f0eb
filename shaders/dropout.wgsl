// Inverted dropout with a counter-based mask, and the elementwise product of its backward pass.
// x, y, mask: (n,).
//
// The mask is a pure function of (seed, stream, index) through `hash3` (hash.wgsl, the same
// arithmetic as src/rng.rs), so both backends draw identical masks. WG and `flat` are in
// grid.wgsl; both files are prepended to this one.

struct Dims {
    n: u32,
    x_off: u32,
    y_off: u32,
    mask_off: u32,
    // Drop probability, and the kept elements' scale 1 / (1 - p) as the host computes it.
    p: f32,
    keep: f32,
    seed: u32,
    stream: u32,
}

@group(0) @binding(0) var<uniform> d: Dims;
// Writable so that mask_mul may bind one buffer as both x and y (in place).
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> mask: array<f32>;

// mask[i] = (u_i >= p) / (1 - p); y = x ⊙ mask.
@compute @workgroup_size(256)
fn dropout_forward(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    let m = select(0.0, d.keep, hash_to_unit(hash3(d.seed, d.stream, i)) >= d.p);
    mask[d.mask_off + i] = m;
    y[d.y_off + i] = x[d.x_off + i] * m;
}

// y = x ⊙ mask (dropout's backward); y may be x.
@compute @workgroup_size(256)
fn mask_mul(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    y[d.y_off + i] = x[d.x_off + i] * mask[d.mask_off + i];
}
