//! [`Model`]: a model resident on a backend, its parameters and its inference plans. What
//! evaluation, prediction, saving and loading use; a [`crate::train::Trainer`] owns one.

use super::{ModelSpec, ParamLayout, Task, init_params};
use crate::backend::{Backend, Buf, DType};
use crate::data::{Dataset, Features};
use crate::graph::program::buf_bytes;
use crate::graph::{
    Mode, Persistent, PlanOptions, Pool, ProgramCache, Recipe, ResidentData, StepArgs,
};
use crate::ops::reduce::ACC_LEN;
use crate::rng::Rng;
use crate::{Error, Result};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Mean loss and metric over the rows seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean data loss per row.
    pub loss: f64,
    /// Accuracy (0..1) for classification, mean absolute error for regression.
    pub metric: f64,
    /// Rows the means are over.
    pub rows: usize,
}

impl Metrics {
    /// From a metrics accumulator's sums over `rows` rows.
    pub(crate) fn from_sums(acc: &[f32], rows: usize) -> Metrics {
        let n = rows.max(1) as f64;
        Metrics {
            loss: acc[0] as f64 / n,
            metric: acc[1] as f64 / n,
            rows,
        }
    }
}

/// A model on a backend: its spec, its parameters in device (or host) memory, and the plans
/// that evaluate it and predict with it, compiled on first use for batches of up to
/// [`Model::batch_size`] rows. It holds no gradients and no optimizer state: its memory is the
/// parameters plus one batch of activations ([`Model::memory_bytes`]).
///
/// ```
/// use wgtrain::backend::cpu::CpuBackend;
/// use wgtrain::model::{Model, Sequential};
///
/// let spec = Sequential::new(4).dense(8).relu().dense(3).cross_entropy().unwrap();
/// let mut model = Model::new(Box::new(CpuBackend::new()), spec, 7).unwrap();
/// let x = ndarray::Array2::<f32>::zeros((2, 4));
/// let p = model.predict(x.view()).unwrap();
/// assert_eq!(p.dim(), (2, 3));
/// // Each row is a probability distribution over the 3 classes.
/// assert!((p.row(0).sum() - 1.0).abs() < 1e-5);
/// ```
pub struct Model {
    backend: Box<dyn Backend>,
    spec: ModelSpec,
    layout: ParamLayout,
    params: Buf,
    /// The evaluation accumulator.
    acc: Buf,
    batch: usize,
    pub(crate) pool: Pool,
    options: PlanOptions,
    eval: Option<ProgramCache>,
    predict: Option<ProgramCache>,
}

/// The batch size [`Model::new`] and [`Model::with_params`] start with.
pub const DEFAULT_BATCH: usize = 256;

impl Model {
    /// `spec` on `backend` with fresh parameters drawn from `seed` (He-normal weights before
    /// ReLU-family activations, Xavier-uniform otherwise, zero biases).
    pub fn new(backend: Box<dyn Backend>, spec: ModelSpec, seed: u64) -> Result<Model> {
        spec.validate()?;
        let layout = ParamLayout::new(&spec);
        let params = init_params(&spec, &layout, &mut Rng::new(seed).fork());
        Model::with_params(backend, spec, &params)
    }

    /// `spec` on `backend` with the given flat parameters (laid out as
    /// [`ParamLayout::new`] says, e.g. a saved model's).
    pub fn with_params(
        backend: Box<dyn Backend>,
        spec: ModelSpec,
        params: &[f32],
    ) -> Result<Model> {
        spec.validate()?;
        let layout = ParamLayout::new(&spec);
        if params.len() != layout.total {
            return Err(Error::Shape(format!(
                "parameter vector has {} values, the model's layout needs {}",
                params.len(),
                layout.total
            )));
        }
        let mut backend = backend;
        let p = backend.alloc(DType::F32, layout.total, "params")?;
        backend.write_f32(p, params)?;
        let acc = backend.alloc(DType::F32, ACC_LEN, "evaluation metrics")?;
        Ok(Model {
            backend,
            spec,
            layout,
            params: p,
            acc,
            batch: DEFAULT_BATCH,
            pool: Pool::default(),
            options: PlanOptions::default(),
            eval: None,
            predict: None,
        })
    }

