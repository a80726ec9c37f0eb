//! A plan: an ordered list of ops over named values, with their shapes.

use crate::backend::{Buf, DType};
use crate::ops::{Access, Op};
use std::fmt;

/// What a plan computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// A training step: gather, forward (dropout on), loss, backward, penalties, update.
    Train,
    /// Evaluation: gather, forward (dropout off), loss statistics into the metrics accumulator.
    Eval,
    /// Prediction: gather, forward (dropout off); the last layer's output is the result.
    Predict,
}

/// Options of the compilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// Run the fusion pass ([`super::fuse`]). On by default; `WGTRAIN_FUSE=0` turns it off.
    pub fuse: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            fuse: std::env::var("WGTRAIN_FUSE").as_deref() != Ok("0"),
        }
    }
}

/// Where a value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// An intermediate of one step (activations, gradients of activations): gets a buffer by
    /// liveness.
    Temp,
    /// The model's flat parameters, which live across steps like the trainer's buffers below.
    Params,
    /// The gradients of the flat parameters, in the same layout (the trainer's).
    Grads,
    /// The optimizer's first state vector (the trainer's), laid out as the parameters.
    State1,
    /// The optimizer's second state vector (the trainer's), laid out as the parameters.
    State2,
    /// The metrics accumulator.
    Acc,
    /// The resident data set's features, bound when the plan runs (as are the two below).
    Features,
    /// The resident data set's targets: class labels or regression values.
    Targets,
    /// The epoch's row order: the data-set row of each position in the epoch.
    Index,
}

impl ValueKind {
    /// Data-set values, bound per run.
    pub fn is_external(self) -> bool {
        matches!(
            self,
            ValueKind::Features | ValueKind::Targets | ValueKind::Index
        )
    }
}

/// One value of a plan. Ops name it by a [`Buf`] whose `id` is the value's index (and whose
/// offset and length select a view of it, such as one layer's weights in the parameters).
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// What the printed plan calls it, e.g. "layer 1 out" or "params".
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Elements (0 for data-set values, whose size is the data's).
    pub len: usize,
    /// Where it lives, which decides whether it gets a buffer by liveness.
    pub kind: ValueKind,
}

/// The ops of one step over the values they read and write.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// What the plan computes.
    pub mode: Mode,
    /// Rows per batch.
    pub rows: usize,
    /// Every value, indexed by the `id` of the [`Buf`]s that name them.
    pub values: Vec<Value>,
    /// The ops of one step, in the order they run.
    pub ops: Vec<Op>,
    /// The value holding the result of a [`Mode::Predict`] plan (the last layer's output).
    pub output: Option<Buf>,
    /// Names of views of persistent values (e.g. "layers.0.weight"), for printing.
    pub view_names: Vec<(Buf, String)>,
}

impl Plan {
    /// The value an op's logical operand names.
    pub fn value(&self, b: Buf) -> &Value {
        &self.values[b.id as usize]
    }

    /// For each temporary value, the index of the op that writes it and of the last op that
    /// reads it (the writer's own index when nothing reads it); `None` for values no op writes.
    pub fn lifetimes(&self) -> Vec<Option<(usize, usize)>> {
        let mut life: Vec<Option<(usize, usize)>> = vec![None; self.values.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for (b, access) in op.operands() {
                if self.value(b).kind != ValueKind::Temp {
                    continue;
                }
                let l = &mut life[b.id as usize];
                if access.writes() && l.is_none() {
                    *l = Some((i, i));
                }
                if access.reads()
                    && let Some((_, last)) = l
                {
                    *last = i;
                }
            }
        }
        life
    }

    /// Ops that read `b`'s value, by index.
    pub fn readers(&self, b: Buf) -> Vec<usize> {
        self.ops
            .iter()
            .enumerate()
            .filter(|(_, op)| op.operands().iter().any(|(x, a)| x.id == b.id && a.reads()))
            .map(|(i, _)| i)
            .collect()
    }

    fn name_of(&self, b: Buf) -> String {
        if let Some((_, n)) = self.view_names.iter().find(|(v, _)| *v == b) {
            return n.clone();
        }
        let v = self.value(b);
        if b.offset == 0 && (b.len() == v.len || v.kind.is_external()) {
            v.name.clone()
        } else {
            format!("{}[{}..{}]", v.name, b.offset, b.offset + b.len)
        }
    }
}

impl fmt::Display for Plan {
    /// One line per op: its name and shape, what it reads and what it writes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:?} plan, {} rows, {} ops:",
            self.mode,
            self.rows,
            self.ops.len()
        )?;
        for (i, op) in self.ops.iter().enumerate() {
            let operands = op.operands();
            let list = |want: fn(Access) -> bool| {
                operands
                    .iter()
                    .filter(|(_, a)| want(*a))
                    .map(|(b, _)| self.name_of(*b))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            writeln!(
                f,
                "{i:>3}  {:<44} {} -> {}",
                op.cost().name,
                list(Access::reads),
                list(Access::writes)
            )?;
        }
        Ok(())
    }
}
