//! A data set uploaded to a backend once, with the index buffer that orders its rows: what a
//! program's gather ops read.

use crate::backend::{Backend, Buf, DType};
use crate::data::{Dataset, Features, Targets};
use crate::model::{ModelSpec, Task};
use crate::{Error, Result};

/// A data set on a backend: its features, its labels or targets, and the order its rows are visited
/// in. Make one with [`ResidentData::upload`] (or [`crate::train::Trainer::upload`]) and reuse it
/// for every epoch: uploading is the expensive part.
pub struct ResidentData {
    /// Unique per upload: a program binds its ops to one data set at a time.
    pub(crate) id: u64,
    /// Rows of the data set.
    pub rows: usize,
    /// (rows, inputs), U8 pixels or F32 values.
    pub(crate) features: Buf,
    /// Labels (rows,) U32, or targets (rows, outputs) F32; `None` for inputs alone.
    pub(crate) targets: Option<Buf>,
    /// The order rows are visited in, (rows,) U32: shuffled per epoch for training, the
    /// identity for evaluation.
    pub index: Buf,
    /// `input = a · feature + b`.
    pub(crate) affine: (f32, f32),
}

impl ResidentData {
    /// Uploads `data` for a model of `spec`, its rows in stored order. [`Error::Dataset`] when
    /// the data is empty, its rows are not as wide as the model's inputs, a label is beyond the
    /// model's classes, or its targets per row are not the model's outputs; [`Error::Config`]
    /// when the targets do not suit the model's loss (labels for a regression loss, values for
    /// a class loss).
    pub fn upload(b: &mut dyn Backend, data: &Dataset, spec: &ModelSpec) -> Result<ResidentData> {
        if data.rows == 0 {
            return Err(Error::Dataset("the data set has no rows".into()));
        }
        if data.dim != spec.inputs() {
            return Err(Error::Dataset(format!(
                "the data has {} features per row but the model takes {}; use data of the \
                 size the model was built for",
                data.dim,
                spec.inputs()
            )));
        }
        let (features, affine) = upload_features(b, &data.features, spec.scale.affine())?;
        let targets = match (&data.targets, spec.task()) {
            (Targets::Classes { labels, .. }, Task::Classification) => {
                let classes = spec.outputs().max(2);
                if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
                    return Err(Error::Dataset(format!(
                        "the data has label {bad}, out of range for a model with {classes} classes \
                         (labels 0 to {}); use data with the classes the model was trained on",
                        classes - 1
                    )));
                }
                let buf = b.alloc(DType::U32, labels.len(), "data set labels")?;
                b.write_u32(buf, labels)?;
                buf
            }
            (Targets::Values { values, dim }, Task::Regression) => {
                if *dim != spec.outputs() {
                    return Err(Error::Dataset(format!(
                        "the data has {dim} targets per row but the model has {} outputs",
                        spec.outputs()
                    )));
                }
                let buf = b.alloc(DType::F32, values.len(), "data set targets")?;
                b.write_f32(buf, values)?;
                buf
            }
            (Targets::Classes { .. }, Task::Regression) => {
                return Err(Error::Config(format!(
                    "the data has class labels; use a class loss (cross-entropy or bce), not {}",
                    spec.loss.name()
                )));
            }
            (Targets::Values { .. }, Task::Classification) => {
                return Err(Error::Config(
                    "the data has real-valued targets; use --loss mse or mae".into(),
                ));
            }
        };
        let index = b.alloc(DType::U32, data.rows, "row order")?;
        let identity: Vec<u32> = (0..data.rows as u32).collect();
        b.write_u32(index, &identity)?;
        Ok(ResidentData {
            id: next_id(),
            rows: data.rows,
            features,
            targets: Some(targets),
            index,
            affine,
        })
    }
}

impl ResidentData {
    /// Uploads `rows` rows of inputs with no targets (for prediction), in their stored order;
    /// `affine` scales byte features as [`crate::data::Scale::affine`] says.
    pub fn inputs(
        b: &mut dyn Backend,
        features: &Features,
        rows: usize,
        affine: (f32, f32),
    ) -> Result<ResidentData> {
        if rows == 0 {
            return Err(Error::Dataset("no inputs to predict".into()));
        }
        let (features, affine) = upload_features(b, features, affine)?;
        let index = b.alloc(DType::U32, rows, "row order")?;
        let identity: Vec<u32> = (0..rows as u32).collect();
        b.write_u32(index, &identity)?;
        Ok(ResidentData {
            id: next_id(),
            rows,
            features,
            targets: None,
            index,
            affine,
        })
    }
}

/// Uploads features; byte pixels are scaled by `affine` when gathered, floats are used as
/// they are.
fn upload_features(
    b: &mut dyn Backend,
    features: &Features,
    affine: (f32, f32),
) -> Result<(Buf, (f32, f32))> {
    Ok(match features {
        Features::U8(v) => {
            let buf = b.alloc(DType::U8, v.len(), "data set pixels")?;
            b.write_u8(buf, v)?;
            (buf, affine)
        }
        Features::F32(v) => {
            let buf = b.alloc(DType::F32, v.len(), "data set features")?;
            b.write_f32(buf, v)?;
            (buf, (1.0, 0.0))
        }
    })
}

/// A fresh data-set id.
fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
