//! Using a saved model: measuring it on a labelled data set ([`evaluation`]) and predicting
//! new inputs, images or IDX samples ([`input`], [`ranking`]).
//!
//! A saved model is planned on a backend through the same [`Trainer`] that trained it, so
//! evaluation runs the very code path that produced the accuracies training reported.

pub mod evaluation;
pub mod input;
pub mod ranking;

use crate::backend::Backend;
use crate::data::{Dataset, Targets};
use crate::model::{ModelSpec, Task};
use crate::optim::{OptimizerConfig, OptimizerKind};
use crate::store::SavedModel;
use crate::train::{Regularization, ResidentData, Trainer};
use crate::{Error, Result};

/// A model resident on a backend, for forward passes only.
pub struct LoadedModel {
    pub trainer: Trainer,
}

impl LoadedModel {
    /// Plans `model` on `backend` for batches of up to `batch` rows.
    pub fn new(backend: Box<dyn Backend>, model: SavedModel, batch: usize) -> Result<LoadedModel> {
        if batch == 0 {
            return Err(Error::Config("--batch-size must be at least 1".into()));
        }
        // The trainer wants an optimizer and a seed; neither is used by forward passes.
        let trainer = Trainer::with_params(
            backend,
            model.spec,
            Some(&model.params),
            batch,
            OptimizerConfig::new(OptimizerKind::Sgd),
            Regularization::default(),
            0,
        )?;
        Ok(LoadedModel { trainer })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.trainer.net.spec
    }

    /// Classes the model tells apart: its outputs, or two for a single sigmoid output.
    /// `None` for regression models.
    pub fn classes(&self) -> Option<usize> {
        class_count(self.spec())
    }

    /// Checks that `data` fits the model, with messages that say what to change, before the
    /// upload's more generic checks.
    pub fn check_data(&self, data: &Dataset) -> Result<()> {
        let spec = self.spec();
        if data.dim != spec.inputs() {
            let shape = |(h, w): (usize, usize)| {
                if h > 1 {
                    format!(" ({h}x{w} images)")
                } else {
                    String::new()
                }
            };
            return Err(Error::Dataset(format!(
                "the data has {} features per row{} but the model takes {}{}; evaluate it on the data it was trained on{}",
                data.dim,
                shape(data.image_shape),
                spec.inputs(),
                shape(spec.input_shape),
                spec.data
                    .as_deref()
                    .map(|d| format!(" (--data {d})"))
                    .unwrap_or_default()
            )));
        }
        match (&data.targets, spec.task) {
            (Targets::Classes { .. }, Task::Regression) => Err(Error::Dataset(
                "the data has class labels but the model is a regression model".into(),
            )),
            (Targets::Values { .. }, Task::Classification) => Err(Error::Dataset(
                "the data has real-valued targets but the model is a classifier".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Uploads `data` for this model.
    pub fn upload(&mut self, data: &Dataset) -> Result<ResidentData> {
        self.check_data(data)?;
        self.trainer.upload(data)
    }

    /// The model's outputs for every row of `data`, (rows, outputs) row-major: probabilities
    /// for classifiers, values for regressors (see [`Trainer::predict`]).
    pub fn outputs(&mut self, data: &ResidentData) -> Result<Vec<f32>> {
        self.trainer.predict(data)
    }

    /// The raw outputs of the last layer, before the loss's output activation, for every row
    /// of `data`, (rows, outputs) row-major.
    ///
    /// The loss op decides whether a row is classified correctly from these logits; deciding
    /// from probabilities instead could differ where two logits round to one probability, so
    /// the confusion matrix is built from the same numbers as the accuracy.
    pub fn logits(&mut self, data: &ResidentData) -> Result<Vec<f32>> {
        self.trainer.logits(data)
    }
}

/// Classes a spec's model tells apart: its outputs, or two for a single sigmoid output.
pub fn class_count(spec: &ModelSpec) -> Option<usize> {
    match spec.task {
        Task::Classification => Some(spec.outputs().max(2)),
        Task::Regression => None,
    }
}

/// The display name of each class: the spec's names where it has one per class, else the
/// class indices.
pub fn class_names(spec: &ModelSpec) -> Vec<String> {
    let n = class_count(spec).unwrap_or(0);
    match &spec.class_names {
        Some(names) if names.len() == n => names.clone(),
        _ => (0..n).map(|i| i.to_string()).collect(),
    }
}

/// A data set of `rows` unlabelled inputs for the model: the targets are placeholders (class 0,
/// or zeros), because uploading for a forward pass still fills the model's target buffer.
pub fn unlabelled(spec: &ModelSpec, features: crate::data::Features, rows: usize) -> Dataset {
    let targets = match class_count(spec) {
        Some(num_classes) => Targets::Classes {
            labels: vec![0; rows],
            num_classes,
        },
        None => Targets::Values {
            values: vec![0.0; rows * spec.outputs()],
            dim: spec.outputs(),
        },
    };
    Dataset {
        rows,
        dim: spec.inputs(),
        image_shape: spec.input_shape,
        features,
        targets,
    }
}
