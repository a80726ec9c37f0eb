// Pooling over channels-last (NHWC) images, as src/ops/pool.rs specifies it: max (with the
// window offset of each maximum, for the backward pass) and average, forward one invocation per
// output element; backward one invocation per input element, which gathers the gradient of the
// windows covering it in their order (no atomics, any stride).
// x, dx: (batch, h, w, c); y, dy, argmax: (batch, oh, ow, c). WG and `flat` are in grid.wgsl,
// Dims and the covering windows in window.wgsl, both prepended to this file.

@group(0) @binding(0) var<uniform> d: Dims;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> arg: array<u32>;

// Image element of window offset (ky, kx) of output element i.
fn input_at(i: u32, ky: u32, kx: u32) -> u32 {
    let ci = i % d.c;
    let pos = i / d.c;
    let ox = pos % d.ow;
    let oy = (pos / d.ow) % d.oh;
    let b = pos / (d.ow * d.oh);
    return ((b * d.h + oy * d.sh + ky) * d.w + ox * d.sw + kx) * d.c + ci;
}

@compute @workgroup_size(256)
fn max_pool(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    var best = x[d.x_off + input_at(i, 0u, 0u)];
    var at = 0u;
    for (var ky = 0u; ky < d.kh; ky++) {
        for (var kx = 0u; kx < d.kw; kx++) {
            let v = x[d.x_off + input_at(i, ky, kx)];
            // The first maximum wins.
            if v > best {
                best = v;
                at = ky * d.kw + kx;
            }
        }
    }
    y[d.y_off + i] = best;
    arg[d.arg_off + i] = at;
}

@compute @workgroup_size(256)
fn avg_pool(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    var s = 0.0;
    for (var ky = 0u; ky < d.kh; ky++) {
        for (var kx = 0u; kx < d.kw; kx++) {
            s += x[d.x_off + input_at(i, ky, kx)];
        }
    }
    y[d.y_off + i] = s * (1.0 / f32(d.kh * d.kw));
}

// dx[i] = Σ over the windows covering input element i, in order, of their gradient (max: only
// where i was the window's maximum; average: divided by the window's size).
fn pool_grad(i: u32, is_max: bool) {
    let ci = i % d.c;
    let p = i / d.c;
    let xx = p % d.w;
    let yy = (p / d.w) % d.h;
    let b = p / (d.w * d.h);
    let oy0 = first_window(yy, d.kh, d.sh);
    let oy1 = end_window(yy, d.sh, d.oh);
    let ox0 = first_window(xx, d.kw, d.sw);
    let ox1 = end_window(xx, d.sw, d.ow);
    let scale = 1.0 / f32(d.kh * d.kw);
    var s = 0.0;
    for (var oy = oy0; oy < oy1; oy++) {
        for (var ox = ox0; ox < ox1; ox++) {
            let out = ((b * d.oh + oy) * d.ow + ox) * d.c + ci;
            let offset = (yy - oy * d.sh) * d.kw + (xx - ox * d.sw);
            if is_max {
                if arg[d.arg_off + out] == offset {
                    s += y[d.y_off + out];
                }
            } else {
                s += y[d.y_off + out] * scale;
            }
        }
    }
    x[d.x_off + i] = s;
}

// Here `x` is the input gradient and `y` the output gradient.
@compute @workgroup_size(256)
fn max_pool_grad(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    pool_grad(i, true);
}

@compute @workgroup_size(256)
fn avg_pool_grad(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    pool_grad(i, false);
}
