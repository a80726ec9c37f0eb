//! Losses fused with their output activation (softmax + cross-entropy, sigmoid + binary
//! cross-entropy) and the regression losses: per-row statistics, the gradient, and (fused) the
//! metrics accumulator.

use super::reduce::{ACC_LEN, STATS_PER_ROW, add_stats};
use super::{Access, OpLabel, Rules, distinct, need, push_opt, words};
use crate::Result;
use crate::backend::cpu::CpuMem;
use crate::backend::{Buf, DType};
use crate::model::LossKind;

/// The most rows a fused loss-and-accumulate runs: its kernel is one workgroup looping over
/// the rows (a deterministic sum), which would serialise a much larger evaluation batch.
pub const LOSS_ACC_MAX_ROWS: usize = 16_384;

/// A loss with its output activation where the kind fuses one. For each row it finds
/// `[loss, metric]` (metric: 1/0 for a correct classification, the mean absolute error of a
/// regression row) and writes them to `stats` and/or adds their sums to `acc`; when `grad` is
/// given, it writes the gradient of the batch mean loss with respect to `out` (the logits for
/// the fused kinds).
/// out: (rows, cols); targets: U32 labels (rows,) for class losses, F32 (rows, cols) for
/// regression -> grad: (rows, cols), stats: (rows, 2), acc: (2,) accumulated.
#[derive(Clone, Debug, PartialEq)]
pub struct Loss {
    /// The loss, which decides the activation fused before it and the kind of targets.
    pub kind: LossKind,
    /// The network's last layer output, (rows, cols): the logits for the fused kinds, the
    /// predictions for MSE and MAE.
    pub out: Buf,
    /// What the rows should give: `U32` class labels (rows,) below `cols` for the class losses,
    /// `F32` values (rows, cols) for regression.
    pub targets: Buf,
    /// Rows of the batch; the gradient is of the mean over them.
    pub rows: usize,
    /// Outputs per row: classes, or regression targets per row.
    pub cols: usize,
    /// Where to write the gradient of the batch's mean loss with respect to `out`, (rows, cols);
    /// `None` when only evaluating.
    pub grad: Option<Buf>,
    /// Where to write each row's `[loss, metric]`, (rows, 2); `None` where they are only
    /// accumulated.
    pub stats: Option<Buf>,
    /// The metrics accumulator the row statistics are added to (fused accumulation).
    pub acc: Option<Buf>,
}

impl Rules for Loss {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        let mut v = vec![
            (&mut self.out, Access::Read),
            (&mut self.targets, Access::Read),
        ];
        push_opt(&mut v, &mut self.grad, Access::Write);
        push_opt(&mut v, &mut self.stats, Access::Write);
        push_opt(&mut v, &mut self.acc, Access::ReadWrite);
        v
    }

    fn check(&self) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        let n = rows * cols;
        need("loss input", self.out, n, DType::F32)?;
        if self.kind.is_classification() {
            need("loss labels", self.targets, rows, DType::U32)?;
        } else {
            need("loss targets", self.targets, n, DType::F32)?;
        }
        let srcs = [self.out, self.targets];
        if let Some(g) = self.grad {
            need("loss grad", g, n, DType::F32)?;
            distinct("loss grad", g, &srcs)?;
        }
        if let Some(s) = self.stats {
            need("loss stats", s, rows * STATS_PER_ROW, DType::F32)?;
            distinct("loss stats", s, &srcs)?;
            if let Some(g) = self.grad {
                distinct("loss stats", s, &[g])?;
            }
        }
        if let Some(a) = self.acc {
            need("loss accumulator", a, ACC_LEN, DType::F32)?;
            distinct("loss accumulator", a, &srcs)?;
            for other in [self.grad, self.stats].into_iter().flatten() {
                distinct("loss accumulator", a, &[other])?;
            }
        }
        if cols == 0 {
            return Err(crate::Error::Shape("a loss over zero outputs".into()));
        }
        Ok(())
    }

    /// Reads the outputs and targets; writes the gradient and the per-row statistics (or the
    /// accumulator, where fused).
    fn cost(&self) -> OpLabel {
        let (rows, cols) = (self.rows, self.cols);
        let targets = if self.kind.is_classification() {
            rows
        } else {
            rows * cols
        };
        let mut name = format!("loss {:?} {rows}x{cols}", self.kind).to_lowercase();
        let mut bytes = words(rows * cols + targets);
        if self.grad.is_some() {
            bytes += words(rows * cols);
        }
        if self.stats.is_some() {
            bytes += words(STATS_PER_ROW * rows);
        }
        if self.acc.is_some() {
            name += " +accumulate";
            bytes += words(2 * ACC_LEN);
        }
        OpLabel::new(name, 0.0, bytes)
    }

    // out: (rows, cols); targets: (rows,) u32 or (rows, cols) f32 -> grad, stats, acc
    fn cpu(&self, m: &mut CpuMem) {
        let (rows, cols) = (self.rows, self.cols);
        let n = rows * cols;
        let mut stats = vec![0.0f32; rows * STATS_PER_ROW];
        let mut g = self.grad.map(|b| m.take(b));
        {
            let z = &m.f32s(self.out)[..n];
            let gs = g
                .as_mut()
                .zip(self.grad)
                .map(|(v, b)| &mut v[CpuMem::range(b)][..n]);
            let scale = 1.0 / rows as f32;
            if self.kind.is_classification() {
                let labels = &m.u32s(self.targets)[..rows];
                loss_classes(self.kind, z, labels, cols, scale, gs, &mut stats);
            } else {
                let t = &m.f32s(self.targets)[..n];
                loss_values(self.kind, z, t, cols, scale, gs, &mut stats);
            }
        }
        if let (Some(v), Some(b)) = (g, self.grad) {
            m.put(b, v);
        }
        if let Some(s) = self.stats {
            m.f32s_mut(s)[..stats.len()].copy_from_slice(&stats);
        }
        if let Some(a) = self.acc {
            add_stats(&stats, &mut m.f32s_mut(a)[..ACC_LEN]);
        }
    }
}

