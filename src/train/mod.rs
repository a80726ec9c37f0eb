//! Training, written once for every backend: the data set is uploaded once, each epoch uploads
//! one shuffled index list, each step replays the compiled training plan, and metrics are read
//! back only when asked for.

mod callbacks;
mod fit;

pub use crate::graph::ResidentData;
pub use crate::model::Metrics;
pub use crate::optim::Regularization;
pub use callbacks::{Callback, Control, EarlyStopping, SaveBest, Silent};
pub use fit::{EpochReport, RunData, fit, fit_dataset, train_epoch};

use crate::backend::{Backend, Buf, DType};
use crate::data::Dataset;
use crate::graph::lower::Training;
use crate::graph::{Mode, Persistent, Plan, ProgramCache, Recipe, StepArgs};
use crate::model::{Model, ModelSpec};
use crate::ops::reduce::ACC_LEN;
use crate::optim::OptimizerConfig;
use crate::rng::Rng;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Training steps recorded per submission to the device once training runs. A submission
/// costs the host a fixed part besides each dispatch's (command encoder, compute pass, the
/// uniform upload, queue submit and wgpu's tracking of the resources it used): on lavapipe the
/// standard MLP's step took 33.5-34.7 us of host time in submissions of 8 steps, 23.6-24.5 us
/// in submissions of 16 and 20.1-21.8 us in submissions of 32 (`bench::host_us_per_step`), then
/// 2.4 us less in submissions of 64 than of 32 and 0.6-0.9 us less in submissions of 128 than
/// of 64 (each pair alternated in one process). After the trainer waits for the device (a read
/// of the metrics, an evaluation) the groups start again from one step and double (see
/// [`Submitter`]), so that the device is not left idle while the host records a whole group.
/// The host runs up to three submissions ahead.
pub const SUBMIT_EVERY: u64 = 128;

/// When the recorded steps go to the device: each group one step larger than all the steps
/// submitted since the device was last known idle (groups of 1, 2, 4, ... steps), up to
/// [`SUBMIT_EVERY`]. Each submission then reaches the device while it may still be running the
/// ones before, and a long run submits in full groups. The trainer counts its own reads (the
/// metrics, an evaluation, the parameters, the optimizer state) as the device going idle; a
/// read through [`Trainer::backend`] is not seen (the next group may then be a full one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Submitter {
    /// Steps recorded and not yet submitted.
    recorded: u64,
    /// Steps submitted since the device was last known idle (at most `SUBMIT_EVERY`).
    queued: u64,
}

impl Submitter {
    /// Counts one more recorded step; true when the steps recorded so far should be submitted.
    ///
    /// ```
    /// use wgtrain::train::{SUBMIT_EVERY, Submitter};
    /// let mut s = Submitter::default();
    /// let due: Vec<u64> = (1..=400).filter(|_| s.step()).collect();
    /// assert_eq!(SUBMIT_EVERY, 128);
    /// assert_eq!(due, [1, 3, 7, 15, 31, 63, 127, 255, 383]);
    /// s.drained();
    /// assert!(s.step());
    /// ```
    pub fn step(&mut self) -> bool {
        self.recorded += 1;
        let due = self.recorded > self.queued || self.recorded >= SUBMIT_EVERY;
        if due {
            self.submitted();
        }
        due
    }

    /// The steps recorded so far were submitted.
    pub fn submitted(&mut self) {
        self.queued = (self.queued + self.recorded).min(SUBMIT_EVERY);
        self.recorded = 0;
    }

    /// The device has run everything submitted (the host waited for it): the next group is one
    /// step.
    pub fn drained(&mut self) {
        *self = Submitter::default();
    }
}

/// Where training stands: everything an exact resume needs besides the buffers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer updates done (drives the learning-rate schedule and Adam's bias corrections).
    pub step: u64,
    /// The shuffling generator's state at the start of the current epoch, before its shuffle.
    pub rng: Rng,
    /// Rows of the current epoch already trained on (non-zero only when stopped part-way).
    pub rows_done: usize,
    /// The metrics accumulator of the current epoch so far: the sums of row losses and of row
    /// metrics over its `rows_done` rows.
    #[serde(deserialize_with = "sums")]
    pub partial: [f32; ACC_LEN],
}

/// The accumulator's sums, also from checkpoints of earlier versions, which stored a third
/// value (the row count, now counted on the host).
fn sums<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<[f32; ACC_LEN], D::Error> {
    let v: Vec<f32> = Vec::deserialize(d)?;
    match v[..] {
        [l, m, ..] => Ok([l, m]),
        _ => Err(serde::de::Error::custom(
            "the partial metrics need two sums",
        )),
    }
}

