//! Launcher of `shaders/matmul.wgsl`: tiled matrix products in the three forms the network uses
//! (A·B, Aᵀ·B, A·Bᵀ; Aᵀ·Bᵀ too), with an optional bias and an optional epilogue (an activation,
//! an activation's derivative, or the column sums of `a` beside the product), by one of three
//! kernels (32x32, 64x64 or 128x128 output tiles) picked per adapter and shape; and the last
//! layer's product with its softmax cross-entropy, in one workgroup.

use super::GpuBackend;
use super::activation::code;
use super::context::{KernelSpec, Shader};
use super::tune::{self, Tuner};
use crate::Result;
use crate::backend::Backend;
use crate::ops::{ColSum, Epilogue, Matmul, MatmulDims, Rules};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

static SHADER: Shader = Shader {
    name: "matmul.wgsl",
    source: concat!(
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
    let tile = match op.epilogue {
        // One 64-wide tile per row, so that each row's softmax sees all of it.
        Epilogue::SoftmaxCe(_) => TILE,
        _ => choose(g, op)?,
    };
    launch(g, op, tile)
}

/// The output tile side for `op`: forced by `WGTRAIN_MATMUL_TILES`, else tuned on this adapter
/// (timing every candidate the first time the shape runs; see `tune.rs`), else by the rule of
/// thumb where tuning is off. While kernel timing is on, a shape not tuned yet takes the rule
/// (the timer would count the candidates as the op).
fn choose(g: &mut GpuBackend, op: &Matmul) -> Result<usize> {
    let MatmulDims {
        m,
        k,
        n,
        trans_a,
        trans_b,
    } = op.dims;
    let software = g.ctx.info.device_type == wgpu::DeviceType::Cpu;
    let rule = g.matmul_tiles.side(software, m, n);
    let tuner = match &g.tuner {
        Some(t) if g.matmul_tiles == MatmulTiles::Auto => t.clone(),
        _ => return Ok(rule),
    };
    if let Some(&side) = g.chosen.get(&op.dims) {
        return Ok(side);
    }
    let key = tune::shape_key(trans_a, trans_b, m, k, n);
    if let Some(side) = lock(&tuner).get(&key) {
        g.chosen.insert(op.dims, side);
        return Ok(side);
    }
    if g.rec.timer.is_some() {
        return Ok(rule);
    }
    // What is recorded so far runs first, untimed.
    g.sync()?;
    let mut us = BTreeMap::new();
    let mut best = (f64::INFINITY, rule);
    let timed = |g: &mut GpuBackend, side: usize, times: usize| -> Result<f64> {
        let started = Instant::now();
        for _ in 0..times {
            launch(g, op, side)?;
        }
        g.sync()?;
        Ok(started.elapsed().as_secs_f64() * 1e6 / times as f64)
    };
    for side in tune::CANDIDATES {
        // Compiles the pipeline and warms the caches.
        timed(g, side, 1)?;
        // One dispatch; a short one again, several in one submission, for a steadier mean.
        let mut t = timed(g, side, 1)?;
        if t < tune::ONE_IS_ENOUGH_US {
            t = timed(g, side, tune::REPEATS)?;
        }
        us.insert(side.to_string(), t);
        if t < best.0 {
            best = (t, side);
        }
    }
    lock(&tuner).insert(key, tune::Choice { tiles: best.1, us });
    g.chosen.insert(op.dims, best.1);
    Ok(best.1)
}

fn lock(t: &Mutex<Tuner>) -> std::sync::MutexGuard<'_, Tuner> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records `op` with the kernel of `tile` x `tile` output tiles (64 for a loss epilogue).
fn launch(g: &mut GpuBackend, op: &Matmul, tile: usize) -> Result<()> {
    let Matmul {
        a,
        b,
        bias,
        c,
        dims: d,
        epilogue,
    } = *op;
    let MatmulDims { m, k, n, .. } = d;
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
    let spec = match (d.trans_a, d.trans_b, tile) {
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
    g.record(
        spec,
        &[Some(a), Some(b), bias, Some(c), y, sums],
        &dims,
        groups,
        || op.cost(),
    )
}

#[cfg(test)]
mod tests {
    use super::MatmulTiles::{Auto, Big, Fine, Small};

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
