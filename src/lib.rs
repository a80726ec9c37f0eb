//! wgtrain: train MLPs on any GPU with WGSL compute shaders, with an ndarray CPU reference.
//!
//! The layout follows the architecture: [`data`] reads data sets; [`model`] describes a model
//! and plans it on a [`backend`]; [`optim`] holds optimizer settings; [`train`] runs epochs on
//! any backend; [`infer`] evaluates and applies saved models; [`report`] writes metrics and
//! curves; [`cli`] is the command line.

pub mod backend;
#[cfg(feature = "cli")]
pub mod bench;
#[doc(hidden)]
#[cfg(feature = "cli")]
pub mod cli;
pub mod data;
pub mod error;
pub mod graph;
pub mod infer;
pub mod model;
pub mod ops;
pub mod optim;
pub mod report;
pub mod rng;
pub mod store;
pub mod train;

pub use error::{Error, Result};
