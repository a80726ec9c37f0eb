//! How the library's enums read on the command line: their names, aliases and help. The
//! library itself knows nothing of clap; these implementations are the command line's.

use crate::backend::BackendChoice;
use crate::data::{Color, Scale};
use crate::model::{Activation, LossKind};
use crate::optim::OptimizerKind;
use clap::ValueEnum;
use clap::builder::PossibleValue;

/// Implements [`ValueEnum`] for a library enum: each variant with its flag value, any
/// aliases, and its help line.
macro_rules! value_enum {
    ($ty:ident { $($variant:ident => $name:literal $(| $alias:literal)* : $help:literal,)* }) => {
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($ty::$variant),*]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($ty::$variant => PossibleValue::new($name).help($help)$(.alias($alias))*,)*
                })
            }
        }
    };
}

value_enum!(Activation {
    Relu => "relu": "max(x, 0)",
    LeakyRelu => "leaky-relu": "x for x > 0, else 0.01 x",
    Sigmoid => "sigmoid": "1 / (1 + e^-x)",
    Tanh => "tanh": "tanh(x)",
    Softmax => "softmax": "Row-wise softmax",
    Linear => "linear": "The identity",
});

value_enum!(LossKind {
    SoftmaxCrossEntropy => "cross-entropy" | "ce" | "softmax-ce":
        "Softmax output fused with categorical cross-entropy",
    SigmoidBce => "bce" | "binary-cross-entropy":
        "Sigmoid output fused with binary cross-entropy (one-vs-all for several classes)",
    Mse => "mse": "Mean squared error on a linear output",
    Mae => "mae": "Mean absolute error on a linear output",
});

value_enum!(OptimizerKind {
    Sgd => "sgd": "Stochastic gradient descent with optional (Nesterov) momentum",
    Adagrad => "adagrad": "Per-parameter rates from the sum of squared gradients",
    Rmsprop => "rmsprop": "Per-parameter rates from a moving average of squared gradients",
    Adam => "adam": "Moving averages of the gradient and its square, bias-corrected",
    Adamw => "adamw": "Adam with decoupled weight decay",
});

value_enum!(Scale {
    ZeroOne => "zero-one": "p / 255, in [0, 1]",
    MinusOneOne => "minus-one-one": "p / 127.5 - 1, in [-1, 1]",
});

value_enum!(Color {
    Gray => "gray": "One channel: Rec. 709 luma",
    Rgb => "rgb": "Three channels: red, green, blue",
});

value_enum!(BackendChoice {
    Auto => "auto": "The GPU when an adapter exists, else the CPU (with a notice)",
    Gpu => "gpu": "The GPU backend, or an error where there is no adapter",
    Cpu => "cpu": "The CPU reference backend",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag values are the names saved files use (serde), so a value read from a file and
    /// one typed on the command line agree.
    #[test]
    fn flag_values_match_the_saved_names() {
        for l in LossKind::value_variants() {
            assert_eq!(l.to_possible_value().unwrap().get_name(), l.name());
            assert_eq!(serde_json::to_value(l).unwrap(), l.name());
        }
        for a in Activation::value_variants() {
            let name = a.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(serde_json::to_value(a).unwrap(), name);
        }
        for o in OptimizerKind::value_variants() {
            let name = o.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(serde_json::to_value(o).unwrap(), name);
        }
        assert_eq!(
            LossKind::from_str("ce", true).unwrap(),
            LossKind::SoftmaxCrossEntropy
        );
    }
}
