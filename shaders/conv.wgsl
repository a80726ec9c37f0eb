// Convolution by explicit im2col over channels-last (NHWC) images, as src/ops/conv.rs
// specifies it: `im2row` writes the patch matrix (one invocation per entry), `row2im` sums the
// patch-matrix gradient back into the image (one invocation per image element, which gathers
// the entries that read it in the order of their output positions: no atomics).
// x: (batch, h, w, c); cols: (batch·oh·ow, kh·kw·c), a patch's entries in (ky, kx, c) order.
// WG and `flat` are in grid.wgsl, Dims and the covering windows in window.wgsl, both prepended
// to this file; the patches are the `y` tensor.

@group(0) @binding(0) var<uniform> d: Dims;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> cols: array<f32>;

@compute @workgroup_size(256)
fn im2row(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    let k = d.c * d.kh * d.kw;
    let pos = i / k;
    let e = i - pos * k;
    let ci = e % d.c;
    let offset = e / d.c;
    let ky = offset / d.kw;
    let kx = offset - ky * d.kw;
    let ox = pos % d.ow;
    let oy = (pos / d.ow) % d.oh;
    let b = pos / (d.ow * d.oh);
    // Coordinates in the padded image; below the padding or past the image reads zero.
    let yp = oy * d.sh + ky;
    let xp = ox * d.sw + kx;
    var v = 0.0;
    if yp >= d.ph && xp >= d.pw && yp - d.ph < d.h && xp - d.pw < d.w {
        v = x[d.x_off + ((b * d.h + yp - d.ph) * d.w + xp - d.pw) * d.c + ci];
    }
    cols[d.y_off + i] = v;
}

@compute @workgroup_size(256)
fn row2im(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= d.n {
        return;
    }
    let k = d.c * d.kh * d.kw;
    let ci = i % d.c;
    let p = i / d.c;
    let xx = p % d.w;
    let yy = (p / d.w) % d.h;
    let b = p / (d.w * d.h);
    let yp = yy + d.ph;
    let xp = xx + d.pw;
    // The output rows oy and columns ox whose windows cover (yp, xp).
    let oy0 = first_window(yp, d.kh, d.sh);
    let oy1 = end_window(yp, d.sh, d.oh);
    let ox0 = first_window(xp, d.kw, d.sw);
    let ox1 = end_window(xp, d.sw, d.ow);
    var s = 0.0;
    for (var oy = oy0; oy < oy1; oy++) {
        let ky = yp - oy * d.sh;
        for (var ox = ox0; ox < ox1; ox++) {
            let kx = xp - ox * d.sw;
            let pos = (b * d.oh + oy) * d.ow + ox;
            s += cols[d.y_off + pos * k + (ky * d.kw + kx) * d.c + ci];
        }
    }
    x[d.x_off + i] = s;
}