    /// A model file written by [`Model::save`] (or `wgtrain train --save`, or a checkpoint),
    /// on `backend`.
    pub fn load(path: impl AsRef<Path>, backend: Box<dyn Backend>) -> Result<Model> {
        let saved = crate::store::load_model(path.as_ref())?;
        Model::with_params(backend, saved.spec, &saved.params)
    }

    /// Writes the model to a safetensors file (atomically), loadable with [`Model::load`] and
    /// in Python with `safetensors` alone.
    pub fn save(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let params = self.params()?;
        crate::store::save_model(path.as_ref(), &self.spec, &params)
    }

    /// What the model is: its layers, loss, input shape and scaling.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Where each layer's parameters sit in the flat vector [`Model::params`] returns.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// The most bytes one op's operand may take on the backend ([`Backend::max_buffer_bytes`]).
    pub fn max_buffer_bytes(&self) -> u64 {
        self.backend.max_buffer_bytes()
    }

    /// The backend the model lives on.
    pub fn backend(&mut self) -> &mut dyn Backend {
        self.backend.as_mut()
    }

    /// The most rows one pass of evaluation or prediction runs.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Sets the most rows one pass of evaluation or prediction runs (the accuracy is the same
    /// for any size; a larger batch takes more memory and fewer passes).
    pub fn set_batch_size(&mut self, batch: usize) -> Result<()> {
        if batch == 0 {
            return Err(Error::Config("the batch size must be at least 1".into()));
        }
        if batch != self.batch {
            self.batch = batch;
            self.eval = None;
            self.predict = None;
        }
        Ok(())
    }

    /// Whether plans fuse ops (see [`crate::graph::fuse`]); on unless `WGTRAIN_FUSE=0`.
    pub fn set_plan_options(&mut self, options: PlanOptions) {
        self.options = options;
        self.eval = None;
        self.predict = None;
    }

    /// The options the model's plans are compiled with.
    pub fn plan_options(&self) -> PlanOptions {
        self.options
    }

    /// The buffer of the flat parameters (for a trainer's plans).
    pub(crate) fn params_buf(&self) -> Buf {
        self.params
    }

    /// The flat parameter vector (layout [`Model::layout`]).
    pub fn params(&mut self) -> Result<Vec<f32>> {
        self.backend.read_f32(self.params)
    }

    /// Replaces the parameters (same layout).
    pub fn set_params(&mut self, params: &[f32]) -> Result<()> {
        if params.len() != self.layout.total {
            return Err(Error::Shape(format!(
                "parameter vector has {} values, the model's layout needs {}",
                params.len(),
                self.layout.total
            )));
        }
        self.backend.write_f32(self.params, params)
    }

    /// Device (or host) memory the model holds: parameters, metrics and the temporaries of
    /// its plans (and of a trainer's plans, which share them).
    pub fn memory_bytes(&self) -> u64 {
        buf_bytes(self.params) + buf_bytes(self.acc) + self.pool.bytes()
    }

    /// Uploads a data set once, for evaluation or prediction with this model.
    pub fn upload(&mut self, data: &Dataset) -> Result<ResidentData> {
        ResidentData::upload(self.backend.as_mut(), data, &self.spec)
    }

    /// The mean loss and accuracy (or MAE) over every row of `data`, through the plan
    /// training's evaluation runs.
    pub fn evaluate(&mut self, data: &ResidentData) -> Result<Metrics> {
        self.backend.write_f32(self.acc, &[0.0; ACC_LEN])?;
        self.each_batch(Mode::Eval, data, |_, _, _| Ok(()))?;
        let acc = self.backend.read_f32(self.acc)?;
        Ok(Metrics::from_sums(&acc, data.rows))
    }

    /// The last layer's outputs before the loss's output activation, for every row of `data`
    /// in its stored order, (rows, outputs) row-major.
    pub fn logits(&mut self, data: &ResidentData) -> Result<Vec<f32>> {
        let outputs = self.spec.outputs();
        let mut all = Vec::with_capacity(data.rows * outputs);
        // Training on `data` leaves its index in the last epoch's shuffled order; outputs must
        // line up with the rows as stored.
        let identity: Vec<u32> = (0..data.rows as u32).collect();
        self.backend.write_u32(data.index, &identity)?;
        self.each_batch(Mode::Predict, data, |b, out, rows| {
            let out = out.expect("prediction plans have an output");
            all.extend_from_slice(&b.read_f32(out.slice(0, rows * outputs))?);
            Ok(())
        })?;
        Ok(all)
    }

