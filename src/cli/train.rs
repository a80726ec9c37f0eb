//! `wgtrain train`: flags, their validation, and the run.

use super::progress::Console;
use crate::backend::{self, BackendChoice};
use crate::data::{self, DataSource, Scale, Splits};
use crate::model::{Activation, LossKind, ModelSpec, Task};
use crate::optim::{OptimizerConfig, OptimizerKind};
use crate::train::{Regularization, Trainer, fit};
use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Where to train: the GPU when an adapter exists (auto), the GPU, or the CPU.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,

    /// GPU adapter index, as listed by `wgtrain devices` (also WGTRAIN_ADAPTER).
    #[arg(long, env = "WGTRAIN_ADAPTER")]
    pub adapter: Option<usize>,

    /// Data: mnist-sample (bundled), fashion-mnist (Debian package), spiral, sine, or a
    /// directory of IDX files or of image folders (ROOT/train/<label>/*.png).
    #[arg(long, default_value = "mnist-sample")]
    pub data: String,

    /// Hidden layer sizes, comma-separated [default: 256,128 for images, 64,64 for spiral/sine].
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,

    /// Activation of the hidden layers.
    #[arg(long, value_enum, default_value_t = Activation::Relu)]
    pub activation: Activation,

    /// Dropout probability after each hidden layer, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,

    /// L1 penalty on weights.
    #[arg(long, default_value_t = 0.0)]
    pub l1: f32,
    /// L2 penalty on weights.
    #[arg(long, default_value_t = 0.0)]
    pub l2: f32,
    /// L1 penalty on biases.
    #[arg(long, default_value_t = 0.0)]
    pub l1_bias: f32,
    /// L2 penalty on biases.
    #[arg(long, default_value_t = 0.0)]
    pub l2_bias: f32,

    /// Loss [default: cross-entropy for class labels, mse for real-valued targets].
    #[arg(long, value_enum)]
    pub loss: Option<LossKind>,

    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub optimizer: OptimizerKind,

    /// Learning rate [default: 1e-3 for adam/adamw/rmsprop, 0.05 for sgd, 0.01 for adagrad;
    /// spiral and sine use larger ones].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,

    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,

    /// Use Nesterov momentum with SGD.
    #[arg(long)]
    pub nesterov: bool,

    /// Learning-rate decay: lr / (1 + decay * step).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub decay: f32,

    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f32,

    /// Epochs [default: 10 for images, 200 for spiral and sine].
    #[arg(long)]
    pub epochs: Option<usize>,

    /// Rows per minibatch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,

    /// Seed for initialisation, shuffling, dropout and synthetic data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Hold out this fraction of the training set for validation (e.g. 0.1).
    #[arg(long)]
    pub val_split: Option<f64>,

    /// Pixel scaling.
    #[arg(long, value_enum, default_value_t = ScaleArg::ZeroOne)]
    pub scale: ScaleArg,

    /// No progress bars or per-epoch lines.
    #[arg(long, short)]
    pub quiet: bool,

    /// Print a JSON summary as the last line on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScaleArg {
    /// Pixels / 255, in [0, 1].
    ZeroOne,
    /// Pixels / 127.5 - 1, in [-1, 1].
    MinusOneOne,
}

impl From<ScaleArg> for Scale {
    fn from(s: ScaleArg) -> Scale {
        match s {
            ScaleArg::ZeroOne => Scale::ZeroOne,
            ScaleArg::MinusOneOne => Scale::MinusOneOne,
        }
    }
}

/// Defaults that depend on the data: small synthetic sets need a small network, many epochs
/// and a larger step.
struct Preset {
    hidden: Vec<usize>,
    epochs: usize,
    lr_scale: f32,
}

fn preset(source: &DataSource) -> Preset {
    match source {
        DataSource::Spiral | DataSource::Sine => Preset {
            hidden: vec![64, 64],
            epochs: 200,
            lr_scale: 5.0,
        },
        _ => Preset {
            hidden: vec![256, 128],
            epochs: 10,
            lr_scale: 1.0,
        },
    }
}

/// The validated settings of a training run.
pub struct TrainConfig {
    pub source: DataSource,
    pub hidden: Vec<usize>,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub regularization: Regularization,
    pub val_split: Option<f64>,
}

