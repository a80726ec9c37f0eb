// Losses fused with their output activation. Each row's [loss, metric] comes from one of the
// row functions below; the `per_row` kernel runs one invocation per row and writes them to
// `stats`, the `accumulate` kernel runs one workgroup that loops over the rows and adds their
// sums to the metrics accumulator `acc` (the loss and the accumulation fused), writing `stats`
// too when asked. Both write, when `has_grad`, the gradient of the batch-mean loss with respect
// to `out` (the logits for the fused kinds). out, grad: (rows, cols); stats: (rows, 2); acc: (2,);
// targets: labels (rows,) for the class losses, or the bits of f32 targets (rows, cols) for
// regression. The semantics are those of `loss_classes` / `loss_values` in src/ops/loss.rs.
// grid.wgsl (WG, `flat`) and activation_fn.wgsl (`sigmoid`) are prepended to this file.

struct Dims {
    rows: u32,
    cols: u32,
    // Which loss: the FAMILY_ codes below.
    family: u32,
    // Regression kind: 0 = MSE, 1 = MAE.
    kind: u32,
    has_grad: u32,
    has_stats: u32,
    out_off: u32,
    tgt_off: u32,
    grad_off: u32,
    stats_off: u32,
    acc_off: u32,
    // 1 / rows: the gradient is of the batch mean.
    scale: f32,
}

const FAMILY_SOFTMAX_CE: u32 = 0u;
const FAMILY_SIGMOID_BCE: u32 = 1u;
const MSE: u32 = 0u;
@group(0) @binding(0) var<uniform> d: Dims;
@group(0) @binding(1) var<storage, read> out: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> acc: array<f32>;

var<workgroup> part_loss: array<f32, 256>;
var<workgroup> part_metric: array<f32, 256>;

// ln(1 + x) accurate for small x (WGSL has no log1p): the rounding of 1 + x is divided out.
fn log1p(x: f32) -> f32 {
    let u = 1.0 + x;
    if u == 1.0 {
        return x;
    }
    return log(u) * x / (u - 1.0);
}

// Index of the first maximum of row `r`.
fn argmax(z0: u32) -> u32 {
    var best = 0u;
    for (var j = 1u; j < d.cols; j++) {
        if out[z0 + j] > out[z0 + best] {
            best = j;
        }
    }
    return best;
}

// Softmax + categorical cross-entropy: loss = lse - z[label], grad = (softmax - onehot) / rows.
fn softmax_ce(r: u32) -> vec2<f32> {
    let z0 = d.out_off + r * d.cols;
    let label = targets[d.tgt_off + r];
    var m = out[z0];
    for (var j = 1u; j < d.cols; j++) {
        m = max(m, out[z0 + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < d.cols; j++) {
        s += exp(out[z0 + j] - m);
    }
    let lse = m + log(s);
    if d.has_grad != 0u {
        let g0 = d.grad_off + r * d.cols;
        for (var j = 0u; j < d.cols; j++) {
            let p = exp(out[z0 + j] - lse);
            grad[g0 + j] = (p - select(0.0, 1.0, j == label)) * d.scale;
        }
    }
    let loss = lse - out[z0 + min(label, d.cols - 1u)];
    return vec2(loss, select(0.0, 1.0, argmax(z0) == label));
}

// Sigmoid + binary cross-entropy, averaged over the outputs. With one output the label is the
// target bit; with several, each output is one-vs-all against the one-hot label.
fn sigmoid_bce(r: u32) -> vec2<f32> {
    let z0 = d.out_off + r * d.cols;
    let g0 = d.grad_off + r * d.cols;
    let label = targets[d.tgt_off + r];
    let cols = f32(d.cols);
    var loss = 0.0;
    for (var j = 0u; j < d.cols; j++) {
        let v = out[z0 + j];
        var t = select(0.0, 1.0, j == label);
        if d.cols == 1u {
            t = f32(label);
        }
        // Stable: max(z, 0) - z t + ln(1 + e^-|z|).
        loss += max(v, 0.0) - v * t + log1p(exp(-abs(v)));
        if d.has_grad != 0u {
            grad[g0 + j] = (sigmoid(v) - t) * d.scale / cols;
        }
    }
    var correct = argmax(z0) == label;
    if d.cols == 1u {
        correct = (out[z0] > 0.0) == (label == 1u);
    }
    return vec2(loss / cols, select(0.0, 1.0, correct));
}

// MSE or MAE per row against f32 targets; the metric is the row's mean absolute error.
fn regression(r: u32) -> vec2<f32> {
    let y0 = d.out_off + r * d.cols;
    let t0 = d.tgt_off + r * d.cols;
    let g0 = d.grad_off + r * d.cols;
    let cols = f32(d.cols);
    let per = d.scale / cols;
    var sq = 0.0;
    var ab = 0.0;
    for (var j = 0u; j < d.cols; j++) {
        let e = out[y0 + j] - bitcast<f32>(targets[t0 + j]);
        sq += e * e;
        ab += abs(e);
        if d.has_grad != 0u {
            if d.kind == MSE {
                grad[g0 + j] = 2.0 * e * per;
            } else {
                grad[g0 + j] = sign(e) * per;
            }
        }
    }
    let loss = select(ab, sq, d.kind == MSE);
    return vec2(loss / cols, ab / cols);
}

// Row r's [loss, metric] (and its gradient), written to `stats` when asked.
fn row(r: u32) -> vec2<f32> {
    var v: vec2<f32>;
    switch d.family {
        case FAMILY_SOFTMAX_CE: {
            v = softmax_ce(r);
        }
        case FAMILY_SIGMOID_BCE: {
            v = sigmoid_bce(r);
        }
        default: {
            v = regression(r);
        }
    }
    if d.has_stats != 0u {
        stats[d.stats_off + 2u * r] = v.x;
        stats[d.stats_off + 2u * r + 1u] = v.y;
    }
    return v;
}

@compute @workgroup_size(256)
fn per_row(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = flat(wid, nwg, lid);
    if r >= d.rows {
        return;
    }
    row(r);
}

// One workgroup: each invocation sums the rows r ≡ lid (mod WG), then a tree adds the sums in
// a fixed order (no atomics: the result does not depend on scheduling), as
// `accumulate_stats` in reduce.wgsl does.
@compute @workgroup_size(256)
fn accumulate(@builtin(local_invocation_id) lid: vec3<u32>) {
    var l = 0.0;
    var m = 0.0;
    for (var r = lid.x; r < d.rows; r += WG) {
        let v = row(r);
        l += v.x;
        m += v.y;
    }
    part_loss[lid.x] = l;
    part_metric[lid.x] = m;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        if lid.x < half {
            part_loss[lid.x] += part_loss[lid.x + half];
            part_metric[lid.x] += part_metric[lid.x + half];
        }
        workgroupBarrier();
    }
    if lid.x == 0u {
        acc[d.acc_off] += part_loss[0];
        acc[d.acc_off + 1u] += part_metric[0];
    }
}
