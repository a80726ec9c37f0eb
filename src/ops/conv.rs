//! Convolution by explicit im2col ("im2row" in our channels-last layout): the patches a 2-D
//! convolution sees become the rows of a matrix, so the convolution itself is the same matrix
//! product as a Dense layer's (and its gradients are too), and the scatter back (col2im) sums
//! each input's contributions. Where nothing needs the patches afterwards (evaluation), the
//! product reads them from the images in place instead ([`super::Matmul::patches`], implicit
//! GEMM), with the same entries as `fill_patches`.
//!
//! Images are NHWC (channels last): element `(b, y, x, ci)` of a batch of `h x w` images with
//! `c` channels is at `((b·h + y)·w + x)·c + ci`. A patch row lists its inputs in `(ky, kx, ci)`
//! order, channels innermost, so each pixel's channels are copied as one contiguous run; a
//! Conv2d weight is therefore held `(out, kh, kw, in)` (saved files hold PyTorch's
//! `(out, in, kh, kw)`; `store` permutes), the `(out, kh·kw·in)` matrix the product needs, and
//! the output `(b·oh·ow, out)` is NHWC again.

use super::{Access, OpLabel, Rules, distinct, need, words};
use crate::Result;
use crate::backend::cpu::CpuMem;
use crate::backend::{Buf, DType};
use rayon::prelude::*;

/// The shape of a convolution (or of the patches of a pooling window): a batch of `h x w`
/// images of `c` channels, a `kh x kw` window moved by `(sh, sw)` over the image padded with
/// `(ph, pw)` zeros on each side, giving `oh x ow` outputs per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Images in the batch.
    pub batch: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub c: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Vertical step between windows.
    pub sh: usize,
    /// Horizontal step between windows.
    pub sw: usize,
    /// Zero rows added above and below.
    pub ph: usize,
    /// Zero columns added left and right.
    pub pw: usize,
}

impl Window {
    /// Output height: `(h + 2·ph - kh) / sh + 1` (for a window that fits, see `check`).
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.ph).saturating_sub(self.kh) / self.sh.max(1) + 1
    }

    /// Output width: `(w + 2·pw - kw) / sw + 1`.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pw).saturating_sub(self.kw) / self.sw.max(1) + 1
    }

    /// Elements of the input batch, `batch·h·w·c`.
    pub fn input_len(&self) -> usize {
        self.batch * self.h * self.w * self.c
    }

    /// Output positions of the batch, `batch·oh·ow` (the rows of the patch matrix).
    pub fn positions(&self) -> usize {
        self.batch * self.oh() * self.ow()
    }

    /// Inputs of one patch, `kh·kw·c` (the columns of the patch matrix).
    pub fn patch(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// The window fits the padded image, every size is at least 1, and padding leaves each
    /// window at least one real input.
    pub(crate) fn check(&self) -> Result<()> {
        let Window {
            h,
            w,
            c,
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
            ..
        } = *self;
        if h == 0 || w == 0 || c == 0 || kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            return Err(crate::Error::Shape(format!("a zero size in {self:?}")));
        }
        if kh > h + 2 * ph || kw > w + 2 * pw {
            return Err(crate::Error::Shape(format!(
                "a {kh}x{kw} window does not fit a {h}x{w} image padded by {ph}x{pw}"
            )));
        }
        if ph >= kh || pw >= kw {
            return Err(crate::Error::Shape(format!(
                "padding {ph}x{pw} as large as the {kh}x{kw} window: some windows see only zeros"
            )));
        }
        Ok(())
    }

    /// Where window offset `(ky, kx)` of output position `(oy, ox)` reads the image, or `None`
    /// where it falls in the padding.
    #[inline]
    pub(crate) fn source(
        &self,
        oy: usize,
        ox: usize,
        ky: usize,
        kx: usize,
    ) -> Option<(usize, usize)> {
        let y = (oy * self.sh + ky).checked_sub(self.ph)?;
        let x = (ox * self.sw + kx).checked_sub(self.pw)?;
        (y < self.h && x < self.w).then_some((y, x))
    }

    pub(crate) fn describe(&self) -> String {
        let Window {
            batch,
            h,
            w,
            c,
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
        } = *self;
        format!("{batch}x{h}x{w}x{c} k{kh}x{kw} s{sh}x{sw} p{ph}x{pw}")
    }
}

/// The patch matrix of a convolution: `cols[(b, oy, ox), (ky, kx, ci)] = x[b, y, x, ci]` at
/// `y = oy·sh + ky - ph`, `x = ox·sw + kx - pw`, zero in the padding.
/// x: (batch, h, w, c) -> cols: (batch·oh·ow, kh·kw·c).
#[derive(Clone, Debug, PartialEq)]
pub struct Im2Row {
    /// The input images, NHWC.
    pub x: Buf,
    /// The patch matrix, one row per output position.
    pub cols: Buf,
    /// The convolution's shape.
    pub g: Window,
}

