//! Batch assembly: rows of a resident data set picked by the epoch's row order.

use super::{Access, OpLabel, Rules, distinct, need, words};
use crate::Result;
use crate::backend::cpu::CpuMem;
use crate::backend::{Buf, DType};
use rayon::prelude::*;

/// `dst[r, :] = a · src[idx[start + r], :] + b` for `r < rows`, and, when `labels` is given,
/// `labels.dst[r] = labels.src[idx[start + r]]` in the same pass.
/// src: (_, cols) U8 or F32; idx: (start + rows,) U32 -> dst: (rows, cols) F32.
#[derive(Clone, Debug, PartialEq)]
pub struct Gather {
    /// The resident data set's rows, (_, cols): bytes (images) or floats.
    pub src: Buf,
    /// The epoch's row order, (start + rows,) at least: data-set row indices.
    pub idx: Buf,
    /// The first entry of `idx` used: the batch's place in the epoch's order.
    pub start: usize,
    /// Rows of the batch to assemble.
    pub rows: usize,
    /// Features per row, in `src` and `dst` alike.
    pub cols: usize,
    /// `(a, b)` of `dst = a · src + b` (pixel scaling).
    pub affine: (f32, f32),
    /// The batch, (rows, cols).
    pub dst: Buf,
    /// The class labels gathered beside the rows (fused).
    pub labels: Option<LabelPair>,
}

/// Where fused labels come from and go: src: (_,) U32 -> dst: (rows,) U32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LabelPair {
    /// The resident data set's labels, (_,).
    pub src: Buf,
    /// The batch's labels, (rows,).
    pub dst: Buf,
}

/// `dst[r] = src[idx[start + r]]` for `r < rows`: class labels.
/// src: (_,) U32; idx: (start + rows,) U32 -> dst: (rows,) U32.
#[derive(Clone, Debug, PartialEq)]
pub struct GatherLabels {
    /// The resident data set's labels, (_,).
    pub src: Buf,
    /// The epoch's row order, (start + rows,) at least: data-set row indices.
    pub idx: Buf,
    /// The first entry of `idx` used: the batch's place in the epoch's order.
    pub start: usize,
    /// Rows of the batch: labels to gather.
    pub rows: usize,
    /// The batch's labels, (rows,).
    pub dst: Buf,
}

fn check_labels(src: Buf, idx: Buf, dst: Buf, rows: usize) -> Result<()> {
    need("labels", src, 0, DType::U32)?;
    need("label destination", dst, rows, DType::U32)?;
    distinct("label destination", dst, &[src, idx])
}

impl Rules for Gather {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        let mut v = vec![
            (&mut self.src, Access::Read),
            (&mut self.idx, Access::Read),
            (&mut self.dst, Access::Write),
        ];
        if let Some(l) = &mut self.labels {
            v.push((&mut l.src, Access::Read));
            v.push((&mut l.dst, Access::Write));
        }
        v
    }

    fn check(&self) -> Result<()> {
        if !matches!(self.src.dtype, DType::U8 | DType::F32) {
            return Err(crate::Error::Shape(format!(
                "gather source is {:?}, needs U8 or F32",
                self.src.dtype
            )));
        }
        need("gather index", self.idx, self.start + self.rows, DType::U32)?;
        need(
            "gather destination",
            self.dst,
            self.rows * self.cols,
            DType::F32,
        )?;
        distinct("gather destination", self.dst, &[self.src, self.idx])?;
        if let Some(l) = self.labels {
            check_labels(l.src, self.idx, l.dst, self.rows)?;
            distinct("label destination", l.dst, &[self.src, self.dst])?;
        }
        Ok(())
    }

    /// The rows read (bytes or floats), the batch written, the index read; labels read and
    /// written where fused.
    fn cost(&self) -> OpLabel {
        let (rows, cols) = (self.rows, self.cols);
        let src = if self.src.dtype == DType::U8 {
            1.0
        } else {
            4.0
        };
        let n = rows * cols;
        let mut bytes = src * n as f64 + words(n) + words(rows);
        let mut name = format!("gather rows {rows}x{cols}");
        if self.labels.is_some() {
            bytes += words(2 * rows);
            name += " +labels";
        }
        OpLabel::new(name, 0.0, bytes)
    }

    // src: (_, cols) U8 or F32, idx: (start + rows,) -> dst: (rows, cols)
    fn cpu(&self, m: &mut CpuMem) {
        let (rows, cols) = (self.rows, self.cols);
        let (a, b) = self.affine;
        let idx = self.idx.slice(self.start, rows);
        m.with_dst(self.dst, |m, out| {
            let idx = m.u32s(idx);
            let out = &mut out[..rows * cols];
            // Rows are independent and each is a cache-missing read from the resident data
            // set: spread them over the cores.
            if self.src.dtype == DType::U8 {
                let v = m.u8s(self.src);
                gather(out, idx, cols, |s, o| {
                    o.iter_mut()
                        .zip(&v[s..s + cols])
                        .for_each(|(o, &p)| *o = a * p as f32 + b)
                });
            } else {
                let v = m.f32s(self.src);
                gather(out, idx, cols, |s, o| {
                    o.iter_mut()
                        .zip(&v[s..s + cols])
                        .for_each(|(o, &p)| *o = a * p + b)
                });
            }
        });
        if let Some(l) = self.labels {
            gather_labels(m, l.src, idx, l.dst);
        }
    }
}

impl Rules for GatherLabels {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![
            (&mut self.src, Access::Read),
            (&mut self.idx, Access::Read),
            (&mut self.dst, Access::Write),
        ]
    }

    fn check(&self) -> Result<()> {
        need("gather index", self.idx, self.start + self.rows, DType::U32)?;
        check_labels(self.src, self.idx, self.dst, self.rows)
    }

    /// The index and the labels read, the labels written.
    fn cost(&self) -> OpLabel {
        OpLabel::new("gather labels".into(), 0.0, words(3 * self.rows))
    }

    // src: (_,), idx: (start + rows,) -> dst: (rows,)
    fn cpu(&self, m: &mut CpuMem) {
        gather_labels(m, self.src, self.idx.slice(self.start, self.rows), self.dst);
    }
}

/// `dst[r] = src[idx[r]]` for every entry of the view `idx`.
fn gather_labels(m: &mut CpuMem, src: Buf, idx: Buf, dst: Buf) {
    let out: Vec<u32> = {
        let (s, i) = (m.u32s(src), m.u32s(idx));
        i.iter().map(|&k| s[k as usize]).collect()
    };
    m.u32s_mut(dst)[..out.len()].copy_from_slice(&out);
}

/// Fills each `cols`-wide row `r` of `out` with `fill(idx[r] * cols, row)`, in parallel for
/// batches large enough to pay for it.
fn gather(out: &mut [f32], idx: &[u32], cols: usize, fill: impl Fn(usize, &mut [f32]) + Sync) {
    if cols == 0 {
        return;
    }
    let work = |(o, &i): (&mut [f32], &u32)| fill(i as usize * cols, o);
    if out.len() >= 1 << 16 {
        out.par_chunks_exact_mut(cols).zip(idx).for_each(work);
    } else {
        out.chunks_exact_mut(cols).zip(idx).for_each(work);
    }
}
