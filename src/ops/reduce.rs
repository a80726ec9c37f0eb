//! Reductions and fills: column sums (bias gradients), the metrics accumulator, the sum of
//! squares (gradient clipping's global norm), and fill.

use super::{Access, OpLabel, Rules, distinct, need, words};
use crate::Result;
use crate::backend::cpu::CpuMem;
use crate::backend::{Buf, DType};

/// What a loss op writes per row: `[loss, metric]`, where the metric is 1/0 for a correct
/// classification or the row's mean absolute error for regression.
pub const STATS_PER_ROW: usize = 2;

/// The slots of a metrics accumulator: the sum of row losses and the sum of row metrics. (The
/// rows are counted on the host, in integers.)
pub const ACC_LEN: usize = 2;

/// `dst = value` for every element of the view. dst: (n,)
#[derive(Clone, Debug, PartialEq)]
pub struct Fill {
    /// The view to fill, every element of it.
    pub dst: Buf,
    /// The value written to each element.
    pub value: f32,
}

/// Column sums: `out[j] = Σ_r a[r, j]` (bias gradients). a: (rows, cols) -> out: (cols,)
#[derive(Clone, Debug, PartialEq)]
pub struct ColSum {
    /// The matrix summed, (rows, cols).
    pub a: Buf,
    /// Rows of `a`, summed over.
    pub rows: usize,
    /// Columns of `a`: the length of `out`.
    pub cols: usize,
    /// The column sums, (cols,).
    pub out: Buf,
}

/// `acc += (Σ loss, Σ metric)` over the rows of a loss's statistics.
/// stats: (rows, 2); acc: (2,)
#[derive(Clone, Debug, PartialEq)]
pub struct AccumulateStats {
    /// A loss's per-row statistics, (rows, 2): `[loss, metric]` per row.
    pub stats: Buf,
    /// Rows of `stats` to add.
    pub rows: usize,
    /// The metrics accumulator, (2,): the sum of row losses, then the sum of row metrics.
    pub acc: Buf,
}

/// `out[0] = Σ x²` over the whole view (the squared global norm of the gradients).
/// x: (n,) -> out: (1,)
#[derive(Clone, Debug, PartialEq)]
pub struct SumSquares {
    /// The vector whose squares are summed, (n,): all the gradients, in the flat parameter layout.
    pub x: Buf,
    /// Where the sum is written, (1,).
    pub out: Buf,
}

impl Rules for Fill {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![(&mut self.dst, Access::Write)]
    }

    fn check(&self) -> Result<()> {
        need("fill destination", self.dst, 0, DType::F32)
    }

    fn cost(&self) -> OpLabel {
        let n = self.dst.len();
        OpLabel::new(format!("fill {n}"), 0.0, words(n))
    }

    fn cpu(&self, m: &mut CpuMem) {
        m.f32s_mut(self.dst).fill(self.value);
    }
}

impl Rules for ColSum {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![(&mut self.a, Access::Read), (&mut self.out, Access::Write)]
    }

    fn check(&self) -> Result<()> {
        need("col_sum input", self.a, self.rows * self.cols, DType::F32)?;
        need("col_sum output", self.out, self.cols, DType::F32)?;
        distinct("col_sum output", self.out, &[self.a])
    }

    fn cost(&self) -> OpLabel {
        let (r, c) = (self.rows, self.cols);
        OpLabel::new(format!("col_sum {r}x{c}"), (r * c) as f64, words(r * c + c))
    }

    // a: (rows, cols) -> out: (cols,)
    fn cpu(&self, m: &mut CpuMem) {
        let (rows, cols) = (self.rows, self.cols);
        m.with_dst(self.out, |m, out| {
            col_sums(&m.f32s(self.a)[..rows * cols], rows, cols, &mut out[..cols])
        });
    }
}

/// `out[j] = Σ_r a[r, j]`, rows in order. a: (rows, cols) -> out: (cols,)
pub(crate) fn col_sums(a: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    out.fill(0.0);
    if cols == 0 {
        return;
    }
    for row in a[..rows * cols].chunks_exact(cols) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

impl Rules for AccumulateStats {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![
            (&mut self.stats, Access::Read),
            (&mut self.acc, Access::ReadWrite),
        ]
    }

    fn check(&self) -> Result<()> {
        need("stats", self.stats, self.rows * STATS_PER_ROW, DType::F32)?;
        need("accumulator", self.acc, ACC_LEN, DType::F32)?;
        distinct("accumulator", self.acc, &[self.stats])
    }

    fn cost(&self) -> OpLabel {
        OpLabel::new(
            "accumulate stats".into(),
            0.0,
            words(STATS_PER_ROW * self.rows),
        )
    }

    // stats: (rows, 2) -> acc: (2,) accumulated
    fn cpu(&self, m: &mut CpuMem) {
        m.with_dst(self.acc, |m, acc| {
            let stats = &m.f32s(self.stats)[..self.rows * STATS_PER_ROW];
            add_stats(stats, &mut acc[..ACC_LEN]);
        });
    }
}

/// `acc += (Σ loss, Σ metric)` over per-row `[loss, metric]` pairs, rows in order.
pub(crate) fn add_stats(stats: &[f32], acc: &mut [f32]) {
    let (mut l, mut m) = (0.0f32, 0.0f32);
    for s in stats.chunks_exact(STATS_PER_ROW) {
        l += s[0];
        m += s[1];
    }
    acc[0] += l;
    acc[1] += m;
}

impl Rules for SumSquares {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![(&mut self.x, Access::Read), (&mut self.out, Access::Write)]
    }

    fn check(&self) -> Result<()> {
        need("sum of squares input", self.x, 0, DType::F32)?;
        need("sum of squares output", self.out, 1, DType::F32)?;
        distinct("sum of squares output", self.out, &[self.x])
    }

    fn cost(&self) -> OpLabel {
        let n = self.x.len();
        OpLabel::new(format!("sum of squares {n}"), 2.0 * n as f64, words(n))
    }

    // x: (n,) -> out: (1,)
    fn cpu(&self, m: &mut CpuMem) {
        let s: f64 = m
            .f32s(self.x)
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum();
        m.f32s_mut(self.out)[0] = s as f32;
    }
}
