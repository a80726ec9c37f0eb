//! Optimizer settings, learning-rate schedules and penalties. The host computes each step's
//! learning rate and Adam's bias corrections; the updates themselves are one op over the flat
//! parameter buffer ([`crate::ops::Update`]).

use crate::model::ParamLayout;
use crate::ops::UpdateParams;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// An optimizer's update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Stochastic gradient descent with optional (Nesterov) momentum.
    Sgd,
    /// Per-parameter rates from the sum of squared gradients.
    Adagrad,
    /// Per-parameter rates from a moving average of squared gradients.
    Rmsprop,
    /// Adam: moving averages of the gradient and its square, bias-corrected.
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
}

impl OptimizerKind {
    /// A learning rate that trains an MLP well with this optimizer.
    pub fn default_lr(self) -> f32 {
        match self {
            OptimizerKind::Sgd => 0.05,
            OptimizerKind::Adagrad => 0.01,
            OptimizerKind::Rmsprop | OptimizerKind::Adam | OptimizerKind::Adamw => 1e-3,
        }
    }
}

/// Everything that defines the optimizer's behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// The update rule.
    pub kind: OptimizerKind,
    /// The base learning rate; [`OptimizerConfig::schedule`] scales it per step.
    pub lr: f32,
    /// How the learning rate changes with the step.
    #[serde(default)]
    pub schedule: Schedule,
    /// SGD's momentum, in [0, 1); 0 for plain SGD. The other rules ignore it.
    pub momentum: f32,
    /// Nesterov momentum for SGD; needs `momentum` > 0.
    pub nesterov: bool,
    /// Adam's decay of the first moment (the gradient's moving average), in [0, 1).
    pub beta1: f32,
    /// Adam's decay of the second moment, RMSprop's rho (its squared-gradient average's
    /// decay), in [0, 1).
    pub beta2: f32,
    /// Added to the denominator of Adagrad, RMSprop and Adam(W) against division by zero; finite
    /// and >= 0.
    pub eps: f32,
    /// AdamW's decoupled weight decay: each step multiplies the parameters by
    /// `1 - lr · weight_decay`. Finite and >= 0; the other rules ignore it.
    pub weight_decay: f32,
}

impl OptimizerConfig {
    /// The usual defaults for `kind`: its [`OptimizerKind::default_lr`], a constant schedule,
    /// momentum 0.9 for SGD, betas 0.9/0.999 (rho 0.9 for RMSprop), eps 1e-7 (Adagrad, RMSprop) or
    /// 1e-8, weight decay 0.01 for AdamW.
    pub fn new(kind: OptimizerKind) -> Self {
        OptimizerConfig {
            kind,
            lr: kind.default_lr(),
            schedule: Schedule::Constant,
            momentum: if kind == OptimizerKind::Sgd { 0.9 } else { 0.0 },
            nesterov: false,
            beta1: 0.9,
            beta2: if kind == OptimizerKind::Rmsprop {
                0.9
            } else {
                0.999
            },
            eps: if kind == OptimizerKind::Adagrad || kind == OptimizerKind::Rmsprop {
                1e-7
            } else {
                1e-8
            },
            weight_decay: if kind == OptimizerKind::Adamw {
                0.01
            } else {
                0.0
            },
        }
    }

    /// Checks every setting is in range (the messages name the command-line flag);
    /// [`Error::Config`] for the first that is not.
    pub fn validate(&self) -> Result<()> {
        let finite_nonneg = |name: &str, v: f32| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::Config(format!(
                    "{name} must be a finite number >= 0, got {v}"
                )))
            }
        };
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::Config(format!(
                "--lr must be a finite number > 0, got {}",
                self.lr
            )));
        }
        self.schedule.validate()?;
        finite_nonneg("--weight-decay", self.weight_decay)?;
        // Adagrad, RMSprop and Adam divide by √v + ε, and v stays 0 for a parameter whose
        // gradient is always 0 (a dead ReLU unit's weights): ε = 0 would make that 0/0.
        if self.kind != OptimizerKind::Sgd && !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::Config(format!(
                "--eps must be a finite number > 0, got {}",
                self.eps
            )));
        }
        // As in PyTorch: Nesterov's look-ahead needs momentum to look ahead with, and without
        // it the update would silently be plain SGD.
        if self.nesterov && self.momentum == 0.0 {
            return Err(Error::Config(
                "--nesterov needs momentum, but --momentum is 0; give a momentum such as 0.9, \
                 or drop --nesterov"
                    .into(),
            ));
        }
        for (name, v) in [
            ("--momentum", self.momentum),
            ("--beta1", self.beta1),
            ("--beta2", self.beta2),
        ] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return Err(Error::Config(format!("{name} must be in [0, 1), got {v}")));
            }
        }
        Ok(())
    }

    /// The learning rate at (0-based) update `step`.
    pub fn lr_at(&self, step: u64) -> f32 {
        (self.lr as f64 * self.schedule.factor(step)) as f32
    }

    /// The op parameters of (0-based) update `step`.
    pub fn update_params(&self, step: u64) -> UpdateParams {
        let t = (step + 1) as i32;
        UpdateParams {
            kind: self.kind,
            lr: self.lr_at(step),
            momentum: self.momentum,
            nesterov: self.nesterov,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            bias_correction1: (1.0 - (self.beta1 as f64).powi(t)) as f32,
            bias_correction2: (1.0 - (self.beta2 as f64).powi(t)) as f32,
        }
    }
}

