//! Pooling over channels-last (NHWC) images: max (backward to the maximum) and average, each
//! window `kh x kw` moved by `(sh, sw)` with no padding.
//!
//! In the backward ops each input element sums the gradient of the windows that cover it, in
//! the order of those windows: the GPU gathers (one invocation per input element, no atomics,
//! any stride), the CPU scatters window by window in the same order, so both add alike and the
//! result never depends on how work is scheduled.

use super::conv::Window;
use super::{Access, OpLabel, Rules, distinct, need, words};
use crate::backend::cpu::CpuMem;
use crate::backend::{Buf, DType};
use crate::{Error, Result};
use rayon::prelude::*;

/// Max pooling: `y[b, oy, ox, ci]` is the largest input of the window, and `argmax` the
/// window offset `ky·kw + kx` of its first occurrence (for the backward pass).
/// x: (batch, h, w, c) -> y: (batch, oh, ow, c), argmax: (batch, oh, ow, c) U32.
#[derive(Clone, Debug, PartialEq)]
pub struct MaxPool {
    /// The input images, NHWC.
    pub x: Buf,
    /// The pooled images, NHWC.
    pub y: Buf,
    /// Where in its window each maximum was.
    pub argmax: Buf,
    /// The windows (no padding).
    pub g: Window,
}

/// Max pooling's input gradient: each input gets the output gradient of every window whose
/// maximum it was. dy, argmax: (batch, oh, ow, c) -> dx: (batch, h, w, c).
#[derive(Clone, Debug, PartialEq)]
pub struct MaxPoolGrad {
    /// The gradient of the pooled images.
    pub dy: Buf,
    /// The forward pass's maxima positions.
    pub argmax: Buf,
    /// The input gradient, overwritten.
    pub dx: Buf,
    /// The windows.
    pub g: Window,
}

/// Average pooling: `y[b, oy, ox, ci]` is the mean of the window's `kh·kw` inputs.
/// x: (batch, h, w, c) -> y: (batch, oh, ow, c).
#[derive(Clone, Debug, PartialEq)]
pub struct AvgPool {
    /// The input images, NHWC.
    pub x: Buf,
    /// The pooled images, NHWC.
    pub y: Buf,
    /// The windows (no padding).
    pub g: Window,
}

/// Average pooling's input gradient: each input gets `dy / (kh·kw)` of every window that
/// covers it. dy: (batch, oh, ow, c) -> dx: (batch, h, w, c).
#[derive(Clone, Debug, PartialEq)]
pub struct AvgPoolGrad {
    /// The gradient of the pooled images.
    pub dy: Buf,
    /// The input gradient, overwritten.
    pub dx: Buf,
    /// The windows.
    pub g: Window,
}

/// Pooling windows have no padding here.
fn check_window(g: &Window) -> Result<()> {
    g.check()?;
    if g.ph != 0 || g.pw != 0 {
        return Err(Error::Shape("pooling windows take no padding".into()));
    }
    Ok(())
}

/// Elements of the pooled batch.
fn pooled(g: &Window) -> usize {
    g.positions() * g.c
}

