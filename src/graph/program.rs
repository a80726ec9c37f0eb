//! A plan on a backend: its values bound to buffers, every op's shape rule checked once, and
//! replayed step after step.

use super::ResidentData;
use super::assign::{Assignment, Slot, assign, verify};
use super::plan::{Plan, ValueKind};
use crate::backend::{Backend, Buf};
use crate::ops::{Op, UpdateParams};
use crate::{Error, Result};

/// Buffers that outlive a step, owned by the model (parameters) and the trainer (gradients,
/// optimizer state, metrics). A plan's value of that kind is bound to the buffer here.
#[derive(Clone, Copy, Debug, Default)]
pub struct Persistent {
    /// The model's flat parameters; needed by every plan.
    pub params: Option<Buf>,
    /// The trainer's gradients, laid out as the parameters; needed by training plans.
    pub grads: Option<Buf>,
    /// The trainer's first optimizer state vector; needed by training plans.
    pub state1: Option<Buf>,
    /// The trainer's second optimizer state vector; needed by training plans.
    pub state2: Option<Buf>,
    /// The metrics accumulator, (2,); needed by training and evaluation plans.
    pub acc: Option<Buf>,
}

/// The temporary buffers of a model's programs. Programs never run at once, so they share
/// them: a program takes, for each of its slots, a pool buffer no other slot of its own uses.
#[derive(Debug, Default)]
pub struct Pool {
    bufs: Vec<Buf>,
}

impl Pool {
    /// A buffer for each slot, reusing the pool's where they fit; a new one is named after the
    /// largest of `plan`'s values it holds (what a too-large allocation's error names).
    fn take(&mut self, b: &mut dyn Backend, plan: &Plan, slots: &[Slot]) -> Result<Vec<Buf>> {
        let mut used = vec![false; self.bufs.len()];
        let mut out = Vec::with_capacity(slots.len());
        for (i, s) in slots.iter().enumerate() {
            let fit = (0..self.bufs.len())
                .filter(|&j| {
                    !used[j] && self.bufs[j].dtype == s.dtype && self.bufs[j].len() >= s.len
                })
                .min_by_key(|&j| self.bufs[j].len());
            let j = match fit {
                Some(j) => j,
                None => {
                    let label = format!("temporary {i}: {}", plan.values[s.largest].name);
                    self.bufs.push(b.alloc(s.dtype, s.len.max(1), &label)?);
                    used.push(false);
                    self.bufs.len() - 1
                }
            };
            used[j] = true;
            out.push(self.bufs[j]);
        }
        Ok(out)
    }

    /// Bytes of device (or host) memory the pool holds.
    pub fn bytes(&self) -> u64 {
        self.bufs.iter().map(|b| buf_bytes(*b)).sum()
    }
}

/// Bytes of a whole allocation.
pub(crate) fn buf_bytes(b: Buf) -> u64 {
    let per = match b.dtype {
        crate::backend::DType::U8 => 1,
        _ => 4,
    };
    b.len as u64 * per
}

/// Mixed into the dropout seed to seed augmentation's offsets.
const SHIFT_SEED: u32 = 0x5348_4946;

/// What changes from one step to the next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepArgs {
    /// The batch's first row in the data set's current order.
    pub start: usize,
    /// Dropout's seed, and the base its layers' streams are added to; augmentation's offsets
    /// are drawn from it too (mixed with a constant), stream `stream_base`.
    pub seed: u32,
    /// Added to each dropout layer's own stream, so that each step draws new masks; the trainer
    /// uses `step · 64`.
    pub stream_base: u32,
    /// The update's hyper-parameters at this step (training plans).
    pub update: Option<UpdateParams>,
}

/// An op of the program with the operands still to bind to a data set.
#[derive(Clone, Debug)]
struct Template {
    op: Op,
    /// Positions (in [`Op::operands_mut`] order) of data-set operands, and which.
    external: Vec<(usize, ValueKind)>,
}

/// A compiled plan, ready to run on one backend.
pub struct Program {
    /// Unique in the process: names this program's replays to the backend.
    id: u64,
    plan: Plan,
    assignment: Assignment,
    slot_bufs: Vec<Buf>,
    templates: Vec<Template>,
    /// The ops bound to the data set last run, by its id.
    bound: Option<(u64, Vec<Op>)>,
    output: Option<Buf>,
}

impl Program {
    /// Assigns `plan`'s temporaries to buffers of `pool`, binds its persistent values, checks
    /// every op's shape rule (ops reading the data set: when it is bound), and in debug builds
    /// proves the assignment safe.
    pub fn new(
        b: &mut dyn Backend,
        pool: &mut Pool,
        plan: Plan,
        persistent: &Persistent,
    ) -> Result<Program> {
        let assignment = assign(&plan);
        if cfg!(debug_assertions) {
            verify(&plan, &assignment)?;
        }
        let slot_bufs = pool.take(b, &plan, &assignment.slots)?;
        Program::bind_buffers(plan, assignment, slot_bufs, persistent)
    }

