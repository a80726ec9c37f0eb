//! Saved models and training checkpoints, as safetensors files.
//!
//! A model file holds `layers.<i>.weight` (out, in) and `layers.<i>.bias` (out,) in float32,
//! named and shaped like PyTorch's `nn.Sequential` of `nn.Linear` layers, so Python loads it with
//! `safetensors.numpy.load_file` and no code of ours. The header's metadata holds the model spec
//! as JSON, so `eval` and `predict` need nothing but the file. A checkpoint is a model file
//! with the optimizer's state tensors and the training progress added.

mod atomic;
mod checkpoint;
mod model_file;

pub use atomic::write_atomic;
pub use checkpoint::{Checkpoint, CheckpointMeta, load_checkpoint, save_checkpoint};
pub use model_file::{FORMAT, FORMAT_VERSION, SavedModel, load_model, save_model};
