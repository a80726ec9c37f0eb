//! Training and evaluation, written once for every backend: the data set is uploaded once, each
//! epoch uploads one shuffled index list, each step records ops, and metrics are read back only
//! when asked for.

mod fit;
mod resident;

pub use fit::{EpochReport, Observer, RunData, Silent, fit, train_epoch};
pub use resident::ResidentData;

use crate::backend::{ACC_LEN, Backend, Buf};
use crate::data::Dataset;
use crate::model::{ModelSpec, Network, ParamLayout, init_params};
use crate::optim::OptimizerConfig;
use crate::rng::Rng;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Training steps recorded per submission to the device. Each submission costs the host tens
/// of microseconds (command encoder, pass, queue submit): on lavapipe, with a 2-16-16-3 model
/// at batch 16 whose kernels cost next to nothing, one submission per step ran at 987-1168
/// us/step and one per 8 steps at 923-965; on a GPU whose step takes tens of microseconds
/// that overhead would be most of the step. 8 steps keep the device fed (the host runs up to
/// three submissions ahead) and the progress bar current.
pub const SUBMIT_EVERY: u64 = 8;

/// L1 and L2 penalty strengths, for weights and biases separately.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Regularization {
    pub l1_weights: f32,
    pub l2_weights: f32,
    pub l1_biases: f32,
    pub l2_biases: f32,
}

impl Regularization {
    pub fn is_zero(&self) -> bool {
        *self == Regularization::default()
    }

    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("--l1", self.l1_weights),
            ("--l2", self.l2_weights),
            ("--l1-bias", self.l1_biases),
            ("--l2-bias", self.l2_biases),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Config(format!(
                    "{name} must be a finite number >= 0, got {v}"
                )));
            }
        }
        Ok(())
    }

    /// The penalty `Σ l1·|w| + l2·w²` over weights and biases of the flat parameters.
    pub fn penalty(&self, layout: &ParamLayout, params: &[f32]) -> f64 {
        if self.is_zero() {
            return 0.0;
        }
        let term = |v: &[f32], l1: f32, l2: f32| -> f64 {
            v.iter()
                .map(|&x| l1 as f64 * (x as f64).abs() + l2 as f64 * (x as f64).powi(2))
                .sum()
        };
        layout
            .slots
            .iter()
            .map(|s| {
                let w = &params[s.weight_offset..s.weight_offset + s.inputs * s.outputs];
                let b = &params[s.bias_offset..s.bias_offset + s.outputs];
                term(w, self.l1_weights, self.l2_weights) + term(b, self.l1_biases, self.l2_biases)
            })
            .sum()
    }
}

/// Mean loss and metric over the rows seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean data loss per row.
    pub loss: f64,
    /// Accuracy (0..1) for classification, mean absolute error for regression.
    pub metric: f64,
    pub rows: usize,
}

impl Metrics {
    fn from_acc(acc: &[f32]) -> Metrics {
        let rows = acc[2].round() as usize;
        let n = rows.max(1) as f64;
        Metrics {
            loss: acc[0] as f64 / n,
            metric: acc[1] as f64 / n,
            rows,
        }
    }
}

/// Where training stands: everything an exact resume needs besides the buffers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer updates done (drives the lr decay and Adam's bias corrections).
    pub step: u64,
    /// The shuffling generator's state at the start of the current epoch, before its shuffle.
    pub rng: Rng,
    /// Rows of the current epoch already trained on (non-zero only when interrupted mid-epoch).
    pub rows_done: usize,
    /// The metrics accumulator of the current epoch so far.
    pub partial: [f32; ACC_LEN],
}

/// A model, its optimizer and its training data, resident on one backend.
pub struct Trainer {
    pub backend: Box<dyn Backend>,
    pub net: Network,
    pub optimizer: OptimizerConfig,
    pub regularization: Regularization,
    pub progress: Progress,
    /// Seed of the dropout masks (the stream is the step).
    dropout_seed: u32,
    acc: Buf,
}

impl Trainer {
    /// Plans `spec` on `backend` with fresh parameters drawn from `seed`.
    pub fn new(
        backend: Box<dyn Backend>,
        spec: ModelSpec,
        max_batch: usize,
        optimizer: OptimizerConfig,
        regularization: Regularization,
        seed: u64,
    ) -> Result<Trainer> {
        Trainer::with_params(
            backend,
            spec,
            None,
            max_batch,
            optimizer,
            regularization,
            seed,
        )
    }

