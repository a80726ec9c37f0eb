//! Launcher of `shaders/reduce.wgsl`: column sums (bias gradients), the metrics accumulator,
//! and fill.

use super::GpuBackend;
use super::WG;
use super::context::{KernelSpec, Shader};
use crate::Result;
use crate::ops::reduce::{ACC_LEN, STATS_PER_ROW};
use crate::ops::{AccumulateStats, ColSum, Fill, Rules, SumSquares};

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
static SUM_SQUARES: KernelSpec = KernelSpec {
    label: "sum_squares",
    shader: &SHADER,
    entry: "sum_squares",
    constants: &[],
    storage: &[(1, true), (2, false)],
};

/// Every kernel this launcher records (the tests check each against WebGPU's limits).
pub(super) static KERNELS: &[&KernelSpec] = &[&COL_SUM, &ACCUMULATE_STATS, &FILL, &SUM_SQUARES];

const COLS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    rows: u32,
    cols: u32,
    n: u32,
    src_off: u32,
    dst_off: u32,
    value: f32,
}

// a: (rows, cols) -> out: (cols,)
pub(super) fn col_sum(g: &mut GpuBackend, op: &ColSum) -> Result<()> {
    let ColSum { a, rows, cols, out } = *op;
    if cols == 0 {
        return Ok(());
    }
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
    g.record(&COL_SUM, &[Some(a), Some(out)], &dims, groups, || op.cost())
}

// stats: (rows, 2) -> acc: (2,) accumulated
pub(super) fn accumulate_stats(g: &mut GpuBackend, op: &AccumulateStats) -> Result<()> {
    let dims = Dims {
        rows: op.rows as u32,
        cols: STATS_PER_ROW as u32,
        n: ACC_LEN as u32,
        src_off: op.stats.offset,
        dst_off: op.acc.offset,
        value: 0.0,
    };
    // One workgroup strides over all rows.
    g.record(
        &ACCUMULATE_STATS,
        &[Some(op.stats), Some(op.acc)],
        &dims,
        [1, 1, 1],
        || op.cost(),
    )
}

// x: (n,) -> out: (1,)
pub(super) fn sum_squares(g: &mut GpuBackend, op: &SumSquares) -> Result<()> {
    let dims = Dims {
        rows: op.x.len,
        src_off: op.x.offset,
        dst_off: op.out.offset,
        ..Dims::default()
    };
    // One workgroup strides over all elements.
    g.record(
        &SUM_SQUARES,
        &[Some(op.x), Some(op.out)],
        &dims,
        [1, 1, 1],
        || op.cost(),
    )
}

// dst: (n,)
pub(super) fn fill(g: &mut GpuBackend, op: &Fill) -> Result<()> {
    let n = op.dst.len();
    if n == 0 {
        return Ok(());
    }
    let dims = Dims {
        n: n as u32,
        dst_off: op.dst.offset,
        value: op.value,
        ..Dims::default()
    };
    let groups = g.grid(n, WG)?;
    g.record(&FILL, &[Some(op.dst)], &dims, groups, || op.cost())
}
