// c = op(a) · op(b) (+ bias broadcast over rows), row-major, with an optional epilogue:
//   EPI_ACT:      c = f(op(a) · op(b) + bias)    a Dense layer and the activation after it;
//   EPI_ACT_GRAD: c = (op(a) · op(b)) ⊙ f'(x)    an input gradient carried back through the
//                                                 activation before the layer, f' read through
//                                                 that activation's output y;
//   EPI_SUMS:     c = op(a) · op(b) and also sums[i] = Σ_k op(a)[i, k]: a Dense layer's
//                 weight gradient dYᵀ·X and its bias gradient Σ_rows dY in one pass over dY.
// a: (m, k), or (k, m) used transposed when TRANS_A; b: (k, n), or (n, k) when TRANS_B;
// bias: (n,); y: (m, n); c: (m, n); sums: (m,). f is an elementwise activation of
// activation_fn.wgsl (prepended to this file).
// The entry point `matmul_softmax_ce` is the product (plus bias) followed by the softmax
// cross-entropy of its rows (the network's last layer and its loss), in one workgroup:
// labels: (m,) -> grad: (m, n) when has_grad, acc: (2,) += [Σ loss, Σ correct]. The gradient
// is written through `sums` (binding 6), which the product leaves alone without EPI_SUMS, so
// that the kernel binds eight storage buffers, WebGPU's default limit.
//
// Each workgroup computes 4 SIDE x 4 SIDE tiles of c (64 x 64, or 32 x 32 with SIDE = 8 where a
// product has too few tiles to fill a big GPU; looping over tiles when the grid is smaller than
// the matrix), staging 16-deep slices of op(a) and op(b) in workgroup memory. Each of its
// SIDE x SIDE invocations keeps a 4 x 4 block of outputs in registers (rows 4 lid.y .. +4,
// columns 4 lid.x .. +4) and reads its four rows of a and four columns of b as one vec4 each
// per step of k. Tiles are loaded in memory order, so neighbouring invocations read
// neighbouring words whichever operand is transposed. Edges are handled by loading zeros past
// the matrix and skipping stores there; no invocation returns early because every one must
// reach the barriers.
//
// Split-K, for products whose output makes too few tiles to fill a big GPU but whose k is
// long: the grid gets a third dimension of `splits` workgroups per tile, each computing the
// product over its own slice of k into a scratch buffer of partial products (no bias, no
// epilogue; EPI_SUMS's column sums over its slice too), and `matmul_split_sum` then adds the
// partials of each element in a fixed order and applies bias and epilogue. No float atomics:
// the result is the same every run.
//
// Staged k-rows are padded by one vec4 (swizzled instead in the 128 x 128 kernel, whose padding
// would exceed WebGPU's workgroup memory limit): where an operand is stored k-contiguous (a of
// x·Wᵀ and both of its operands' loads), neighbouring invocations store consecutive k-rows,
// which unpadded lie 256 bytes apart (512 in the 128 x 128 kernel), all in one bank of
// workgroup memory; padded, they spread over eight banks.

struct Dims {
    m: u32,
    k: u32,
    n: u32,
    has_bias: u32,
    a_off: u32,
    b_off: u32,
    bias_off: u32,
    c_off: u32,
    epilogue: u32,
    act: u32,
    y_off: u32,
    sums_off: u32,
    // matmul_softmax_ce only.
    labels_off: u32,
    grad_off: u32,
    acc_off: u32,
    has_grad: u32,
    // 1 / m: the gradient is of the batch mean.
    scale: f32,
    // Split-K: values of k per split (a multiple of 16; k itself when not split). Split z of
    // the grid (workgroup_id.z) takes k in [z k_chunk, (z + 1) k_chunk) and stores its partial
    // product part_stride words past the previous split's; matmul_split_sum adds the `splits`
    // partials up in order.
    k_chunk: u32,
    part_stride: u32,
    splits: u32,
    // IM2COL (IM2COL_B) only: the window whose patch matrix op(a) (op(b)) is, over the NHWC
    // images in `a` (`b`).
    img_h: u32,
    img_w: u32,
    img_c: u32,
    win_h: u32,
    win_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    out_h: u32,
    out_w: u32,
}