impl TrainArgs {
    fn config(&self) -> anyhow::Result<TrainConfig> {
        let source = DataSource::parse(&self.data);
        let p = preset(&source);
        let epochs = self.epochs.unwrap_or(p.epochs);
        if epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let hidden = self.hidden.clone().unwrap_or(p.hidden);
        if hidden.is_empty() || hidden.contains(&0) {
            bail!("--hidden needs one or more sizes of at least 1, e.g. --hidden 256,128");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("--dropout must be in [0, 1), got {}", self.dropout);
        }
        if let Some(v) = self.val_split
            && !(v > 0.0 && v < 1.0)
        {
            bail!("--val-split must be between 0 and 1 (exclusive), got {v}");
        }
        let mut optimizer = OptimizerConfig::new(self.optimizer);
        optimizer.lr = self.lr.unwrap_or(self.optimizer.default_lr() * p.lr_scale);
        optimizer.decay = self.decay;
        if self.optimizer == OptimizerKind::Sgd {
            optimizer.momentum = self.momentum;
        }
        optimizer.nesterov = self.nesterov;
        if self.optimizer == OptimizerKind::Adamw {
            optimizer.weight_decay = self.weight_decay;
        }
        optimizer.validate()?;
        let regularization = Regularization {
            l1_weights: self.l1,
            l2_weights: self.l2,
            l1_biases: self.l1_bias,
            l2_biases: self.l2_bias,
        };
        regularization.validate()?;
        Ok(TrainConfig {
            source,
            hidden,
            epochs,
            batch_size: self.batch_size,
            optimizer,
            regularization,
            val_split: self.val_split,
        })
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let cfg = args.config()?;
    let Splits {
        name,
        train,
        test,
        class_names,
    } = data::load(&cfg.source, args.seed).context("loading data")?;
    let (train, val) = match cfg.val_split {
        Some(f) => {
            let (t, v) = data::split_validation(train, f, args.seed)?;
            (t, Some(v))
        }
        None => (train, None),
    };
    let loss = match (args.loss, &train.targets) {
        (Some(l), _) => l,
        (None, data::Targets::Classes { .. }) => LossKind::SoftmaxCrossEntropy,
        (None, data::Targets::Values { .. }) => LossKind::Mse,
    };
    let outputs = match (loss, train.num_classes()) {
        // One sigmoid output suffices for two classes.
        (LossKind::SigmoidBce, Some(2)) => 1,
        _ => train.output_dim(),
    };
    let mut spec = ModelSpec::mlp(
        train.dim,
        &cfg.hidden,
        outputs,
        args.activation,
        args.dropout,
        loss,
    )?;
    spec.input_shape = train.image_shape;
    spec.scale = args.scale.into();
    spec.class_names = class_names;

    let (backend, notice) = backend::create(args.backend, args.adapter)?;
    if let Some(n) = notice
        && !args.quiet
    {
        eprintln!("{n}");
    }
    let backend_name = backend.name();
    let adapter = backend.adapter();
    let parameters = spec.parameter_count();
    let task = spec.task;
    let mut trainer = Trainer::new(
        backend,
        spec,
        cfg.batch_size,
        cfg.optimizer.clone(),
        cfg.regularization,
        args.seed,
    )?;
    let train_r = trainer.upload(&train)?;
    let test_r = test.as_ref().map(|t| trainer.upload(t)).transpose()?;
    let val_r = val.as_ref().map(|v| trainer.upload(v)).transpose()?;
    if !args.quiet {
        eprintln!(
            "training {} on {name} ({} train rows{}) with {} parameters on {}{}",
            describe(&trainer.net.spec),
            train.rows,
            match (&val, &test) {
                (Some(v), _) => format!(", {} validation", v.rows),
                (None, Some(t)) => format!(", {} test", t.rows),
                _ => String::new(),
            },
            parameters,
            backend_name,
            adapter
                .as_deref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default()
        );
    }
    let (eval, eval_name) = match (&val_r, &test_r) {
        (Some(v), _) => (Some(v), "val"),
        (None, Some(t)) => (Some(t), "test"),
        _ => (None, "test"),
    };
    let mut console = Console::new(task, cfg.epochs, eval_name, args.quiet);
    let started = Instant::now();
    let reports = fit(&mut trainer, &train_r, eval, cfg.epochs, &mut console)?;
    let seconds = started.elapsed().as_secs_f64();
    let last = reports.last().context("no epoch ran")?;
    let test_m = match (&test_r, &val_r) {
        (Some(t), Some(_)) => Some(trainer.evaluate(t)?),
        (Some(_), None) => last.eval,
        _ => None,
    };
    let val_m = if val_r.is_some() { last.eval } else { None };
    let classify = task == Task::Classification;
    let train_s: f64 = reports.iter().map(|r| r.train_seconds).sum();
    let summary = json!({
        "backend": backend_name,
        "adapter": adapter,
        "data": name,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "hidden": cfg.hidden,
        "optimizer": cfg.optimizer.kind,
        "lr": cfg.optimizer.lr,
        "loss": loss,
        "seed": args.seed,
        "parameters": parameters,
        "train_loss": last.train_loss,
        "reg_loss": last.reg_loss,
        "train_accuracy": classify.then_some(last.train_metric),
        "val_loss": val_m.map(|m| m.loss),
        "val_accuracy": val_m.filter(|_| classify).map(|m| m.metric),
        "test_loss": test_m.map(|m| m.loss),
        "test_accuracy": test_m.filter(|_| classify).map(|m| m.metric),
        "test_mae": test_m.filter(|_| !classify).map(|m| m.metric),
        "seconds": seconds,
        "seconds_per_epoch": seconds / cfg.epochs as f64,
        "samples_per_sec": (train.rows * cfg.epochs) as f64 / train_s.max(1e-9),
    });
    if !args.quiet
        && let Some(m) = test_m
    {
        if classify {
            println!(
                "test accuracy {:.2}% (loss {:.4}) in {seconds:.1} s",
                100.0 * m.metric,
                m.loss
            );
        } else {
            println!(
                "test MAE {:.4} (loss {:.4}) in {seconds:.1} s",
                m.metric, m.loss
            );
        }
    }
    if args.json {
        println!("{summary}");
    }
    Ok(())
}

/// "784-256-128-10 relu, cross-entropy" style.
fn describe(spec: &ModelSpec) -> String {
    let mut sizes = vec![spec.inputs().to_string()];
    let mut act = None;
    for l in &spec.layers {
        match l {
            crate::model::Layer::Dense { outputs, .. } => sizes.push(outputs.to_string()),
            crate::model::Layer::Activation { activation } => act = Some(*activation),
            crate::model::Layer::Dropout { .. } => {}
        }
    }
    let act = act
        .map(|a| format!(" {a:?}").to_lowercase())
        .unwrap_or_default();
    format!("{}{act}, {:?} loss", sizes.join("-"), spec.loss).to_lowercase()
}