impl Rules for MaxPool {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![
            (&mut self.x, Access::Read),
            (&mut self.y, Access::Write),
            (&mut self.argmax, Access::Write),
        ]
    }

    fn check(&self) -> Result<()> {
        check_window(&self.g)?;
        need("max pool input", self.x, self.g.input_len(), DType::F32)?;
        need("max pool output", self.y, pooled(&self.g), DType::F32)?;
        need("max pool argmax", self.argmax, pooled(&self.g), DType::U32)?;
        distinct("max pool output", self.y, &[self.x])
    }

    /// Reads every window's inputs, writes the maxima and their positions.
    fn cost(&self) -> OpLabel {
        let g = &self.g;
        let reads = pooled(g) * g.kh * g.kw;
        OpLabel::new(
            format!("maxpool {}", g.describe()),
            reads as f64,
            words(g.input_len().min(reads) + 2 * pooled(g)),
        )
    }

    // x: (batch, h, w, c) -> y, argmax: (batch, oh, ow, c)
    fn cpu(&self, m: &mut CpuMem) {
        let g = self.g;
        let n = pooled(&g);
        let c = g.c;
        let per_image = g.oh() * g.ow() * c;
        m.with_dsts(self.y, self.argmax, |m, y, arg| {
            let x = &m.f32s(self.x)[..g.input_len()];
            y[..n]
                .par_chunks_mut(per_image)
                .zip(arg[..n].par_chunks_mut(per_image))
                .enumerate()
                .for_each(|(b, (y, arg))| {
                    let img = &x[b * g.h * g.w * c..][..g.h * g.w * c];
                    for (pos, (y, arg)) in y
                        .chunks_exact_mut(c)
                        .zip(arg.chunks_exact_mut(c))
                        .enumerate()
                    {
                        let (oy, ox) = (pos / g.ow(), pos % g.ow());
                        for offset in 0..g.kh * g.kw {
                            let (ky, kx) = (offset / g.kw, offset % g.kw);
                            let run = &img[((oy * g.sh + ky) * g.w + ox * g.sw + kx) * c..][..c];
                            if offset == 0 {
                                y.copy_from_slice(run);
                                arg.fill(0);
                                continue;
                            }
                            // The first maximum wins (strictly greater replaces); written
                            // without branches so the channels' loop vectorises.
                            for ((y, a), &v) in y.iter_mut().zip(arg.iter_mut()).zip(run) {
                                let take = v > *y;
                                *y = if take { v } else { *y };
                                *a = if take { offset as u32 } else { *a };
                            }
                        }
                    }
                });
        });
    }
}

/// `dx[b, y, x, ci] = Σ` over the windows covering `(y, x)`, in the order of their positions,
/// of what each window gives it: the sum both pooling gradients share, written as a scatter
/// over the windows in position order (the order of the GPU's gather, so both add in the same
/// order). `add(run, out, offset)` adds to `run`, the `c` channels of the input pixel at window
/// offset `offset` of the window whose outputs start at element `out`, what that window gives
/// them (a whole run at a time, so the channels' loop vectorises).
fn sum_windows(g: &Window, dx: &mut [f32], add: impl Fn(&mut [f32], usize, usize) + Sync) {
    let c = g.c;
    let image = g.h * g.w * c;
    dx[..g.input_len()]
        .par_chunks_mut(image)
        .enumerate()
        .for_each(|(b, img)| {
            img.fill(0.0);
            for pos in 0..g.oh() * g.ow() {
                let (oy, ox) = (pos / g.ow(), pos % g.ow());
                let out = (b * g.oh() * g.ow() + pos) * c;
                for offset in 0..g.kh * g.kw {
                    let (ky, kx) = (offset / g.kw, offset % g.kw);
                    let at = ((oy * g.sh + ky) * g.w + ox * g.sw + kx) * c;
                    add(&mut img[at..at + c], out, offset);
                }
            }
        });
}

impl Rules for MaxPoolGrad {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![
            (&mut self.dy, Access::Read),
            (&mut self.argmax, Access::Read),
            (&mut self.dx, Access::Write),
        ]
    }

    fn check(&self) -> Result<()> {
        check_window(&self.g)?;
        need("max pool gradient", self.dy, pooled(&self.g), DType::F32)?;
        need("max pool argmax", self.argmax, pooled(&self.g), DType::U32)?;
        need(
            "max pool input gradient",
            self.dx,
            self.g.input_len(),
            DType::F32,
        )?;
        distinct("max pool input gradient", self.dx, &[self.dy, self.argmax])
    }

    /// Reads the gradient and the positions, writes the input gradient.
    fn cost(&self) -> OpLabel {
        let g = &self.g;
        OpLabel::new(
            format!("maxpool backward {}", g.describe()),
            0.0,
            words(2 * pooled(g) + g.input_len()),
        )
    }

    // dy, argmax: (batch, oh, ow, c) -> dx: (batch, h, w, c)
    fn cpu(&self, m: &mut CpuMem) {
        let g = self.g;
        m.with_dst(self.dx, |m, dx| {
            let dy = &m.f32s(self.dy)[..pooled(&g)];
            let arg = &m.u32s(self.argmax)[..pooled(&g)];
            let c = g.c;
            sum_windows(&g, dx, |run, out, offset| {
                let (dy, arg) = (&dy[out..out + c], &arg[out..out + c]);
                for ((d, &gy), &a) in run.iter_mut().zip(dy).zip(arg) {
                    *d += if a as usize == offset { gy } else { 0.0 };
                }
            });
        });
    }
}

