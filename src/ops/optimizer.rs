//! Optimizer updates over the whole flat parameter buffer in one op, with the L1/L2 penalty
//! gradients and gradient clipping fused in where the plan asks, and the penalties on their own.

use super::loss::sign0;
use super::{Access, OpLabel, Rules, distinct, need, words};
use crate::Result;
use crate::backend::cpu::CpuMem;
use crate::backend::{Buf, DType};
use crate::optim::OptimizerKind;
use rayon::prelude::*;

/// Hyper-parameters of one optimizer update, with this step's learning rate already scheduled
/// and Adam's bias corrections already computed by the host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdateParams {
    /// The update rule.
    pub kind: OptimizerKind,
    /// This step's learning rate, the schedule already applied.
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// Whether SGD with momentum takes Nesterov's step (`g + momentum · buf`) instead of the plain
    /// one along `buf`.
    pub nesterov: bool,
    /// Adam's beta1.
    pub beta1: f32,
    /// Adam's beta2, RMSprop's rho.
    pub beta2: f32,
    /// Added to the denominator `√v` of Adagrad, RMSprop and Adam(W), so a parameter with no
    /// gradient history does not divide by zero.
    pub eps: f32,
    /// AdamW's decoupled weight decay (the op scales it by lr).
    pub weight_decay: f32,
    /// `1 - beta1^t` for Adam/AdamW at this step `t` (counted from 1).
    pub bias_correction1: f32,
    /// `1 - beta2^t` for Adam/AdamW at this step `t` (counted from 1).
    pub bias_correction2: f32,
}

/// L1/L2 penalty gradients added to the gradient inside the update (fused): elements before
/// `bias_start` are weights, the rest biases. `(l1, l2)` each.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Penalty {
    /// Index of the first bias within the update's `params` view (the flat layout keeps all
    /// weights before all biases): elements before it take `weights`, the rest `biases`.
    pub bias_start: usize,
    /// `(l1, l2)` applied to the weights.
    pub weights: (f32, f32),
    /// `(l1, l2)` applied to the biases.
    pub biases: (f32, f32),
}

/// Gradient clipping by global norm: the gradient is scaled by
/// `min(1, max_norm / (sqrt(norm2) + 1e-6))` (PyTorch's `clip_grad_norm_`), `norm2` the squared
/// norm a [`super::SumSquares`] found. norm2: (1,)
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clip {
    /// The squared global norm of the gradients, (1,), as a [`super::SumSquares`] wrote it.
    pub norm2: Buf,
    /// The norm above which the gradient is scaled down; positive.
    pub max_norm: f32,
}

/// Penalty gradients: `grad += l1 · sign(param) + 2 · l2 · param`. param: (n,), grad: (n,) updated.
#[derive(Clone, Debug, PartialEq)]
pub struct Regularize {
    /// The parameters whose penalty is taken, (n,).
    pub param: Buf,
    /// Their gradients, (n,), to which the penalty gradient is added in place.
    pub grad: Buf,
    /// The L1 coefficient: adds `l1 · sign(param)`.
    pub l1: f32,
    /// The L2 coefficient: adds `2 · l2 · param`.
    pub l2: f32,
}

/// One optimizer update over views of equal length (the whole flat parameter buffer):
/// `g = grads (+ penalty) (· clip scale)`, then the optimizer's rule on params, state1
/// (momentum / first moment / cache) and state2 (second moment).
/// params, state1, state2: (n,) updated; grads: (n,).
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// The flat parameters, (n,), updated in place.
    pub params: Buf,
    /// Their gradients, (n,).
    pub grads: Buf,
    /// The first state vector, (n,), updated in place: SGD's momentum buffer, Adagrad's and
    /// RMSprop's squared-gradient cache, Adam's first moment. Needed (n,) long even where the
    /// optimizer keeps no state.
    pub state1: Buf,
    /// The second state vector, (n,), updated in place: Adam's second moment; unused by the others
    /// but still (n,) long.
    pub state2: Buf,
    /// The learning rate and the rule's other hyper-parameters for this step.
    pub hyper: UpdateParams,
    /// L1/L2 penalties to add to the gradient first; `None` for none.
    pub penalty: Option<Penalty>,
    /// Clipping by global norm, applied after the penalty; `None` for none.
    pub clip: Option<Clip>,
}

