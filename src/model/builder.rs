//! [`Sequential`]: a model spec written layer by layer, each layer's size chained from the last.

use super::{Activation, Layer, LossKind, ModelSpec};
use crate::data::Scale;
use crate::{Error, Result};

/// Builds a [`ModelSpec`] layer by layer: each Dense layer takes the width of what comes
/// before it, and the loss ends the chain. Impossible models (a size of zero, a dropout
/// probability outside [0, 1), too many parameters) are refused with an error when the loss
/// is given; nothing panics.
///
/// ```
/// use wgtrain::model::{Layer, Sequential};
///
/// let spec = Sequential::new(784)
///     .dense(256)
///     .relu()
///     .dropout(0.2)
///     .dense(10)
///     .cross_entropy()
///     .unwrap();
/// assert_eq!((spec.inputs(), spec.outputs()), (784, 10));
/// assert_eq!(spec.layers[0], Layer::Dense { inputs: 784, outputs: 256 });
/// assert_eq!(spec.parameter_count(), 784 * 256 + 256 + 256 * 10 + 10);
///
/// // A size of zero is an error, not a panic.
/// assert!(Sequential::new(4).dense(0).mse().is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Sequential {
    width: usize,
    layers: Vec<Layer>,
    input_shape: (usize, usize),
    scale: Scale,
    error: Option<String>,
}

impl Sequential {
    /// A model taking `inputs` features per row.
    pub fn new(inputs: usize) -> Sequential {
        Sequential {
            width: inputs,
            layers: Vec::new(),
            input_shape: (1, inputs),
            scale: Scale::ZeroOne,
            error: (inputs == 0).then(|| "a model needs at least one input".into()),
        }
    }

    /// A model taking `height x width` grayscale images (one feature per pixel), whose pixels
    /// are scaled as `scale` says when a batch is assembled.
    pub fn image(height: usize, width: usize, scale: Scale) -> Sequential {
        Sequential {
            input_shape: (height, width),
            scale,
            ..Sequential::new(height * width)
        }
    }

    /// A fully connected layer of `outputs` units: `y = x · Wᵀ + b`.
    pub fn dense(mut self, outputs: usize) -> Sequential {
        if outputs == 0 && self.error.is_none() {
            self.error = Some(format!(
                "layer {} (dense) has size 0; every layer needs at least one unit",
                self.layers.len()
            ));
        }
        self.layers.push(Layer::Dense {
            inputs: self.width,
            outputs,
        });
        self.width = outputs;
        self
    }

    /// An activation after the layers so far.
    pub fn activation(mut self, activation: Activation) -> Sequential {
        self.layers.push(Layer::Activation { activation });
        self
    }

    /// A ReLU activation, `max(x, 0)`, after the layers so far.
    pub fn relu(self) -> Sequential {
        self.activation(Activation::Relu)
    }

    /// A LeakyReLU activation ([`super::LEAKY_SLOPE`] for negative inputs) after the layers so far.
    pub fn leaky_relu(self) -> Sequential {
        self.activation(Activation::LeakyRelu)
    }

    /// A sigmoid activation, `1 / (1 + e^-x)`, after the layers so far.
    pub fn sigmoid(self) -> Sequential {
        self.activation(Activation::Sigmoid)
    }

    /// A tanh activation after the layers so far.
    pub fn tanh(self) -> Sequential {
        self.activation(Activation::Tanh)
    }

    /// Inverted dropout dropping each value with probability `p` in training (the identity in
    /// evaluation and prediction).
    pub fn dropout(mut self, p: f32) -> Sequential {
        if !(0.0..1.0).contains(&p) && self.error.is_none() {
            self.error = Some(format!(
                "layer {} (dropout) has probability {p}, outside [0, 1)",
                self.layers.len()
            ));
        }
        self.layers.push(Layer::Dropout { p });
        self
    }

    /// Ends the model with `loss` (which brings its output activation: softmax for
    /// cross-entropy, sigmoid for BCE, none for MSE and MAE) and checks it.
    pub fn loss(self, loss: LossKind) -> Result<ModelSpec> {
        if let Some(e) = self.error {
            return Err(Error::Config(e));
        }
        let spec = ModelSpec {
            layers: self.layers,
            loss,
            input_shape: self.input_shape,
            scale: self.scale,
            class_names: None,
            data: None,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Softmax + categorical cross-entropy: a classifier with one output per class.
    pub fn cross_entropy(self) -> Result<ModelSpec> {
        self.loss(LossKind::SoftmaxCrossEntropy)
    }

    /// Sigmoid + binary cross-entropy: one output for two classes, or one-vs-all.
    pub fn bce(self) -> Result<ModelSpec> {
        self.loss(LossKind::SigmoidBce)
    }

    /// Mean squared error on linear outputs (regression).
    pub fn mse(self) -> Result<ModelSpec> {
        self.loss(LossKind::Mse)
    }

    /// Mean absolute error on linear outputs (regression).
    pub fn mae(self) -> Result<ModelSpec> {
        self.loss(LossKind::Mae)
    }
}