impl Rules for AvgPool {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![(&mut self.x, Access::Read), (&mut self.y, Access::Write)]
    }

    fn check(&self) -> Result<()> {
        check_window(&self.g)?;
        need("average pool input", self.x, self.g.input_len(), DType::F32)?;
        need("average pool output", self.y, pooled(&self.g), DType::F32)?;
        distinct("average pool output", self.y, &[self.x])
    }

    /// Reads every window's inputs, writes the means.
    fn cost(&self) -> OpLabel {
        let g = &self.g;
        let reads = pooled(g) * g.kh * g.kw;
        OpLabel::new(
            format!("avgpool {}", g.describe()),
            reads as f64,
            words(g.input_len().min(reads) + pooled(g)),
        )
    }

    // x: (batch, h, w, c) -> y: (batch, oh, ow, c)
    fn cpu(&self, m: &mut CpuMem) {
        let g = self.g;
        let n = pooled(&g);
        let c = g.c;
        let scale = 1.0 / (g.kh * g.kw) as f32;
        m.with_dst(self.y, |m, y| {
            let x = &m.f32s(self.x)[..g.input_len()];
            y[..n]
                .par_chunks_mut(g.oh() * g.ow() * c)
                .enumerate()
                .for_each(|(b, y)| {
                    let img = &x[b * g.h * g.w * c..][..g.h * g.w * c];
                    for (pos, y) in y.chunks_exact_mut(c).enumerate() {
                        let (oy, ox) = (pos / g.ow(), pos % g.ow());
                        y.fill(0.0);
                        for offset in 0..g.kh * g.kw {
                            let (ky, kx) = (offset / g.kw, offset % g.kw);
                            let run = &img[((oy * g.sh + ky) * g.w + ox * g.sw + kx) * c..][..c];
                            y.iter_mut().zip(run).for_each(|(y, &v)| *y += v);
                        }
                        y.iter_mut().for_each(|y| *y *= scale);
                    }
                });
        });
    }
}

impl Rules for AvgPoolGrad {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![(&mut self.dy, Access::Read), (&mut self.dx, Access::Write)]
    }

    fn check(&self) -> Result<()> {
        check_window(&self.g)?;
        need(
            "average pool gradient",
            self.dy,
            pooled(&self.g),
            DType::F32,
        )?;
        need(
            "average pool input gradient",
            self.dx,
            self.g.input_len(),
            DType::F32,
        )?;
        distinct("average pool input gradient", self.dx, &[self.dy])
    }

    /// Reads the gradient, writes the input gradient.
    fn cost(&self) -> OpLabel {
        let g = &self.g;
        OpLabel::new(
            format!("avgpool backward {}", g.describe()),
            0.0,
            words(pooled(g) + g.input_len()),
        )
    }

    // dy: (batch, oh, ow, c) -> dx: (batch, h, w, c)
    fn cpu(&self, m: &mut CpuMem) {
        let g = self.g;
        let scale = 1.0 / (g.kh * g.kw) as f32;
        m.with_dst(self.dx, |m, dx| {
            let dy = &m.f32s(self.dy)[..pooled(&g)];
            let c = g.c;
            sum_windows(&g, dx, |run, out, _| {
                for (d, &gy) in run.iter_mut().zip(&dy[out..out + c]) {
                    *d += gy * scale;
                }
            });
        });
    }
}
