//! Fusion: pairs of neighbouring ops that one kernel can do together become one op.
//!
//! Each rule is a small function over the plan that looks at an op and the one after it, and
//! fuses them only when the value passed between them has no other reader (so removing it
//! loses nothing). Every fused form computes exactly what the pair computes: on the CPU the
//! fused op runs the two references one after the other, bit for bit; on the GPU one kernel
//! does both. The rules:
//! - a Dense layer's product and the elementwise activation after it ([`Epilogue::Act`]);
//! - an input-gradient product and the activation derivative after it ([`Epilogue::ActGrad`]);
//! - a weight-gradient product and the bias gradient, the column sums of the same `dY`
//!   ([`Epilogue::ColSums`]);
//! - the loss and the metrics accumulation ([`Loss::acc`]);
//! - the last layer's product and that softmax cross-entropy ([`Epilogue::SoftmaxCe`]), where a row
//!   fits one tile;
//! - the row gather and the label gather ([`Gather::labels`]);
//! - the L1/L2 penalties and the optimizer update ([`Update::penalty`]).

use super::plan::Plan;
use crate::backend::Buf;
use crate::model::{Activation, LossKind};
use crate::ops::gather::LabelPair;
use crate::ops::matmul::{LOSS_MAX_COLS, SoftmaxCe};
use crate::ops::{Epilogue, Gather, Loss, Matmul, Op, Penalty, Update};

pub use crate::ops::loss::LOSS_ACC_MAX_ROWS;

/// Runs every rule over `plan`. `max_rows` is the largest batch the plan's buffers serve:
/// rules that depend on the batch decide by it, so a plan for a partial batch fuses exactly as
/// the full one does.
pub fn fuse(plan: &mut Plan, max_rows: usize) {
    pairs(plan, gather_labels);
    pairs(plan, matmul_act);
    pairs(plan, matmul_act_grad);
    pairs(plan, matmul_col_sum);
    pairs(plan, |p, a, b| loss_acc(p, a, b, max_rows));
    pairs(plan, matmul_loss);
    update_penalty(plan);
}

/// Applies `rule` to each op and its successor; where it returns a fused op, that op replaces
/// the pair.
fn pairs(plan: &mut Plan, rule: impl Fn(&Plan, &Op, &Op) -> Option<Op>) {
    let mut i = 0;
    while i + 1 < plan.ops.len() {
        if let Some(fused) = rule(plan, &plan.ops[i], &plan.ops[i + 1]) {
            plan.ops[i] = fused;
            plan.ops.remove(i + 1);
        }
        i += 1;
    }
}

/// `v` is read by `reader` only.
fn only_reader(plan: &Plan, v: Buf, reader: &Op) -> bool {
    let readers = plan.readers(v);
    readers.len() == 1 && &plan.ops[readers[0]] == reader
}

fn elementwise(act: Activation) -> bool {
    act != Activation::Softmax
}

fn matmul_act(plan: &Plan, a: &Op, b: &Op) -> Option<Op> {
    match (a, b) {
        (Op::Matmul(m), Op::ActForward(f))
            if m.epilogue == Epilogue::None
                && f.x == m.c
                && elementwise(f.act)
                && only_reader(plan, m.c, b) =>
        {
            Some(Op::Matmul(Matmul {
                c: f.y,
                epilogue: Epilogue::Act(f.act),
                ..m.clone()
            }))
        }
        _ => None,
    }
}

fn matmul_act_grad(plan: &Plan, a: &Op, b: &Op) -> Option<Op> {
    match (a, b) {
        (Op::Matmul(m), Op::ActBackward(g))
            if m.epilogue == Epilogue::None
                && m.bias.is_none()
                && g.dy == m.c
                && elementwise(g.act)
                && only_reader(plan, m.c, b) =>
        {
            Some(Op::Matmul(Matmul {
                c: g.dx,
                epilogue: Epilogue::ActGrad { act: g.act, y: g.y },
                ..m.clone()
            }))
        }
        _ => None,
    }
}

