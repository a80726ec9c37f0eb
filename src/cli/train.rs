//! `wgtrain train`: flags, their validation, and the run.

use super::progress::Console;
use super::signals;
use crate::Error;
use crate::backend::BackendChoice;
use crate::data::{self, Color, DataSource, Features, Scale, Splits, Targets};
use crate::model::{Activation, Layer, LossKind, Model, ModelSpec, Task};
use crate::optim::{OptimizerConfig, OptimizerKind, Schedule};
use crate::report::{check_metrics_path, rows_from_history, write_metrics};
use crate::store::{
    Checkpoint, CheckpointMeta, SavedModel, load_checkpoint, save_checkpoint, save_model,
};
use crate::train::{
    Control, EarlyStopping, EpochReport, Metrics, Regularization, RunData, Trainer, train_epoch,
};
use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
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
    // Clap prints this comment as the flag's help, so `<label>` stays as it is rather than in
    // backticks, and rustdoc is told it is not an HTML tag.
    #[allow(rustdoc::invalid_html_tags)]
    #[arg(long, default_value = "mnist-sample")]
    pub data: String,

    /// Number of classes, when some have no training rows: labels then run from 0 to N-1
    /// [default: 0 to the largest training label, each with rows].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub classes: Option<usize>,

    /// The network: mlp (Dense layers, shaped by --hidden, --activation, --dropout) or cnn (a
    /// small convolutional network for images, trained with a cosine schedule and --shift 1
    /// unless --schedule and --shift say otherwise: "conv 32 3 pad 1, relu, conv 32 3 pad 1,
    /// relu, maxpool 2, conv 64 3 pad 1, relu, conv 64 3 pad 1, relu, maxpool 2, dense 256,
    /// relu, dropout 0.5, dense").
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,

    /// The network as a comma-separated layer list, in place of --arch: `conv OUT K [stride S]
    /// [pad P|same]` (K or KHxKW), `maxpool K [stride S]`, `avgpool K [stride S]`, `flatten`,
    /// `dense N` (the last may omit N: the classes), `dropout P`, and the activations relu,
    /// leaky-relu, sigmoid, tanh, softmax, linear. E.g. "conv 16 5 pad same, relu, maxpool 2,
    /// dense 64, relu, dense".
    #[arg(long, value_name = "LIST")]
    pub layers: Option<String>,

    /// Hidden layer sizes, comma-separated [default: 256,128 for images, 64,64 for spiral/sine].
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,

    /// Activation of the hidden layers.
    #[arg(long, value_enum, default_value_t = Activation::Relu)]
    pub activation: Activation,

    /// Dropout probability after each hidden layer, in [0, 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub dropout: f32,

    /// L1 penalty on weights.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub l1: f32,
    /// L2 penalty on weights.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub l2: f32,
    /// L1 penalty on biases.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub l1_bias: f32,
    /// L2 penalty on biases.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
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
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    pub momentum: f32,

    /// Use Nesterov momentum with SGD.
    #[arg(long)]
    pub nesterov: bool,

    /// Learning-rate schedule [default: inverse-time when --decay is given, else constant].
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleKind>,

    /// Learning-rate decay of the inverse-time schedule: lr / (1 + decay * step).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub decay: f32,

    /// Epochs between the step schedule's drops of the learning rate.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub step_epochs: Option<usize>,

    /// Factor of each of the step schedule's drops.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub gamma: f32,

    /// Epochs of the cosine schedule's linear warm-up.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub warmup_epochs: usize,

    /// Clip the gradient to this global norm before each update (PyTorch's clip_grad_norm_).
    #[arg(long, value_name = "NORM", allow_negative_numbers = true)]
    pub clip_norm: Option<f32>,

    /// Stop when the validation loss (the training loss without --val-split) has not improved
    /// for N epochs.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub early_stop: Option<usize>,

    /// AdamW's decoupled weight decay.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.01)]
    pub weight_decay: f32,

    /// Epochs [default: 10 for images, 200 for spiral and sine].
    #[arg(long, allow_negative_numbers = true)]
    pub epochs: Option<usize>,

    /// Rows per minibatch.
    #[arg(long, allow_negative_numbers = true, default_value_t = 64)]
    pub batch_size: usize,

    /// Seed for initialisation, shuffling, dropout and synthetic data.
    #[arg(long, allow_negative_numbers = true, default_value_t = 42)]
    pub seed: u64,

    /// Hold out this fraction of the training set for validation (e.g. 0.1; 0: none).
    #[arg(long, allow_negative_numbers = true)]
    pub val_split: Option<f64>,

    /// Move each training image by a random offset of up to N pixels along each axis, a new one
    /// every step (augmentation: the images the network sees are not all centred alike; test
    /// and prediction images are never moved; 0: none) [default: 1 with --arch cnn, else 0].
    #[arg(long, value_name = "N")]
    pub shift: Option<u32>,

    /// How image folders' images are read: gray (one channel) or rgb (three, channels last);
    /// the saved model records it, and predict converts images the same way.
    #[arg(long, value_enum)]
    pub color: Option<Color>,

    /// Pixel scaling.
    #[arg(long, value_enum, default_value_t = Scale::ZeroOne)]
    pub scale: Scale,

    /// Save the trained model here (safetensors; loads in Python with no code of ours).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,

    /// Write a training checkpoint here (model, optimizer state, progress) at the end, every
    /// --checkpoint-every epochs, and on Ctrl-C [default: the --resume file when resuming,
    /// else checkpoint.safetensors when --checkpoint-every is given or on Ctrl-C].
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,

    /// Write the checkpoint every N epochs.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub checkpoint_every: Option<usize>,

    /// Continue training from a checkpoint; --epochs is then the total to reach.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,

    /// Write per-epoch metrics here (.csv or .jsonl), updated after every epoch.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,

    /// Draw loss and accuracy curves to this PNG at the end.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,

    /// No progress bars or per-epoch lines.
    #[arg(long, short)]
    pub quiet: bool,

    /// Print a JSON summary as the last line on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The network presets `--arch` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// Dense layers: --hidden sizes, each with --activation and --dropout.
    Mlp,
    /// A small convolutional network for images (28x28 or as small as 8x8), trained with
    /// --shift 1.
    Cnn,
}

