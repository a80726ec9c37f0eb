//! What a model is, independent of any backend: a sequence of layers and a loss.

use crate::data::Scale;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Slope of LeakyReLU for negative inputs.
pub const LEAKY_SLOPE: f32 = 0.01;

/// An activation function, applied elementwise (softmax: row-wise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x` for `x > 0`, else `0.01·x` ([`LEAKY_SLOPE`]).
    LeakyRelu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// Row-wise softmax.
    Softmax,
    /// The identity.
    Linear,
}

impl Activation {
    /// He initialisation suits the ReLU family; Xavier the others.
    pub fn wants_he_init(self) -> bool {
        matches!(self, Activation::Relu | Activation::LeakyRelu)
    }
}

/// The loss a model is trained with, which also fixes its output activation and its task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Softmax output fused with categorical cross-entropy.
    #[serde(rename = "cross-entropy")]
    SoftmaxCrossEntropy,
    /// Sigmoid output fused with binary cross-entropy (one-vs-all for several classes).
    #[serde(rename = "bce")]
    SigmoidBce,
    /// Mean squared error on a linear output.
    Mse,
    /// Mean absolute error on a linear output.
    Mae,
}

impl LossKind {
    /// Class losses take `U32` labels; regression losses take `F32` targets.
    pub fn is_classification(self) -> bool {
        matches!(self, LossKind::SoftmaxCrossEntropy | LossKind::SigmoidBce)
    }

    /// Classification for the class losses, regression for the others: the task follows from
    /// the loss.
    pub fn task(self) -> Task {
        if self.is_classification() {
            Task::Classification
        } else {
            Task::Regression
        }
    }

    /// The name the command line and saved files use (`cross-entropy`, `bce`, `mse`, `mae`).
    pub fn name(self) -> &'static str {
        match self {
            LossKind::SoftmaxCrossEntropy => "cross-entropy",
            LossKind::SigmoidBce => "bce",
            LossKind::Mse => "mse",
            LossKind::Mae => "mae",
        }
    }

    /// The activation applied to the logits at prediction time.
    pub fn output_activation(self) -> Activation {
        match self {
            LossKind::SoftmaxCrossEntropy => Activation::Softmax,
            LossKind::SigmoidBce => Activation::Sigmoid,
            LossKind::Mse | LossKind::Mae => Activation::Linear,
        }
    }
}

/// Classification or regression, from the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Predict one of several classes from integer labels; the metric is accuracy.
    Classification,
    /// Predict real values; the metric is the mean absolute error.
    Regression,
}

/// The window of a convolution or pooling layer on `h x w x c` images (a batch of one).
pub(crate) fn window(
    h: usize,
    w: usize,
    c: usize,
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [ph, pw]: [usize; 2],
) -> crate::ops::Window {
    crate::ops::Window {
        batch: 1,
        h,
        w,
        c,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
    }
}

/// What layer `i`, `l`, makes of rows of shape `shape`, or why it cannot take them.
pub(crate) fn next_shape(i: usize, l: &Layer, shape: Shape) -> Result<Shape> {
    let bad = |why: String| Error::Shape(format!("layer {i}: {why}"));
    Ok(match (*l, shape) {
        (Layer::Dense { inputs, outputs }, s) => {
            if inputs == 0 || outputs == 0 {
                return Err(bad("a Dense layer of size 0".into()));
            }
            if s.len() != inputs {
                return Err(bad(format!(
                    "takes {inputs} inputs but the layer before gives {}",
                    s.len()
                )));
            }
            Shape::Flat(outputs)
        }
        (Layer::Activation { activation }, s) => {
            if activation == Activation::Softmax && matches!(s, Shape::Image { .. }) {
                return Err(bad(
                    "softmax is taken over a row of features, not over images; flatten first"
                        .into(),
                ));
            }
            s
        }
        (Layer::Dropout { p }, s) => {
            if !(0.0..1.0).contains(&p) {
                return Err(bad(format!("dropout {p} is outside [0, 1)")));
            }
            s
        }
        (Layer::Flatten, s) => Shape::Flat(s.len()),
        (
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
            },
            Shape::Image { h, w, c },
        ) => {
            if in_channels != c {
                return Err(bad(format!(
                    "a convolution of {in_channels} input channels on images of {c}"
                )));
            }
            if out_channels == 0 {
                return Err(bad("a convolution of 0 output channels".into()));
            }
            let g = self::window(h, w, c, kernel, stride, padding);
            g.check().map_err(|e| bad(e.to_string()))?;
            Shape::Image {
                h: g.oh(),
                w: g.ow(),
                c: out_channels,
            }
        }
        (
            Layer::MaxPool2d { kernel, stride } | Layer::AvgPool2d { kernel, stride },
            Shape::Image { h, w, c },
        ) => {
            let g = self::window(h, w, c, kernel, stride, [0, 0]);
            g.check().map_err(|e| bad(e.to_string()))?;
            Shape::Image {
                h: g.oh(),
                w: g.ow(),
                c,
            }
        }
        (_, Shape::Flat(_)) => {
            return Err(bad(
                "convolution and pooling take images, but the layers before give rows".into(),
            ));
        }
    })
}