/// Index of the first maximum of a row.
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// `sign(x)` with `sign(0) = 0`, as WGSL's `sign`.
pub(crate) fn sign0(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Per-row class losses. z, grad: (rows, cols), labels: (rows,) -> stats: (rows, 2)
fn loss_classes(
    kind: LossKind,
    z: &[f32],
    labels: &[u32],
    cols: usize,
    scale: f32,
    mut grad: Option<&mut [f32]>,
    stats: &mut [f32],
) {
    for (r, zr) in z.chunks_exact(cols).enumerate() {
        let label = labels[r] as usize;
        let (loss, correct) = match kind {
            LossKind::SoftmaxCrossEntropy => {
                let m = zr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = zr.iter().map(|&v| (v - m).exp()).sum();
                let lse = m + sum.ln();
                if let Some(g) = grad.as_deref_mut() {
                    for (j, g) in g[r * cols..(r + 1) * cols].iter_mut().enumerate() {
                        let p = (zr[j] - lse).exp();
                        *g = (p - if j == label { 1.0 } else { 0.0 }) * scale;
                    }
                }
                (lse - zr[label.min(cols - 1)], argmax(zr) == label)
            }
            LossKind::SigmoidBce => {
                // With one output the label is the target bit; with several, one-hot.
                let target = |j: usize| {
                    if cols == 1 {
                        label as f32
                    } else if j == label {
                        1.0
                    } else {
                        0.0
                    }
                };
                let mut loss = 0.0;
                for (j, &v) in zr.iter().enumerate() {
                    let t = target(j);
                    // Stable: max(z,0) - z·t + ln(1 + e^-|z|).
                    loss += v.max(0.0) - v * t + (-v.abs()).exp().ln_1p();
                    if let Some(g) = grad.as_deref_mut() {
                        g[r * cols + j] = (super::activation::sigmoid(v) - t) * scale / cols as f32;
                    }
                }
                let correct = if cols == 1 {
                    (zr[0] > 0.0) == (label == 1)
                } else {
                    argmax(zr) == label
                };
                (loss / cols as f32, correct)
            }
            LossKind::Mse | LossKind::Mae => unreachable!("regression loss given class labels"),
        };
        stats[r * 2] = loss;
        stats[r * 2 + 1] = if correct { 1.0 } else { 0.0 };
    }
}

/// Per-row regression losses. y, t, grad: (rows, cols) -> stats: (rows, 2)
fn loss_values(
    kind: LossKind,
    y: &[f32],
    t: &[f32],
    cols: usize,
    scale: f32,
    mut grad: Option<&mut [f32]>,
    stats: &mut [f32],
) {
    let per = scale / cols as f32;
    for (r, (yr, tr)) in y.chunks_exact(cols).zip(t.chunks_exact(cols)).enumerate() {
        let (mut sq, mut abs) = (0.0, 0.0);
        for j in 0..cols {
            let e = yr[j] - tr[j];
            sq += e * e;
            abs += e.abs();
            if let Some(g) = grad.as_deref_mut() {
                g[r * cols + j] = match kind {
                    LossKind::Mse => 2.0 * e * per,
                    _ => sign0(e) * per,
                };
            }
        }
        let loss = match kind {
            LossKind::Mse => sq,
            LossKind::Mae => abs,
            _ => unreachable!("class loss given regression targets"),
        };
        stats[r * 2] = loss / cols as f32;
        stats[r * 2 + 1] = abs / cols as f32;
    }
}
