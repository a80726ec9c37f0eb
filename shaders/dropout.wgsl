// Inverted dropout with a counter-based mask, and the elementwise product of its backward pass.
// x, y, mask: (n,).
//
// The mask is a pure function of (seed, stream, index): `hash3` below is the same u32
// arithmetic as `hash3` in src/rng.rs (WGSL's u32 multiplication and addition wrap, like
// Rust's wrapping_mul / wrapping_add), so both backends draw identical masks. WG and `flat`
// are in grid.wgsl, prepended to this file.

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

// PCG hash (Jarzynski and Olano, 2020); src/rng.rs `pcg_hash`.
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn hash3(seed: u32, stream: u32, index: u32) -> u32 {
    return pcg_hash(index ^ pcg_hash(stream ^ pcg_hash(seed)));
}

// Uniform in [0, 1) from the top 24 bits (exact in f32).
fn hash_to_unit(h: u32) -> f32 {
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

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
