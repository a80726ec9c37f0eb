//! Inverted dropout with a counter-based mask, and the elementwise product of its backward
//! pass.

use super::{Access, OpLabel, Rules, distinct, need, same_or_distinct, words};
use crate::Result;
use crate::backend::cpu::CpuMem;
use crate::backend::{Buf, DType};
use crate::rng::{hash_to_unit, hash3};

/// Inverted dropout: draws `mask[i] = (u_i >= p) / (1 - p)` with
/// `u_i = hash_to_unit(hash3(seed, stream, i))` and writes `y = x ⊙ mask`.
/// x: (n,) -> y, mask: (n,). The mask is a pure function of (seed, stream, i), so both backends
/// draw the same one.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropout {
    /// The input, (n,).
    pub x: Buf,
    /// The output, (n,); an allocation of its own (dropout does not run in place).
    pub y: Buf,
    /// The scaled keep mask written for the backward pass, (n,): `1 / (1 - p)` where kept, 0 where
    /// dropped.
    pub mask: Buf,
    /// Elements of `x`, `y` and `mask`: rows times columns of the layer's batch.
    pub n: usize,
    /// Drop probability, in [0, 1).
    pub p: f32,
    /// The run's dropout seed.
    pub seed: u32,
    /// Which mask to draw for this seed: the trainer passes a per-step base plus the layer's index,
    /// so every layer and step gets its own mask.
    pub stream: u32,
}

/// `y = x ⊙ mask` (dropout's backward). x, mask: (n,) -> y: (n,); `y` may be `x` (in place).
#[derive(Clone, Debug, PartialEq)]
pub struct MaskMul {
    /// The gradient arriving at dropout's output, (n,).
    pub x: Buf,
    /// The mask the forward pass wrote, (n,).
    pub mask: Buf,
    /// The gradient with respect to dropout's input, (n,): the very view `x` to run in place, or an
    /// allocation of its own.
    pub y: Buf,
    /// Elements of each operand.
    pub n: usize,
}

impl Rules for Dropout {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![
            (&mut self.x, Access::Read),
            (&mut self.y, Access::Write),
            (&mut self.mask, Access::Write),
        ]
    }

    fn check(&self) -> Result<()> {
        need("dropout input", self.x, self.n, DType::F32)?;
        need("dropout output", self.y, self.n, DType::F32)?;
        need("dropout mask", self.mask, self.n, DType::F32)?;
        distinct("dropout mask", self.mask, &[self.x, self.y])?;
        distinct("dropout output", self.y, &[self.x])?;
        if !(0.0..1.0).contains(&self.p) {
            return Err(crate::Error::Shape(format!(
                "dropout probability {} is outside [0, 1)",
                self.p
            )));
        }
        Ok(())
    }

    /// Reads x, writes y and the mask.
    fn cost(&self) -> OpLabel {
        let n = self.n;
        OpLabel::new(format!("dropout forward {n}"), 0.0, words(3 * n))
    }

    // x: (n,) -> y, mask: (n,)
    fn cpu(&self, m: &mut CpuMem) {
        let n = self.n;
        let keep = 1.0 / (1.0 - self.p);
        m.with_dst(self.mask, |_, mask| {
            for (i, v) in mask[..n].iter_mut().enumerate() {
                let u = hash_to_unit(hash3(self.seed, self.stream, i as u32));
                *v = if u >= self.p { keep } else { 0.0 };
            }
        });
        m.with_dst(self.y, |m, y| {
            let (x, mask) = (&m.f32s(self.x)[..n], &m.f32s(self.mask)[..n]);
            for ((y, &x), &k) in y[..n].iter_mut().zip(x).zip(mask) {
                *y = x * k;
            }
        });
    }
}

impl Rules for MaskMul {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![
            (&mut self.x, Access::Read),
            (&mut self.mask, Access::Read),
            (&mut self.y, Access::Write),
        ]
    }

    fn check(&self) -> Result<()> {
        need("masked input", self.x, self.n, DType::F32)?;
        need("mask", self.mask, self.n, DType::F32)?;
        need("masked output", self.y, self.n, DType::F32)?;
        distinct("masked output", self.y, &[self.mask])?;
        same_or_distinct("masked output", self.y, self.x)
    }

    /// Reads the gradient and the mask, writes the gradient.
    fn cost(&self) -> OpLabel {
        let n = self.n;
        OpLabel::new(format!("dropout backward {n}"), 0.0, words(3 * n))
    }

    fn in_place(&self) -> Option<(Buf, Buf)> {
        Some((self.x, self.y))
    }

    // x, mask: (n,) -> y: (n,)
    fn cpu(&self, m: &mut CpuMem) {
        let n = self.n;
        if self.x != self.y {
            let x = m.f32s(self.x)[..n].to_vec();
            m.f32s_mut(self.y)[..n].copy_from_slice(&x);
        }
        m.with_dst(self.y, |m, y| {
            for (v, &k) in y[..n].iter_mut().zip(&m.f32s(self.mask)[..n]) {
                *v *= k;
            }
        });
    }
}