const EPI_NONE: u32 = 0u;
const EPI_ACT: u32 = 1u;
const EPI_ACT_GRAD: u32 = 2u;
const EPI_SUMS: u32 = 3u;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
// Implicit GEMM: op(a) is the patch matrix of the images in `a` (a convolution's forward),
// read in place by the tile loader instead of from an im2col buffer. Not with TRANS_A.
override IM2COL: bool = false;
// The same for op(b), the patches of the images in `b` (k = positions, n = patch): a
// convolution's weight gradient dZᵀ · patches, with TRANS_A. Not with TRANS_B.
override IM2COL_B: bool = false;

@group(0) @binding(0) var<uniform> d: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read> y: array<f32>;
@group(0) @binding(6) var<storage, read_write> sums: array<f32>;
@group(0) @binding(7) var<storage, read> labels: array<u32>;
@group(0) @binding(8) var<storage, read_write> acc: array<f32>;

// Invocations per side of the workgroup of `matmul`: 16 (64 x 64 tiles) or 8 (32 x 32).
override SIDE: u32 = 16u;
const TILE_K: u32 = 16u;
// The big kernel's workgroup (16 x 16) and tile loops.
const THREADS: u32 = 256u;
// Vectors per staged k-row of `matmul`'s tiles, one of them padding.
const ROW: u32 = 17u;

// Tiles hold four consecutive rows (of a) or columns (of b) per vector:
// tile_a[kk * ROW + i / 4][i % 4] = op(a)[row0 + i, k0 + kk];
// tile_b[kk * ROW + j / 4][j % 4] = op(b)[k0 + kk, col0 + j].
// Sized for SIDE = 16; SIDE = 8 uses the first half of each row.
var<workgroup> tile_a: array<vec4<f32>, 272>;
var<workgroup> tile_b: array<vec4<f32>, 272>;

fn a_at(i: u32, kk: u32) -> f32 {
    if i >= d.m || kk >= d.k {
        return 0.0;
    }
    if IM2COL {
        let p = patch_index(i, kk);
        if p == PADDING {
            return 0.0;
        }
        return a[d.a_off + p];
    }
    if TRANS_A {
        return a[d.a_off + kk * d.m + i];
    }
    return a[d.a_off + i * d.k + kk];
}

// Where entry (row, col) of the patch matrix of the images (NHWC) lies in them: output
// position row = (image, oy, ox), window offset col = (ky, kx, channel); PADDING where it falls
// in the zero padding. The same entries as Im2Row's (src/ops/conv.rs, shaders/conv.wgsl).
const PADDING: u32 = 0xffffffffu;

fn patch_index(row: u32, col: u32) -> u32 {
    let ox = row % d.out_w;
    let rest = row / d.out_w;
    let oy = rest % d.out_h;
    let img = rest / d.out_h;
    let ch = col % d.img_c;
    let offset = col / d.img_c;
    let kx = offset % d.win_w;
    let ky = offset / d.win_w;
    // In padded coordinates first: unsigned, so the padding is tested before subtracting it.
    let py = oy * d.stride_h + ky;
    let px = ox * d.stride_w + kx;
    if py < d.pad_h || px < d.pad_w {
        return PADDING;
    }
    let y = py - d.pad_h;
    let x = px - d.pad_w;
    if y >= d.img_h || x >= d.img_w {
        return PADDING;
    }
    return ((img * d.img_h + y) * d.img_w + x) * d.img_c + ch;
}

fn b_at(kk: u32, j: u32) -> f32 {
    if kk >= d.k || j >= d.n {
        return 0.0;
    }
    if IM2COL_B {
        let p = patch_index(kk, j);
        if p == PADDING {
            return 0.0;
        }
        return b[d.b_off + p];
    }
    if TRANS_B {
        return b[d.b_off + j * d.k + kk];
    }
    return b[d.b_off + kk * d.n + j];
}

