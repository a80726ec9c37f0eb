//! The model: its spec (layers, loss), the builder that chains its shapes, its parameter layout
//! and initialisation, and [`Model`], a model resident on a backend for inference.

mod builder;
mod compiled;
mod init;
mod layout;
mod spec;

pub use builder::Sequential;
pub use compiled::{DEFAULT_BATCH, Metrics, Model};
pub use init::init_params;
pub use layout::{PARAM_ALIGN, ParamLayout, TensorSlot};
pub use spec::{Activation, LEAKY_SLOPE, Layer, LossKind, MAX_PARAMETERS, ModelSpec, Shape, Task};