    /// The program of `plan`, the same model for fewer rows than `full`'s, on `full`'s buffers.
    /// `plan` must have been lowered and fused as `full`'s was (so its values and ops
    /// correspond one to one).
    pub fn smaller(full: &Program, plan: Plan, persistent: &Persistent) -> Result<Program> {
        if plan.values.len() != full.plan.values.len() || plan.ops.len() != full.plan.ops.len() {
            return Err(Error::Shape(format!(
                "a {}-row plan does not correspond to the {}-row plan it shares buffers with",
                plan.rows, full.plan.rows
            )));
        }
        let assignment = full.assignment.clone();
        verify(&plan, &assignment)?;
        Program::bind_buffers(plan, assignment, full.slot_bufs.clone(), persistent)
    }

    fn bind_buffers(
        plan: Plan,
        assignment: Assignment,
        slot_bufs: Vec<Buf>,
        persistent: &Persistent,
    ) -> Result<Program> {
        let physical = |b: Buf| -> Result<Option<Buf>> {
            let value = plan.value(b);
            let whole = match value.kind {
                ValueKind::Temp => assignment.slot_of[b.id as usize].map(|s| slot_bufs[s]),
                ValueKind::Params => persistent.params,
                ValueKind::Grads => persistent.grads,
                ValueKind::State1 => persistent.state1,
                ValueKind::State2 => persistent.state2,
                ValueKind::Acc => persistent.acc,
                ValueKind::Features | ValueKind::Targets | ValueKind::Index => return Ok(None),
            };
            let whole = whole.ok_or_else(|| {
                Error::Shape(format!("plan value `{}` has no buffer", value.name))
            })?;
            if whole.len() < b.offset as usize + b.len() || whole.dtype != value.dtype {
                return Err(Error::Shape(format!(
                    "plan value `{}` does not fit its buffer",
                    value.name
                )));
            }
            Ok(Some(whole.slice(b.offset as usize, b.len())))
        };
        let mut templates = Vec::with_capacity(plan.ops.len());
        for op in &plan.ops {
            let mut op = op.clone();
            let mut external = Vec::new();
            for (pos, (b, _)) in op.operands_mut().into_iter().enumerate() {
                match physical(*b)? {
                    Some(p) => *b = p,
                    None => external.push((pos, plan.value(*b).kind)),
                }
            }
            if external.is_empty() {
                op.check()?;
            }
            templates.push(Template { op, external });
        }
        let output = plan.output.map(physical).transpose()?.flatten();
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(Program {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            plan,
            assignment,
            slot_bufs,
            templates,
            bound: None,
            output,
        })
    }

    /// The plan this program runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Rows per run.
    pub fn rows(&self) -> usize {
        self.plan.rows
    }

    /// The buffer holding a prediction plan's result, (rows, outputs).
    pub fn output(&self) -> Option<Buf> {
        self.output
    }

    /// Binds the data-set operands to `data` and checks the ops that read it.
    fn bind(&mut self, data: &ResidentData) -> Result<()> {
        if self.bound.as_ref().is_some_and(|(id, _)| *id == data.id) {
            return Ok(());
        }
        let mut ops = Vec::with_capacity(self.templates.len());
        for t in &self.templates {
            let mut op = t.op.clone();
            if t.external.is_empty() {
                ops.push(op);
                continue;
            }
            let mut operands = op.operands_mut();
            for &(pos, kind) in &t.external {
                *operands[pos].0 = match kind {
                    ValueKind::Features => data.features,
                    ValueKind::Targets => data.targets.ok_or_else(|| {
                        Error::Dataset(
                            "the data set has no labels or targets to compare with".into(),
                        )
                    })?,
                    _ => data.index,
                };
            }
            drop(operands);
            if let Op::Gather(g) = &mut op
                && g.src == data.features
            {
                g.affine = data.affine;
            }
            op.check()?;
            ops.push(op);
        }
        self.bound = Some((data.id, ops));
        Ok(())
    }