    /// Plans `spec` on `backend` with the given flat parameters (a saved model), or fresh ones
    /// drawn from `seed` when `params` is `None`.
    pub fn with_params(
        mut backend: Box<dyn Backend>,
        spec: ModelSpec,
        params: Option<&[f32]>,
        max_batch: usize,
        optimizer: OptimizerConfig,
        regularization: Regularization,
        seed: u64,
    ) -> Result<Trainer> {
        // Before the layout and initialisation, whose sizes it bounds.
        spec.validate()?;
        optimizer.validate()?;
        regularization.validate()?;
        let mut rng = Rng::new(seed);
        let layout = ParamLayout::new(&spec);
        // Drawn even when unused, so the shuffling stream below is the same either way.
        let fresh = init_params(&spec, &layout, &mut rng.fork());
        let net = Network::new(backend.as_mut(), spec, max_batch, params.unwrap_or(&fresh))?;
        let acc = Network::new_accumulator(backend.as_mut())?;
        Ok(Trainer {
            backend,
            net,
            optimizer,
            regularization,
            progress: Progress {
                epoch: 0,
                step: 0,
                rng: rng.fork(),
                rows_done: 0,
                partial: [0.0; ACC_LEN],
            },
            dropout_seed: (seed ^ (seed >> 32)) as u32,
            acc,
        })
    }

    /// Uploads a data set once, for training or evaluation with this model.
    pub fn upload(&mut self, data: &Dataset) -> Result<ResidentData> {
        ResidentData::upload(self.backend.as_mut(), data, &self.net.spec)
    }

    /// Draws the current epoch's order and uploads it: the only per-epoch transfer to the
    /// backend. Returns the generator as it is after the shuffle (the next epoch's start).
    pub fn shuffle(&mut self, data: &ResidentData) -> Result<Rng> {
        let mut order: Vec<u32> = (0..data.rows as u32).collect();
        let mut rng = self.progress.rng.clone();
        rng.shuffle(&mut order);
        self.backend.write_u32(data.index, &order)?;
        Ok(rng)
    }

    /// Zeroes the metrics accumulator.
    pub fn reset_metrics(&mut self) -> Result<()> {
        self.backend.fill(self.acc, 0.0)
    }

    /// Reads the raw accumulator `[Σ loss, Σ metric, rows]` (a sync point on the GPU).
    pub fn read_acc(&mut self) -> Result<[f32; ACC_LEN]> {
        let v = self.backend.read_f32(self.acc)?;
        Ok([v[0], v[1], v[2]])
    }

    /// Sets the accumulator (when resuming mid-epoch).
    pub fn write_acc(&mut self, acc: [f32; ACC_LEN]) -> Result<()> {
        self.backend.write_f32(self.acc, &acc)
    }

    /// Reads the accumulated metrics (a sync point on the GPU).
    pub fn read_metrics(&mut self) -> Result<Metrics> {
        Ok(Metrics::from_acc(&self.read_acc()?))
    }

    /// One training step on rows `start .. start + rows` of the current order: assemble the
    /// batch, forward, loss (accumulated into the metrics), backward, penalties, update. Every
    /// [`SUBMIT_EVERY`] steps the recorded work is handed to the device.
    pub fn step(&mut self, data: &ResidentData, start: usize, rows: usize) -> Result<()> {
        let b = self.backend.as_mut();
        let net = &self.net;
        data.gather(b, net, start, rows)?;
        let stream_base = (self.progress.step as u32).wrapping_mul(64);
        let inputs = net.forward(b, rows, true, self.dropout_seed, stream_base)?;
        let grad = net.loss_grad();
        b.loss(
            net.spec.loss,
            net.logits(),
            net.targets,
            rows,
            net.spec.outputs(),
            Some(grad),
            net.stats,
        )?;
        b.accumulate_stats(net.stats, rows, self.acc)?;
        net.backward(b, rows, true, &inputs)?;
        let r = self.regularization;
        if !r.is_zero() {
            for slot in 0..net.layout.slots.len() {
                let ((w, bias), (gw, gb)) = (net.param_views(slot), net.grad_views(slot));
                if r.l1_weights > 0.0 || r.l2_weights > 0.0 {
                    b.regularize(w, gw, r.l1_weights, r.l2_weights)?;
                }
                if r.l1_biases > 0.0 || r.l2_biases > 0.0 {
                    b.regularize(bias, gb, r.l1_biases, r.l2_biases)?;
                }
            }
        }
        let u = self.optimizer.update_params(self.progress.step);
        b.update(net.params, net.grads, net.state1, net.state2, &u)?;
        self.progress.step += 1;
        if self.progress.step.is_multiple_of(SUBMIT_EVERY) {
            b.flush()?;
        }
        Ok(())
    }

