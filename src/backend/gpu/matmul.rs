//! Launcher of `shaders/matmul.wgsl`: tiled matrix products in the three forms the network uses
//! (A·B, Aᵀ·B, A·Bᵀ; Aᵀ·Bᵀ too), with an optional bias and an optional epilogue (an activation,
//! an activation's derivative, or the column sums of `a` beside the product), by one of three
//! kernels (32x32, 64x64 or 128x128 output tiles), optionally split over k (split-K: partial
//! products over slices of k, then a second dispatch adding them in a fixed order), picked per
//! adapter and shape; and the last layer's product with its softmax cross-entropy, in one
//! workgroup.

use super::activation::code;
use super::context::{KernelSpec, Shader};
use super::tune::{self, Tuner};
use super::{GpuBackend, WG};
use crate::Result;
use crate::backend::{Backend, Buf, DType};
use crate::ops::{ColSum, Epilogue, Matmul, MatmulDims, OpLabel, Patches, Rules};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

static SHADER: Shader = Shader {
    name: "matmul.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/activation_fn.wgsl"),
        include_str!("../../../shaders/matmul.wgsl")
    ),
};

/// a, b, bias (read), c (written), y (read), sums (written).
const STORAGE: &[(u32, bool)] = &[
    (1, true),
    (2, true),
    (3, true),
    (4, false),
    (5, true),
    (6, false),
];

/// a, b, bias (read), c (written, then read), y (read, unused), grad (written, in the slot of
/// sums), labels (read), acc (read and written).
const LOSS_STORAGE: &[(u32, bool)] = &[
    (1, true),
    (2, true),
    (3, true),
    (4, false),
    (5, true),
    (6, false),
    (7, true),
    (8, false),
];

const fn spec(
    label: &'static str,
    entry: &'static str,
    constants: &'static [(&'static str, f64)],
) -> KernelSpec {
    KernelSpec {
        label,
        shader: &SHADER,
        entry,
        constants,
        storage: STORAGE,
    }
}