    /// Runs the `mode` plan (evaluation or prediction) on every row of `data` in batches of up
    /// to [`Model::batch_size`] rows, calling `after(backend, output buffer, rows)` after each.
    fn each_batch(
        &mut self,
        mode: Mode,
        data: &ResidentData,
        mut after: impl FnMut(&mut dyn Backend, Option<Buf>, usize) -> Result<()>,
    ) -> Result<()> {
        let persistent = Persistent {
            params: Some(self.params),
            acc: (mode == Mode::Eval).then_some(self.acc),
            ..Persistent::default()
        };
        let slot = if mode == Mode::Eval {
            &mut self.eval
        } else {
            &mut self.predict
        };
        let cache = match slot {
            Some(c) => c,
            None => slot.insert(ProgramCache::new(Recipe {
                spec: self.spec.clone(),
                layout: self.layout.clone(),
                mode,
                training: None,
                persistent,
                options: self.options,
                batch: self.batch,
            })),
        };
        let b = self.backend.as_mut();
        for start in (0..data.rows).step_by(self.batch) {
            let rows = self.batch.min(data.rows - start);
            let args = StepArgs {
                start,
                seed: 0,
                stream_base: 0,
                update: None,
            };
            let program = cache.get(b, &mut self.pool, rows)?;
            program.run(b, data, &args)?;
            after(b, program.output(), rows)?;
        }
        Ok(())
    }

    /// The model's outputs after the loss's output activation (probabilities for classifiers,
    /// values for regressors) for every row of `data` in its stored order, (rows, outputs)
    /// row-major.
    pub fn outputs(&mut self, data: &ResidentData) -> Result<Vec<f32>> {
        let outputs = self.spec.outputs();
        let mut all = self.logits(data)?;
        // A few values per row: the host applies the activation, with the CPU reference's code.
        crate::ops::activation::apply(self.spec.loss.output_activation(), &mut all, outputs);
        Ok(all)
    }

    /// The raw outputs of the last layer for a batch in memory, `x`: (rows, inputs) as the
    /// model's first layer sees them (image pixels already scaled as [`ModelSpec::scale`]
    /// says). Returns (rows, outputs).
    pub fn forward(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let rows = x.nrows();
        let data = self.inputs(x)?;
        let v = self.logits(&data)?;
        Ok(Array2::from_shape_vec((rows, self.spec.outputs()), v).expect("rows x outputs"))
    }

    /// [`Model::forward`] followed by the loss's output activation: class probabilities for
    /// classifiers (each row sums to 1 with softmax cross-entropy), values for regressors.
    pub fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let mut y = self.forward(x)?;
        let cols = y.ncols();
        let act = self.spec.loss.output_activation();
        if let Some(v) = y.as_slice_mut() {
            crate::ops::activation::apply(act, v, cols);
        }
        Ok(y)
    }

    /// The most likely class of each row of `x` (classifiers only).
    pub fn classify(&mut self, x: ArrayView2<f32>) -> Result<Vec<usize>> {
        if self.spec.task() != Task::Classification {
            return Err(Error::Config(
                "classify needs a classifier; this model is a regression model (use predict)"
                    .into(),
            ));
        }
        let y = self.forward(x)?;
        Ok(y.rows()
            .into_iter()
            .map(|r| match r.len() {
                1 => usize::from(r[0] > 0.0),
                _ => crate::ops::loss::argmax(r.as_slice().expect("rows are contiguous")),
            })
            .collect())
    }

    /// Uploads a batch of inputs (no targets) for the prediction plan.
    fn inputs(&mut self, x: ArrayView2<f32>) -> Result<ResidentData> {
        if x.ncols() != self.spec.inputs() {
            return Err(Error::Dataset(format!(
                "the input has {} features per row but the model takes {}",
                x.ncols(),
                self.spec.inputs()
            )));
        }
        let features = Features::F32(x.iter().copied().collect());
        ResidentData::inputs(self.backend.as_mut(), &features, x.nrows(), (1.0, 0.0))
    }
}