/// A model with its gradients, optimizer state and schedule, resident on one backend.
///
/// ```
/// use wgtrain::backend::cpu::CpuBackend;
/// use wgtrain::data::Dataset;
/// use wgtrain::model::{Model, Sequential};
/// use wgtrain::optim::{OptimizerConfig, OptimizerKind};
/// use wgtrain::train::{Trainer, fit_dataset};
///
/// // y = 2x - 1 from eight points.
/// let x: Vec<f32> = (0..8).map(|i| i as f32 / 8.0).collect();
/// let y: Vec<f32> = x.iter().map(|v| 2.0 * v - 1.0).collect();
/// let data = Dataset::regression(ndarray::ArrayView2::from_shape((8, 1), &x).unwrap(),
///                                ndarray::ArrayView2::from_shape((8, 1), &y).unwrap()).unwrap();
/// let spec = Sequential::new(1).dense(1).mse().unwrap();
/// let model = Model::new(Box::new(CpuBackend::new()), spec, 1).unwrap();
/// let adam = OptimizerConfig { lr: 0.1, ..OptimizerConfig::new(OptimizerKind::Adam) };
/// let mut trainer = Trainer::new(model, 8, adam, 1).unwrap();
/// let reports = fit_dataset(&mut trainer, &data, 200, &mut []).unwrap();
/// assert!(reports.last().unwrap().train_loss < 1e-3);
/// ```
pub struct Trainer {
    model: Model,
    /// The optimizer's settings. Each step reads them afresh, so a change (a new learning rate,
    /// say) applies from the next step; only [`Trainer::new`] validates them, so keep changes in
    /// range.
    pub optimizer: OptimizerConfig,
    regularization: Regularization,
    clip_norm: Option<f32>,
    /// The most pixels a training image moves (augmentation; 0: none).
    shift: u32,
    /// Where training stands; a checkpoint stores it and [`Trainer::restore`] puts it back.
    pub progress: Progress,
    batch: usize,
    /// Seed of the dropout masks (the stream is the step).
    dropout_seed: u32,
    grads: Buf,
    state1: Buf,
    state2: Buf,
    /// The training metrics accumulator.
    acc: Buf,
    train: Option<ProgramCache>,
    submitter: Submitter,
}

impl Trainer {
    /// Trains `model` in batches of up to `batch` rows with `optimizer`; `seed` draws the
    /// shuffles and the dropout masks.
    pub fn new(
        model: Model,
        batch: usize,
        optimizer: OptimizerConfig,
        seed: u64,
    ) -> Result<Trainer> {
        optimizer.validate()?;
        if batch == 0 {
            return Err(Error::Config("the batch size must be at least 1".into()));
        }
        let mut model = model;
        // Evaluation between epochs runs batches of the same size.
        model.set_batch_size(batch)?;
        let total = model.layout().total;
        let b = model.backend();
        let grads = b.alloc(DType::F32, total, "grads")?;
        let state1 = b.alloc(DType::F32, total, "optimizer state 1")?;
        let state2 = b.alloc(DType::F32, total, "optimizer state 2")?;
        let acc = b.alloc(DType::F32, ACC_LEN, "training metrics")?;
        // The first fork drew the model's initial parameters (`Model::new`).
        let mut rng = Rng::new(seed);
        rng.fork();
        Ok(Trainer {
            model,
            optimizer,
            regularization: Regularization::default(),
            clip_norm: None,
            shift: 0,
            progress: Progress {
                epoch: 0,
                step: 0,
                rng: rng.fork(),
                rows_done: 0,
                partial: [0.0; ACC_LEN],
            },
            batch,
            dropout_seed: (seed ^ (seed >> 32)) as u32,
            grads,
            state1,
            state2,
            acc,
            train: None,
            submitter: Submitter::default(),
        })
    }

    /// A model of `spec` with fresh parameters drawn from `seed`, and its trainer.
    pub fn from_spec(
        backend: Box<dyn Backend>,
        spec: ModelSpec,
        batch: usize,
        optimizer: OptimizerConfig,
        seed: u64,
    ) -> Result<Trainer> {
        Trainer::new(Model::new(backend, spec, seed)?, batch, optimizer, seed)
    }

    /// Adds L1/L2 penalties to the loss.
    pub fn with_regularization(mut self, r: Regularization) -> Result<Trainer> {
        r.validate()?;
        self.regularization = r;
        self.train = None;
        Ok(self)
    }

    /// Clips the gradient to a global norm of at most `max_norm` before each update (as
    /// PyTorch's `clip_grad_norm_`).
    pub fn with_clip_norm(mut self, max_norm: Option<f32>) -> Result<Trainer> {
        if let Some(m) = max_norm
            && !(m.is_finite() && m > 0.0)
        {
            return Err(Error::Config(format!(
                "--clip-norm must be a finite number > 0, got {m}"
            )));
        }
        self.clip_norm = max_norm;
        self.train = None;
        Ok(self)
    }