// Element `idx` of a tile load of op(a), `rows` rows by `depth` values of k, walked in memory
// order so that neighbouring invocations read neighbouring words: its (i, kk) in the tile.
fn a_slot(idx: u32, rows: u32, depth: u32) -> vec2<u32> {
    if TRANS_A {
        return vec2<u32>(idx % rows, idx / rows);
    }
    return vec2<u32>(idx / depth, idx % depth);
}

// The same for op(b), `depth` values of k by `cols` columns: its (kk, j) in the tile.
fn b_slot(idx: u32, cols: u32, depth: u32) -> vec2<u32> {
    if TRANS_B {
        return vec2<u32>(idx % depth, idx / depth);
    }
    return vec2<u32>(idx / cols, idx % cols);
}

// Stores c[row, j] = v (+ bias, then the epilogue) at word `base` + row n + j.
fn store_one(base: u32, row: u32, j: u32, v: f32) {
    var s = v;
    if d.has_bias != 0u {
        s += bias[d.bias_off + j];
    }
    let at = row * d.n + j;
    if d.epilogue == EPI_ACT {
        s = act_apply(d.act, s);
    } else if d.epilogue == EPI_ACT_GRAD {
        s = act_grad(d.act, s, y[d.y_off + at]);
    }
    c[base + at] = s;
}

// Stores c[row, col .. col + 4] of split `z` (only split 0 without split-K), skipping what
// lies outside c.
fn store_row(z: u32, row: u32, col: u32, v: vec4<f32>) {
    if row >= d.m {
        return;
    }
    let base = d.c_off + z * d.part_stride;
    for (var q = 0u; q < 4u; q++) {
        if col + q < d.n {
            store_one(base, row, col + q, v[q]);
        }
    }
}

// The second half of a split-K product: c = Σ_z partial_z (+ bias, then the epilogue), the
// `splits` partial products of (m, n) read through `a` and added in order z = 0, 1, ..., so
// the result does not depend on scheduling; with EPI_SUMS, also sums = Σ_z partial sums_z, the
// splits' column sums of (m,) each, which follow the partial products. One invocation per
// element of c (and of sums), where the grid is that large.
@compute @workgroup_size(WG)
fn matmul_split_sum(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let part = d.m * d.n;
    let total = select(part, part + d.m, d.epilogue == EPI_SUMS);
    // Looping where the grid is smaller than c (and its sums).
    for (var i = flat(wid, nwg, lid); i < total; i += nwg.x * nwg.y * WG) {
        if i < part {
            var s = 0.0;
            for (var z = 0u; z < d.splits; z++) {
                s += a[d.a_off + z * d.part_stride + i];
            }
            store_one(d.c_off, i / d.n, i % d.n, s);
        } else {
            let r = i - part;
            let partial_sums = d.a_off + d.splits * d.part_stride;
            var s = 0.0;
            for (var z = 0u; z < d.splits; z++) {
                s += a[partial_sums + z * d.m + r];
            }
            sums[d.sums_off + r] = s;
        }
    }
}

@compute @workgroup_size(SIDE, SIDE)
fn matmul(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    product(lid, wid, nwg);
}

// Per-invocation [loss, correct] sums of matmul_softmax_ce, added up in a fixed order.
var<workgroup> part: array<vec2<f32>, 256>;

// Row r of c (already stored): softmax + categorical cross-entropy, loss = lse - z[label],
// grad = (softmax - onehot) * scale; returns [loss, 1 if the first maximum is the label]. The
// same arithmetic as softmax_ce in loss.wgsl (and loss_classes in src/ops/loss.rs).
fn softmax_ce_row(r: u32) -> vec2<f32> {
    let z0 = d.c_off + r * d.n;
    let label = labels[d.labels_off + r];
    var m = c[z0];
    var best = 0u;
    for (var j = 1u; j < d.n; j++) {
        m = max(m, c[z0 + j]);
        if c[z0 + j] > c[z0 + best] {
            best = j;
        }
    }
    var s = 0.0;
    for (var j = 0u; j < d.n; j++) {
        s += exp(c[z0 + j] - m);
    }
    let lse = m + log(s);
    if d.has_grad != 0u {
        let g0 = d.grad_off + r * d.n;
        for (var j = 0u; j < d.n; j++) {
            let p = exp(c[z0 + j] - lse);
            sums[g0 + j] = (p - select(0.0, 1.0, j == label)) * d.scale;
        }
    }
    let loss = lse - c[z0 + min(label, d.n - 1u)];
    return vec2(loss, select(0.0, 1.0, best == label));
}

