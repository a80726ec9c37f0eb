//! `wgtrain plot`: draws a metrics file written by `train --metrics` as loss and accuracy (or
//! MAE) curves.

use crate::model::Task;
use crate::report::{plot_history, read_metrics};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A metrics file from `train --metrics` (.csv or .jsonl).
    #[arg(value_name = "METRICS_FILE")]
    pub metrics: PathBuf,

    /// Where to write the PNG.
    #[arg(long, short, value_name = "FILE.png", default_value = "curves.png")]
    pub output: PathBuf,
}

pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    let rows = read_metrics(&args.metrics).context("reading metrics")?;
    // The file does not name the task; a regression run fills the MAE columns instead of the
    // accuracy ones.
    let task = if rows.iter().any(|r| r.train_mae.is_some()) {
        Task::Regression
    } else {
        Task::Classification
    };
    plot_history(&args.output, &rows, task).context("drawing the plot")?;
    eprintln!("{} epochs drawn to {}", rows.len(), args.output.display());
    Ok(())
}
