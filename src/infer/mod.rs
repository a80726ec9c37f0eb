//! Using a saved model: measuring it on a labelled data set ([`evaluation`]) and predicting
//! new inputs, images or IDX samples ([`input`], [`ranking`]).
//!
//! A saved model is a [`Model`] on a backend; its evaluation runs the very plan that produced
//! the accuracies training reported.

pub mod evaluation;
pub mod input;
pub mod ranking;

use crate::data::{Dataset, Targets};
use crate::model::{Model, ModelSpec, Task};
use crate::{Error, Result};

/// Checks that `data` fits `spec`'s model, with messages that say what to change, before the
/// upload's more generic checks.
pub fn check_data(spec: &ModelSpec, data: &Dataset) -> Result<()> {
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
    match (&data.targets, spec.task()) {
        (Targets::Classes { .. }, Task::Regression) => Err(Error::Dataset(
            "the data has class labels but the model is a regression model".into(),
        )),
        (Targets::Values { .. }, Task::Classification) => Err(Error::Dataset(
            "the data has real-valued targets but the model is a classifier".into(),
        )),
        _ => Ok(()),
    }
}

/// Uploads `data` for `model` after [`check_data`].
pub fn upload_checked(model: &mut Model, data: &Dataset) -> Result<crate::graph::ResidentData> {
    check_data(model.spec(), data)?;
    model.upload(data)
}

/// Classes a spec's model tells apart: its outputs, or two for a single sigmoid output.
pub fn class_count(spec: &ModelSpec) -> Option<usize> {
    match spec.task() {
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
