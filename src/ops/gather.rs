//! Batch assembly: rows of a resident data set picked by the epoch's row order.

use super::{Access, OpLabel, Rules, distinct, need, words};
use crate::Result;
use crate::backend::cpu::CpuMem;
use crate::backend::{Buf, DType};
use crate::rng::hash3;
use rayon::prelude::*;

/// `dst[r, :] = a · src[idx[start + r], :] + b` for `r < rows`, and, when `labels` is given,
/// `labels.dst[r] = labels.src[idx[start + r]]` in the same pass. With `shift`, each row is an
/// image moved by its own random offset (see [`Shift`]).
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
    /// Random translation of each row's image (training-time augmentation).
    pub shift: Option<Shift>,
}

/// Random translation of image rows: row `r` of the batch is its image moved `dy` pixels down
/// and `dx` right, both in `[-max, max]`, drawn from `h = hash3(seed, stream, r)` as
/// `dy = h % n - max`, `dx = (h / n) % n - max` with `n = 2·max + 1`; pixels moved in from
/// outside the image are the value of a 0 pixel (`b`). Rows are `(height, width, channels)`,
/// channels last: `cols = height · width · channels`. Both backends draw the same offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shift {
    /// Image rows.
    pub height: usize,
    /// Image columns.
    pub width: usize,
    /// Channels per pixel.
    pub channels: usize,
    /// The largest move, in pixels, along each axis; smaller than the height and the width.
    pub max: u32,
    /// The run's augmentation seed.
    pub seed: u32,
    /// Which offsets to draw: the trainer passes one stream per step.
    pub stream: u32,
}

impl Shift {
    /// Row `r`'s move `(dy, dx)`.
    pub fn offsets(&self, r: usize) -> (i64, i64) {
        let n = 2 * self.max + 1;
        let h = hash3(self.seed, self.stream, r as u32);
        let m = i64::from(self.max);
        (i64::from(h % n) - m, i64::from((h / n) % n) - m)
    }

    /// For each destination pixel (row-major `(y, x)`) of row `r`, the source pixel it copies,
    /// or `None` where the move brings in pixels from outside the image.
    fn sources(&self, r: usize) -> impl Iterator<Item = Option<usize>> + '_ {
        let (dy, dx) = self.offsets(r);
        let (h, w) = (self.height as i64, self.width as i64);
        (0..h).flat_map(move |y| {
            (0..w).map(move |x| {
                let (sy, sx) = (y - dy, x - dx);
                ((0..h).contains(&sy) && (0..w).contains(&sx)).then(|| (sy * w + sx) as usize)
            })
        })
    }
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
        if let Some(s) = self.shift {
            if s.height * s.width * s.channels != self.cols {
                return Err(crate::Error::Shape(format!(
                    "shifted images of {}x{}x{} in rows of {} features",
                    s.height, s.width, s.channels, self.cols
                )));
            }
            if s.max as usize >= s.height.min(s.width) {
                return Err(crate::Error::Shape(format!(
                    "a shift of up to {} pixels of {}x{} images",
                    s.max, s.height, s.width
                )));
            }
        }
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
        if let Some(s) = self.shift {
            name += &format!(" shifted {}", s.max);
        }
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
                gather(out, idx, cols, self.shift, (a, b), |p| v[p] as f32);
            } else {
                let v = m.f32s(self.src);
                gather(out, idx, cols, self.shift, (a, b), |p| v[p]);
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

/// Fills each `cols`-wide row `r` of `out` with `a · src(p) + b` of the source elements `p` of
/// data-set row `idx[r]`, moved by `shift` where given (`b`, a 0 pixel, fills what moves in), in
/// parallel for batches large enough to pay for it.
fn gather(
    out: &mut [f32],
    idx: &[u32],
    cols: usize,
    shift: Option<Shift>,
    (a, b): (f32, f32),
    src: impl Fn(usize) -> f32 + Sync,
) {
    if cols == 0 {
        return;
    }
    let work = |(r, (o, &i)): (usize, (&mut [f32], &u32))| {
        let s = i as usize * cols;
        match shift {
            None => o
                .iter_mut()
                .enumerate()
                .for_each(|(c, o)| *o = a * src(s + c) + b),
            Some(sh) => {
                let ch = sh.channels;
                for (pixel, from) in o.chunks_exact_mut(ch).zip(sh.sources(r)) {
                    for (c, o) in pixel.iter_mut().enumerate() {
                        *o = from.map_or(b, |p| a * src(s + p * ch + c) + b);
                    }
                }
            }
        }
    };
    if out.len() >= 1 << 16 {
        out.par_chunks_exact_mut(cols)
            .zip(idx)
            .enumerate()
            .for_each(work);
    } else {
        out.chunks_exact_mut(cols)
            .zip(idx)
            .enumerate()
            .for_each(work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::backend::cpu::CpuBackend;

    /// Gathers rows `order` of `pixels` (4x3 images, 2 channels), moved by `shift`.
    fn gathered(pixels: &[u8], order: &[u32], shift: Shift) -> Vec<f32> {
        let mut b = CpuBackend::new();
        let cols = 4 * 3 * 2;
        let src = b.alloc(DType::U8, pixels.len(), "pixels").unwrap();
        b.write_u8(src, pixels).unwrap();
        let idx = b.alloc(DType::U32, order.len(), "order").unwrap();
        b.write_u32(idx, order).unwrap();
        let dst = b.alloc(DType::F32, order.len() * cols, "batch").unwrap();
        let op = Gather {
            src,
            idx,
            start: 0,
            rows: order.len(),
            cols,
            affine: (2.0, 0.5),
            dst,
            labels: None,
            shift: Some(shift),
        };
        super::super::run(&mut b, op).unwrap();
        b.read_f32(dst).unwrap()
    }

    #[test]
    fn shifted_rows_are_their_images_moved_by_their_offsets() {
        let (h, w, c) = (4usize, 3usize, 2usize);
        let cols = h * w * c;
        let pixels: Vec<u8> = (0..2 * cols).map(|i| (i % 251) as u8 + 1).collect();
        let shift = Shift {
            height: h,
            width: w,
            channels: c,
            max: 1,
            seed: 9,
            stream: 3,
        };
        let order = [1u32, 0, 1, 1, 0, 0, 1, 0];
        let out = gathered(&pixels, &order, shift);
        let mut moves = std::collections::HashSet::new();
        for (r, &i) in order.iter().enumerate() {
            let (dy, dx) = shift.offsets(r);
            assert!(dy.abs() <= 1 && dx.abs() <= 1, "row {r} moved by {dy},{dx}");
            moves.insert((dy, dx));
            for y in 0..h as i64 {
                for x in 0..w as i64 {
                    for ch in 0..c {
                        let (sy, sx) = (y - dy, x - dx);
                        let want = if (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx) {
                            let p = pixels
                                [i as usize * cols + ((sy * w as i64 + sx) as usize) * c + ch];
                            2.0 * p as f32 + 0.5
                        } else {
                            0.5
                        };
                        let got = out[r * cols + ((y * w as i64 + x) as usize) * c + ch];
                        assert_eq!(got, want, "row {r} pixel ({y}, {x}) channel {ch}");
                    }
                }
            }
        }
        // Eight rows draw several different moves, and another stream draws other ones.
        assert!(moves.len() > 2, "{moves:?}");
        let other = gathered(&pixels, &order, Shift { stream: 4, ..shift });
        assert_ne!(out, other);
    }
}