// Launched as one workgroup of 16 x 16 (SIDE = 16), so that every row of c is this
// workgroup's: the product, a storage barrier (c's stores visible to the whole workgroup),
// then each invocation takes the rows r ≡ t (mod 256) and a tree adds the sums in a fixed
// order, as the loss kernel's `accumulate` does: no atomics, the same result every run.
@compute @workgroup_size(SIDE, SIDE)
fn matmul_softmax_ce(@builtin(local_invocation_id) lid: vec3<u32>) {
    product(lid, vec3<u32>(0u), vec3<u32>(1u));
    storageBarrier();
    let t = lid.y * SIDE + lid.x;
    var sum = vec2<f32>(0.0);
    for (var r = t; r < d.m; r += 256u) {
        sum += softmax_ce_row(r);
    }
    part[t] = sum;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if t < half {
            part[t] += part[t + half];
        }
        workgroupBarrier();
    }
    if t == 0u {
        acc[d.acc_off] += part[0].x;
        acc[d.acc_off + 1u] += part[0].y;
    }
}

// The tiled product of `matmul`, over the tiles of workgroup `wid` of a grid of `nwg`.
fn product(lid: vec3<u32>, wid: vec3<u32>, nwg: vec3<u32>) {
    let tile = 4u * SIDE;
    let threads = SIDE * SIDE;
    // Elements of each staged slice per invocation: 4 (SIDE 16) or 8 (SIDE 8).
    let per = tile * TILE_K / threads;
    let tiles_m = (d.m + tile - 1u) / tile;
    let tiles_n = (d.n + tile - 1u) / tile;
    let t = lid.y * SIDE + lid.x;
    // This split's slice of k (all of it without split-K); a multiple of TILE_K long, so a
    // staged slice never reaches into the next split's.
    let k_begin = wid.z * d.k_chunk;
    let k_end = min(k_begin + d.k_chunk, d.k);
    for (var tm = wid.y; tm < tiles_m; tm += nwg.y) {
        for (var tn = wid.x; tn < tiles_n; tn += nwg.x) {
            let row0 = tm * tile;
            let col0 = tn * tile;
            var acc0 = vec4<f32>(0.0);
            var acc1 = vec4<f32>(0.0);
            var acc2 = vec4<f32>(0.0);
            var acc3 = vec4<f32>(0.0);
            // Σ_k op(a)[row, k] of this invocation's four rows, kept by the first column of
            // invocations of the first column of tiles (EPI_SUMS), which see every k of them.
            let keeps_sums = d.epilogue == EPI_SUMS && tn == 0u && lid.x == 0u;
            var sum = vec4<f32>(0.0);
            for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
                // tile x 16 elements of each operand, `per` per invocation, in memory order.
                for (var e = 0u; e < per; e++) {
                    let idx = t + e * threads;
                    let ai = a_slot(idx, tile, TILE_K);
                    tile_a[ai.y * ROW + ai.x / 4u][ai.x % 4u] = a_at(row0 + ai.x, k0 + ai.y);
                    let bj = b_slot(idx, tile, TILE_K);
                    tile_b[bj.x * ROW + bj.y / 4u][bj.y % 4u] = b_at(k0 + bj.x, col0 + bj.y);
                }
                workgroupBarrier();
                for (var kk = 0u; kk < TILE_K; kk++) {
                    let av = tile_a[kk * ROW + lid.y];
                    let bv = tile_b[kk * ROW + lid.x];
                    acc0 += av.x * bv;
                    acc1 += av.y * bv;
                    acc2 += av.z * bv;
                    acc3 += av.w * bv;
                    if keeps_sums {
                        sum += av;
                    }
                }
                workgroupBarrier();
            }
            let row = row0 + 4u * lid.y;
            let col = col0 + 4u * lid.x;
            store_row(wid.z, row, col, acc0);
            store_row(wid.z, row + 1u, col, acc1);
            store_row(wid.z, row + 2u, col, acc2);
            store_row(wid.z, row + 3u, col, acc3);
            if keeps_sums {
                for (var q = 0u; q < 4u; q++) {
                    if row + q < d.m {
                        sums[d.sums_off + wid.z * d.m + row + q] = sum[q];
                    }
                }
            }
        }
    }
}