fn matmul_col_sum(_: &Plan, a: &Op, b: &Op) -> Option<Op> {
    match (a, b) {
        (Op::Matmul(m), Op::ColSum(s))
            if m.epilogue == Epilogue::None
                && m.dims.trans_a
                && s.a == m.a
                && s.rows == m.dims.k
                && s.cols == m.dims.m =>
        {
            Some(Op::Matmul(Matmul {
                epilogue: Epilogue::ColSums(s.out),
                ..m.clone()
            }))
        }
        _ => None,
    }
}

fn loss_acc(plan: &Plan, a: &Op, b: &Op, max_rows: usize) -> Option<Op> {
    match (a, b) {
        (Op::Loss(l), Op::AccumulateStats(s))
            if l.acc.is_none()
                && l.stats == Some(s.stats)
                && s.rows == l.rows
                && max_rows <= LOSS_ACC_MAX_ROWS
                && only_reader(plan, s.stats, b) =>
        {
            Some(Op::Loss(Loss {
                stats: None,
                acc: Some(s.acc),
                ..l.clone()
            }))
        }
        _ => None,
    }
}

/// Runs after `loss_acc`, whose row limit it inherits (only a loss with a fused accumulator
/// rides on a product).
fn matmul_loss(plan: &Plan, a: &Op, b: &Op) -> Option<Op> {
    match (a, b) {
        (Op::Matmul(m), Op::Loss(l))
            if m.epilogue == Epilogue::None
                && l.kind == LossKind::SoftmaxCrossEntropy
                && l.out == m.c
                && l.rows == m.dims.m
                && l.cols == m.dims.n
                && l.cols <= LOSS_MAX_COLS
                && l.stats.is_none()
                && l.acc.is_some()
                && only_reader(plan, m.c, b) =>
        {
            Some(Op::Matmul(Matmul {
                epilogue: Epilogue::SoftmaxCe(SoftmaxCe {
                    labels: l.targets,
                    grad: l.grad,
                    acc: l.acc?,
                }),
                ..m.clone()
            }))
        }
        _ => None,
    }
}

fn gather_labels(_: &Plan, a: &Op, b: &Op) -> Option<Op> {
    match (a, b) {
        (Op::Gather(g), Op::GatherLabels(l))
            if g.labels.is_none() && g.idx == l.idx && g.start == l.start && g.rows == l.rows =>
        {
            Some(Op::Gather(Gather {
                labels: Some(LabelPair {
                    src: l.src,
                    dst: l.dst,
                }),
                ..g.clone()
            }))
        }
        _ => None,
    }
}

/// The Regularize ops right before an Update, over the weights part `[0, bias_start)` and the
/// biases part `[bias_start, n)` of the flat buffers, go into the update. (Ops in between, such
/// as clipping's sum of squares, which must see the penalised gradient, prevent it.)
fn update_penalty(plan: &mut Plan) {
    let Some(u) = plan.ops.iter().position(|op| matches!(op, Op::Update(_))) else {
        return;
    };
    let Op::Update(update) = plan.ops[u].clone() else {
        return;
    };
    if update.penalty.is_some() {
        return;
    }
    let n = update.params.len();
    let mut first = u;
    let (mut weights, mut biases) = (None, None);
    let mut bias_start = None;
    while first > 0 {
        let Op::Regularize(r) = &plan.ops[first - 1] else {
            break;
        };
        // The same part of the parameters and of their gradients.
        let lines_up = r.grad.id == update.grads.id
            && r.param.id == update.params.id
            && r.grad.offset == r.param.offset
            && r.grad.len == r.param.len;
        if !lines_up {
            break;
        }
        let (start, end) = (
            r.param.offset as usize,
            (r.param.offset + r.param.len) as usize,
        );
        if start == 0 && weights.is_none() && bias_start.is_none_or(|s| s == end) {
            weights = Some((r.l1, r.l2));
            bias_start = Some(end);
        } else if end == n && biases.is_none() && bias_start.is_none_or(|s| s == start) {
            biases = Some((r.l1, r.l2));
            bias_start = Some(start);
        } else {
            break;
        }
        first -= 1;
    }
    let Some(bias_start) = bias_start else {
        return;
    };
    plan.ops[u] = Op::Update(Update {
        penalty: Some(Penalty {
            bias_start,
            weights: weights.unwrap_or((0.0, 0.0)),
            biases: biases.unwrap_or((0.0, 0.0)),
        }),
        ..update
    });
    plan.ops.drain(first..u);
}
