//! The command line: `wgtrain <command>`. Each command's flags become a validated config here;
//! the work is done by the library.

mod bench;
mod devices;
mod eval;
pub(crate) mod layers;
mod plan;
mod plot;
mod predict;
mod progress;
mod signals;
mod train;
mod tune;
mod values;

use crate::backend::{self, Backend, BackendChoice};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
pub use signals::exit_status as interrupt_exit_status;

#[derive(Parser, Debug)]
#[command(
    name = "wgtrain",
    version,
    about = "Train MLP classifiers and regressors on any GPU (WGSL compute shaders via wgpu), or on the CPU",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model on a data set and report its accuracy on the test set.
    Train(Box<train::TrainArgs>),
    /// Measure a saved model: loss, accuracy, confusion matrix and per-class scores.
    ///
    /// Loss and accuracy go through the same code as training's evaluation, so on the same
    /// data they equal what training reported. Classifiers also get a confusion matrix (rows:
    /// true class, columns: predicted) and per-class precision, recall and F1 with their
    /// macro averages; regression models get MSE and MAE.
    Eval(eval::EvalArgs),
    /// Top classes of images (PNG/JPEG) or IDX samples, by a saved model.
    ///
    /// Images of any size (up to 33 million pixels) and colour mode are converted to grayscale
    /// as the image-folder reader does (transparency composited over white), resized to the
    /// model's input and scaled as its training data was. Regression models print their
    /// outputs.
    Predict(predict::PredictArgs),
    /// Print the ops a training (or evaluation, or prediction) step runs, as compiled.
    ///
    /// One line per op: its name and shape, what it reads and what it writes. The default
    /// model is the standard 784-256-128-10 MLP; --model prints a saved model's.
    Plan(plan::PlanArgs),
    /// Draw a metrics file from `train --metrics` as loss and accuracy curves (PNG).
    Plot(plot::PlotArgs),
    /// Measure each backend side by side: matmul GFLOP/s, bandwidth, a training step's
    /// kernels, training and inference throughput, each beside the floor the hardware allows.
    Bench(bench::BenchArgs),
    /// List the GPU adapters (name, backend, type, key limits) that --adapter picks from.
    Devices(devices::DevicesArgs),
    /// Time the matmul kernels (three tile sizes, and split-K where the output is small and k
    /// long) on this GPU for the products of the standard MLP, the CNN and the wide MLP, keep
    /// the fastest per shape, and print the table.
    ///
    /// Training does the same on its own the first time a shape runs (unless WGTRAIN_TUNE=off);
    /// this does it ahead of time. Choices are cached in the user's cache directory (or the
    /// file WGTRAIN_TUNE_CACHE names) per adapter, driver and wgtrain version;
    /// WGTRAIN_MATMUL_TILES=32|64|128 and WGTRAIN_MATMUL_SPLIT=1..8 still force a kernel.
    Tune(tune::TuneArgs),
}

/// Parses the command line and runs the command.
pub fn run() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.exit())?;
    let sub = matches
        .subcommand()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    if given(&sub, "adapter")
        && matches!(
            sub.try_get_one::<BackendChoice>("backend"),
            Ok(Some(BackendChoice::Cpu))
        )
    {
        anyhow::bail!("--adapter picks a GPU but --backend cpu runs on the CPU; drop one of them");
    }
    match cli.command {
        Command::Train(args) => train::run(*args, &sub),
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Plot(args) => plot::run(args),
        Command::Bench(args) => bench::run(args, &sub),
        Command::Devices(args) => devices::run(args),
        Command::Tune(args) => tune::run(args),
    }
}

/// Whether the user typed flag `id` (by its field name) on the command line, as opposed to its
/// default or an environment variable: only a typed flag is refused for having no effect, since
/// a default or a variable set for every run is no request. False for an id the command lacks.
fn given(m: &ArgMatches, id: &str) -> bool {
    matches!(m.try_contains_id(id), Ok(true))
        && m.value_source(id) == Some(ValueSource::CommandLine)
}

/// Opens the backend a command asked for, printing `auto`'s one-line notice (why it chose the
/// CPU) unless `quiet`.
fn open_backend(
    choice: BackendChoice,
    adapter: Option<usize>,
    quiet: bool,
) -> crate::Result<Box<dyn Backend>> {
    let (b, notice) = backend::create(choice, adapter)?;
    if let Some(n) = notice
        && !quiet
    {
        eprintln!("{n}");
    }
    Ok(b)
}
