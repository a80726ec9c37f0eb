//! `wgtrain predict`: a saved model's top classes (or values) for image files or for samples
//! of an IDX file.

use crate::backend::BackendChoice;
use crate::data::Features;
use crate::graph::ResidentData;
use crate::infer::class_names;
use crate::infer::input::{
    SampleRange, image_shape, read_idx_labels, read_idx_samples, read_image_as,
};
use crate::infer::ranking::{class_probabilities, top_k};
use crate::model::Model;
use crate::model::Task;
use crate::store::load_model;
use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    wgtrain predict --model mnist.safetensors digit.png\n  \
    wgtrain predict --model mnist.safetensors --invert drawing.jpg --top-k 5\n  \
    wgtrain predict --model mnist.safetensors --idx t10k-images-idx3-ubyte.gz --range 0..10 \\\n    \
    --labels t10k-labels-idx1-ubyte.gz")]
pub struct PredictArgs {
    /// The model: a file written by `train --save` (or a checkpoint).
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,

    /// PNG or JPEG images, of any size and colour mode: converted to grayscale and resized
    /// (stretched) to the model's input size.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<PathBuf>,

    /// How many of the most probable classes to show.
    #[arg(long, default_value_t = 3)]
    pub top_k: usize,

    /// Invert the pixels, for dark drawings on a light background (MNIST digits are light on
    /// dark).
    #[arg(long)]
    pub invert: bool,

    /// Predict samples of an IDX image file (raw or .gz) instead of image files.
    #[arg(long, value_name = "IMAGES_IDX_FILE", conflicts_with = "images")]
    pub idx: Option<PathBuf>,

    /// Which samples of --idx: A..B (B excluded), A..=B, A.., ..B or one index N
    /// [default: all].
    #[arg(long, value_name = "A..B", requires = "idx")]
    pub range: Option<SampleRange>,

    /// An IDX label file whose labels to show beside the predictions of --idx.
    #[arg(long, value_name = "LABELS_IDX_FILE", requires = "idx")]
    pub labels: Option<PathBuf>,

    /// Where to run: the GPU when an adapter exists (auto), the GPU, or the CPU.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,

    /// GPU adapter index, as listed by `wgtrain devices` (also WGTRAIN_ADAPTER).
    #[arg(long, env = "WGTRAIN_ADAPTER")]
    pub adapter: Option<usize>,

    /// Rows per forward pass.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,

    /// No per-input lines (with --json, only the JSON line).
    #[arg(long, short)]
    pub quiet: bool,

    /// Print all predictions as one JSON object, the last line on stdout.
    #[arg(long)]
    pub json: bool,
}

/// One input: what to call it, and its label when known.
struct Source {
    name: String,
    index: Option<usize>,
    label: Option<u8>,
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args.images.is_empty() && args.idx.is_none() {
        bail!("give one or more image files, or --idx FILE (see `wgtrain predict --help`)");
    }
    let model = load_model(&args.model).context("loading the model")?;
    let spec = model.spec.clone();
    let shape = image_shape(&spec)?;

    let (pixels, sources) = match &args.idx {
        Some(_) if spec.channels > 1 => bail!(
            "the model takes colour images ({} channels) and IDX files hold gray ones; give image files",
            spec.channels
        ),
        Some(path) => {
            let (pixels, range) = read_idx_samples(
                path,
                args.range.unwrap_or(SampleRange::ALL),
                shape,
                args.invert,
            )?;
            let labels = args
                .labels
                .as_deref()
                .map(|l| read_idx_labels(l, &range))
                .transpose()?;
            let file = path.display().to_string();
            let sources = range
                .clone()
                .enumerate()
                .map(|(k, i)| Source {
                    name: format!("{file}[{i}]"),
                    index: Some(i),
                    label: labels.as_ref().map(|l| l[k]),
                })
                .collect::<Vec<_>>();
            (pixels, sources)
        }
        None => {
            let mut pixels = Vec::with_capacity(args.images.len() * shape.0 * shape.1);
            let mut sources = Vec::new();
            for path in &args.images {
                pixels.extend(read_image_as(path, shape, spec.channels, args.invert)?);
                sources.push(Source {
                    name: path.display().to_string(),
                    index: None,
                    label: None,
                });
            }
            (pixels, sources)
        }
    };

    let backend = super::open_backend(args.backend, args.adapter, args.quiet)?;
    let mut loaded = Model::with_params(backend, model.spec, &model.params)?;
    loaded.set_batch_size(args.batch_size)?;
    let features = Features::U8(pixels);
    let resident = ResidentData::inputs(
        loaded.backend(),
        &features,
        sources.len(),
        spec.scale.affine(),
    )?;
    let outputs = loaded.outputs(&resident)?;
    let names = class_names(&spec);

    let mut records = Vec::with_capacity(sources.len());
    for (src, row) in sources.iter().zip(outputs.chunks_exact(spec.outputs())) {
        let mut record = json!({ "input": src.name });
        if let Some(i) = src.index {
            record["index"] = json!(i);
        }
        if let Some(l) = src.label {
            record["label"] = json!(l);
        }
        let line = match spec.task() {
            Task::Classification => {
                let top = top_k(&class_probabilities(&spec, row), args.top_k);
                record["top"] = Value::Array(
                    top.iter()
                        .map(|&(c, p)| json!({ "class": c, "name": names[c], "probability": p }))
                        .collect(),
                );
                top.iter()
                    .map(|&(c, p)| format!("{} ({:.2}%)", names[c], 100.0 * p))
                    .collect::<Vec<_>>()
                    .join("  ")
            }
            Task::Regression => {
                record["values"] = json!(row);
                row.iter()
                    .map(|v| format!("{v:.6}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        if !args.quiet {
            let label = src
                .label
                .map(|l| {
                    let name = names.get(l as usize).cloned().unwrap_or(l.to_string());
                    format!(" (label {name})")
                })
                .unwrap_or_default();
            println!("{}{label}: {line}", src.name);
        }
        records.push(record);
    }
    if args.json {
        println!(
            "{}",
            json!({
                "model": args.model.display().to_string(),
                "task": spec.task(),
                "predictions": records,
            })
        );
    }
    Ok(())
}
