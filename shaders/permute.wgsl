// Flattening channels-last (NHWC) images into channel-major rows, PyTorch's flatten order, and
// back: src/ops/permute.rs. One invocation per element; row element i is image element
// channels_last(i). WG and `flat` are in grid.wgsl, prepended to this file.

struct Dims {
    h: u32,
    w: u32,
    c: u32,
    n: u32,
    inverse: u32,
    x_off: u32,
    y_off: u32,
}

@group(0) @binding(0) var<uniform> d: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn channels_last(i: u32) -> u32 {
    let plane = d.h * d.w;
    let image = plane * d.c;
    let b = i / image;
    let r = i - b * image;
    let ci = r / plane;
    let p = r - ci * plane;
    return b * image + p * d.c + ci;
}

@compute @workgroup_size(256)
fn flatten(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    if d.inverse != 0u {
        y[d.y_off + channels_last(i)] = x[d.x_off + i];
    } else {
        y[d.y_off + i] = x[d.x_off + channels_last(i)];
    }
}