    /// Forward-only pass over a whole data set in batches, without dropout.
    pub fn evaluate(&mut self, data: &ResidentData) -> Result<Metrics> {
        self.reset_metrics()?;
        let b = self.backend.as_mut();
        let net = &self.net;
        for start in (0..data.rows).step_by(net.max_batch) {
            let rows = net.max_batch.min(data.rows - start);
            data.gather(b, net, start, rows)?;
            net.forward(b, rows, false, 0, 0)?;
            b.loss(
                net.spec.loss,
                net.logits(),
                net.targets,
                rows,
                net.spec.outputs(),
                None,
                net.stats,
            )?;
            b.accumulate_stats(net.stats, rows, self.acc)?;
        }
        self.read_metrics()
    }

    /// The last layer's outputs before the output activation, for every row of `data` in its
    /// stored order, (rows, outputs) row-major.
    pub fn logits(&mut self, data: &ResidentData) -> Result<Vec<f32>> {
        let outputs = self.net.spec.outputs();
        let mut all = Vec::with_capacity(data.rows * outputs);
        let b = self.backend.as_mut();
        // Training on `data` leaves its index in the last epoch's shuffled order; outputs must
        // line up with the rows as stored.
        let identity: Vec<u32> = (0..data.rows as u32).collect();
        b.write_u32(data.index, &identity)?;
        let net = &self.net;
        for start in (0..data.rows).step_by(net.max_batch) {
            let rows = net.max_batch.min(data.rows - start);
            data.gather(b, net, start, rows)?;
            net.forward(b, rows, false, 0, 0)?;
            all.extend_from_slice(&b.read_f32(net.logits().slice(0, rows * outputs))?);
        }
        Ok(all)
    }

    /// Output of the model after the loss's output activation (probabilities for class
    /// models), for every row of `data` in its stored order, (rows, outputs) row-major.
    pub fn predict(&mut self, data: &ResidentData) -> Result<Vec<f32>> {
        let outputs = self.net.spec.outputs();
        let mut all = self.logits(data)?;
        // A few values per row: the host applies the activation, with the CPU reference's code.
        crate::backend::cpu::activate(self.net.spec.loss.output_activation(), &mut all, outputs);
        Ok(all)
    }

    /// The flat parameter vector (layout `self.net.layout`).
    pub fn params(&mut self) -> Result<Vec<f32>> {
        self.backend.read_f32(self.net.params)
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
        Ok((
            self.backend.read_f32(self.net.state1)?,
            self.backend.read_f32(self.net.state2)?,
        ))
    }

    /// Puts parameters, optimizer state and progress back as a checkpoint had them.
    pub fn restore(
        &mut self,
        params: &[f32],
        state1: &[f32],
        state2: &[f32],
        progress: Progress,
    ) -> Result<()> {
        let total = self.net.layout.total;
        for (what, v) in [
            ("parameters", params),
            ("state1", state1),
            ("state2", state2),
        ] {
            if v.len() != total {
                return Err(Error::Shape(format!(
                    "checkpoint {what} have {} values, the model needs {total}",
                    v.len()
                )));
            }
        }
        self.backend.write_f32(self.net.params, params)?;
        self.backend.write_f32(self.net.state1, state1)?;
        self.backend.write_f32(self.net.state2, state2)?;
        self.progress = progress;
        Ok(())
    }

    /// The regularisation penalty at the current parameters.
    pub fn penalty(&mut self) -> Result<f64> {
        if self.regularization.is_zero() {
            return Ok(0.0);
        }
        let p = self.params()?;
        Ok(self.regularization.penalty(&self.net.layout, &p))
    }
}
