//! Launcher of `shaders/matmul.wgsl`: tiled matrix products in the three forms the network uses
//! (A·B, Aᵀ·B, A·Bᵀ; Aᵀ·Bᵀ too), with an optional bias and an optional epilogue (an activation,
//! an activation's derivative, or the column sums of `a` beside the product), by one of two
//! kernels (64x64 or 128x128 output tiles) picked per adapter and shape.

use super::GpuBackend;
use super::activation::code;
use super::context::{KernelSpec, Shader};
use crate::Result;
use crate::ops::{ColSum, Epilogue, Matmul, MatmulDims, Rules};

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

const FORM_NN: &[(&str, f64)] = &[("TRANS_A", 0.0), ("TRANS_B", 0.0)];
const FORM_NT: &[(&str, f64)] = &[("TRANS_A", 0.0), ("TRANS_B", 1.0)];
const FORM_TN: &[(&str, f64)] = &[("TRANS_A", 1.0), ("TRANS_B", 0.0)];
const FORM_TT: &[(&str, f64)] = &[("TRANS_A", 1.0), ("TRANS_B", 1.0)];

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

/// Output tile sides of the two kernels, as in the shader.
const TILE: usize = 64;
const BIG_TILE: usize = 128;

/// Which of the two kernels products use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatmulTiles {
    /// Per adapter and shape. On a software adapter (lavapipe and the like, which run
    /// workgroups on a few CPU threads), 128 x 128 unless the product is no more than one
    /// small tile wide or tall: measured there 1.6-2x faster from 128x128x256 to 2048³, 2x
    /// slower on 128x128x10. On a GPU, 128 x 128 where that still makes `BIG_TILES_MIN` (256)
    /// tiles or more, else 64 x 64.
    #[default]
    Auto,
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

impl MatmulTiles {
    /// `WGTRAIN_MATMUL_TILES=auto|64|128`, for measuring the kernels against each other with
    /// `wgtrain bench` on a new GPU; unset is `Auto`, and so is anything else, with a warning.
    pub fn from_env() -> MatmulTiles {
        match std::env::var("WGTRAIN_MATMUL_TILES").as_deref() {
            Ok("64") => MatmulTiles::Small,
            Ok("128") => MatmulTiles::Big,
            Ok("auto") | Err(_) => MatmulTiles::Auto,
            Ok(other) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    eprintln!(
                        "warning: WGTRAIN_MATMUL_TILES={other:?} is not auto, 64 or 128; using auto"
                    )
                });
                MatmulTiles::Auto
            }
        }
    }

    fn big(self, software: bool, m: usize, n: usize) -> bool {
        match self {
            MatmulTiles::Auto if software => m > TILE && n > TILE,
            MatmulTiles::Auto => m.div_ceil(BIG_TILE) * n.div_ceil(BIG_TILE) >= BIG_TILES_MIN,
            MatmulTiles::Small => false,
            MatmulTiles::Big => true,
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
}

// a: (m, k) | (k, m)ᵀ, b: (k, n) | (n, k)ᵀ, bias: (n,), y: (m, n) -> c: (m, n), sums: (m,)
pub(super) fn matmul(g: &mut GpuBackend, op: &Matmul) -> Result<()> {
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
    };
    if m == 0 || n == 0 {
        if let (Some(sums), true) = (sums, m > 0) {
            // No product to ride on.
            let col_sum = ColSum {
                a,
                rows: k,
                cols: m,
                out: sums,
            };
            return super::reduce::col_sum(g, &col_sum);
        }
        return Ok(());
    }
    let software = g.ctx.info.device_type == wgpu::DeviceType::Cpu;
    let big = g.matmul_tiles.big(software, m, n);
    let spec = match (d.trans_a, d.trans_b, big) {
        (false, false, false) => &NN,
        (false, true, false) => &NT,
        (true, false, false) => &TN,
        (true, true, false) => &TT,
        (false, false, true) => &NN_BIG,
        (false, true, true) => &NT_BIG,
        (true, false, true) => &TN_BIG,
        (true, true, true) => &TT_BIG,
    };
    let tile = if big { BIG_TILE } else { TILE };
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
    };
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
    use super::MatmulTiles::{Auto, Big, Small};

    #[test]
    fn auto_picks_big_tiles_where_they_pay() {
        // Software adapters: big unless one small tile covers a side.
        assert!(Auto.big(true, 128, 256));
        assert!(Auto.big(true, 65, 65));
        assert!(!Auto.big(true, 128, 10));
        assert!(!Auto.big(true, 64, 4096));
        // GPUs: big only with at least 256 big tiles (2048 x 2048 outputs).
        assert!(!Auto.big(false, 1024, 1024));
        assert!(!Auto.big(false, 128, 784));
        assert!(Auto.big(false, 2048, 2048));
        assert!(Auto.big(false, 4096, 4096));
        assert!(Auto.big(false, 60_000, 256));
        // Forced either way.
        assert!(Big.big(false, 1, 1) && Big.big(true, 1, 1));
        assert!(!Small.big(false, 4096, 4096) && !Small.big(true, 4096, 4096));
    }
}
