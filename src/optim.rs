//! Optimizer settings and the host-side schedule (decayed learning rate, bias corrections).
//! The updates themselves are backend ops over the flat parameter buffer.

use crate::backend::UpdateParams;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Stochastic gradient descent with optional (Nesterov) momentum.
    Sgd,
    Adagrad,
    Rmsprop,
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
}

impl OptimizerKind {
    /// How many state buffers the size of the parameters it keeps.
    pub fn state_buffers(self) -> usize {
        match self {
            OptimizerKind::Sgd | OptimizerKind::Adagrad | OptimizerKind::Rmsprop => 1,
            OptimizerKind::Adam | OptimizerKind::Adamw => 2,
        }
    }

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
    pub kind: OptimizerKind,
    pub lr: f32,
    /// `lr_t = lr / (1 + decay · t)`.
    pub decay: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub beta1: f32,
    /// Adam's beta2, RMSprop's rho.
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl OptimizerConfig {
    pub fn new(kind: OptimizerKind) -> Self {
        OptimizerConfig {
            kind,
            lr: kind.default_lr(),
            decay: 0.0,
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
        finite_nonneg("--decay", self.decay)?;
        finite_nonneg("--weight-decay", self.weight_decay)?;
        finite_nonneg("--eps", self.eps)?;
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
        (self.lr as f64 / (1.0 + self.decay as f64 * step as f64)) as f32
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