/// The learning-rate schedules `--schedule` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// The same rate throughout.
    Constant,
    /// lr / (1 + decay * step), with --decay.
    InverseTime,
    /// The rate times --gamma every --step-epochs epochs.
    Step,
    /// Linear warm-up over --warmup-epochs, then half a cosine down to 0 at the last epoch.
    Cosine,
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

/// The resolved settings that define a run: stored in checkpoints, and checked against the
/// flags given with `--resume`. Field names are the flags' ids. Defaults that depend on the
/// data (the loss, the classes) are resolved before a checkpoint is written, so a flag that
/// repeats what the run used agrees with it whether or not the run was given that flag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Settings {
    data: String,
    /// Absent from checkpoints written before the flag existed: an MLP.
    #[serde(default)]
    arch: Option<Arch>,
    /// The layer list actually used (`--layers`, or the `--arch cnn` preset); `None` for MLPs.
    #[serde(default)]
    layers: Option<String>,
    hidden: Vec<usize>,
    activation: Activation,
    dropout: f32,
    l1: f32,
    l2: f32,
    l1_bias: f32,
    l2_bias: f32,
    loss: Option<LossKind>,
    optimizer: OptimizerKind,
    lr: f32,
    momentum: f32,
    nesterov: bool,
    decay: f32,
    /// Absent from checkpoints written before the flag existed: inverse-time with --decay,
    /// else constant.
    #[serde(default)]
    schedule: Option<ScheduleKind>,
    #[serde(default)]
    step_epochs: Option<usize>,
    #[serde(default = "default_gamma")]
    gamma: f32,
    #[serde(default)]
    warmup_epochs: usize,
    #[serde(default)]
    clip_norm: Option<f32>,
    #[serde(default)]
    early_stop: Option<usize>,
    weight_decay: f32,
    epochs: usize,
    batch_size: usize,
    seed: u64,
    val_split: Option<f64>,
    scale: Scale,
    /// Absent from checkpoints written before the flag existed: gray.
    #[serde(default)]
    color: Color,
    /// Absent from checkpoints written before the flag existed: no shift.
    #[serde(default)]
    shift: u32,
    /// Absent from checkpoints written before the flag existed: then the model's outputs say.
    #[serde(default)]
    classes: Option<usize>,
}

/// A setting as a flag spells it: `cross-entropy` rather than `"cross-entropy"`, `32,16` rather
/// than `[32,16]`, `none` for a setting left out (no validation split).
fn show_setting(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "none".into(),
        serde_json::Value::Array(a) => a.iter().map(show_setting).collect::<Vec<_>>().join(","),
        v => v.to_string(),
    }
}

fn default_gamma() -> f32 {
    0.1
}

/// Flags that may differ from the checkpoint's on `--resume` (they do not change the model or
/// the sequence of updates).
const RESUME_FREE: [&str; 2] = ["epochs", "early_stop"];