const fn loss_spec(label: &'static str, constants: &'static [(&'static str, f64)]) -> KernelSpec {
    KernelSpec {
        label,
        shader: &SHADER,
        entry: "matmul_softmax_ce",
        constants,
        storage: LOSS_STORAGE,
    }
}

const FORM_NN: &[(&str, f64)] = &[("TRANS_A", 0.0), ("TRANS_B", 0.0)];
const FORM_NT: &[(&str, f64)] = &[("TRANS_A", 0.0), ("TRANS_B", 1.0)];
const FORM_TN: &[(&str, f64)] = &[("TRANS_A", 1.0), ("TRANS_B", 0.0)];
const FORM_TT: &[(&str, f64)] = &[("TRANS_A", 1.0), ("TRANS_B", 1.0)];
const FINE_NN: &[(&str, f64)] = &[("TRANS_A", 0.0), ("TRANS_B", 0.0), ("SIDE", 8.0)];
const FINE_NT: &[(&str, f64)] = &[("TRANS_A", 0.0), ("TRANS_B", 1.0), ("SIDE", 8.0)];
const FINE_TN: &[(&str, f64)] = &[("TRANS_A", 1.0), ("TRANS_B", 0.0), ("SIDE", 8.0)];
const FINE_TT: &[(&str, f64)] = &[("TRANS_A", 1.0), ("TRANS_B", 1.0), ("SIDE", 8.0)];
const IM2COL_NT: &[(&str, f64)] = &[("TRANS_A", 0.0), ("TRANS_B", 1.0), ("IM2COL", 1.0)];
const IM2COL_B_TN: &[(&str, f64)] = &[("TRANS_A", 1.0), ("TRANS_B", 0.0), ("IM2COL_B", 1.0)];
const IM2COL_B_FINE_TN: &[(&str, f64)] = &[
    ("TRANS_A", 1.0),
    ("TRANS_B", 0.0),
    ("IM2COL_B", 1.0),
    ("SIDE", 8.0),
];
const IM2COL_FINE_NT: &[(&str, f64)] = &[
    ("TRANS_A", 0.0),
    ("TRANS_B", 1.0),
    ("IM2COL", 1.0),
    ("SIDE", 8.0),
];

/// 32 x 32 output tiles, 4 x 4 outputs per invocation (8 x 8 invocations).
static NN_FINE: KernelSpec = spec("matmul_fine", "matmul", FINE_NN);
static NT_FINE: KernelSpec = spec("matmul_fine_bt", "matmul", FINE_NT);
static TN_FINE: KernelSpec = spec("matmul_fine_at", "matmul", FINE_TN);
static TT_FINE: KernelSpec = spec("matmul_fine_at_bt", "matmul", FINE_TT);
/// The product and its softmax cross-entropy, one workgroup of 64 x 64 tiles.
static NN_LOSS: KernelSpec = loss_spec("matmul_softmax_ce", FORM_NN);
static NT_LOSS: KernelSpec = loss_spec("matmul_softmax_ce_bt", FORM_NT);
static TN_LOSS: KernelSpec = loss_spec("matmul_softmax_ce_at", FORM_TN);
static TT_LOSS: KernelSpec = loss_spec("matmul_softmax_ce_at_bt", FORM_TT);
/// 64 x 64 output tiles, 4 x 4 outputs per invocation.
static NN: KernelSpec = spec("matmul", "matmul", FORM_NN);
static NT: KernelSpec = spec("matmul_bt", "matmul", FORM_NT);
static TN: KernelSpec = spec("matmul_at", "matmul", FORM_TN);
static TT: KernelSpec = spec("matmul_at_bt", "matmul", FORM_TT);
/// 128 x 128 output tiles, 8 x 8 outputs per invocation.
static NN_BIG: KernelSpec = spec("matmul_big", "matmul_big", FORM_NN);
static NT_BIG: KernelSpec = spec("matmul_big_bt", "matmul_big", FORM_NT);
static TN_BIG: KernelSpec = spec("matmul_big_at", "matmul_big", FORM_TN);
static TT_BIG: KernelSpec = spec("matmul_big_at_bt", "matmul_big", FORM_TT);

/// Implicit GEMM (a convolution's forward, x · Wᵀ over the patches of x read in place), on
/// each of the three tiles.
static IM2COL_FINE: KernelSpec = spec("matmul_fine_im2col_bt", "matmul", IM2COL_FINE_NT);
static IM2COL: KernelSpec = spec("matmul_im2col_bt", "matmul", IM2COL_NT);
static IM2COL_BIG: KernelSpec = spec("matmul_big_im2col_bt", "matmul_big", IM2COL_NT);
/// A convolution's weight gradient (dZᵀ · patches, the patches of the images in `b` read in
/// place), on each of the three tiles.
static IM2COL_B_FINE: KernelSpec = spec("matmul_fine_at_im2col_b", "matmul", IM2COL_B_FINE_TN);
static IM2COL_B: KernelSpec = spec("matmul_at_im2col_b", "matmul", IM2COL_B_TN);
static IM2COL_B_BIG: KernelSpec = spec("matmul_big_at_im2col_b", "matmul_big", IM2COL_B_TN);
/// The sum of a split-K product's partials (read through `a`), plus bias and epilogue.
static SPLIT_SUM: KernelSpec = spec("matmul_split_sum", "matmul_split_sum", &[]);

/// Every kernel this launcher records (the tests check each against WebGPU's limits).
pub(super) static KERNELS: &[&KernelSpec] = &[
    &NN_FINE,
    &NT_FINE,
    &TN_FINE,
    &TT_FINE,
    &NN_LOSS,
    &NT_LOSS,
    &TN_LOSS,
    &TT_LOSS,
    &NN,
    &NT,
    &TN,
    &TT,
    &NN_BIG,
    &NT_BIG,
    &TN_BIG,
    &TT_BIG,
    &IM2COL_FINE,
    &IM2COL,
    &IM2COL_BIG,
    &IM2COL_B_FINE,
    &IM2COL_B,
    &IM2COL_B_BIG,
    &SPLIT_SUM,
];

/// Output tile sides of the three kernels, as in the shader.
const FINE_TILE: usize = 32;
const TILE: usize = 64;
const BIG_TILE: usize = 128;

/// Which of the three kernels products use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatmulTiles {
    /// Per adapter and shape. On a software adapter (lavapipe and the like, which run
    /// workgroups on a few CPU threads), 128 x 128 unless the product is no more than one
    /// small tile wide or tall: measured there 1.6-2x faster from 128x128x256 to 2048³, 2x
    /// slower on 128x128x10. On a GPU, 128 x 128 where that still makes `BIG_TILES_MIN` (256)
    /// tiles or more; else 64 x 64 where that makes `SMALL_TILES_MIN` (64) or more; else
    /// 32 x 32, four times as many workgroups for the small products of small batches.
    #[default]
    Auto,
    /// 32 x 32 tiles always.
    Fine,
    /// 64 x 64 tiles always.
    Small,
    /// 128 x 128 tiles always.
    Big,
}

/// With fewer big tiles than this, a GPU of a hundred-odd compute units would sit partly idle:
/// the 64 x 64 kernel makes four times as many workgroups. 256 = 2048 x 2048 outputs. (A rule
/// of thumb, not yet measured on such a GPU: `WGTRAIN_MATMUL_TILES` lets `wgtrain bench`
/// compare the kernels there.)
const BIG_TILES_MIN: usize = 256;

/// With fewer 64 x 64 tiles than this a GPU of a hundred-odd compute units has most of them
/// idle (the standard MLP at batch 128 makes 2 to 8), so the 32 x 32 kernel takes the product.
/// A rule of thumb too, until autotuning measures it per adapter.
const SMALL_TILES_MIN: usize = 64;

impl MatmulTiles {
    /// `WGTRAIN_MATMUL_TILES=auto|32|64|128`, for measuring the kernels against each other
    /// with `wgtrain bench` on a new GPU; unset is `Auto`, and so is anything else, with a
    /// warning.
    pub fn from_env() -> MatmulTiles {
        match std::env::var("WGTRAIN_MATMUL_TILES").as_deref() {
            Ok("32") => MatmulTiles::Fine,
            Ok("64") => MatmulTiles::Small,
            Ok("128") => MatmulTiles::Big,
            Ok("auto") | Err(_) => MatmulTiles::Auto,
            Ok(other) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    eprintln!(
                        "warning: WGTRAIN_MATMUL_TILES={other:?} is not auto, 32, 64 or 128; using auto"
                    )
                });
                MatmulTiles::Auto
            }
        }
    }

    /// The output tile side for an m x n product.
    fn side(self, software: bool, m: usize, n: usize) -> usize {
        let tiles = |side: usize| m.div_ceil(side) * n.div_ceil(side);
        match self {
            MatmulTiles::Auto if software => {
                if m > TILE && n > TILE {
                    BIG_TILE
                } else {
                    TILE
                }
            }
            MatmulTiles::Auto if tiles(BIG_TILE) >= BIG_TILES_MIN => BIG_TILE,
            MatmulTiles::Auto if tiles(TILE) >= SMALL_TILES_MIN => TILE,
            MatmulTiles::Auto => FINE_TILE,
            MatmulTiles::Fine => FINE_TILE,
            MatmulTiles::Small => TILE,
            MatmulTiles::Big => BIG_TILE,
        }
    }
}