    /// Runs (on the GPU: records) the program's ops on rows `args.start ..` of `data`'s
    /// current order.
    pub fn run(&mut self, b: &mut dyn Backend, data: &ResidentData, args: &StepArgs) -> Result<()> {
        let rows = self.plan.rows;
        if args.start + rows > data.rows {
            return Err(Error::Shape(format!(
                "rows {}..{} of a data set of {} rows",
                args.start,
                args.start + rows,
                data.rows
            )));
        }
        self.bind(data)?;
        let (_, ops) = self.bound.as_mut().expect("bound above");
        for (op, t) in ops.iter_mut().zip(&self.templates) {
            match (op, &t.op) {
                (Op::Gather(g), _) => {
                    g.start = args.start;
                    if let Some(s) = &mut g.shift {
                        // A seed of its own: the offsets are independent of dropout's masks.
                        s.seed = args.seed ^ SHIFT_SEED;
                        s.stream = args.stream_base;
                    }
                }
                (Op::GatherLabels(g), _) => g.start = args.start,
                (Op::Dropout(d), Op::Dropout(layer)) => {
                    d.seed = args.seed;
                    d.stream = args.stream_base.wrapping_add(layer.stream);
                }
                (Op::Update(u), _) => {
                    u.hyper = args.update.ok_or_else(|| {
                        Error::Shape("a training plan run without its update's parameters".into())
                    })?;
                }
                _ => {}
            }
        }
        b.set_replay(Some(self.id));
        let ran = ops.iter().try_for_each(|op| b.run(op));
        b.set_replay(None);
        ran
    }
}

/// What a program is compiled from besides its rows: the model, its mode and (training) its
/// update, and the buffers that outlive a step.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// The model the program computes.
    pub spec: crate::model::ModelSpec,
    /// Where each layer's parameters sit in [`Persistent::params`].
    pub layout: crate::model::ParamLayout,
    /// What the program computes.
    pub mode: super::Mode,
    /// The optimizer update, penalties and clipping; `Some` for [`super::Mode::Train`] only.
    pub training: Option<super::lower::Training>,
    /// The buffers that outlive a step, bound to the plan's persistent values.
    pub persistent: Persistent,
    /// Which compilation passes run.
    pub options: super::PlanOptions,
    /// The most rows a batch has: the full-batch program's buffers serve smaller batches.
    pub batch: usize,
}

impl Recipe {
    /// The plan for `rows` rows: lowered, then fused unless the options say not to.
    pub fn plan(&self, rows: usize) -> Plan {
        self.plan_within(rows, u64::MAX)
    }

    /// The plan for `rows` rows on a backend whose largest binding is `max_buffer_bytes`
    /// ([`Backend::max_buffer_bytes`]): a convolution's patches that would exceed it are read
    /// in place and their gradient made in slices of the batch.
    pub fn plan_within(&self, rows: usize, max_buffer_bytes: u64) -> Plan {
        let mut plan = super::lower::lower(
            &self.spec,
            &self.layout,
            self.mode,
            rows,
            self.training.as_ref(),
            super::lower::Bounds {
                max_buffer_bytes,
                batch: self.batch,
            },
        );
        if self.options.fuse {
            super::fuse::fuse(&mut plan, self.batch);
        }
        plan
    }
}

/// The programs of one recipe, compiled on first use: the full batch's, and one per smaller
/// batch size met (an epoch's last batch), on the full one's buffers.
pub struct ProgramCache {
    /// What the programs are compiled from.
    pub recipe: Recipe,
    programs: Vec<Program>,
}

impl ProgramCache {
    /// An empty cache: nothing is compiled until [`ProgramCache::get`] asks.
    pub fn new(recipe: Recipe) -> ProgramCache {
        ProgramCache {
            recipe,
            programs: Vec::new(),
        }
    }

    /// The program for batches of `rows` rows (at most the recipe's batch).
    pub fn get(
        &mut self,
        b: &mut dyn Backend,
        pool: &mut Pool,
        rows: usize,
    ) -> Result<&mut Program> {
        let batch = self.recipe.batch;
        if rows == 0 || rows > batch {
            return Err(Error::Shape(format!(
                "a batch of {rows} rows from a program compiled for at most {batch}"
            )));
        }
        let max_bytes = b.max_buffer_bytes();
        if self.programs.is_empty() {
            let plan = self.recipe.plan_within(batch, max_bytes);
            self.programs
                .push(Program::new(b, pool, plan, &self.recipe.persistent)?);
        }
        let i = match self.programs.iter().position(|p| p.rows() == rows) {
            Some(i) => i,
            None => {
                let plan = self.recipe.plan_within(rows, max_bytes);
                let p = Program::smaller(&self.programs[0], plan, &self.recipe.persistent)?;
                self.programs.push(p);
                self.programs.len() - 1
            }
        };
        Ok(&mut self.programs[i])
    }

    /// The full batch's program, compiled if needed.
    pub fn full(&mut self, b: &mut dyn Backend, pool: &mut Pool) -> Result<&mut Program> {
        let batch = self.recipe.batch;
        self.get(b, pool, batch)
    }
}