impl Settings {
    fn from_args(a: &TrainArgs) -> Settings {
        let p = preset(&DataSource::parse(&a.data));
        let arch = match (&a.layers, a.arch) {
            (Some(_), _) => None,
            (None, arch) => Some(arch.unwrap_or(Arch::Mlp)),
        };
        let layers = a
            .layers
            .clone()
            .or_else(|| (arch == Some(Arch::Cnn)).then(|| super::layers::CNN.to_string()));
        Settings {
            data: a.data.clone(),
            arch,
            layers,
            hidden: a.hidden.clone().unwrap_or(p.hidden),
            activation: a.activation,
            dropout: a.dropout,
            l1: a.l1,
            l2: a.l2,
            l1_bias: a.l1_bias,
            l2_bias: a.l2_bias,
            loss: a.loss,
            optimizer: a.optimizer,
            lr: a.lr.unwrap_or(a.optimizer.default_lr() * p.lr_scale),
            momentum: a.momentum,
            nesterov: a.nesterov,
            decay: a.decay,
            // The schedule actually used: --decay alone means inverse-time; the CNN preset
            // anneals (cosine) by default.
            schedule: Some(a.schedule.unwrap_or(if a.decay > 0.0 {
                ScheduleKind::InverseTime
            } else if arch == Some(Arch::Cnn) {
                ScheduleKind::Cosine
            } else {
                ScheduleKind::Constant
            })),
            step_epochs: a.step_epochs,
            gamma: a.gamma,
            warmup_epochs: a.warmup_epochs,
            clip_norm: a.clip_norm,
            early_stop: a.early_stop,
            weight_decay: a.weight_decay,
            epochs: a.epochs.unwrap_or(p.epochs),
            batch_size: a.batch_size,
            seed: a.seed,
            // 0 means no validation set, as in the tools users know; stored as no split, so
            // `--resume --val-split 0` agrees with a run that had none.
            val_split: a.val_split.filter(|&v| v != 0.0),
            scale: a.scale,
            color: a.color.unwrap_or_default(),
            // The CNN preset augments by default.
            shift: a
                .shift
                .unwrap_or(if arch == Some(Arch::Cnn) { 1 } else { 0 }),
            classes: a.classes,
        }
    }