/// One layer of the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Layer {
    /// `y = x · Wᵀ + b`, W: (outputs, inputs) as in PyTorch's `nn.Linear`.
    Dense {
        /// Features per input row; the previous Dense layer's `outputs`.
        inputs: usize,
        /// Features per output row (neurons).
        outputs: usize,
    },
    /// An activation applied to the previous layer's output, same shape in and out.
    Activation {
        /// The function applied.
        activation: Activation,
    },
    /// Inverted dropout with drop probability `p`; the identity at evaluation.
    Dropout {
        /// The probability of zeroing each element while training, in [0, 1); kept elements
        /// are scaled by `1 / (1 - p)`.
        p: f32,
    },
    /// A 2-D convolution, PyTorch's `nn.Conv2d`: W: (out_channels, in_channels, kh, kw), a bias
    /// per output channel, zero padding.
    Conv2d {
        /// Channels of the input images.
        in_channels: usize,
        /// Channels of the output images (filters).
        out_channels: usize,
        /// Window `[height, width]`.
        kernel: [usize; 2],
        /// Step between windows `[vertical, horizontal]`.
        stride: [usize; 2],
        /// Zeros added `[above and below, left and right]`.
        padding: [usize; 2],
    },
    /// Max pooling, PyTorch's `nn.MaxPool2d` (no padding).
    MaxPool2d {
        /// Window `[height, width]`.
        kernel: [usize; 2],
        /// Step between windows `[vertical, horizontal]`.
        stride: [usize; 2],
    },
    /// Average pooling, PyTorch's `nn.AvgPool2d` (no padding).
    AvgPool2d {
        /// Window `[height, width]`.
        kernel: [usize; 2],
        /// Step between windows `[vertical, horizontal]`.
        stride: [usize; 2],
    },
    /// Images to rows, PyTorch's `nn.Flatten`: each row in `(channel, y, x)` order. Implicit
    /// before a Dense layer that follows images.
    Flatten,
}

/// The shape of the data flowing between layers, per row (one image or one feature vector).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// An image of `c` channels, `h x w` pixels (stored channels last).
    Image {
        /// Height.
        h: usize,
        /// Width.
        w: usize,
        /// Channels.
        c: usize,
    },
    /// A feature vector of this length.
    Flat(usize),
}

impl Shape {
    /// Values per row.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Image { h, w, c } => h * w * c,
            Shape::Flat(n) => n,
        }
    }

    /// A shape of no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Layer {
    /// The weight's and the bias's number of values (0 and 0 for layers without parameters).
    pub fn parameters(&self) -> (usize, usize) {
        match *self {
            Layer::Dense { inputs, outputs } => (inputs.saturating_mul(outputs), outputs),
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel: [kh, kw],
                ..
            } => (
                in_channels
                    .saturating_mul(kh)
                    .saturating_mul(kw)
                    .saturating_mul(out_channels),
                out_channels,
            ),
            _ => (0, 0),
        }
    }

    /// Layers with parameters (a weight and a bias).
    pub fn has_params(&self) -> bool {
        matches!(self, Layer::Dense { .. } | Layer::Conv2d { .. })
    }

    /// Layers that take images.
    fn is_spatial(&self) -> bool {
        matches!(
            self,
            Layer::Conv2d { .. }
                | Layer::MaxPool2d { .. }
                | Layer::AvgPool2d { .. }
                | Layer::Flatten
        )
    }
}

