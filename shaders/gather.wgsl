// Batch assembly: rows of the resident data set picked by an index buffer, and their class
// labels, beside the rows (fused) or alone; training images optionally moved by a random
// offset each (augmentation, src/ops/gather.rs `Shift`).
// src: (_, cols) packed bytes or f32 bits; idx: (rows,) -> dst: (rows, cols);
// label_src: (_,) -> labels: (rows,).
// WG and `flat` are in grid.wgsl, `hash3` in hash.wgsl, both prepended to this file.

struct Dims {
    rows: u32,
    cols: u32,
    // rows * cols
    n: u32,
    // Element offsets: bytes for a U8 source, words otherwise.
    src_off: u32,
    idx_off: u32,
    dst_off: u32,
    // dst = a · src + b
    a: f32,
    b: f32,
    // The rows kernels also gather labels (label_src -> labels) when set.
    has_labels: u32,
    label_src_off: u32,
    labels_off: u32,
    // Rows are (height, width, channels) images moved by up to shift_max pixels each way
    // (0: not moved), offsets drawn from hash3(seed, stream, row).
    shift_max: u32,
    height: u32,
    width: u32,
    channels: u32,
    seed: u32,
    stream: u32,
}

@group(0) @binding(0) var<uniform> d: Dims;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read_write> labels: array<u32>;
@group(0) @binding(5) var<storage, read> label_src: array<u32>;

// labels[r] = label_src[idx[r]].
fn gather_label(r: u32) {
    labels[d.labels_off + r] = label_src[d.label_src_off + idx[d.idx_off + r]];
}

// What a destination column reads when a shift moves pixels in from outside the image.
const OUTSIDE: u32 = 0xffffffffu;

// The source column that column c of batch row r copies: c itself, or, for a shifted image,
// the pixel (y - dy, x - dx) of the same channel, OUTSIDE past the image's edge.
fn source_col(r: u32, c: u32) -> u32 {
    if d.shift_max == 0u {
        return c;
    }
    let n = 2u * d.shift_max + 1u;
    let h = hash3(d.seed, d.stream, r);
    let m = i32(d.shift_max);
    let dy = i32(h % n) - m;
    let dx = i32((h / n) % n) - m;
    let pixel = c / d.channels;
    let ch = c - pixel * d.channels;
    let sy = i32(pixel / d.width) - dy;
    let sx = i32(pixel % d.width) - dx;
    if sy < 0 || sy >= i32(d.height) || sx < 0 || sx >= i32(d.width) {
        return OUTSIDE;
    }
    return (u32(sy) * d.width + u32(sx)) * d.channels + ch;
}

// Bytes are packed four to a little-endian word.
@compute @workgroup_size(256)
fn gather_rows_u8(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    let r = i / d.cols;
    let c = i - r * d.cols;
    let s = source_col(r, c);
    var v = d.b;
    if s != OUTSIDE {
        let byte = d.src_off + idx[d.idx_off + r] * d.cols + s;
        v = d.a * f32((src[byte >> 2u] >> ((byte & 3u) * 8u)) & 0xffu) + d.b;
    }
    dst[d.dst_off + i] = v;
    if d.has_labels != 0u && c == 0u {
        gather_label(r);
    }
}

@compute @workgroup_size(256)
fn gather_rows_f32(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    let r = i / d.cols;
    let c = i - r * d.cols;
    let s = source_col(r, c);
    var v = d.b;
    if s != OUTSIDE {
        v = d.a * bitcast<f32>(src[d.src_off + idx[d.idx_off + r] * d.cols + s]) + d.b;
    }
    dst[d.dst_off + i] = v;
    if d.has_labels != 0u && c == 0u {
        gather_label(r);
    }
}

// labels[r] = label_src[idx[r]], alone.
@compute @workgroup_size(256)
fn gather_labels(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = flat(wid, nwg, lid);
    if r >= d.rows {
        return;
    }
    gather_label(r);
}
