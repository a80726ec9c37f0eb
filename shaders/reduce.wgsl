// Reductions and fills: column sums (bias gradients), the metrics accumulator, the sum of
// squares (gradient clipping's global norm), and fill.
// WG and `flat` are in grid.wgsl, prepended to this file.

struct Dims {
    rows: u32,
    cols: u32,
    // Elements of `dst` to fill.
    n: u32,
    src_off: u32,
    dst_off: u32,
    value: f32,
}

// col_sum: 64 columns per workgroup, each summed by 4 invocations over interleaved rows.
const COLS: u32 = 64u;
const SPLIT: u32 = 4u;

@group(0) @binding(0) var<uniform> d: Dims;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

var<workgroup> part_a: array<f32, 256>;
var<workgroup> part_b: array<f32, 256>;

// dst[j] = Σ_r src[r, j]. src: (rows, cols) -> dst: (cols,)
@compute @workgroup_size(64, 4)
fn col_sum(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // Loops over column blocks rather than returning early: every invocation reaches the barriers.
    for (var c0 = wid.x * COLS; c0 < d.cols; c0 += nwg.x * COLS) {
        let col = c0 + lid.x;
        var s = 0.0;
        if col < d.cols {
            for (var r = lid.y; r < d.rows; r += SPLIT) {
                s += src[d.src_off + r * d.cols + col];
            }
        }
        part_a[lid.y * COLS + lid.x] = s;
        workgroupBarrier();
        if lid.y == 0u && col < d.cols {
            dst[d.dst_off + col] = (part_a[lid.x] + part_a[COLS + lid.x])
                + (part_a[2u * COLS + lid.x] + part_a[3u * COLS + lid.x]);
        }
        workgroupBarrier();
    }
}

// dst[0..2] += (Σ loss, Σ metric) over stats (rows, 2). One workgroup: each invocation sums
// the rows r ≡ lid (mod WG), then a tree adds the sums in a fixed order.
@compute @workgroup_size(256)
fn accumulate_stats(@builtin(local_invocation_id) lid: vec3<u32>) {
    var l = 0.0;
    var m = 0.0;
    for (var r = lid.x; r < d.rows; r += WG) {
        l += src[d.src_off + 2u * r];
        m += src[d.src_off + 2u * r + 1u];
    }
    part_a[lid.x] = l;
    part_b[lid.x] = m;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        if lid.x < half {
            part_a[lid.x] += part_a[lid.x + half];
            part_b[lid.x] += part_b[lid.x + half];
        }
        workgroupBarrier();
    }
    if lid.x == 0u {
        dst[d.dst_off] += part_a[0];
        dst[d.dst_off + 1u] += part_b[0];
    }
}

// dst[0] = Σ src[i]² over src (n,) with n in `rows`. One workgroup, strided then a tree, as
// above: the result does not depend on scheduling.
@compute @workgroup_size(256)
fn sum_squares(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var i = lid.x; i < d.rows; i += WG) {
        let v = src[d.src_off + i];
        s += v * v;
    }
    part_a[lid.x] = s;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        if lid.x < half {
            part_a[lid.x] += part_a[lid.x + half];
        }
        workgroupBarrier();
    }
    if lid.x == 0u {
        dst[d.dst_off] = part_a[0];
    }
}

// dst[i] = value.
@compute @workgroup_size(256)
fn fill(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    dst[d.dst_off + i] = d.value;
}