/// Split-K by the rule of thumb: on a GPU, a product whose grid of `side` tiles has fewer than
/// `SPLIT_TARGET` workgroups is split over k, doubling the splits while that stays under the
/// target and each split keeps at least `SPLIT_DEPTH_MIN` values of k; software adapters (whose
/// few threads any grid fills) never split. At batch 128 the standard MLP splits its first
/// product (128 x 784 x 256: 32 tiles of 32 x 32, 4 splits of 196 values of k) and the CNN its
/// first convolution's weight gradient (32 x 100352 x 9, one tile: 128 splits of 784). A
/// guess until tuning measures it on the adapter.
const SPLIT_TARGET: usize = 128;

/// The fewest values of k a split takes by the rule of thumb: fewer, and the extra dispatch and
/// the partials' round trip through memory cost more than the parallelism wins.
const SPLIT_DEPTH_MIN: usize = 192;

/// The most splits of one product (the grid's third dimension).
pub const MAX_SPLIT: usize = 256;

/// One way to run a product: output tile side, and the number of slices of k it is split into
/// (1: not split).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Variant {
    pub side: usize,
    pub split: usize,
}

/// `WGTRAIN_MATMUL_SPLIT=N` (1 to [`MAX_SPLIT`]) forces split-K by N on every product that can
/// be split (all but the softmax cross-entropy's, whose epilogue needs whole rows), `1`
/// forbids it; unset leaves it to tuning or the rule, and anything else warns and does the
/// same.
pub fn split_from_env() -> Option<usize> {
    let v = std::env::var("WGTRAIN_MATMUL_SPLIT").ok()?;
    match v.parse::<usize>() {
        Ok(s) if (1..=MAX_SPLIT).contains(&s) => Some(s),
        _ => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!(
                    "warning: WGTRAIN_MATMUL_SPLIT={v:?} is not a number from 1 to {MAX_SPLIT}; ignoring it"
                )
            });
            None
        }
    }
}

