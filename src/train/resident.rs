//! A data set uploaded to a backend once, with the index buffer that orders its rows.

use crate::backend::{Backend, Buf, DType};
use crate::data::{Dataset, Features, Targets};
use crate::model::{ModelSpec, Network, Task};
use crate::{Error, Result};

pub struct ResidentData {
    pub rows: usize,
    /// (rows, inputs), U8 pixels or F32 values.
    features: Buf,
    /// Labels (rows,) U32, or targets (rows, outputs) F32.
    targets: Buf,
    /// The order rows are visited in, (rows,) U32: shuffled per epoch for training, the
    /// identity for evaluation.
    pub index: Buf,
    /// `input = a · feature + b`.
    affine: (f32, f32),
}

impl ResidentData {
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
        let (features, affine) = match &data.features {
            Features::U8(v) => {
                let buf = b.alloc(DType::U8, v.len(), "data set pixels")?;
                b.write_u8(buf, v)?;
                (buf, spec.scale.affine())
            }
            Features::F32(v) => {
                let buf = b.alloc(DType::F32, v.len(), "data set features")?;
                b.write_f32(buf, v)?;
                (buf, (1.0, 0.0))
            }
        };
        let targets = match (&data.targets, spec.task) {
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
                    clap::ValueEnum::to_possible_value(&spec.loss)
                        .map(|v| v.get_name().to_string())
                        .unwrap_or_default()
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
            rows: data.rows,
            features,
            targets,
            index,
            affine,
        })
    }

    /// Assembles rows `start .. start + rows` of the current order into the network's input and
    /// target buffers.
    pub fn gather(
        &self,
        b: &mut dyn Backend,
        net: &Network,
        start: usize,
        rows: usize,
    ) -> Result<()> {
        let idx = self.index.slice(start, rows);
        let inputs = net.spec.inputs();
        b.gather_rows(self.features, idx, rows, inputs, self.affine, net.input)?;
        match net.spec.task {
            Task::Classification => b.gather_labels(self.targets, idx, rows, net.targets),
            Task::Regression => {
                let outs = net.spec.outputs();
                b.gather_rows(self.targets, idx, rows, outs, (1.0, 0.0), net.targets)
            }
        }
    }
}