// The same product with 128 x 128 output tiles and 8 x 8 outputs per invocation, for large
// matrices: four vec4 reads of workgroup memory feed 64 multiply-adds (the 64 x 64 kernel
// above does 16 per two), so on GPUs whose workgroup memory bandwidth bounds the small kernel
// this one can run closer to the arithmetic peak; it makes 4x fewer workgroups, so on a GPU it
// is chosen only for products with many tiles (per adapter and shape: src/backend/gpu/matmul.rs).
// Invocation (x, y) owns rows
// 4y .. 4y+4 and 64+4y .. 64+4y+4 of the tile and the same two groups of columns in x, so each
// of its reads is one vec4 and neighbours read neighbouring vectors.

const BIG: u32 = 128u;
const BIG_K: u32 = 16u;
// BIG / 4: vectors per staged k-row of a big tile.
const BIG_V: u32 = 32u;

// big_a[big_slot(kk, i / 4)][i % 4] = op(a)[row0 + i, k0 + kk];
// big_b[big_slot(kk, j / 4)][j % 4] = op(b)[k0 + kk, col0 + j].
// 2 x 8 KiB: exactly WebGPU's default maxComputeWorkgroupStorageSize (16,384 bytes). The
// 64 x 64 kernel pads its k-rows by a vector to spread k-contiguous stores over the banks;
// here that padding (33 vectors a row) would take 16,896 bytes, over the limit, so the rows
// are swizzled instead (see big_slot).
var<workgroup> big_a: array<vec4<f32>, 512>;
var<workgroup> big_b: array<vec4<f32>, 512>;

// The vector of k-row kk that holds vector v of the row (v < BIG_V, kk < BIG_K): v XOR kk, a
// permutation of each row, so reads along a row stay conflict-free while the consecutive
// k-rows that neighbouring invocations store to (an operand stored k-contiguous) land in
// different banks, as the padding would have put them. Since kk < 16, v and v + 16 stay in
// their halves of the row: (16 + v) ^ kk = 16 + (v ^ kk) for v < 16.
fn big_slot(kk: u32, v: u32) -> u32 {
    return kk * BIG_V + (v ^ kk);
}

