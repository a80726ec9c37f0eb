//! wgtrain: train MLPs on any GPU with WGSL compute shaders, with an ndarray CPU reference.

pub mod data;
pub mod error;
pub mod rng;

pub use error::{Error, Result};