    /// Moves each training image by a random offset of up to `max_pixels` pixels along each
    /// axis, a new one every step (data augmentation: the network sees digits that are not
    /// all centred the same way); 0 turns it off. Evaluation and prediction see the images as
    /// they are. Needs image inputs of more than `max_pixels` pixels each way.
    ///
    /// ```
    /// use wgtrain::backend::cpu::CpuBackend;
    /// use wgtrain::data::Scale;
    /// use wgtrain::model::{Model, Sequential};
    /// use wgtrain::optim::{OptimizerConfig, OptimizerKind};
    /// use wgtrain::train::Trainer;
    ///
    /// // 8x8 grayscale images; each training image moves up to 2 pixels each way.
    /// let spec = Sequential::images(8, 8, 1, Scale::ZeroOne)
    ///     .conv(4, 3)
    ///     .relu()
    ///     .flatten()
    ///     .dense(10)
    ///     .cross_entropy()?;
    /// let model = Model::new(Box::new(CpuBackend::new()), spec, 1)?;
    /// let adam = OptimizerConfig::new(OptimizerKind::Adam);
    /// let trainer = Trainer::new(model, 32, adam, 1)?.with_shift(2)?;
    /// assert_eq!(trainer.shift(), 2);
    /// # Ok::<(), wgtrain::Error>(())
    /// ```
    pub fn with_shift(mut self, max_pixels: u32) -> Result<Trainer> {
        if max_pixels > 0 {
            let spec = self.model.spec();
            let Some((h, w, _)) = crate::graph::lower::image_dims(spec) else {
                return Err(Error::Config(format!(
                    "a shift of {max_pixels} pixels needs image inputs; this model reads rows of {} features",
                    spec.inputs()
                )));
            };
            if max_pixels as usize >= h.min(w) {
                return Err(Error::Config(format!(
                    "a shift of {max_pixels} pixels would move {h}x{w} images out of sight; use at most {}",
                    h.min(w) - 1
                )));
            }
        }
        self.shift = max_pixels;
        self.train = None;
        Ok(self)
    }

    /// The most pixels a training image moves ([`Trainer::with_shift`]).
    pub fn shift(&self) -> u32 {
        self.shift
    }

    /// Whether plans fuse ops ([`crate::graph::fuse`]), for the model's plans and the
    /// trainer's.
    pub fn set_plan_options(&mut self, options: crate::graph::PlanOptions) {
        self.model.set_plan_options(options);
        self.train = None;
    }

    /// The L1/L2 penalties the trainer adds to the loss.
    pub fn regularization(&self) -> Regularization {
        self.regularization
    }

    /// The global gradient norm gradients are clipped to, if any.
    pub fn clip_norm(&self) -> Option<f32> {
        self.clip_norm
    }

    /// Rows per training step.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// The model being trained.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model being trained, mutably (to save it, evaluate it or change its parameters between
    /// steps).
    pub fn model_mut(&mut self) -> &mut Model {
        &mut self.model
    }

    /// The trained model, without the trainer's gradients and optimizer state.
    pub fn into_model(self) -> Model {
        self.model
    }

    /// What the model is.
    pub fn spec(&self) -> &ModelSpec {
        self.model.spec()
    }

