//! [`Sequential`]: a model spec written layer by layer, each layer's size chained from the last.

use super::{Activation, Layer, LossKind, ModelSpec, Shape};
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
    /// What flows out of the layers so far.
    shape: Shape,
    layers: Vec<Layer>,
    input_shape: (usize, usize),
    channels: usize,
    scale: Scale,
    error: Option<String>,
}

impl Sequential {
    /// A model taking `inputs` features per row.
    pub fn new(inputs: usize) -> Sequential {
        Sequential {
            shape: Shape::Flat(inputs),
            layers: Vec::new(),
            input_shape: (1, inputs),
            channels: 1,
            scale: Scale::ZeroOne,
            error: (inputs == 0).then(|| "a model needs at least one input".into()),
        }
    }

    /// A model taking `height x width` grayscale images (one feature per pixel), whose pixels
    /// are scaled as `scale` says when a batch is assembled.
    pub fn image(height: usize, width: usize, scale: Scale) -> Sequential {
        Sequential::images(height, width, 1, scale)
    }

    /// A model taking `height x width` images of `channels` channels, stored channels last
    /// (RGB pixels interleaved), scaled as `scale` says when a batch is assembled.
    ///
    /// ```
    /// use wgtrain::data::Scale;
    /// use wgtrain::model::{Layer, Sequential};
    ///
    /// // LeNet-like: two convolutions with pooling, then two Dense layers.
    /// let spec = Sequential::images(28, 28, 1, Scale::ZeroOne)
    ///     .conv(32, 3).relu().max_pool(2)
    ///     .conv(64, 3).relu().max_pool(2)
    ///     .dense(128).relu()
    ///     .dense(10)
    ///     .cross_entropy()
    ///     .unwrap();
    /// // The first Dense layer flattens the 5x5x64 images first, as PyTorch's nn.Flatten.
    /// assert_eq!(spec.layers[6], Layer::Flatten);
    /// assert_eq!(spec.layers[7], Layer::Dense { inputs: 5 * 5 * 64, outputs: 128 });
    /// ```
    pub fn images(height: usize, width: usize, channels: usize, scale: Scale) -> Sequential {
        let mut s = Sequential::new(height * width * channels);
        s.shape = Shape::Image {
            h: height,
            w: width,
            c: channels,
        };
        s.input_shape = (height, width);
        s.channels = channels;
        s.scale = scale;
        s
    }

    /// Records `layer`, and why it does not fit if it does not (the first error is kept).
    fn push(mut self, layer: Layer) -> Sequential {
        match super::spec::next_shape(self.layers.len(), &layer, self.shape) {
            Ok(next) => self.shape = next,
            Err(e) if self.error.is_none() => self.error = Some(e.to_string()),
            Err(_) => {}
        }
        self.layers.push(layer);
        self
    }

    /// A fully connected layer of `outputs` units: `y = x · Wᵀ + b`. After images, a Flatten
    /// layer comes first (as PyTorch's `nn.Flatten`).
    pub fn dense(mut self, outputs: usize) -> Sequential {
        if matches!(self.shape, Shape::Image { .. }) {
            self = self.flatten();
        }
        if outputs == 0 && self.error.is_none() {
            self.error = Some(format!(
                "layer {} (dense) has size 0; every layer needs at least one unit",
                self.layers.len()
            ));
        }
        let inputs = self.shape.len();
        self.push(Layer::Dense { inputs, outputs })
    }

    /// Images to rows, in PyTorch's `(channel, y, x)` order.
    pub fn flatten(self) -> Sequential {
        self.push(Layer::Flatten)
    }

    /// A convolution of `out_channels` square `kernel x kernel` filters, stride 1, no padding.
    pub fn conv(self, out_channels: usize, kernel: usize) -> Sequential {
        self.conv_with(out_channels, [kernel, kernel], [1, 1], [0, 0])
    }

    /// A convolution with every hyper-parameter: `kernel` `[height, width]`, `stride` and zero
    /// `padding` `[vertical, horizontal]` (`(k - 1) / 2` of an odd kernel keeps the size at
    /// stride 1: "same").
    pub fn conv_with(
        self,
        out_channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Sequential {
        let in_channels = match self.shape {
            Shape::Image { c, .. } => c,
            Shape::Flat(_) => 0,
        };
        self.push(Layer::Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
        })
    }

    /// Max pooling over `size x size` windows, stride `size`.
    pub fn max_pool(self, size: usize) -> Sequential {
        self.max_pool_with([size, size], [size, size])
    }

    /// Max pooling over `kernel` `[height, width]` windows moved by `stride`.
    pub fn max_pool_with(self, kernel: [usize; 2], stride: [usize; 2]) -> Sequential {
        self.push(Layer::MaxPool2d { kernel, stride })
    }

    /// Average pooling over `size x size` windows, stride `size`.
    pub fn avg_pool(self, size: usize) -> Sequential {
        self.avg_pool_with([size, size], [size, size])
    }

    /// Average pooling over `kernel` `[height, width]` windows moved by `stride`.
    pub fn avg_pool_with(self, kernel: [usize; 2], stride: [usize; 2]) -> Sequential {
        self.push(Layer::AvgPool2d { kernel, stride })
    }

    /// An activation after the layers so far.
    pub fn activation(self, activation: Activation) -> Sequential {
        self.push(Layer::Activation { activation })
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
        self.push(Layer::Dropout { p })
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
            channels: self.channels,
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
