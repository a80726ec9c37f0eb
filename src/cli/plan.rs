//! `wgtrain plan`: the ops a step of a model runs, as the graph compiles them, without running
//! anything.

use crate::graph::assign::assign;
use crate::graph::lower::Training;
use crate::graph::{Mode, Persistent, PlanOptions, Recipe};
use crate::model::{Activation, LossKind, ModelSpec, ParamLayout};
use crate::optim::{OptimizerConfig, OptimizerKind, Regularization};
use crate::store::load_model;
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanMode {
    /// A training step.
    Train,
    /// Evaluation: the forward pass and the loss.
    Eval,
    /// Prediction: the forward pass.
    Predict,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// A saved model (`train --save`) whose plan to print [default: an MLP of the flags below].
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,

    /// Inputs of the MLP.
    #[arg(long, default_value_t = 784)]
    pub inputs: usize,

    /// Hidden layer sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "256,128")]
    pub hidden: Vec<usize>,

    /// Outputs of the MLP.
    #[arg(long, default_value_t = 10)]
    pub outputs: usize,

    /// Activation of the hidden layers.
    #[arg(long, value_enum, default_value_t = Activation::Relu)]
    pub activation: Activation,

    /// Dropout probability after each hidden layer.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,

    /// Loss.
    #[arg(long, value_enum, default_value_t = LossKind::SoftmaxCrossEntropy)]
    pub loss: LossKind,

    /// Rows per batch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,

    /// Which step.
    #[arg(long, value_enum, default_value_t = PlanMode::Train)]
    pub mode: PlanMode,

    /// L2 penalty on weights (training plans).
    #[arg(long, default_value_t = 0.0)]
    pub l2: f32,

    /// Gradient clipping by global norm (training plans).
    #[arg(long)]
    pub clip_norm: Option<f32>,

    /// Print the plan before the fusion pass.
    #[arg(long)]
    pub no_fuse: bool,
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let spec = match &args.model {
        Some(p) => load_model(p).context("loading the model")?.spec,
        None => ModelSpec::mlp(
            args.inputs,
            &args.hidden,
            args.outputs,
            args.activation,
            args.dropout,
            args.loss,
        )?,
    };
    spec.validate()?;
    let mode = match args.mode {
        PlanMode::Train => Mode::Train,
        PlanMode::Eval => Mode::Eval,
        PlanMode::Predict => Mode::Predict,
    };
    let regularization = Regularization {
        l2_weights: args.l2,
        ..Regularization::default()
    };
    regularization.validate()?;
    let recipe = Recipe {
        layout: ParamLayout::new(&spec),
        spec,
        mode,
        training: Some(Training {
            update: OptimizerConfig::new(OptimizerKind::Adam).update_params(0),
            regularization,
            clip_norm: args.clip_norm,
            shift: 0,
        }),
        persistent: Persistent::default(),
        options: PlanOptions {
            fuse: !args.no_fuse,
        },
        batch: args.batch_size,
    };
    let plan = recipe.plan(args.batch_size);
    print!("{plan}");
    let a = assign(&plan);
    let temps = a.slot_of.iter().filter(|s| s.is_some()).count();
    let bytes: usize = a.slots.iter().map(|s| 4 * s.len).sum();
    println!(
        "{temps} temporary values in {} buffers ({:.1} KiB), {} parameters",
        a.slots.len(),
        bytes as f64 / 1024.0,
        recipe.spec.parameter_count()
    );
    Ok(())
}
