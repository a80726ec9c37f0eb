//! Launcher of `shaders/reduce.wgsl`: column sums (bias gradients), the metrics accumulator,
//! and fill.

use super::WG;
use super::context::{KernelSpec, Shader};
use super::{GpuBackend, check_len, distinct, expect_dtype};
use crate::Result;
use crate::backend::{ACC_LEN, Buf, DType, STATS_PER_ROW, op_name};

static SHADER: Shader = Shader {
    name: "reduce.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/reduce.wgsl")
    ),
};

static COL_SUM: KernelSpec = KernelSpec {
    label: "col_sum",
    shader: &SHADER,
    entry: "col_sum",
    constants: &[],
    storage: &[(1, true), (2, false)],
};
static ACCUMULATE_STATS: KernelSpec = KernelSpec {
    label: "accumulate_stats",
    shader: &SHADER,
    entry: "accumulate_stats",
    constants: &[],
    storage: &[(1, true), (2, false)],
};
static FILL: KernelSpec = KernelSpec {
    label: "fill",
    shader: &SHADER,
    entry: "fill",
    constants: &[],
    storage: &[(2, false)],
};

/// Columns per col_sum workgroup, as in the shader.
const COLS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    rows: u32,
    cols: u32,
    n: u32,
    src_off: u32,
    dst_off: u32,
    value: f32,
}

// a: (rows, cols) -> out: (cols,)
pub(super) fn col_sum(
    g: &mut GpuBackend,
    a: Buf,
    rows: usize,
    cols: usize,
    out: Buf,
) -> Result<()> {
    check_len("col_sum input", a, rows * cols)?;
    check_len("col_sum output", out, cols)?;
    expect_dtype("col_sum input", a, DType::F32);
    expect_dtype("col_sum output", out, DType::F32);
    distinct(out, &[a]);
    let dims = Dims {
        rows: rows as u32,
        cols: cols as u32,
        n: cols as u32,
        src_off: a.offset,
        dst_off: out.offset,
        value: 0.0,
    };
    // The kernel loops over column blocks beyond the grid.
    let groups = [g.tiles(cols.div_ceil(COLS)), 1, 1];
    let name = || op_name::col_sum(rows, cols);
    g.record(&COL_SUM, &[Some(a), Some(out)], &dims, groups, name)
}

// stats: (rows, 2) -> acc: (3,) accumulated
pub(super) fn accumulate_stats(
    g: &mut GpuBackend,
    stats: Buf,
    rows: usize,
    acc: Buf,
) -> Result<()> {
    check_len("stats", stats, rows * STATS_PER_ROW)?;
    check_len("accumulator", acc, ACC_LEN)?;
    expect_dtype("stats", stats, DType::F32);
    expect_dtype("accumulator", acc, DType::F32);
    distinct(acc, &[stats]);
    let dims = Dims {
        rows: rows as u32,
        cols: STATS_PER_ROW as u32,
        n: ACC_LEN as u32,
        src_off: stats.offset,
        dst_off: acc.offset,
        value: 0.0,
    };
    // One workgroup strides over all rows.
    g.record(
        &ACCUMULATE_STATS,
        &[Some(stats), Some(acc)],
        &dims,
        [1, 1, 1],
        || op_name::accumulate_stats(rows),
    )
}

// dst: (n,)
pub(super) fn fill(g: &mut GpuBackend, dst: Buf, value: f32) -> Result<()> {
    expect_dtype("fill destination", dst, DType::F32);
    let n = dst.len();
    if n == 0 {
        return Ok(());
    }
    let dims = Dims {
        rows: 0,
        cols: 0,
        n: n as u32,
        src_off: 0,
        dst_off: dst.offset,
        value,
    };
    let groups = g.grid(n, WG)?;
    g.record(&FILL, &[Some(dst)], &dims, groups, || op_name::fill(n))
}
