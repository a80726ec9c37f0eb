//! Training checkpoints: a model file plus the optimizer's state and where training stands, so
//! `--resume` continues exactly where it stopped.

use super::model_file::{
    DAMAGED, base_metadata, model_err, named_tensors, read_bytes, read_flat, read_header, serialize,
};
use super::{SavedModel, write_atomic};
use crate::Result;
use crate::model::ParamLayout;
use crate::optim::OptimizerConfig;
use crate::train::{EpochReport, Progress, Regularization};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything besides tensors that a resume needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Where training stands: epochs and steps done, the shuffling generator, a partial epoch.
    pub progress: Progress,
    /// The optimizer settings, schedule included, that the run trains with.
    pub optimizer: OptimizerConfig,
    /// The L1/L2 penalties the run trains with.
    pub regularization: Regularization,
    /// Rows per training batch.
    pub batch_size: usize,
    /// The command-line settings of the run (data, seed, split, ...), checked on resume.
    pub run: serde_json::Value,
    /// One report per epoch completed.
    pub history: Vec<EpochReport>,
}

/// A training checkpoint: the model, the optimizer's state and where training stands. A
/// trainer built for the same model and settings resumes from it with
/// [`crate::train::Trainer::restore`], on the CPU bitwise where it stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The model's spec and parameters, as a model file holds them: a checkpoint loads as a model
    /// too.
    pub model: SavedModel,
    /// The optimizer's first state vector ([`crate::ops::Update::state1`]), in the flat
    /// parameter layout.
    pub state1: Vec<f32>,
    /// The optimizer's second state vector ([`crate::ops::Update::state2`]), in the same
    /// layout.
    pub state2: Vec<f32>,
    /// The progress, settings and history.
    pub meta: CheckpointMeta,
}

const STATE1: &str = "optimizer.state1.";
const STATE2: &str = "optimizer.state2.";

/// Writes a checkpoint atomically: a kill at any moment leaves the previous one intact.
pub fn save_checkpoint(path: &Path, c: &Checkpoint) -> Result<()> {
    let layout = ParamLayout::new(&c.model.spec);
    let mut tensors = named_tensors(&layout, &c.model.params, "");
    tensors.extend(named_tensors(&layout, &c.state1, STATE1));
    tensors.extend(named_tensors(&layout, &c.state2, STATE2));
    let mut meta = base_metadata(&c.model.spec);
    meta.insert(
        "checkpoint".into(),
        serde_json::to_string(&c.meta).map_err(|e| model_err(path, e.to_string()))?,
    );
    let bytes = serialize(path, &tensors, meta)?;
    write_atomic(path, &bytes)
}

/// Reads a checkpoint written by [`save_checkpoint`].
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    let bytes = read_bytes(path)?;
    let (st, meta, spec) = read_header(path, &bytes)?;
    let layout = ParamLayout::new(&spec);
    let json = meta.get("checkpoint").ok_or_else(|| {
        model_err(
            path,
            "a saved model, not a training checkpoint (it has no optimizer state to resume \
             from); pass the file written by --checkpoint",
        )
    })?;
    let meta: CheckpointMeta = serde_json::from_str(json)
        .map_err(|e| model_err(path, format!("bad checkpoint metadata ({e}); {DAMAGED}")))?;
    Ok(Checkpoint {
        model: SavedModel {
            params: read_flat(path, &st, &layout, "")?,
            spec,
        },
        state1: read_flat(path, &st, &layout, STATE1)?,
        state2: read_flat(path, &st, &layout, STATE2)?,
        meta,
    })
}
