//! The model: its spec (layers, loss), initialisation, and the network planned on a backend.

mod init;
mod network;
mod spec;

pub use init::init_params;
pub use network::{Network, ParamLayout, TensorSlot};
pub use spec::{Activation, LEAKY_SLOPE, Layer, LossKind, ModelSpec, Task};