    /// The checkpoint's settings, with the flags given now checked against them.
    fn for_resume(saved: Settings, a: &TrainArgs, m: &ArgMatches) -> anyhow::Result<Settings> {
        let given = serde_json::to_value(Settings::from_args(a))?;
        let stored = serde_json::to_value(&saved)?;
        for (key, value) in given.as_object().context("settings are an object")? {
            let explicit = m.value_source(key) == Some(ValueSource::CommandLine);
            if explicit && !RESUME_FREE.contains(&key.as_str()) && stored.get(key) != Some(value) {
                bail!(
                    "--{} {} contradicts the checkpoint, which was trained with {}; drop the flag to continue as it was",
                    key.replace('_', "-"),
                    show_setting(value),
                    stored.get(key).map(show_setting).unwrap_or_default()
                );
            }
        }
        let mut s = saved;
        if m.value_source("epochs") == Some(ValueSource::CommandLine) {
            s.epochs = a.epochs.unwrap_or(s.epochs);
        }
        if m.value_source("early_stop") == Some(ValueSource::CommandLine) {
            s.early_stop = a.early_stop;
        }
        Ok(s)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            bail!("--hidden needs one or more sizes of at least 1, e.g. --hidden 256,128");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("--dropout must be in [0, 1), got {}", self.dropout);
        }
        if let Some(v) = self.val_split
            && !(v > 0.0 && v < 1.0)
        {
            bail!("--val-split must be in [0, 1) (0: no validation set), got {v}");
        }
        if self.schedule == Some(ScheduleKind::Step) && self.step_epochs.is_none() {
            bail!("--schedule step needs --step-epochs N, the epochs between drops");
        }
        if self.step_epochs == Some(0) {
            bail!("--step-epochs must be at least 1");
        }
        if self.schedule == Some(ScheduleKind::Cosine) && self.warmup_epochs >= self.epochs {
            bail!(
                "--warmup-epochs {} leaves nothing of the {} epochs for the cosine schedule to anneal; use fewer",
                self.warmup_epochs,
                self.epochs
            );
        }
        if let Some(c) = self.clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            bail!("--clip-norm must be a finite number > 0, got {c}");
        }
        if self.early_stop == Some(0) {
            bail!("--early-stop must be at least 1 (epochs without improvement)");
        }
        self.optimizer_config(1).validate()?;
        self.regularization().validate()?;
        Ok(())
    }

    /// The optimizer, its schedule in steps for `steps_per_epoch` steps per epoch.
    fn optimizer_config(&self, steps_per_epoch: u64) -> OptimizerConfig {
        let mut o = OptimizerConfig::new(self.optimizer);
        o.lr = self.lr;
        let epochs = |n: usize| n as u64 * steps_per_epoch;
        o.schedule = match self.schedule {
            Some(ScheduleKind::Constant) => Schedule::Constant,
            Some(ScheduleKind::Step) => Schedule::Step {
                every: epochs(self.step_epochs.unwrap_or(1)),
                gamma: self.gamma,
            },
            Some(ScheduleKind::Cosine) => Schedule::Cosine {
                warmup: epochs(self.warmup_epochs),
                total: epochs(self.epochs),
            },
            Some(ScheduleKind::InverseTime) => Schedule::InverseTime { decay: self.decay },
            None if self.decay > 0.0 => Schedule::InverseTime { decay: self.decay },
            None => Schedule::Constant,
        };
        if self.optimizer == OptimizerKind::Sgd {
            o.momentum = self.momentum;
            o.nesterov = self.nesterov;
        }
        if self.optimizer == OptimizerKind::Adamw {
            o.weight_decay = self.weight_decay;
        }
        o
    }

    /// Refuses optimizer flags the user gave that this run's optimizer would ignore.
    fn refuse_ignored(&self, m: &ArgMatches) -> anyhow::Result<()> {
        if self.layers.is_some() {
            let why = if super::given(m, "layers") {
                "--layers describes the whole network"
            } else {
                "--arch cnn is a fixed network"
            };
            if super::given(m, "arch") && super::given(m, "layers") {
                bail!("--arch and --layers both describe the network; give one");
            }
            for flag in ["hidden", "activation", "dropout"] {
                if super::given(m, flag) {
                    bail!(
                        "--{flag} shapes the --arch mlp network, and {why}; drop --{flag} (or use --layers to change the layers)"
                    );
                }
            }
        }
        let optimizer = value_name(&self.optimizer);
        if self.optimizer != OptimizerKind::Sgd {
            for flag in ["momentum", "nesterov"] {
                if super::given(m, flag) {
                    bail!(
                        "--{flag} applies only to --optimizer sgd, and this run uses {optimizer}; drop --{flag} or use --optimizer sgd"
                    );
                }
            }
        }
        let schedule = self.schedule.unwrap_or(ScheduleKind::Constant);
        for (flag, applies, to) in [
            ("decay", ScheduleKind::InverseTime, "inverse-time"),
            ("step_epochs", ScheduleKind::Step, "step"),
            ("gamma", ScheduleKind::Step, "step"),
            ("warmup_epochs", ScheduleKind::Cosine, "cosine"),
        ] {
            if schedule != applies && super::given(m, flag) {
                let flag = flag.replace('_', "-");
                let used = value_name(&schedule);
                bail!(
                    "--{flag} applies only to --schedule {to}, and this run's schedule is {used}; drop --{flag} or use --schedule {to}"
                );
            }
        }
        if self.optimizer != OptimizerKind::Adamw && super::given(m, "weight_decay") {
            bail!(
                "--weight-decay applies only to --optimizer adamw, and this run uses {optimizer}; drop it or use --optimizer adamw (--l2 penalises weights with any optimizer)"
            );
        }
        Ok(())
    }

    fn regularization(&self) -> Regularization {
        Regularization {
            l1_weights: self.l1,
            l2_weights: self.l2,
            l1_biases: self.l1_bias,
            l2_biases: self.l2_bias,
        }
    }
}

const DEFAULT_CHECKPOINT: &str = "checkpoint.safetensors";