impl Rules for Regularize {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        vec![
            (&mut self.param, Access::Read),
            (&mut self.grad, Access::ReadWrite),
        ]
    }

    fn check(&self) -> Result<()> {
        need("param", self.param, 0, DType::F32)?;
        need("regularized grad", self.grad, self.param.len(), DType::F32)?;
        distinct("regularized grad", self.grad, &[self.param])
    }

    /// Reads the parameters and gradients, writes the gradients.
    fn cost(&self) -> OpLabel {
        let n = self.param.len();
        OpLabel::new(format!("regularize {n}"), 0.0, words(3 * n))
    }

    // param, grad: (n,)
    fn cpu(&self, m: &mut CpuMem) {
        let (l1, l2) = (self.l1, self.l2);
        m.with_dst(self.grad, |m, g| {
            for (g, &p) in g.iter_mut().zip(m.f32s(self.param)) {
                *g += penalty(p, l1, l2);
            }
        });
    }
}

/// The penalty gradient of one parameter: `l1 · sign(p) + 2 · l2 · p`.
fn penalty(p: f32, l1: f32, l2: f32) -> f32 {
    l1 * sign0(p) + 2.0 * l2 * p
}

/// How many state vectors the size of the parameters an optimizer reads and writes (plain SGD
/// keeps none).
fn states(kind: OptimizerKind, momentum: f32) -> usize {
    match kind {
        OptimizerKind::Adam | OptimizerKind::Adamw => 2,
        OptimizerKind::Sgd if momentum == 0.0 => 0,
        OptimizerKind::Sgd | OptimizerKind::Adagrad | OptimizerKind::Rmsprop => 1,
    }
}

impl Rules for Update {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        let mut v = vec![
            (&mut self.params, Access::ReadWrite),
            (&mut self.grads, Access::Read),
            (&mut self.state1, Access::ReadWrite),
            (&mut self.state2, Access::ReadWrite),
        ];
        if let Some(c) = &mut self.clip {
            v.push((&mut c.norm2, Access::Read));
        }
        v
    }

    fn check(&self) -> Result<()> {
        let n = self.params.len();
        need("params", self.params, n, DType::F32)?;
        for (what, b) in [
            ("grads", self.grads),
            ("state1", self.state1),
            ("state2", self.state2),
        ] {
            need(what, b, n, DType::F32)?;
        }
        distinct(
            "params",
            self.params,
            &[self.grads, self.state1, self.state2],
        )?;
        distinct("state1", self.state1, &[self.grads, self.state2])?;
        distinct("state2", self.state2, &[self.grads])?;
        if let Some(c) = self.clip {
            need("clip norm", c.norm2, 1, DType::F32)?;
            distinct(
                "clip norm",
                c.norm2,
                &[self.params, self.state1, self.state2],
            )?;
        }
        if let Some(p) = self.penalty
            && p.bias_start > n
        {
            return Err(crate::Error::Shape(format!(
                "penalty biases start at {} beyond {n} parameters",
                p.bias_start
            )));
        }
        Ok(())
    }

    /// Reads parameters, gradients and each state vector the optimizer keeps; writes the
    /// parameters and the state.
    fn cost(&self) -> OpLabel {
        let n = self.params.len();
        let u = &self.hyper;
        let mut name = format!("{:?} update {n}", u.kind).to_lowercase();
        let mut bytes = words((3 + 2 * states(u.kind, u.momentum)) * n);
        if self.penalty.is_some() {
            name += " +penalty";
        }
        if self.clip.is_some() {
            name += " +clip";
            bytes += words(1);
        }
        OpLabel::new(name, 0.0, bytes)
    }

    // params, grads, state1, state2: (n,)
    fn cpu(&self, m: &mut CpuMem) {
        let u = self.hyper;
        let n = self.params.len();
        let scale = self
            .clip
            .map(|c| clip_scale(m.f32s(c.norm2)[0], c.max_norm));
        let mut p = m.take(self.params);
        let mut s1 = m.take(self.state1);
        let mut s2 = m.take(self.state2);
        {
            let g = &m.f32s(self.grads)[..n];
            let p = &mut p[CpuMem::range(self.params)];
            let s1 = &mut s1[CpuMem::range(self.state1)];
            let s2 = &mut s2[CpuMem::range(self.state2)];
            // Independent per element: split over the cores in cache-sized chunks.
            const CHUNK: usize = 1 << 14;
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(s1.par_chunks_mut(CHUNK))
                .zip(s2.par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(c, (((p, g), s1), s2))| {
                    if self.penalty.is_none() && scale.is_none() {
                        return update_slices(&u, p, g, s1, s2);
                    }
                    // The gradient as the unfused ops leave it: penalty added, then clipped.
                    let mut g = g.to_vec();
                    if let Some(pen) = self.penalty {
                        for (i, (g, &p)) in g.iter_mut().zip(p.iter()).enumerate() {
                            let (l1, l2) = if c * CHUNK + i < pen.bias_start {
                                pen.weights
                            } else {
                                pen.biases
                            };
                            // A part without a penalty has no Regularize op when unfused.
                            if l1 != 0.0 || l2 != 0.0 {
                                *g += penalty(p, l1, l2);
                            }
                        }
                    }
                    if let Some(s) = scale {
                        g.iter_mut().for_each(|g| *g *= s);
                    }
                    update_slices(&u, p, &g, s1, s2)
                });
        }
        m.put(self.params, p);
        m.put(self.state1, s1);
        m.put(self.state2, s2);
    }
}

