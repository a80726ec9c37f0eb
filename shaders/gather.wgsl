// Batch assembly: rows of the resident data set picked by an index buffer, and their class
// labels, beside the rows (fused) or alone.
// src: (_, cols) packed bytes or f32 bits; idx: (rows,) -> dst: (rows, cols);
// label_src: (_,) -> labels: (rows,).
// WG and `flat` are in grid.wgsl, prepended to this file.

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
    let byte = d.src_off + idx[d.idx_off + r] * d.cols + c;
    let v = (src[byte >> 2u] >> ((byte & 3u) * 8u)) & 0xffu;
    dst[d.dst_off + i] = d.a * f32(v) + d.b;
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
    let v = bitcast<f32>(src[d.src_off + idx[d.idx_off + r] * d.cols + c]);
    dst[d.dst_off + i] = d.a * v + d.b;
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
