#![warn(missing_docs)]

//! wgtrain: train MLPs on any GPU with WGSL compute shaders, with an ndarray CPU reference.
//!
//! A model is a [`model::ModelSpec`], written layer by layer with [`model::Sequential`]. A
//! [`model::Model`] puts it on a backend ([`backend::cpu::CpuBackend`], the reference, or
//! [`backend::gpu::GpuBackend`]; [`backend::create`] picks one), and a [`train::Trainer`] adds
//! the gradients and optimizer state that training needs:
//!
//! ```
//! use ndarray::array;
//! use wgtrain::backend::cpu::CpuBackend;
//! use wgtrain::data::Dataset;
//! use wgtrain::model::{Model, Sequential};
//! use wgtrain::optim::{OptimizerConfig, OptimizerKind};
//! use wgtrain::train::{Trainer, fit_dataset};
//!
//! // XOR: four points in two classes that no straight line separates.
//! let x = array![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
//! let labels = [0, 1, 1, 0];
//! let data = Dataset::classification(x.view(), &labels, 2)?;
//! let spec = Sequential::new(2).dense(16).tanh().dense(2).cross_entropy()?;
//! let model = Model::new(Box::new(CpuBackend::new()), spec, 1)?;
//! let adam = OptimizerConfig { lr: 0.05, ..OptimizerConfig::new(OptimizerKind::Adam) };
//! let mut trainer = Trainer::new(model, 4, adam, 1)?;
//! let reports = fit_dataset(&mut trainer, &data, 200, &mut [])?;
//! assert!(reports.last().unwrap().train_loss < 0.1);
//!
//! // Class probabilities, one row per input: each point's own class is the likely one.
//! let p = trainer.into_model().predict(x.view())?;
//! for (row, &label) in p.rows().into_iter().zip(&labels) {
//!     assert!(row[label as usize] > 0.9);
//! }
//! # Ok::<(), wgtrain::Error>(())
//! ```
//!
//! The modules, from the bottom up:
//! - [`ops`]: every computation a backend runs, each a struct with its shapes, shape rule, cost
//!   and CPU reference.
//! - [`backend`]: where buffers live and ops run: the CPU reference and the wgpu GPU backend.
//! - [`graph`]: a model compiled into a plan of ops (lowered, fused, given buffers by
//!   liveness) and replayed step after step.
//! - [`model`]: what a model is ([`model::ModelSpec`], [`model::Sequential`]), its parameter
//!   layout and initialisation, and [`model::Model`], a model on a backend.
//! - [`optim`]: optimizer settings, learning-rate schedules and L1/L2 penalties.
//! - [`train`]: the [`train::Trainer`], the epoch loop and callbacks (early stopping, saving
//!   the best model).
//! - [`data`]: data sets from arrays in memory, IDX files, image folders and the built-in sets.
//! - [`infer`]: measuring a saved model (confusion matrix, per-class scores) and preparing
//!   inputs for prediction.
//! - [`store`]: model files and checkpoints as safetensors.
//! - [`report`]: per-epoch metrics files (and, with the `cli` feature, their curves).
//! - [`rng`]: the seeded generators behind initialisation, shuffling and dropout.
//! - [`error`]: the one [`Error`] type.
//!
//! With the default `cli` feature, two more: `bench`, the measurements behind `wgtrain bench`,
//! and `cli`, the command line itself (not a library interface). `cargo build --lib
//! --no-default-features` builds the library without them and without their dependencies.

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