/// The factor gradient clipping scales the gradient by, from its squared norm.
pub(crate) fn clip_scale(norm2: f32, max_norm: f32) -> f32 {
    (max_norm / (norm2.sqrt() + 1e-6)).min(1.0)
}

/// The optimizer rules, element by element. p, g, s1, s2: (n,)
fn update_slices(u: &UpdateParams, p: &mut [f32], g: &[f32], s1: &mut [f32], s2: &mut [f32]) {
    let lr = u.lr;
    match u.kind {
        OptimizerKind::Sgd => {
            // PyTorch's rule: buf = μ·buf + g; step along buf (or g + μ·buf for Nesterov).
            for i in 0..p.len() {
                let step = if u.momentum > 0.0 {
                    s1[i] = u.momentum * s1[i] + g[i];
                    if u.nesterov {
                        g[i] + u.momentum * s1[i]
                    } else {
                        s1[i]
                    }
                } else {
                    g[i]
                };
                p[i] -= lr * step;
            }
        }
        OptimizerKind::Adagrad => {
            for ((p, &g), s) in p.iter_mut().zip(g).zip(s1) {
                *s += g * g;
                *p -= lr * g / (s.sqrt() + u.eps);
            }
        }
        OptimizerKind::Rmsprop => {
            let rho = u.beta2;
            for ((p, &g), s) in p.iter_mut().zip(g).zip(s1) {
                *s = rho * *s + (1.0 - rho) * g * g;
                *p -= lr * g / (s.sqrt() + u.eps);
            }
        }
        OptimizerKind::Adam | OptimizerKind::Adamw => {
            let decay = if u.kind == OptimizerKind::Adamw {
                1.0 - lr * u.weight_decay
            } else {
                1.0
            };
            // PyTorch's arrangement: m̂ / (√v̂ + ε) = (m / c1) / (√v · (1 / √c2) + ε), with the
            // corrections folded into two scalars, leaves one division and one square root per
            // element (the loop is bound by them).
            let step = lr / u.bias_correction1;
            let inv_sqrt_c2 = 1.0 / u.bias_correction2.sqrt();
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(s1).zip(s2) {
                *m = u.beta1 * *m + (1.0 - u.beta1) * g;
                *v = u.beta2 * *v + (1.0 - u.beta2) * g * g;
                *p = *p * decay - step * *m / (v.sqrt() * inv_sqrt_c2 + u.eps);
            }
        }
    }
}