@compute @workgroup_size(16, 16)
fn matmul_big(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let tiles_m = (d.m + BIG - 1u) / BIG;
    let tiles_n = (d.n + BIG - 1u) / BIG;
    let t = lid.y * 16u + lid.x;
    let k_begin = wid.z * d.k_chunk;
    let k_end = min(k_begin + d.k_chunk, d.k);
    for (var tm = wid.y; tm < tiles_m; tm += nwg.y) {
        for (var tn = wid.x; tn < tiles_n; tn += nwg.x) {
            let row0 = tm * BIG;
            let col0 = tn * BIG;
            // c<r><h>: row r of the invocation's eight (0-3: 4y + r, 4-7: 64 + 4y + r - 4),
            // column group h (0: 4x .. 4x+4, 1: 64 + 4x ..).
            var c00 = vec4<f32>(0.0);
            var c01 = vec4<f32>(0.0);
            var c10 = vec4<f32>(0.0);
            var c11 = vec4<f32>(0.0);
            var c20 = vec4<f32>(0.0);
            var c21 = vec4<f32>(0.0);
            var c30 = vec4<f32>(0.0);
            var c31 = vec4<f32>(0.0);
            var c40 = vec4<f32>(0.0);
            var c41 = vec4<f32>(0.0);
            var c50 = vec4<f32>(0.0);
            var c51 = vec4<f32>(0.0);
            var c60 = vec4<f32>(0.0);
            var c61 = vec4<f32>(0.0);
            var c70 = vec4<f32>(0.0);
            var c71 = vec4<f32>(0.0);
            let keeps_sums = d.epilogue == EPI_SUMS && tn == 0u && lid.x == 0u;
            var sum0 = vec4<f32>(0.0);
            var sum1 = vec4<f32>(0.0);
            for (var k0 = k_begin; k0 < k_end; k0 += BIG_K) {
                // 2048 elements of each tile, eight per invocation, walked in memory order.
                for (var e = 0u; e < 8u; e++) {
                    let idx = t + e * THREADS;
                    let ai = a_slot(idx, BIG, BIG_K);
                    big_a[big_slot(ai.y, ai.x / 4u)][ai.x % 4u] = a_at(row0 + ai.x, k0 + ai.y);
                    let bj = b_slot(idx, BIG, BIG_K);
                    big_b[big_slot(bj.x, bj.y / 4u)][bj.y % 4u] = b_at(k0 + bj.x, col0 + bj.y);
                }
                workgroupBarrier();
                for (var kk = 0u; kk < BIG_K; kk++) {
                    let a0 = big_a[big_slot(kk, lid.y)];
                    let a1 = big_a[big_slot(kk, 16u + lid.y)];
                    let b0 = big_b[big_slot(kk, lid.x)];
                    let b1 = big_b[big_slot(kk, 16u + lid.x)];
                    c00 += a0.x * b0;
                    c01 += a0.x * b1;
                    c10 += a0.y * b0;
                    c11 += a0.y * b1;
                    c20 += a0.z * b0;
                    c21 += a0.z * b1;
                    c30 += a0.w * b0;
                    c31 += a0.w * b1;
                    c40 += a1.x * b0;
                    c41 += a1.x * b1;
                    c50 += a1.y * b0;
                    c51 += a1.y * b1;
                    c60 += a1.z * b0;
                    c61 += a1.z * b1;
                    c70 += a1.w * b0;
                    c71 += a1.w * b1;
                    if keeps_sums {
                        sum0 += a0;
                        sum1 += a1;
                    }
                }
                workgroupBarrier();
            }
            let r0 = row0 + 4u * lid.y;
            let r1 = r0 + 64u;
            let h0 = col0 + 4u * lid.x;
            let h1 = h0 + 64u;
            store_row(wid.z, r0, h0, c00);
            store_row(wid.z, r0, h1, c01);
            store_row(wid.z, r0 + 1u, h0, c10);
            store_row(wid.z, r0 + 1u, h1, c11);
            store_row(wid.z, r0 + 2u, h0, c20);
            store_row(wid.z, r0 + 2u, h1, c21);
            store_row(wid.z, r0 + 3u, h0, c30);
            store_row(wid.z, r0 + 3u, h1, c31);
            store_row(wid.z, r1, h0, c40);
            store_row(wid.z, r1, h1, c41);
            store_row(wid.z, r1 + 1u, h0, c50);
            store_row(wid.z, r1 + 1u, h1, c51);
            store_row(wid.z, r1 + 2u, h0, c60);
            store_row(wid.z, r1 + 2u, h1, c61);
            store_row(wid.z, r1 + 3u, h0, c70);
            store_row(wid.z, r1 + 3u, h1, c71);
            if keeps_sums {
                for (var q = 0u; q < 4u; q++) {
                    if r0 + q < d.m {
                        sums[d.sums_off + wid.z * d.m + r0 + q] = sum0[q];
                    }
                    if r1 + q < d.m {
                        sums[d.sums_off + wid.z * d.m + r1 + q] = sum1[q];
                    }
                }
            }
        }
    }
}