/// How the learning rate changes with the (0-based) optimizer step `t`: the base rate times a
/// factor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// `lr / (1 + decay · t)`, as in "Neural Networks from Scratch".
    InverseTime {
        /// How fast the rate falls: it halves by step `1 / decay`. Finite and >= 0.
        decay: f32,
    },
    /// `lr · gamma^⌊t / every⌋`: the rate times `gamma` every `every` steps.
    Step {
        /// Steps between two reductions; at least 1.
        every: u64,
        /// The factor applied at each reduction, > 0 (below 1 to decay).
        gamma: f32,
    },
    /// Linear warm-up from 0 over `warmup` steps, then half a cosine from the base rate down to
    /// 0 at step `total`.
    Cosine {
        /// Steps of the linear warm-up; 0 for none.
        warmup: u64,
        /// The step at which the rate reaches 0 and stays there; more than `warmup`. Usually
        /// the run's total number of optimizer steps (epochs times batches per epoch).
        total: u64,
    },
}

impl Schedule {
    /// The factor the base learning rate is multiplied by at step `t`.
    ///
    /// ```
    /// use wgtrain::optim::Schedule;
    ///
    /// assert_eq!(Schedule::InverseTime { decay: 0.5 }.factor(2), 0.5);
    /// assert_eq!(Schedule::Step { every: 10, gamma: 0.5 }.factor(25), 0.25);
    /// let cosine = Schedule::Cosine { warmup: 10, total: 110 };
    /// assert_eq!(cosine.factor(4), 0.5); // step 5 of 10 of the warm-up
    /// assert!((cosine.factor(60) - 0.5).abs() < 1e-12); // halfway down
    /// assert_eq!(cosine.factor(200), 0.0);
    /// ```
    pub fn factor(&self, t: u64) -> f64 {
        match *self {
            Schedule::Constant => 1.0,
            Schedule::InverseTime { decay } => 1.0 / (1.0 + decay as f64 * t as f64),
            Schedule::Step { every, gamma } => (gamma as f64).powi((t / every.max(1)) as i32),
            Schedule::Cosine { warmup, total } => {
                if t < warmup {
                    (t + 1) as f64 / warmup as f64
                } else if t >= total {
                    0.0
                } else {
                    let span = (total - warmup).max(1) as f64;
                    let done = (t - warmup) as f64 / span;
                    0.5 * (1.0 + (std::f64::consts::PI * done).cos())
                }
            }
        }
    }

    /// Checks the schedule's parameters are in range: [`Error::Config`] otherwise.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::InverseTime { decay } if decay.is_finite() && decay >= 0.0 => Ok(()),
            Schedule::InverseTime { decay } => Err(Error::Config(format!(
                "the learning-rate decay must be a finite number >= 0, got {decay}"
            ))),
            Schedule::Step { every, gamma } if every > 0 && gamma.is_finite() && gamma > 0.0 => {
                Ok(())
            }
            Schedule::Step { every, gamma } => Err(Error::Config(format!(
                "a step schedule needs a period of at least one step and a factor > 0, got \
                 every {every} steps, factor {gamma}"
            ))),
            Schedule::Cosine { warmup, total } if warmup < total => Ok(()),
            Schedule::Cosine { warmup, total } => Err(Error::Config(format!(
                "a cosine schedule's warm-up ({warmup} steps) must end before its last step \
                 ({total})"
            ))),
        }
    }
}

/// L1 and L2 penalty strengths, for weights and biases separately: the loss gains
/// `Σ l1·|w| + l2·w²` over each part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Regularization {
    /// L1 strength on the weights, >= 0.
    pub l1_weights: f32,
    /// L2 strength on the weights, >= 0.
    pub l2_weights: f32,
    /// L1 strength on the biases, >= 0.
    pub l1_biases: f32,
    /// L2 strength on the biases, >= 0.
    pub l2_biases: f32,
}

impl Regularization {
    /// Whether every strength is 0 (no penalty at all).
    pub fn is_zero(&self) -> bool {
        *self == Regularization::default()
    }

    /// Checks every strength is finite and >= 0: [`Error::Config`] otherwise.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("--l1", self.l1_weights),
            ("--l2", self.l2_weights),
            ("--l1-bias", self.l1_biases),
            ("--l2-bias", self.l2_biases),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Config(format!(
                    "{name} must be a finite number >= 0, got {v}"
                )));
            }
        }
        Ok(())
    }

    /// The penalty `Σ l1·|w| + l2·w²` over weights and biases of the flat parameters.
    pub fn penalty(&self, layout: &ParamLayout, params: &[f32]) -> f64 {
        if self.is_zero() {
            return 0.0;
        }
        let term = |v: &[f32], l1: f32, l2: f32| -> f64 {
            v.iter()
                .map(|&x| l1 as f64 * (x as f64).abs() + l2 as f64 * (x as f64).powi(2))
                .sum()
        };
        layout
            .slots
            .iter()
            .map(|s| {
                let w = &params[s.weight_offset..s.weight_offset + s.inputs * s.outputs];
                let b = &params[s.bias_offset..s.bias_offset + s.outputs];
                term(w, self.l1_weights, self.l2_weights) + term(b, self.l1_biases, self.l2_biases)
            })
            .sum()
    }
}