/// A whole model: enough to rebuild it, train it and use it for prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The layers, input first. The loss brings its own output activation after the last
    /// layer, so the sequence usually ends with a Dense layer.
    pub layers: Vec<Layer>,
    /// The loss, which also decides the output activation and the task.
    pub loss: LossKind,
    /// `(height, width)` of image inputs, `(1, inputs)` otherwise.
    pub input_shape: (usize, usize),
    /// Channels of image inputs (1: grayscale, 3: RGB), stored channels last.
    #[serde(default = "one")]
    pub channels: usize,
    /// How byte (pixel) features become inputs, so prediction scales images as training did.
    /// Float features are used as they are.
    pub scale: Scale,
    /// Each class's name in label order (image-folder names), for reports and predictions;
    /// `None` where classes are known by their numbers only.
    pub class_names: Option<Vec<String>>,
    /// The `--data` the model was trained on, the default for `eval`.
    #[serde(default)]
    pub data: Option<String>,
}

/// Refuses softmax cross-entropy over a single output: the softmax of one logit is 1 whatever
/// the logit, so every row's loss is exactly 0 and training learns nothing.
fn one() -> usize {
    1
}

fn check_outputs(loss: LossKind, outputs: usize) -> Result<()> {
    if loss == LossKind::SoftmaxCrossEntropy && outputs < 2 {
        return Err(Error::Config(format!(
            "softmax cross-entropy needs two outputs or more, one per class, but the model has \
             {outputs}: with one, every loss is exactly 0 and nothing is learned; train on two \
             classes or more"
        )));
    }
    Ok(())
}

/// The most parameters a model may have: one buffer holds them all, addressed by 32-bit element
/// counts, with room for each layer's alignment padding.
pub const MAX_PARAMETERS: usize = u32::MAX as usize / 2;

