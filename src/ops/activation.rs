//! Activations, forward and backward: elementwise, or row-wise for softmax.

use super::{Access, OpLabel, Rules, distinct, need, same_or_distinct, words};
use crate::Result;
use crate::backend::cpu::CpuMem;
use crate::backend::{Buf, DType};
use crate::model::{Activation, LEAKY_SLOPE};

/// `y = f(x)`, elementwise or (softmax) row-wise. x, y: (rows, cols); `y` may be `x` (in place).
#[derive(Clone, Debug, PartialEq)]
pub struct ActForward {
    /// The activation `f`; softmax normalises each row.
    pub act: Activation,
    /// The input, (rows, cols).
    pub x: Buf,
    /// The output, (rows, cols): the very view `x` to run in place, or an allocation of its own.
    pub y: Buf,
    /// Rows: one per sample of the batch.
    pub rows: usize,
    /// Columns: the layer's width (softmax's classes).
    pub cols: usize,
}

/// `dx = f'(x) ⊙ dy`, the derivative expressed through the forward output `y` (every
/// activation here has one), and for softmax its Jacobian-vector product per row.
/// y, dy, dx: (rows, cols); `dx` may be `dy` (in place).
#[derive(Clone, Debug, PartialEq)]
pub struct ActBackward {
    /// The activation whose derivative is applied.
    pub act: Activation,
    /// The forward output `f(x)`, (rows, cols), through which the derivative is computed.
    pub y: Buf,
    /// The gradient of the loss with respect to `y`, (rows, cols).
    pub dy: Buf,
    /// The gradient with respect to `x`, (rows, cols): the very view `dy` to run in place, or an
    /// allocation of its own.
    pub dx: Buf,
    /// Rows: one per sample of the batch.
    pub rows: usize,
    /// Columns: the layer's width (softmax's classes).
    pub cols: usize,
}

impl Rules for ActForward {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![(&mut self.x, Access::Read), (&mut self.y, Access::Write)]
    }

    fn check(&self) -> Result<()> {
        let n = self.rows * self.cols;
        need("activation input", self.x, n, DType::F32)?;
        need("activation output", self.y, n, DType::F32)?;
        same_or_distinct("activation output", self.y, self.x)
    }

    /// Reads x, writes y.
    fn cost(&self) -> OpLabel {
        let (r, c) = (self.rows, self.cols);
        let name = format!("{} forward {r}x{c}", super::matmul::act_name(self.act));
        OpLabel::new(name, 0.0, words(2 * r * c))
    }

    fn in_place(&self) -> Option<(Buf, Buf)> {
        Some((self.x, self.y))
    }

    // x: (rows, cols) -> y: (rows, cols)
    fn cpu(&self, m: &mut CpuMem) {
        let n = self.rows * self.cols;
        if self.x != self.y {
            let src = m.f32s(self.x)[..n].to_vec();
            m.f32s_mut(self.y)[..n].copy_from_slice(&src);
        }
        apply(self.act, &mut m.f32s_mut(self.y)[..n], self.cols);
    }
}

impl Rules for ActBackward {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![
            (&mut self.y, Access::Read),
            (&mut self.dy, Access::Read),
            (&mut self.dx, Access::Write),
        ]
    }

    fn check(&self) -> Result<()> {
        let n = self.rows * self.cols;
        need("activation output", self.y, n, DType::F32)?;
        need("activation grad", self.dy, n, DType::F32)?;
        need("activation input grad", self.dx, n, DType::F32)?;
        distinct("activation input grad", self.dx, &[self.y])?;
        same_or_distinct("activation input grad", self.dx, self.dy)
    }

    /// Reads dy and the forward output y, writes dx.
    fn cost(&self) -> OpLabel {
        let (r, c) = (self.rows, self.cols);
        let name = format!("{} backward {r}x{c}", super::matmul::act_name(self.act));
        OpLabel::new(name, 0.0, words(3 * r * c))
    }

    fn in_place(&self) -> Option<(Buf, Buf)> {
        Some((self.dy, self.dx))
    }

    // y, dy: (rows, cols) -> dx: (rows, cols)
    fn cpu(&self, m: &mut CpuMem) {
        let n = self.rows * self.cols;
        if self.dx != self.dy {
            let g = m.f32s(self.dy)[..n].to_vec();
            m.f32s_mut(self.dx)[..n].copy_from_slice(&g);
        }
        // dx holds dy now: scale it in place by f'(x), expressed through y.
        m.with_dst(self.dx, |m, g| {
            times_grad(self.act, &m.f32s(self.y)[..n], &mut g[..n], self.cols)
        });
    }
}

pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `v = f(v)` in place for rows of `cols` values (softmax is row-wise). v: (rows, cols)
pub(crate) fn apply(act: Activation, v: &mut [f32], cols: usize) {
    match act {
        Activation::Relu => v.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::LeakyRelu => v
            .iter_mut()
            .for_each(|v| *v = if *v > 0.0 { *v } else { LEAKY_SLOPE * *v }),
        Activation::Sigmoid => v.iter_mut().for_each(|v| *v = sigmoid(*v)),
        Activation::Tanh => v.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Softmax => v.chunks_exact_mut(cols.max(1)).for_each(softmax_row),
        Activation::Linear => {}
    }
}

/// Row-wise softmax in place, stable (subtracts the row max).
pub(crate) fn softmax_row(row: &mut [f32]) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in row.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    for v in row.iter_mut() {
        *v /= s;
    }
}

/// `g = f'(x) ⊙ g` in place, the derivative read through the output `y = f(x)`.
/// y, g: (rows, cols)
pub(crate) fn times_grad(act: Activation, y: &[f32], g: &mut [f32], cols: usize) {
    match act {
        // Written as selects, not branches, so the loops vectorise.
        Activation::Relu => g
            .iter_mut()
            .zip(y)
            .for_each(|(g, &y)| *g = if y > 0.0 { *g } else { 0.0 }),
        Activation::LeakyRelu => g
            .iter_mut()
            .zip(y)
            .for_each(|(g, &y)| *g *= if y > 0.0 { 1.0 } else { LEAKY_SLOPE }),
        Activation::Sigmoid => g.iter_mut().zip(y).for_each(|(g, &y)| *g *= y * (1.0 - y)),
        Activation::Tanh => g.iter_mut().zip(y).for_each(|(g, &y)| *g *= 1.0 - y * y),
        Activation::Softmax => {
            // dx = y ⊙ (dy - Σ_j dy_j y_j), the Jacobian-vector product per row.
            let cols = cols.max(1);
            for (g, y) in g.chunks_exact_mut(cols).zip(y.chunks_exact(cols)) {
                let dot: f32 = g.iter().zip(y).map(|(a, b)| a * b).sum();
                g.iter_mut().zip(y).for_each(|(g, &y)| *g = y * (*g - dot));
            }
        }
        Activation::Linear => {}
    }
}