    /// The backend the model and the trainer's buffers live on.
    pub fn backend(&mut self) -> &mut dyn Backend {
        self.model.backend()
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f32 {
        self.optimizer.lr_at(self.progress.step)
    }

    fn recipe(&self) -> Recipe {
        Recipe {
            spec: self.model.spec().clone(),
            layout: self.model.layout().clone(),
            mode: Mode::Train,
            training: Some(Training {
                update: self.optimizer.update_params(0),
                regularization: self.regularization,
                clip_norm: self.clip_norm,
                shift: self.shift,
            }),
            persistent: Persistent {
                params: Some(self.model.params_buf()),
                grads: Some(self.grads),
                state1: Some(self.state1),
                state2: Some(self.state2),
                acc: Some(self.acc),
            },
            options: self.model.plan_options(),
            batch: self.batch,
        }
    }

    /// The plan of a training step on `rows` rows, as the trainer runs it (for printing).
    pub fn plan(&self, rows: usize) -> Plan {
        self.recipe()
            .plan_within(rows, self.model.max_buffer_bytes())
    }

    /// Uploads a data set once, for training or evaluation with this model.
    pub fn upload(&mut self, data: &Dataset) -> Result<ResidentData> {
        self.model.upload(data)
    }

    /// Draws the current epoch's order and uploads it: the only per-epoch transfer to the
    /// backend. Returns the generator as it is after the shuffle (the next epoch's start).
    pub fn shuffle(&mut self, data: &ResidentData) -> Result<Rng> {
        let mut order: Vec<u32> = (0..data.rows as u32).collect();
        let mut rng = self.progress.rng.clone();
        rng.shuffle(&mut order);
        self.model.backend().write_u32(data.index, &order)?;
        Ok(rng)
    }

    /// Reads the raw accumulator `[Σ loss, Σ metric]` (a sync point on the GPU).
    pub fn read_acc(&mut self) -> Result<[f32; ACC_LEN]> {
        let v = self.model.backend().read_f32(self.acc)?;
        self.submitter.drained();
        Ok([v[0], v[1]])
    }

    /// Sets the accumulator (zero at an epoch's start, the checkpoint's when resuming).
    pub fn write_acc(&mut self, acc: [f32; ACC_LEN]) -> Result<()> {
        let acc_buf = self.acc;
        self.model.backend().write_f32(acc_buf, &acc)
    }

    /// One training step on rows `start .. start + rows` of the current order: the compiled
    /// plan (gather, forward, loss into the metrics, backward, penalties, update) replayed with
    /// this step's scalars. The recorded work goes to the device in groups of steps (see
    /// [`Submitter`]): after a read, at once, then in groups that double up to
    /// [`SUBMIT_EVERY`] steps.
    pub fn step(&mut self, data: &ResidentData, start: usize, rows: usize) -> Result<()> {
        if self.train.is_none() {
            self.train = Some(ProgramCache::new(self.recipe()));
        }
        let args = StepArgs {
            start,
            seed: self.dropout_seed,
            // One stream per (step, layer): layer i of step s draws stream s·layers + i.
            stream_base: (self.progress.step as u32)
                .wrapping_mul(self.model.spec().layers.len() as u32),
            update: Some(self.optimizer.update_params(self.progress.step)),
        };
        let cache = self.train.as_mut().expect("set above");
        let model = &mut self.model;
        let mut pool = std::mem::take(&mut model.pool);
        let ran = cache
            .get(model.backend(), &mut pool, rows)
            .and_then(|p| p.run(model.backend(), data, &args));
        model.pool = pool;
        ran?;
        self.progress.step += 1;
        if self.submitter.step() {
            self.model.backend().flush()?;
        }
        Ok(())
    }

    /// Hands the steps recorded so far to the device now, as a group of their own (training
    /// submits them in groups by itself; see [`Trainer::step`]).
    pub fn submit(&mut self) -> Result<()> {
        self.submitter.submitted();
        self.model.backend().flush()
    }

    /// The model's loss and metric over `data` (no dropout, no update).
    pub fn evaluate(&mut self, data: &ResidentData) -> Result<Metrics> {
        let m = self.model.evaluate(data)?;
        self.submitter.drained();
        Ok(m)
    }

    /// The flat parameter vector (layout [`Model::layout`]).
    pub fn params(&mut self) -> Result<Vec<f32>> {
        let p = self.model.params()?;
        self.submitter.drained();
        Ok(p)
    }

    /// The flat parameters, or `Diverged` (naming `epoch` and the current step) when any is
    /// NaN or infinite: parameters can overflow while the mean loss still looks finite, and
    /// such values must never reach a checkpoint or a saved model.
    pub fn finite_params(&mut self, epoch: usize) -> Result<Vec<f32>> {
        let params = self.params()?;
        match params.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(Error::Diverged {
                epoch,
                step: self.progress.step as usize,
                what: format!("a parameter (index {i})"),
            }),
            None => Ok(params),
        }
    }

    /// The optimizer's two state buffers (flat layout), for checkpoints.
    pub fn optimizer_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        let (s1, s2) = (self.state1, self.state2);
        let b = self.model.backend();
        let state = (b.read_f32(s1)?, b.read_f32(s2)?);
        self.submitter.drained();
        Ok(state)
    }

    /// Puts parameters, optimizer state and progress back as a checkpoint had them.
    pub fn restore(
        &mut self,
        params: &[f32],
        state1: &[f32],
        state2: &[f32],
        progress: Progress,
    ) -> Result<()> {
        let total = self.model.layout().total;
        for (what, v) in [("state1", state1), ("state2", state2)] {
            if v.len() != total {
                return Err(Error::Shape(format!(
                    "checkpoint {what} have {} values, the model needs {total}",
                    v.len()
                )));
            }
        }
        self.model.set_params(params)?;
        let (s1, s2) = (self.state1, self.state2);
        let b = self.model.backend();
        b.write_f32(s1, state1)?;
        b.write_f32(s2, state2)?;
        self.progress = progress;
        Ok(())
    }

    /// The regularisation penalty at the current parameters.
    pub fn penalty(&mut self) -> Result<f64> {
        if self.regularization.is_zero() {
            return Ok(0.0);
        }
        let p = self.params()?;
        Ok(self.regularization.penalty(self.model.layout(), &p))
    }
}