impl ModelSpec {
    /// The usual MLP: Dense + activation (+ dropout) per hidden size, then a Dense output layer
    /// whose activation is the loss's (fused into the loss op).
    pub fn mlp(
        inputs: usize,
        hidden: &[usize],
        outputs: usize,
        activation: Activation,
        dropout: f32,
        loss: LossKind,
    ) -> Result<ModelSpec> {
        if inputs == 0 || outputs == 0 {
            return Err(Error::Config(format!(
                "a model needs at least one input and one output (got {inputs} and {outputs})"
            )));
        }
        if let Some(pos) = hidden.iter().position(|&h| h == 0) {
            return Err(Error::Config(format!(
                "hidden layer {} has size 0; every --hidden size must be at least 1",
                pos + 1
            )));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::Config(format!(
                "--dropout must be in [0, 1), got {dropout}"
            )));
        }
        check_outputs(loss, outputs)?;
        let mut layers = Vec::new();
        let mut width = inputs;
        for &h in hidden {
            layers.push(Layer::Dense {
                inputs: width,
                outputs: h,
            });
            layers.push(Layer::Activation { activation });
            if dropout > 0.0 {
                layers.push(Layer::Dropout { p: dropout });
            }
            width = h;
        }
        layers.push(Layer::Dense {
            inputs: width,
            outputs,
        });
        Ok(ModelSpec {
            layers,
            loss,
            input_shape: (1, inputs),
            channels: 1,
            scale: Scale::ZeroOne,
            class_names: None,
            data: None,
        })
    }

    /// Classification or regression, from the loss.
    pub fn task(&self) -> Task {
        self.loss.task()
    }

    /// Features per input row: an image's `h·w·c` for models with convolution, pooling or
    /// flatten layers (or several channels), else the first Dense layer's `inputs` (0 with no
    /// Dense layer).
    pub fn inputs(&self) -> usize {
        self.input().len()
    }

    /// The shape of one input row.
    pub fn input(&self) -> Shape {
        let (h, w) = self.input_shape;
        if self.channels > 1 || self.layers.iter().any(Layer::is_spatial) {
            return Shape::Image {
                h,
                w,
                c: self.channels,
            };
        }
        let n = self
            .layers
            .iter()
            .find_map(|l| match l {
                Layer::Dense { inputs, .. } => Some(*inputs),
                _ => None,
            })
            .unwrap_or(0);
        Shape::Flat(n)
    }

    /// The shape flowing into each layer, then out of the last (`layers.len() + 1` shapes), or
    /// why the layers do not fit together.
    pub fn shapes(&self) -> Result<Vec<Shape>> {
        let mut shape = self.input();
        let mut shapes = vec![shape];
        for (i, l) in self.layers.iter().enumerate() {
            shape = next_shape(i, l, shape)?;
            shapes.push(shape);
        }
        Ok(shapes)
    }

    /// Outputs per row: the last Dense layer's `outputs`, the classes or regression targets
    /// (0 with no Dense layer).
    pub fn outputs(&self) -> usize {
        self.layers
            .iter()
            .rev()
            .find_map(|l| match l {
                Layer::Dense { outputs, .. } => Some(*outputs),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Trainable parameters (weights and biases); saturates at `usize::MAX` for sizes that
    /// [`ModelSpec::validate`] refuses.
    pub fn parameter_count(&self) -> usize {
        self.layers
            .iter()
            .map(|l| {
                let (w, b) = l.parameters();
                w.saturating_add(b)
            })
            .fold(0, usize::saturating_add)
    }

    /// The activation that follows the layer at `index` (a Dense or convolution layer), used
    /// to pick its initialisation.
    pub fn activation_after(&self, index: usize) -> Activation {
        self.layers[index + 1..]
            .iter()
            .find_map(|l| match l {
                Layer::Activation { activation } => Some(*activation),
                l if l.has_params() => Some(self.loss.output_activation()),
                _ => None,
            })
            .unwrap_or(self.loss.output_activation())
    }

    /// Checks the sequence is well formed: at least one Dense layer, Dense sizes that chain,
    /// dropout probabilities in range. Activations and dropout may sit anywhere, stacked or
    /// before the first Dense layer or after the last.
    pub fn validate(&self) -> Result<()> {
        let shapes = self.shapes()?;
        if !self.layers.iter().any(|l| matches!(l, Layer::Dense { .. })) {
            return Err(Error::Shape(
                "the model has no Dense layer: it would have nothing to learn".into(),
            ));
        }
        if let Some(Shape::Image { .. }) = shapes.last() {
            return Err(Error::Shape(
                "the model ends with images; end it with a Dense layer (or flatten)".into(),
            ));
        }
        check_outputs(self.loss, self.outputs())?;
        // Backends address one buffer with 32-bit element counts; checked arithmetic, since
        // sizes come from flags and model files and their products can overflow.
        let count = self.layers.iter().try_fold(0usize, |acc, l| match *l {
            Layer::Dense { inputs, outputs } => inputs
                .checked_mul(outputs)
                .and_then(|w| w.checked_add(outputs))
                .and_then(|n| n.checked_add(acc)),
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel: [kh, kw],
                ..
            } => in_channels
                .checked_mul(kh)
                .and_then(|n| n.checked_mul(kw))
                .and_then(|n| n.checked_mul(out_channels))
                .and_then(|w| w.checked_add(out_channels))
                .and_then(|n| n.checked_add(acc)),
            _ => Some(acc),
        });
        match count {
            Some(n) if n <= MAX_PARAMETERS => Ok(()),
            _ => Err(Error::Config(format!(
                "the model has {}, more than the {MAX_PARAMETERS} one buffer can hold; use \
                 smaller --hidden sizes",
                count.map_or("too many parameters to count".into(), |n| format!(
                    "{n} parameters"
                ))
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One softmax output trains to a loss of exactly 0; the library refuses it both when
    /// building a model and when checking one read from a file.
    #[test]
    fn softmax_cross_entropy_needs_two_outputs() {
        let ce = LossKind::SoftmaxCrossEntropy;
        let e = ModelSpec::mlp(4, &[3], 1, Activation::Relu, 0.0, ce).unwrap_err();
        assert!(e.to_string().contains("needs two outputs or more"), "{e}");
        let mut spec = ModelSpec::mlp(4, &[3], 1, Activation::Relu, 0.0, LossKind::Mse).unwrap();
        spec.loss = ce;
        assert!(spec.validate().is_err());
        // One sigmoid output is the usual binary classifier.
        assert!(ModelSpec::mlp(4, &[3], 1, Activation::Relu, 0.0, LossKind::SigmoidBce).is_ok());
        assert!(ModelSpec::mlp(4, &[3], 2, Activation::Relu, 0.0, ce).is_ok());
    }
}
