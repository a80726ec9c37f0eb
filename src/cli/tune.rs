//! `wgtrain tune`: matmul autotuning ahead of time, for the products of the standard MLP, the
//! `--arch cnn` network and the wide MLP at the given batch sizes, then the table of this
//! adapter's choices.

use crate::backend::Backend;
use crate::backend::gpu::{GpuBackend, MatmulTiles, matmul_split_from_env, tune_cache_path};
use crate::bench::{cnn_spec, standard_spec, wide_spec};
use crate::data::{self, DataSource};
use crate::model::ModelSpec;
use crate::optim::{OptimizerConfig, OptimizerKind};
use crate::train::Trainer;
use anyhow::{Context, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// GPU adapter index, as listed by `wgtrain devices` (also WGTRAIN_ADAPTER).
    #[arg(long, env = "WGTRAIN_ADAPTER")]
    pub adapter: Option<usize>,

    /// Batch sizes whose products to tune, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "128,1024")]
    pub batch_sizes: Vec<usize>,

    /// Forget this adapter's cached choices first and time every shape again.
    #[arg(long)]
    pub retune: bool,
}

pub fn run(args: TuneArgs) -> anyhow::Result<()> {
    if args.batch_sizes.contains(&0) {
        bail!("--batch-sizes must all be at least 1");
    }
    if MatmulTiles::from_env() != MatmulTiles::Auto {
        bail!(
            "WGTRAIN_MATMUL_TILES forces one matmul kernel, so there is nothing to tune; unset it"
        );
    }
    if matmul_split_from_env().is_some() {
        bail!(
            "WGTRAIN_MATMUL_SPLIT forces the matmul split-K, so there is nothing to tune; unset it"
        );
    }
    let mut gpu = GpuBackend::new(args.adapter).context("opening the GPU")?;
    // Tuning on here even where WGTRAIN_TUNE=off: it is what was asked for.
    let mut tuner = gpu.open_tuner(tune_cache_path());
    if args.retune {
        tuner.clear();
    }
    let path = tuner.path().map(|p| p.display().to_string());
    gpu.set_tuner(Some(tuner));
    let name = gpu.adapter().unwrap_or_default();
    eprintln!(
        "tuning the matmul kernels on {name} (32x32, 64x64 and 128x128 tiles, and split-K \
         where the output is small and k long; each shape once; cached in {})",
        path.as_deref().unwrap_or("memory only: no cache directory")
    );
    // The bundled digits (28x28, 10 classes), which every configuration takes.
    let digits = data::load(&DataSource::MnistSample, 0)?.train;
    let configs: Vec<(&str, ModelSpec)> = vec![
        ("standard MLP 784-256-128-10", standard_spec()?),
        ("the --arch cnn network", cnn_spec()?),
        ("wide MLP 784-4096-4096-10", wide_spec()?),
    ];
    for (what, spec) in configs {
        for &batch in &args.batch_sizes {
            eprintln!("  {what}, batch {batch}");
            match run_products(&gpu, &spec, batch, &digits) {
                // A configuration too big for this adapter is skipped; the others still tune.
                Err(e @ crate::Error::DeviceLimit { .. }) => {
                    eprintln!("    skipped: {e}");
                }
                other => other?,
            }
        }
    }
    let choices = gpu.tuning().unwrap_or_default();
    println!(
        "microseconds per product, {}",
        if gpu.has_timestamp_queries() {
            "device time by timestamp queries"
        } else {
            "wall clock around a sync (this adapter has no timestamp queries)"
        }
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>16}  chosen",
        "product (m x k x n)", "32x32 us", "64x64 us", "128x128 us", "best split-K us"
    );
    for (shape, c) in &choices {
        let us = |side: &str| {
            c.us.get(side)
                .map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
        };
        // The fastest split candidate, by name ("32 split 4"), if any was tried.
        let split =
            c.us.iter()
                .filter(|(name, _)| name.contains("split"))
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map_or_else(|| "-".to_string(), |(name, v)| format!("{v:.1} ({name})"));
        let chosen = if c.split > 1 {
            format!("{0}x{0} split-K {1}", c.tiles, c.split)
        } else {
            format!("{0}x{0}", c.tiles)
        };
        println!(
            "{shape:<28} {:>10} {:>10} {:>10} {split:>16}  {chosen}",
            us("32"),
            us("64"),
            us("128"),
        );
    }
    Ok(())
}

/// One training step and one evaluation pass of `spec` at batch `batch` on `gpu`'s device:
/// every product of the model, each tuned the first time its shape runs.
fn run_products(
    gpu: &GpuBackend,
    spec: &ModelSpec,
    batch: usize,
    digits: &data::Dataset,
) -> crate::Result<()> {
    // Exactly `batch` rows (the digits repeated past 8,000), so the shapes are the batch's.
    let rows: Vec<usize> = (0..batch).map(|i| i % digits.rows).collect();
    let slice = digits.subset(&rows);
    let adam = OptimizerConfig::new(OptimizerKind::Adam);
    let backend = Box::new(gpu.share_device());
    let mut t = Trainer::from_spec(backend, spec.clone(), batch, adam, 1)?;
    let d = t.upload(&slice)?;
    t.shuffle(&d)?;
    t.step(&d, 0, slice.rows)?;
    t.evaluate(&d)?;
    t.backend().sync()
}
