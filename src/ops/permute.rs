//! Flattening channels-last images into the rows a Dense layer reads, in PyTorch's order.
//!
//! Images are NHWC inside wgtrain; PyTorch flattens NCHW tensors, so the Dense layer after its
//! `nn.Flatten` expects each row in `(c, y, x)` order. Flattening here permutes to that order,
//! so that a saved model's Dense weights are PyTorch's as they are.

use super::{Access, OpLabel, Rules, distinct, need, words};
use crate::Result;
use crate::backend::cpu::CpuMem;
use crate::backend::{Buf, DType};

/// Channels-last images to channel-major rows (`inverse: false`):
/// `y[b, (ci·h + yy)·w + xx] = x[b, yy, xx, ci]`, or back (`inverse: true`, the backward pass).
/// x: (batch, h, w, c) <-> y: (batch, c·h·w).
#[derive(Clone, Debug, PartialEq)]
pub struct Flatten {
    /// The source: images (forward) or rows (inverse).
    pub x: Buf,
    /// The destination: rows (forward) or images (inverse).
    pub y: Buf,
    /// Images in the batch.
    pub batch: usize,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// Rows back to images (the gradient's way).
    pub inverse: bool,
}

impl Flatten {
    /// Elements of the batch.
    fn len(&self) -> usize {
        self.batch * self.h * self.w * self.c
    }

    /// For element `i` of a channel-major row batch, its index in the channels-last batch.
    #[inline]
    pub(crate) fn channels_last(&self, i: usize) -> usize {
        let plane = self.h * self.w;
        let image = plane * self.c;
        let (b, r) = (i / image, i % image);
        let (ci, p) = (r / plane, r % plane);
        b * image + p * self.c + ci
    }
}

impl Rules for Flatten {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![(&mut self.x, Access::Read), (&mut self.y, Access::Write)]
    }

    fn check(&self) -> Result<()> {
        need("flatten source", self.x, self.len(), DType::F32)?;
        need("flatten destination", self.y, self.len(), DType::F32)?;
        distinct("flatten destination", self.y, &[self.x])
    }

    /// Reads and writes every element once.
    fn cost(&self) -> OpLabel {
        let way = if self.inverse { "unflatten" } else { "flatten" };
        OpLabel::new(
            format!("{way} {}x{}x{}x{}", self.batch, self.h, self.w, self.c),
            0.0,
            words(2 * self.len()),
        )
    }

    // x: (batch, h, w, c) -> y: (batch, c·h·w), or back
    fn cpu(&self, m: &mut CpuMem) {
        let n = self.len();
        m.with_dst(self.y, |m, y| {
            let x = &m.f32s(self.x)[..n];
            // Row element i is image element channels_last(i), read one way or the other.
            if self.inverse {
                for (i, &v) in x.iter().enumerate() {
                    y[self.channels_last(i)] = v;
                }
            } else {
                for (i, v) in y[..n].iter_mut().enumerate() {
                    *v = x[self.channels_last(i)];
                }
            }
        });
    }
}