/// The adjoint of [`Im2Row`]: each input element gets the sum of the patch-matrix entries that
/// read it (a convolution's input gradient from its patch gradients), in a fixed order.
/// cols: (batch·oh·ow, kh·kw·c) -> x: (batch, h, w, c).
#[derive(Clone, Debug, PartialEq)]
pub struct Row2Im {
    /// The patch-matrix gradient.
    pub cols: Buf,
    /// The input gradient, NHWC, overwritten.
    pub x: Buf,
    /// The convolution's shape.
    pub g: Window,
}

impl Rules for Im2Row {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![(&mut self.x, Access::Read), (&mut self.cols, Access::Write)]
    }

    fn check(&self) -> Result<()> {
        self.g.check()?;
        need("im2col input", self.x, self.g.input_len(), DType::F32)?;
        need(
            "im2col patches",
            self.cols,
            self.g.positions() * self.g.patch(),
            DType::F32,
        )?;
        distinct("im2col patches", self.cols, &[self.x])
    }

    /// Reads the input (once, at best), writes the patch matrix.
    fn cost(&self) -> OpLabel {
        let g = &self.g;
        OpLabel::new(
            format!("im2col {}", g.describe()),
            0.0,
            words(g.input_len() + g.positions() * g.patch()),
        )
    }

    // x: (batch, h, w, c) -> cols: (batch·oh·ow, kh·kw·c)
    fn cpu(&self, m: &mut CpuMem) {
        let g = self.g;
        m.with_dst(self.cols, |m, cols| {
            let x = &m.f32s(self.x)[..g.input_len()];
            fill_patches(g, x, &mut cols[..g.positions() * g.patch()]);
        });
    }
}

/// Writes the patch matrix of the images `x` under `g` into `cols`: [`Im2Row`]'s reference,
/// also the CPU's reading of a matmul over implicit patches.
/// x: (batch, h, w, c) -> cols: (batch·oh·ow, kh·kw·c)
pub(crate) fn fill_patches(g: Window, x: &[f32], cols: &mut [f32]) {
    let (oh, ow, k, c) = (g.oh(), g.ow(), g.patch(), g.c);
    let image = g.h * g.w * c;
    // One output row of patches at a time, in parallel: rows are independent.
    cols.par_chunks_mut(ow * k)
        .enumerate()
        .for_each(|(row, out)| {
            let (b, oy) = (row / oh, row % oh);
            let img = &x[b * image..(b + 1) * image];
            for (ox, patch) in out.chunks_exact_mut(k).enumerate() {
                // Each window offset's channels, one contiguous run.
                for (offset, run) in patch.chunks_exact_mut(c).enumerate() {
                    let (ky, kx) = (offset / g.kw, offset % g.kw);
                    match g.source(oy, ox, ky, kx) {
                        Some((y, x)) => run.copy_from_slice(&img[(y * g.w + x) * c..][..c]),
                        None => run.fill(0.0),
                    }
                }
            }
        });
}

impl Rules for Row2Im {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![(&mut self.cols, Access::Read), (&mut self.x, Access::Write)]
    }

    fn check(&self) -> Result<()> {
        self.g.check()?;
        need(
            "col2im patches",
            self.cols,
            self.g.positions() * self.g.patch(),
            DType::F32,
        )?;
        need("col2im output", self.x, self.g.input_len(), DType::F32)?;
        distinct("col2im output", self.x, &[self.cols])
    }

    /// Reads the patch matrix, writes the input gradient; one addition per patch entry.
    fn cost(&self) -> OpLabel {
        let g = &self.g;
        let entries = g.positions() * g.patch();
        OpLabel::new(
            format!("col2im {}", g.describe()),
            entries as f64,
            words(g.input_len() + entries),
        )
    }

    // cols: (batch·oh·ow, kh·kw·c) -> x: (batch, h, w, c)
    fn cpu(&self, m: &mut CpuMem) {
        let g = self.g;
        let (k, c) = (g.patch(), g.c);
        let image = g.h * g.w * c;
        let per_image = g.oh() * g.ow() * k;
        m.with_dst(self.x, |m, x| {
            let cols = &m.f32s(self.cols)[..g.positions() * k];
            x[..g.input_len()]
                .par_chunks_mut(image)
                .zip(cols.par_chunks(per_image))
                .for_each(|(img, patches)| {
                    img.fill(0.0);
                    // Positions in order, then window offsets in order: each input element
                    // sums its contributions in the order of their positions, as the GPU's
                    // gather does.
                    for oy in 0..g.oh() {
                        for ox in 0..g.ow() {
                            let patch = &patches[(oy * g.ow() + ox) * k..][..k];
                            for (offset, run) in patch.chunks_exact(c).enumerate() {
                                let (ky, kx) = (offset / g.kw, offset % g.kw);
                                if let Some((y, x)) = g.source(oy, ox, ky, kx) {
                                    let dst = &mut img[(y * g.w + x) * c..][..c];
                                    dst.iter_mut().zip(run).for_each(|(d, &v)| *d += v);
                                }
                            }
                        }
                    }
                });
        });
    }
}