pub fn run(args: TrainArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let resumed = match &args.resume {
        Some(p) => Some(load_checkpoint(p).context("--resume")?),
        None => None,
    };
    let mut settings = match &resumed {
        Some(c) => {
            let mut saved: Settings = serde_json::from_value(c.meta.run.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "{}: the checkpoint's run settings are unreadable ({e}); the file is damaged or from an incompatible version",
                    args.resume.as_deref().unwrap_or(Path::new("")).display()
                )
            })?;
            // Checkpoints store the resolved settings; older versions stored no loss (`null`,
            // the default for the data) and no classes, which the checkpoint's model says.
            let spec = &c.model.spec;
            saved.loss = saved.loss.or(Some(spec.loss));
            if saved.classes.is_none() && spec.task() == Task::Classification {
                saved.classes = Some(spec.outputs().max(2));
            }
            Settings::for_resume(saved, &args, matches)?
        }
        None => Settings::from_args(&args),
    };
    settings.refuse_ignored(matches)?;
    settings.validate()?;
    if let Some(p) = &args.metrics {
        check_metrics_path(p)?;
    }
    if args.checkpoint_every == Some(0) {
        bail!("--checkpoint-every must be at least 1");
    }
    for (flag, path) in [
        ("--save", &args.save),
        ("--checkpoint", &args.checkpoint),
        ("--metrics", &args.metrics),
        ("--plot", &args.plot),
    ] {
        if let Some(p) = path {
            check_output_path(flag, p)?;
        }
    }
    // A resumed run keeps writing to the checkpoint it came from unless told otherwise.
    let checkpoint_path = args
        .checkpoint
        .clone()
        .or_else(|| args.resume.clone())
        .or_else(|| {
            args.checkpoint_every
                .map(|_| PathBuf::from(DEFAULT_CHECKPOINT))
        });
    refuse_shared_files(&args, checkpoint_path.as_deref())?;

    let source = DataSource::parse(&settings.data);
    let mut splits =
        data::load_with(&source, settings.seed, settings.color).context("loading data")?;
    // A resumed model's classes are fixed; `upload` refuses labels beyond them.
    if resumed.is_none() {
        settings.classes = data::settle_classes(&mut splits, settings.classes)?;
    }
    let Splits {
        name,
        train,
        test,
        class_names,
    } = splits;
    if super::given(matches, "scale") && matches!(train.features, Features::F32(_)) {
        bail!(
            "--scale scales image pixels, but {name} has real-valued features, which are used as they are; drop --scale"
        );
    }
    let (train, val) = match settings.val_split {
        Some(f) => {
            let (t, v) = data::split_validation(train, f, settings.seed)?;
            (t, Some(v))
        }
        None => (train, None),
    };
    let spec = match &resumed {
        Some(c) => c.model.spec.clone(),
        None => build_spec(&settings, &train, class_names)?,
    };
    // The loss actually used, not "the default", so that resuming with `--loss` naming it
    // agrees with the checkpoint.
    settings.loss = Some(spec.loss);
    if resumed.is_some() && (train.dim != spec.inputs()) {
        bail!(
            "the data has {} features per row but the checkpoint's model takes {}; resume with the data it was trained on",
            train.dim,
            spec.inputs()
        );
    }

    let backend = super::open_backend(args.backend, args.adapter, args.quiet)?;
    let backend_name = backend.name();
    let adapter = backend.adapter();
    let parameters = spec.parameter_count();
    let task = spec.task();
    // A batch larger than every split changes nothing but the memory it takes.
    let largest = [Some(&train), val.as_ref(), test.as_ref()]
        .into_iter()
        .flatten()
        .map(|d| d.rows)
        .max()
        .unwrap_or(1);
    let model = match &resumed {
        Some(c) => Model::with_params(backend, spec, &c.model.params)?,
        None => Model::new(backend, spec, settings.seed)?,
    };
    let batch = settings.batch_size.min(largest);
    let steps_per_epoch = train.rows.div_ceil(batch) as u64;
    let mut trainer = Trainer::new(
        model,
        batch,
        settings.optimizer_config(steps_per_epoch),
        settings.seed,
    )?
    .with_regularization(settings.regularization())?
    .with_clip_norm(settings.clip_norm)?
    .with_shift(settings.shift)?;
    let mut history: Vec<EpochReport> = Vec::new();
    if let Some(c) = &resumed {
        trainer.restore(
            &c.model.params,
            &c.state1,
            &c.state2,
            c.meta.progress.clone(),
        )?;
        history = c.meta.history.clone();
    }
    let train_r = trainer.upload(&train)?;
    let test_r = test.as_ref().map(|t| trainer.upload(t)).transpose()?;
    let val_r = val.as_ref().map(|v| trainer.upload(v)).transpose()?;
    if !args.quiet {
        eprintln!(
            "{} {} on {name} ({} train rows{}{}) with {} parameters on {}{}",
            if resumed.is_some() {
                "resuming"
            } else {
                "training"
            },
            describe(trainer.spec()),
            train.rows,
            match (&val, &test) {
                (Some(v), _) => format!(", {} validation", v.rows),
                (None, Some(t)) => format!(", {} test", t.rows),
                _ => String::new(),
            },
            describe_classes(settings.classes, &train),
            parameters,
            backend_name,
            adapter
                .as_deref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default()
        );
    }
    if trainer.progress.epoch >= settings.epochs && !args.quiet {
        eprintln!(
            "the checkpoint has already trained {} epochs; pass --epochs N (a total) to train more",
            trainer.progress.epoch
        );
    }

    signals::install();
    let data = RunData {
        train: &train_r,
        val: val_r.as_ref(),
        test: test_r.as_ref(),
    };
    let write_checkpoint = |trainer: &mut Trainer, history: &[EpochReport], path: &Path| {
        // The epoch in progress when interrupted part-way, else the one just completed.
        let epoch = trainer.progress.epoch + usize::from(trainer.progress.rows_done > 0);
        let params = trainer.finite_params(epoch)?;
        let (state1, state2) = trainer.optimizer_state()?;
        let c = Checkpoint {
            model: SavedModel {
                spec: trainer.spec().clone(),
                params,
            },
            state1,
            state2,
            meta: CheckpointMeta {
                progress: trainer.progress.clone(),
                optimizer: trainer.optimizer.clone(),
                regularization: trainer.regularization(),
                batch_size: settings.batch_size,
                run: serde_json::to_value(&settings)?,
                history: history.to_vec(),
            },
        };
        save_checkpoint(path, &c).context("writing the checkpoint")
    };

    let mut console = Console::new(task, settings.epochs, args.quiet, &signals::STOP);
    let started = Instant::now();
    let first_new = history.len();
    // The newest checkpoint on disk and its epoch, named when training diverges.
    let mut kept: Option<(PathBuf, usize)> = args
        .resume
        .clone()
        .zip(resumed.as_ref().map(|c| c.meta.progress.epoch));
    let diverged = |e: anyhow::Error, kept: &Option<(PathBuf, usize)>| {
        if !matches!(e.downcast_ref::<Error>(), Some(Error::Diverged { .. })) {
            return e;
        }
        match kept {
            Some((p, epoch)) => anyhow::anyhow!(
                "{e}; the checkpoint {} (epoch {epoch}) is unchanged",
                p.display()
            ),
            None => e,
        }
    };
    // Ctrl-C: a checkpoint where training stands, and a message that says how to go on.
    let interrupted = |trainer: &mut Trainer, history: &[EpochReport]| -> anyhow::Error {
        let path = checkpoint_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CHECKPOINT));
        if let Err(e) = write_checkpoint(trainer, history, &path) {
            return e;
        }
        let p = &trainer.progress;
        let at = if p.rows_done > 0 {
            format!("in epoch {} after step {}", p.epoch + 1, p.step)
        } else {
            format!("after epoch {}", p.epoch)
        };
        Error::Interrupted(format!(
            "stopped {at}; checkpoint written to {}; continue with `wgtrain train --resume {}`",
            path.display(),
            path.display()
        ))
        .into()
    };
    let mut early = settings.early_stop.map(EarlyStopping::new);
    while trainer.progress.epoch < settings.epochs {
        // Between epochs too: a Ctrl-C during an epoch's evaluation stops before the next.
        if signals::STOP.load(Ordering::SeqCst) {
            return Err(interrupted(&mut trainer, &history));
        }
        let epoch = match early.as_mut() {
            Some(e) => train_epoch(&mut trainer, data, &mut [&mut console, e]),
            None => train_epoch(&mut trainer, data, &mut [&mut console]),
        };
        let Some((report, control)) = epoch.map_err(|e| diverged(e.into(), &kept))? else {
            return Err(interrupted(&mut trainer, &history));
        };
        history.push(report);
        if control == Control::Stop
            && let Some(e) = &early
        {
            if !args.quiet {
                eprintln!(
                    "early stop: the {} loss has not improved for {} epochs (best {:.4})",
                    if val.is_some() {
                        "validation"
                    } else {
                        "training"
                    },
                    e.patience,
                    e.best()
                );
            }
            if let Some(p) = &args.metrics {
                write_metrics(p, &rows_from_history(&history, task)).context("writing metrics")?;
            }
            break;
        }
        if let Some(p) = &args.metrics {
            write_metrics(p, &rows_from_history(&history, task)).context("writing metrics")?;
        }
        if let (Some(n), Some(p)) = (args.checkpoint_every, &checkpoint_path)
            && trainer.progress.epoch % n == 0
        {
            write_checkpoint(&mut trainer, &history, p).map_err(|e| diverged(e, &kept))?;
            kept = Some((p.clone(), trainer.progress.epoch));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(p) = &checkpoint_path {
        write_checkpoint(&mut trainer, &history, p).map_err(|e| diverged(e, &kept))?;
    }
    if let Some(p) = &args.save {
        // Never save a model that cannot predict; the previous file stays as it was.
        let params = trainer
            .finite_params(trainer.progress.epoch)
            .map_err(|e| diverged(e.into(), &kept))?;
        save_model(p, trainer.spec(), &params).context("saving the model")?;
        if !args.quiet {
            eprintln!("model saved to {}", p.display());
        }
    }
    if let Some(p) = &args.plot {
        crate::report::plot_history(p, &rows_from_history(&history, task), task)
            .context("drawing the plot")?;
    }

    let last = history.last();
    let test_m: Option<Metrics> = match (last, &test_r) {
        (Some(r), _) if r.test.is_some() => r.test,
        (_, Some(t)) => Some(trainer.evaluate(t)?),
        _ => None,
    };
    let val_m = last.and_then(|r| r.val);
    let classify = task == Task::Classification;
    let new = &history[first_new.min(history.len())..];
    let train_s: f64 = new.iter().map(|r| r.train_seconds).sum();
    let new_rows = train.rows * new.len();
    let summary = json!({
        "backend": backend_name,
        "adapter": adapter,
        "data": name,
        "epochs": trainer.progress.epoch,
        "batch_size": settings.batch_size,
        "arch": settings.arch,
        "layers": settings.layers,
        "hidden": settings.hidden,
        "activation": settings.activation,
        "optimizer": settings.optimizer,
        // Through its shortest decimal form, so 1e-3 prints as 0.001 and not 0.0010000000474.
        "lr": settings.lr.to_string().parse::<f64>().unwrap_or(settings.lr as f64),
        "loss": trainer.spec().loss,
        "seed": settings.seed,
        "shift": settings.shift,
        "parameters": parameters,
        "train_loss": last.map(|r| r.train_loss),
        "reg_loss": last.map(|r| r.reg_loss),
        "train_accuracy": last.filter(|_| classify).map(|r| r.train_metric),
        "val_loss": val_m.map(|m| m.loss),
        "val_accuracy": val_m.filter(|_| classify).map(|m| m.metric),
        "test_loss": test_m.map(|m| m.loss),
        "test_accuracy": test_m.filter(|_| classify).map(|m| m.metric),
        "test_mae": test_m.filter(|_| !classify).map(|m| m.metric),
        "seconds": seconds,
        "seconds_per_epoch": if new.is_empty() { 0.0 } else { seconds / new.len() as f64 },
        "samples_per_sec": if train_s > 0.0 { new_rows as f64 / train_s } else { 0.0 },
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

/// Refuses, before any training, an output path that cannot be written: a missing folder or
/// a folder in place of the file. (Finding out after hours of training loses the run.)
fn check_output_path(flag: &str, path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        bail!("{flag} {}: is a folder; give a file path", path.display());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "{flag} {}: the folder {} does not exist; create it or choose another path",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Refuses two outputs of one run that name the same file, where one write would destroy the
/// other: the model saved over the checkpoint (or the checkpoint being resumed), the metrics
/// over the plot. `checkpoint` is where checkpoints go (by default the `--resume` file).
fn refuse_shared_files(args: &TrainArgs, checkpoint: Option<&Path>) -> anyhow::Result<()> {
    let checkpoint_flag = if args.checkpoint.is_some() {
        "--checkpoint"
    } else if args.resume.is_some() {
        "--resume (whose file the checkpoints rewrite)"
    } else {
        "--checkpoint-every (which writes checkpoint.safetensors)"
    };
    let mut files: Vec<(&str, &Path)> = [
        ("--save", args.save.as_deref()),
        ("--metrics", args.metrics.as_deref()),
        ("--plot", args.plot.as_deref()),
        (checkpoint_flag, checkpoint),
    ]
    .into_iter()
    .filter_map(|(flag, p)| Some((flag, p?)))
    .collect();
    // A checkpoint written elsewhere leaves the resumed one to be read, not overwritten.
    if let (Some(_), Some(r)) = (&args.checkpoint, &args.resume) {
        files.push(("--resume", r));
    }
    for (i, (flag_a, a)) in files.iter().enumerate() {
        for (flag_b, b) in &files[i + 1..] {
            // Checkpoints written back to the file resumed from are the usual case.
            let continues = (*flag_a, *flag_b) == ("--checkpoint", "--resume");
            if !continues && same_file(a, b) {
                bail!(
                    "{flag_a} and {flag_b} both name {}; give each its own file",
                    a.display()
                );
            }
        }
    }
    Ok(())
}

/// Whether two paths name one file, by their absolute forms with the folder resolved
/// (`check_output_path` has checked the folders exist); the files themselves need not exist.
fn same_file(a: &Path, b: &Path) -> bool {
    let resolve = |p: &Path| {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        dir.canonicalize()
            .ok()
            .zip(p.file_name())
            .map(|(d, f)| d.join(f))
            .or_else(|| std::path::absolute(p).ok())
    };
    match (resolve(a), resolve(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A flag value's spelling on the command line (`sgd`, `cross-entropy`), not its variant name.
fn value_name(v: &impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// The model the settings describe for this data.
fn build_spec(
    s: &Settings,
    train: &data::Dataset,
    class_names: Option<Vec<String>>,
) -> anyhow::Result<ModelSpec> {
    let loss = match (s.loss, &train.targets) {
        (Some(l), _) => l,
        (None, Targets::Classes { .. }) => LossKind::SoftmaxCrossEntropy,
        (None, Targets::Values { .. }) => LossKind::Mse,
    };
    // The flag's spelling (`mse`), not the variant's name.
    let name = loss.name();
    match (loss.is_classification(), &train.targets) {
        (false, Targets::Classes { .. }) => bail!(
            "--loss {name} is a regression loss but the data has class labels; use cross-entropy or bce"
        ),
        (true, Targets::Values { .. }) => bail!(
            "--loss {name} is a classification loss but the data has real-valued targets; use mse or mae"
        ),
        _ => {}
    }
    let outputs = match (loss, train.num_classes()) {
        // One sigmoid output suffices for two classes.
        (LossKind::SigmoidBce, Some(2)) => 1,
        _ => train.output_dim(),
    };
    let mut spec = match &s.layers {
        Some(list) => {
            let (h, w) = train.image_shape;
            let channels = train.dim / (h * w).max(1);
            super::layers::LayerList::parse(list)?.build(
                train.image_shape,
                channels,
                s.scale,
                outputs,
                loss,
            )?
        }
        None => ModelSpec::mlp(train.dim, &s.hidden, outputs, s.activation, s.dropout, loss)?,
    };
    spec.input_shape = train.image_shape;
    spec.channels = s.color.channels();
    spec.scale = s.scale;
    spec.class_names = class_names;
    spec.data = Some(s.data.clone());
    Ok(spec)
}

/// ", 10 classes" for the banner, with how many have training rows when some have none.
fn describe_classes(classes: Option<usize>, train: &data::Dataset) -> String {
    let (Some(n), Targets::Classes { labels, .. }) = (classes, &train.targets) else {
        return String::new();
    };
    let mut seen = vec![false; n];
    for &l in labels {
        if let Some(s) = seen.get_mut(l as usize) {
            *s = true;
        }
    }
    let with_rows = seen.iter().filter(|&&s| s).count();
    if with_rows == n {
        format!(", {n} classes")
    } else {
        format!(", {n} classes, {with_rows} with training rows")
    }
}

/// "784-256-128-10 relu, cross-entropy loss" for MLPs; "28x28x1 conv32-3 relu maxpool2 ...
/// dense10, cross-entropy loss" for networks with images.
fn describe(spec: &ModelSpec) -> String {
    let name = |a: &Activation| {
        serde_json::to_value(a)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    };
    let shape = match spec.input() {
        crate::model::Shape::Image { h, w, c } => format!("{h}x{w}x{c}"),
        s => s.len().to_string(),
    };
    let body = if matches!(spec.input(), crate::model::Shape::Image { .. })
        && spec.layers.iter().any(|l| {
            !matches!(
                l,
                Layer::Dense { .. } | Layer::Activation { .. } | Layer::Dropout { .. }
            )
        }) {
        let mut parts = vec![shape];
        for l in &spec.layers {
            parts.push(match l {
                Layer::Conv2d {
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    ..
                } => {
                    let mut t = format!("conv{out_channels}-{}", kernel[0]);
                    if kernel[1] != kernel[0] {
                        t += &format!("x{}", kernel[1]);
                    }
                    if *stride != [1, 1] {
                        t += &format!("s{}", stride[0]);
                    }
                    if *padding != [0, 0] {
                        t += &format!("p{}", padding[0]);
                    }
                    t
                }
                Layer::MaxPool2d { kernel, .. } => format!("maxpool{}", kernel[0]),
                Layer::AvgPool2d { kernel, .. } => format!("avgpool{}", kernel[0]),
                Layer::Flatten => continue,
                Layer::Dense { outputs, .. } => format!("dense{outputs}"),
                Layer::Activation { activation } => name(activation),
                Layer::Dropout { p } => format!("dropout{p}"),
            });
        }
        parts.join(" ")
    } else {
        let mut sizes = vec![spec.inputs().to_string()];
        let mut act = None;
        for l in &spec.layers {
            match l {
                Layer::Dense { outputs, .. } => sizes.push(outputs.to_string()),
                Layer::Activation { activation } => act = Some(name(activation)),
                _ => {}
            }
        }
        let act = act.map(|a| format!(" {a}")).unwrap_or_default();
        format!("{}{act}", sizes.join("-"))
    };
    let loss = serde_json::to_value(spec.loss)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    format!("{body}, {loss} loss")
}