/// The splits the rule of thumb gives an m x k x n product on `side` tiles.
fn rule_split(software: bool, side: usize, m: usize, k: usize, n: usize) -> usize {
    if software {
        return 1;
    }
    most_splits(side, m, k, n, SPLIT_TARGET, SPLIT_DEPTH_MIN)
}

/// The largest power of two (up to [`MAX_SPLIT`]) that an m x k x n product on `side` tiles
/// can be split into while its grid keeps to `workgroups` and each slice to at least `depth`
/// values of k; 1 where none can.
pub(super) fn most_splits(
    side: usize,
    m: usize,
    k: usize,
    n: usize,
    workgroups: usize,
    depth: usize,
) -> usize {
    let tiles = m.div_ceil(side) * n.div_ceil(side);
    let mut split = 1;
    while split < MAX_SPLIT && tiles * split * 2 <= workgroups && k / (split * 2) >= depth {
        split *= 2;
    }
    split
}

/// Whether `op` can be split over k: all but the softmax cross-entropy's product, whose
/// epilogue needs whole rows of the finished product in one workgroup.
fn splittable(op: &Matmul) -> bool {
    !matches!(op.epilogue, Epilogue::SoftmaxCe(_))
}

/// The k values per split of a k-deep product cut into `split` (a multiple of the kernels'
/// 16-deep staging, so no staged slice straddles two splits) and the number of splits that
/// then hold any k (fewer than `split` where k is short).
fn k_slices(k: usize, split: usize) -> (usize, usize) {
    if split <= 1 || k == 0 {
        return (k, 1);
    }
    let chunk = k.div_ceil(split).next_multiple_of(16);
    (chunk, k.div_ceil(chunk))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
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
    labels_off: u32,
    grad_off: u32,
    acc_off: u32,
    has_grad: u32,
    scale: f32,
    k_chunk: u32,
    part_stride: u32,
    splits: u32,
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

// a: (m, k) | (k, m)ᵀ, b: (k, n) | (n, k)ᵀ, bias: (n,), y: (m, n) -> c: (m, n), sums: (m,)
pub(super) fn matmul(g: &mut GpuBackend, op: &Matmul) -> Result<()> {
    let MatmulDims { m, k, n, .. } = op.dims;
    if m == 0 || n == 0 {
        let loss = matches!(op.epilogue, Epilogue::SoftmaxCe(_));
        debug_assert!(!loss || m == 0, "a loss over zero classes is refused");
        if let (Epilogue::ColSums(sums), true) = (op.epilogue, m > 0) {
            // No product to ride on.
            let col_sum = ColSum {
                a: op.a,
                rows: k,
                cols: m,
                out: sums,
            };
            return super::reduce::col_sum(g, &col_sum);
        }
        return Ok(());
    }
    let variant = match op.epilogue {
        // One 64-wide tile per row, so that each row's softmax sees all of it.
        Epilogue::SoftmaxCe(_) => Variant {
            side: TILE,
            split: 1,
        },
        _ => choose(g, op)?,
    };
    launch(g, op, variant)
}

/// The kernel for `op`: forced by `WGTRAIN_MATMUL_TILES` and/or `WGTRAIN_MATMUL_SPLIT`, else
/// tuned on this adapter (timing every candidate the first time the shape runs; see
/// `tune.rs`), else by the rules of thumb where tuning is off. While kernel timing is on, a
/// shape not tuned yet takes the rule (the timer would count the candidates as the op).
fn choose(g: &mut GpuBackend, op: &Matmul) -> Result<Variant> {
    let MatmulDims {
        m,
        k,
        n,
        trans_a,
        trans_b,
    } = op.dims;
    let software = g.ctx.info.device_type == wgpu::DeviceType::Cpu;
    let side = g.matmul_tiles.side(software, m, n);
    let auto = g.matmul_tiles == MatmulTiles::Auto && g.matmul_split.is_none();
    let split = match g.matmul_split {
        Some(s) => s,
        None if g.matmul_tiles == MatmulTiles::Auto => rule_split(software, side, m, k, n),
        None => 1,
    };
    let rule = Variant { side, split };
    let tuner = match &g.tuner {
        Some(t) if auto => t.clone(),
        _ => return Ok(rule),
    };
    if let Some(&v) = g.chosen.get(&op.dims) {
        return Ok(v);
    }
    let key = tune::shape_key(trans_a, trans_b, m, k, n);
    if let Some((side, split)) = lock(&tuner).get(&key) {
        let v = Variant { side, split };
        g.chosen.insert(op.dims, v);
        return Ok(v);
    }
    if g.rec.timer.is_some() {
        return Ok(rule);
    }
    // What is recorded so far runs first, untimed.
    g.sync()?;
    let mut us = BTreeMap::new();
    let mut best = (f64::INFINITY, rule);
    // Device time by timestamp queries where the adapter has them (the kernels alone, each
    // dispatch in a pass of its own), else the wall clock around a sync (a submission's fixed
    // cost included, the same for every candidate).
    let timed = |g: &mut GpuBackend, v: Variant, times: usize| -> Result<f64> {
        if g.start_timing() {
            for _ in 0..times {
                launch(g, op, v)?;
            }
            let seconds: f64 = g.take_times()?.iter().map(|t| t.seconds).sum();
            return Ok(seconds * 1e6 / times as f64);
        }
        let started = Instant::now();
        for _ in 0..times {
            launch(g, op, v)?;
        }
        g.sync()?;
        Ok(started.elapsed().as_secs_f64() * 1e6 / times as f64)
    };
    for (side, split) in tune::candidates(m, k, n, splittable(op)) {
        let v = Variant { side, split };
        // Compiles the pipelines and warms the caches.
        timed(g, v, 1)?;
        // One run; a short one again, several in one submission, for a steadier mean.
        let mut t = timed(g, v, 1)?;
        if t < tune::ONE_IS_ENOUGH_US {
            t = timed(g, v, tune::REPEATS)?;
        }
        us.insert(tune::candidate_name(side, split), t);
        if t < best.0 {
            best = (t, v);
        }
    }
    let v = best.1;
    let choice = tune::Choice {
        tiles: v.side,
        split: v.split,
        us,
        timestamps: g.has_timestamp_queries(),
    };
    lock(&tuner).insert(key, choice);
    g.chosen.insert(op.dims, v);
    Ok(v)
}

fn lock(t: &Mutex<Tuner>) -> std::sync::MutexGuard<'_, Tuner> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

impl GpuBackend {
    /// `len` words of the scratch buffer that split-K products keep their partials in, grown
    /// (a new allocation, the old one left to its pending dispatches) when too small. Allocated
    /// by the first split product, so a training step's later replays create nothing.
    fn split_scratch(&mut self, len: usize) -> Result<Buf> {
        match self.split_scratch {
            Some(b) if b.len() >= len => Ok(b.slice(0, len)),
            _ => {
                let b = self.allocate(DType::F32, len, "split-K partial products")?;
                self.split_scratch = Some(b);
                Ok(b)
            }
        }
    }
}

/// The window fields of the uniform block: those of implicit `patches`, else zeros.
fn window_dims(patches: Option<Patches>) -> Dims {
    let zeros = bytemuck::Zeroable::zeroed();
    let Some(g) = patches.map(Patches::window) else {
        return zeros;
    };
    let u = |v: usize| v as u32;
    Dims {
        img_h: u(g.h),
        img_w: u(g.w),
        img_c: u(g.c),
        win_h: u(g.kh),
        win_w: u(g.kw),
        stride_h: u(g.sh),
        stride_w: u(g.sw),
        pad_h: u(g.ph),
        pad_w: u(g.pw),
        out_h: u(g.oh()),
        out_w: u(g.ow()),
        ..zeros
    }
}

/// Records `op` with `v`'s kernel (64 x 64 tiles, unsplit, for a loss epilogue); split over k
/// only where `op` can be (a forced split is ignored where it cannot).
fn launch(g: &mut GpuBackend, op: &Matmul, v: Variant) -> Result<()> {
    let Matmul {
        a,
        b,
        bias,
        c,
        dims: d,
        epilogue,
        patches,
    } = *op;
    let MatmulDims { m, k, n, .. } = d;
    let tile = v.side;
    let (epi, act, y, sums) = match epilogue {
        Epilogue::None => (0, 0, None, None),
        Epilogue::Act(act) => (1, code(act), None, None),
        Epilogue::ActGrad { act, y } => (2, code(act), Some(y), None),
        Epilogue::ColSums(sums) => (3, 0, None, Some(sums)),
        Epilogue::SoftmaxCe(_) => (0, 0, None, None),
    };
    let loss = match epilogue {
        Epilogue::SoftmaxCe(ce) => Some(ce),
        _ => None,
    };
    let implicit_a = matches!(patches, Some(Patches::A(_)));
    let implicit_b = matches!(patches, Some(Patches::B(_)));
    let spec = match (d.trans_a, d.trans_b, tile) {
        // (The plan takes implicit patches of a only with trans_b and without trans_a, and
        // those of b only with trans_a and without trans_b.)
        (_, _, FINE_TILE) if implicit_a => &IM2COL_FINE,
        (_, _, TILE) if implicit_a => &IM2COL,
        (_, _, _) if implicit_a => &IM2COL_BIG,
        (_, _, FINE_TILE) if implicit_b => &IM2COL_B_FINE,
        (_, _, TILE) if implicit_b => &IM2COL_B,
        (_, _, _) if implicit_b => &IM2COL_B_BIG,
        (false, false, _) if loss.is_some() => &NN_LOSS,
        (false, true, _) if loss.is_some() => &NT_LOSS,
        (true, false, _) if loss.is_some() => &TN_LOSS,
        (true, true, _) if loss.is_some() => &TT_LOSS,
        (false, false, FINE_TILE) => &NN_FINE,
        (false, true, FINE_TILE) => &NT_FINE,
        (true, false, FINE_TILE) => &TN_FINE,
        (true, true, FINE_TILE) => &TT_FINE,
        (false, false, TILE) => &NN,
        (false, true, TILE) => &NT,
        (true, false, TILE) => &TN,
        (true, true, TILE) => &TT,
        (false, false, _) => &NN_BIG,
        (false, true, _) => &NT_BIG,
        (true, false, _) => &TN_BIG,
        (true, true, _) => &TT_BIG,
    };
    let dims = Dims {
        m: m as u32,
        k: k as u32,
        n: n as u32,
        has_bias: bias.is_some() as u32,
        a_off: a.offset,
        b_off: b.offset,
        bias_off: bias.map_or(0, |b| b.offset),
        c_off: c.offset,
        epilogue: epi,
        act,
        y_off: y.map_or(0, |y| y.offset),
        sums_off: sums.map_or(0, |s| s.offset),
        labels_off: loss.map_or(0, |l| l.labels.offset),
        grad_off: loss.and_then(|l| l.grad).map_or(0, |g| g.offset),
        acc_off: loss.map_or(0, |l| l.acc.offset),
        has_grad: loss.is_some_and(|l| l.grad.is_some()) as u32,
        scale: 1.0 / m as f32,
        k_chunk: k as u32,
        part_stride: 0,
        splits: 1,
        ..window_dims(patches)
    };
    if let Some(loss) = loss {
        // One workgroup, which loops over every tile of c.
        return g.record(
            spec,
            &[
                Some(a),
                Some(b),
                bias,
                Some(c),
                None,
                loss.grad,
                Some(loss.labels),
                Some(loss.acc),
            ],
            &dims,
            [1, 1, 1],
            || op.cost(),
        );
    }
    // The kernel loops over tiles beyond the grid, so any m and n fit.
    let groups = [g.tiles(n.div_ceil(tile)), g.tiles(m.div_ceil(tile)), 1];
    // (A loss epilogue, which cannot be split, returned above.)
    let (k_chunk, splits) = k_slices(k, v.split);
    if splits == 1 {
        return g.record(
            spec,
            &[Some(a), Some(b), bias, Some(c), y, sums],
            &dims,
            groups,
            || op.cost(),
        );
    }
    // Split-K: the partial products into scratch (no bias, no epilogue), split z at z m n,
    // and with column sums the splits' partial sums after them, split z's at z m...
    let part = m * n;
    let sum_words = if sums.is_some() { m } else { 0 };
    let scratch = g.split_scratch(splits * (part + sum_words))?;
    let split = Dims {
        k_chunk: k_chunk as u32,
        part_stride: part as u32,
        splits: splits as u32,
        ..dims
    };
    let partials = Dims {
        has_bias: 0,
        bias_off: 0,
        c_off: scratch.offset,
        epilogue: if sums.is_some() { 3 } else { 0 },
        act: 0,
        y_off: 0,
        sums_off: scratch.offset + (splits * part) as u32,
        ..split
    };
    let scratch_sums = sums.map(|_| scratch);
    g.record(
        spec,
        &[Some(a), Some(b), None, Some(scratch), None, scratch_sums],
        &partials,
        [groups[0], groups[1], splits as u32],
        || {
            let mut l = op.cost();
            l.name += &format!(" split-K {splits}");
            l.bytes += crate::ops::words((splits - 1) * (part + sum_words));
            l
        },
    )?;
    // ... then their sum in order, with the bias and the epilogue.
    let sum = Dims {
        a_off: scratch.offset,
        ..split
    };
    // The kernel loops where the grid is smaller, so cap it at what two dimensions hold.
    let most = WG * (g.rec.max_groups as usize).pow(2);
    let grid = g.grid((part + sum_words).min(most), WG)?;
    g.record(
        &SPLIT_SUM,
        &[Some(scratch), None, bias, Some(c), y, sums],
        &sum,
        grid,
        || {
            let bias_words = if bias.is_some() { n } else { 0 };
            let reads = splits * (part + sum_words) + bias_words;
            OpLabel::new(
                format!("matmul split-K sum {splits}x{m}x{n}"),
                ((splits - 1) * (part + sum_words)) as f64,
                crate::ops::words(reads + part + sum_words),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::MatmulTiles::{Auto, Big, Fine, Small};
    use super::{k_slices, rule_split};

    #[test]
    fn k_is_cut_into_slices_of_whole_staged_steps() {
        assert_eq!(k_slices(784, 4), (208, 4));
        assert_eq!(k_slices(100, 4), (32, 4));
        assert_eq!(k_slices(65, 3), (32, 3));
        // Short k: fewer slices than asked, or none.
        assert_eq!(k_slices(17, 3), (16, 2));
        assert_eq!(k_slices(16, 8), (16, 1));
        assert_eq!(k_slices(1, 2), (16, 1));
        assert_eq!(k_slices(0, 4), (0, 1));
        assert_eq!(k_slices(300, 1), (300, 1));
    }

    #[test]
    fn the_rule_splits_long_products_of_small_outputs_on_gpus_only() {
        // The standard MLP's first product at batch 128: 32 tiles of 32 x 32 -> 4 x 196 deep.
        assert_eq!(rule_split(false, 32, 128, 784, 256), 4);
        assert_eq!(rule_split(true, 64, 128, 784, 256), 1);
        // Its second (k = 256: slices would be under 192 deep) and the input gradients.
        assert_eq!(rule_split(false, 32, 128, 256, 128), 1);
        assert_eq!(rule_split(false, 32, 128, 128, 256), 1);
        // Batch 1: one tile, k = 4096 -> 16 slices of 256.
        assert_eq!(rule_split(false, 32, 1, 4096, 10), 16);
        // The CNN's first weight gradient at batch 128: one tile, k = 128 x 28 x 28.
        assert_eq!(rule_split(false, 32, 32, 100_352, 9), 128);
        // Its second: 18 tiles.
        assert_eq!(rule_split(false, 32, 64, 25_088, 288), 4);
        // Enough tiles already.
        assert_eq!(rule_split(false, 32, 1024, 4096, 4096), 1);
    }

    #[test]
    fn auto_picks_the_tiles_that_fill_the_device() {
        // Software adapters: big unless one small tile covers a side; never 32 x 32.
        assert_eq!(Auto.side(true, 128, 256), 128);
        assert_eq!(Auto.side(true, 65, 65), 128);
        assert_eq!(Auto.side(true, 128, 10), 64);
        assert_eq!(Auto.side(true, 64, 4096), 64);
        assert_eq!(Auto.side(true, 1, 1), 64);
        // GPUs: big only with at least 256 big tiles (2048 x 2048 outputs), 64 x 64 with at
        // least 64 such tiles, else 32 x 32.
        assert_eq!(Auto.side(false, 1024, 1024), 64);
        assert_eq!(Auto.side(false, 128, 784), 32);
        assert_eq!(Auto.side(false, 128, 256), 32);
        assert_eq!(Auto.side(false, 256, 784), 32);
        assert_eq!(Auto.side(false, 1024, 784), 64);
        assert_eq!(Auto.side(false, 2048, 2048), 128);
        assert_eq!(Auto.side(false, 4096, 4096), 128);
        assert_eq!(Auto.side(false, 60_000, 256), 128);
        // Forced.
        assert_eq!(Big.side(false, 1, 1), 128);
        assert_eq!(Big.side(true, 1, 1), 128);
        assert_eq!(Small.side(false, 4096, 4096), 64);
        assert_eq!(Small.side(true, 4096, 4096), 64);
        assert_eq!(Fine.side(false, 4096, 4096), 32);
        assert_eq!(Fine.side(true, 4096, 4096), 32);
    }
}
