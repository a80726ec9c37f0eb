//! Launcher of `shaders/matmul.wgsl`: tiled matrix products in the three forms the network uses
//! (A·B, Aᵀ·B, A·Bᵀ; Aᵀ·Bᵀ too), with an optional bias and an optional activation epilogue
//! (forward, or the derivative on the way back).

use super::activation::code;
use super::context::{KernelSpec, Shader};
use super::{GpuBackend, check_len, distinct, expect_dtype};
use crate::Result;
use crate::backend::{Buf, DType, MatmulDims, op_name};
use crate::model::Activation;

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

/// What the kernel does to each output after the product and the bias.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Epilogue {
    None,
    /// `c = f(c)`, for an elementwise `f`.
    Act(Activation),
    /// `c = c ⊙ f'(x)`, read through the activation's output `y`, (m, n).
    ActGrad(Activation, Buf),
    /// Also `sums[i] = Σ_k op(a)[i, k]`, (m,).
    Sums(Buf),
}

const fn spec(label: &'static str, constants: &'static [(&'static str, f64)]) -> KernelSpec {
    KernelSpec {
        label,
        shader: &SHADER,
        entry: "matmul",
        constants,
        storage: STORAGE,
    }
}

static NN: KernelSpec = spec("matmul", &[("TRANS_A", 0.0), ("TRANS_B", 0.0)]);
static NT: KernelSpec = spec("matmul_bt", &[("TRANS_A", 0.0), ("TRANS_B", 1.0)]);
static TN: KernelSpec = spec("matmul_at", &[("TRANS_A", 1.0), ("TRANS_B", 0.0)]);
static TT: KernelSpec = spec("matmul_at_bt", &[("TRANS_A", 1.0), ("TRANS_B", 1.0)]);

/// Output tile of one workgroup (both dimensions), as in the shader.
const TILE: usize = 64;

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

// a: (m, k) | (k, m)ᵀ, b: (k, n) | (n, k)ᵀ, bias: (n,), y: (m, n) -> c: (m, n)
pub(super) fn matmul(
    g: &mut GpuBackend,
    a: Buf,
    b: Buf,
    bias: Option<Buf>,
    c: Buf,
    d: MatmulDims,
    epilogue: Epilogue,
) -> Result<()> {
    let MatmulDims { m, k, n, .. } = d;
    check_len("matmul a", a, m * k)?;
    check_len("matmul b", b, k * n)?;
    check_len("matmul c", c, m * n)?;
    for (what, x) in [("matmul a", a), ("matmul b", b), ("matmul c", c)] {
        expect_dtype(what, x, DType::F32);
    }
    distinct(c, &[a, b]);
    if let Some(bias) = bias {
        check_len("matmul bias", bias, n)?;
        expect_dtype("matmul bias", bias, DType::F32);
        distinct(c, &[bias]);
    }
    let (epi, act, y, sums) = match epilogue {
        Epilogue::None => (0, 0, None, None),
        Epilogue::Act(act) => (1, code(act), None, None),
        Epilogue::ActGrad(act, y) => {
            check_len("matmul activation output", y, m * n)?;
            expect_dtype("matmul activation output", y, DType::F32);
            distinct(c, &[y]);
            (2, code(act), Some(y), None)
        }
        Epilogue::Sums(sums) => {
            check_len("matmul row sums", sums, m)?;
            expect_dtype("matmul row sums", sums, DType::F32);
            assert!(
                d.trans_a,
                "row sums of op(a) are column sums of a stored (k, m)"
            );
            distinct(sums, &[a, b]);
            assert!(
                sums.id != c.id
                    || sums.offset >= c.offset + c.len
                    || c.offset >= sums.offset + sums.len,
                "matmul row sums overlap the product"
            );
            (3, 0, None, Some(sums))
        }
    };
    if m == 0 || n == 0 {
        if let (Some(sums), true) = (sums, m > 0) {
            // No product to ride on.
            return super::reduce::col_sum(g, a, k, m, sums);
        }
        return Ok(());
    }
    let spec = match (d.trans_a, d.trans_b) {
        (false, false) => &NN,
        (false, true) => &NT,
        (true, false) => &TN,
        (true, true) => &TT,
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
    };
    // The kernel loops over tiles beyond the grid, so any m and n fit.
    let groups = [g.tiles(n.div_ceil(TILE)), g.tiles(m.div_ceil(TILE)), 1];
    let name = || match epilogue {
        Epilogue::None => op_name::matmul(&d, bias.is_some()),
        Epilogue::Act(act) => op_name::matmul_act(&d, bias.is_some(), act),
        Epilogue::ActGrad(act, _) => op_name::matmul_act_grad(&d, act),
        Epilogue::Sums(_) => op_name::matmul_col_sum(&d),
    };
    g.record(
        spec,
        &[Some(a), Some(b), bias, Some(c), y, sums],
        &dims,
        groups,
        name,
    )
}
