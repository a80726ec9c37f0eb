//! `wgtrain eval`: a saved model's loss and accuracy on a data set, with its confusion matrix
//! and per-class precision, recall and F1 (or MSE and MAE for regression models).

use crate::backend::BackendChoice;
use crate::data::{self, Color, DataSource, Splits};
use crate::infer::evaluation::{Evaluation, evaluate};
use crate::model::Model;
use crate::store::load_model;
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Split {
    Test,
    Train,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model: a file written by `train --save` (or a checkpoint).
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,

    /// Data to evaluate on, as for `train --data` [default: the data the model was trained
    /// on, as recorded in the file, else mnist-sample].
    #[arg(long)]
    pub data: Option<String>,

    /// Which split of the data. `train` is the whole training file, including any rows that
    /// `--val-split` held out during training.
    #[arg(long, value_enum, default_value_t = Split::Test)]
    pub split: Split,

    /// Where to run: the GPU when an adapter exists (auto), the GPU, or the CPU.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,

    /// GPU adapter index, as listed by `wgtrain devices` (also WGTRAIN_ADAPTER).
    #[arg(long, env = "WGTRAIN_ADAPTER")]
    pub adapter: Option<usize>,

    /// Rows per forward pass. The accuracy is the same for any size; the loss matches the one
    /// training printed to the last digit when this equals training's --batch-size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,

    /// Seed of the synthetic sets (spiral, sine): give training's --seed to evaluate on the
    /// same points.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// No tables, only the summary line (with --json, only the JSON line).
    #[arg(long, short)]
    pub quiet: bool,

    /// Print the results as one JSON object, the last line on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let model = load_model(&args.model).context("loading the model")?;
    let data_arg = args
        .data
        .clone()
        .or_else(|| model.spec.data.clone())
        .unwrap_or_else(|| "mnist-sample".into());
    let Splits {
        name, train, test, ..
    } = data::load_with(
        &DataSource::parse(&data_arg),
        args.seed,
        if model.spec.channels == 3 {
            Color::Rgb
        } else {
            Color::Gray
        },
    )
    .with_context(|| format!("loading data {data_arg}"))?;
    let (split_name, dataset) = match args.split {
        Split::Test => (
            "test",
            test.with_context(|| {
                format!("{name} has no test split; use --split train or another --data")
            })?,
        ),
        Split::Train => ("train", train),
    };

    let backend = super::open_backend(args.backend, args.adapter, args.quiet)?;
    let backend_name = backend.name();
    let adapter = backend.adapter();
    let mut loaded = Model::with_params(backend, model.spec, &model.params)?;
    loaded.set_batch_size(args.batch_size)?;
    let result = evaluate(&mut loaded, &dataset)?;
    let rows = dataset.rows;

    if !args.quiet {
        println!(
            "{} on {name} {split_name} ({rows} rows) on {backend_name}{}",
            args.model.display(),
            adapter
                .as_deref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default()
        );
    }
    // With --quiet the headline stays (it is the result), unless JSON carries it instead.
    let headline = !(args.quiet && args.json);
    match &result {
        Evaluation::Classification(e) => {
            let correct = (e.accuracy * rows as f64).round() as u64;
            if headline {
                println!(
                    "loss {:.4}  accuracy {:.2}% ({correct}/{rows})",
                    e.loss,
                    100.0 * e.accuracy
                );
            }
            if !args.quiet {
                println!(
                    "\nconfusion matrix (rows: true class, columns: predicted class)\n{}",
                    e.confusion_table()
                );
                print!("{}", e.class_table());
            }
            let from_matrix = e.accuracy_from_confusion();
            if from_matrix != e.accuracy {
                eprintln!(
                    "warning: the confusion matrix implies accuracy {from_matrix} but the {backend_name} loss op counted {}; please report this",
                    e.accuracy
                );
            }
        }
        Evaluation::Regression(e) => {
            if headline {
                println!("loss {:.6}  MSE {:.6}  MAE {:.6}", e.loss, e.mse, e.mae);
            }
        }
    }
    if args.json {
        let mut out = json!({
            "model": args.model.display().to_string(),
            "data": name,
            "split": split_name,
            "backend": backend_name,
            "adapter": adapter,
            // Parameters and one batch of activations: no gradients, no optimizer state.
            "memory_bytes": loaded.memory_bytes(),
        });
        let fields = serde_json::to_value(&result)?;
        if let (Some(o), Some(f)) = (out.as_object_mut(), fields.as_object()) {
            o.extend(f.clone());
        }
        println!("{out}");
    }
    Ok(())
}
