//! `wgtrain bench`: each backend (and any peers) measured in one process, side by side.

use crate::backend::{self, Backend, BackendChoice};
use crate::bench::{Column, Plan, Repeats, measure_backend, render};
use crate::data::{self, DataSource, Dataset};
use crate::store::write_atomic;
use anyhow::{Context, bail};
use clap::{ArgMatches, Args};
use std::path::PathBuf;
use std::process::Command;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Backends to measure: all available (auto), or one.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,

    /// GPU adapter index, as listed by `wgtrain devices` (also WGTRAIN_ADAPTER).
    #[arg(long, env = "WGTRAIN_ADAPTER")]
    pub adapter: Option<usize>,

    /// A command that prints one JSON line of figures in the same schema (repeatable), e.g.
    /// "python3 benches/peers/numpy_peer.py"; its figures join the table as a column.
    #[arg(long, value_name = "CMD")]
    pub peer: Vec<String>,

    /// Write every figure as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Smaller matrices and fewer repeats (a minute on slow devices).
    #[arg(long)]
    pub quick: bool,

    /// Timed training epochs per batch size (after one warm-up epoch).
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,

    /// The two columns compared in the ratio column, by name (default: the first two).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub ratio: Option<Vec<String>>,
}

/// Fashion-MNIST when installed; else mnist-sample repeated to 60,000 training rows, so the
/// throughput figures have the standard epoch size either way.
fn bench_data() -> anyhow::Result<(String, Dataset, Dataset)> {
    if let Ok(s) = data::load(&DataSource::FashionMnist, 0)
        && let Some(test) = s.test
    {
        return Ok(("fashion-mnist".into(), s.train, test));
    }
    let s = data::load(&DataSource::MnistSample, 0)?;
    let idx: Vec<usize> = (0..60_000).map(|i| i % s.train.rows).collect();
    let test = s.test.context("mnist-sample has a test set")?;
    Ok((
        "mnist-sample repeated to 60000 rows".into(),
        s.train.subset(&idx),
        test,
    ))
}

pub fn run(args: BenchArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    if args.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if args.quick && super::given(matches, "epochs") {
        bail!("--epochs has no effect with --quick, which times one epoch; drop one of them");
    }
    if args.ratio.as_ref().is_some_and(|names| names.len() != 2) {
        bail!("--ratio takes two column names, e.g. --ratio gpu,pytorch");
    }
    let plan = Plan {
        squares: if args.quick {
            vec![512, 1024]
        } else {
            vec![512, 1024, 2048, 4096]
        },
        batches: vec![128, 1024],
        epochs: if args.quick { 1 } else { args.epochs },
        cnn_rows: if args.quick { 1280 } else { 10_240 },
        wide_rows: if args.quick { 1024 } else { 4096 },
        repeats: Repeats {
            warmup: 1,
            runs: if args.quick { 3 } else { 7 },
            budget_s: if args.quick { 2.0 } else { 10.0 },
        },
    };
    let (data_name, train, test) = bench_data()?;
    eprintln!(
        "bench: standard MLP 784-256-128-10 relu, softmax-CE, Adam 1e-3 on {data_name} (also the --arch cnn network at batch 128 and a wide MLP 784-4096-4096-10 at batch 1024); medians of repeated runs after warm-up"
    );
    let mut choices = Vec::new();
    match args.backend {
        BackendChoice::Cpu => choices.push(BackendChoice::Cpu),
        BackendChoice::Gpu => choices.push(BackendChoice::Gpu),
        BackendChoice::Auto => {
            choices.push(BackendChoice::Cpu);
            match backend::create(BackendChoice::Gpu, args.adapter) {
                Ok(_) => choices.push(BackendChoice::Gpu),
                Err(e) => eprintln!("bench: skipping the GPU: {e}"),
            }
        }
    }
    let log = |s: &str| eprintln!("  measuring {s}");
    let mut cols: Vec<Column> = Vec::new();
    // The GPU column first, so the default ratio reads "gpu vs cpu".
    for choice in choices.into_iter().rev() {
        let make = || -> crate::Result<Box<dyn Backend>> {
            backend::create(choice, args.adapter).map(|(b, _)| b)
        };
        cols.push(measure_backend(&make, &train, &test, &plan, &log)?);
    }
    for cmd in &args.peer {
        eprintln!("  running peer: {cmd}");
        match run_peer(cmd) {
            Ok(c) => cols.push(c),
            Err(e) => eprintln!("bench: peer `{cmd}` gave no figures: {e:#}"),
        }
    }
    // A column named by --ratio may be missing because its peer failed: the figures measured
    // are still worth their table and JSON, without the ratio.
    let ratio = match &args.ratio {
        Some(names) => {
            let find = |n: &str| cols.iter().position(|c| c.name == n);
            match (find(&names[0]), find(&names[1])) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => {
                    let have: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
                    eprintln!(
                        "bench: --ratio {}: the columns are {}; no ratio column",
                        names.join(","),
                        have.join(", ")
                    );
                    None
                }
            }
        }
        None if cols.len() >= 2 => Some((0, 1)),
        None => None,
    };
    print!("{}", render(&cols, ratio));
    if let Some(p) = &args.json {
        let v = serde_json::json!({ "data": data_name, "columns": cols });
        write_atomic(p, serde_json::to_string_pretty(&v)?.as_bytes())?;
        eprintln!("bench: figures written to {}", p.display());
    }
    Ok(())
}

/// Runs a peer command and reads the JSON object on its last stdout line.
fn run_peer(cmd: &str) -> anyhow::Result<Column> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .context("cannot start it")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        match err.lines().rev().find(|l| !l.trim().is_empty()) {
            Some(last) => bail!("it exited with {}: {last}", out.status),
            None => bail!("it exited with {}", out.status),
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("it printed nothing")?;
    serde_json::from_str(line).context("its last line is not a figures object")
}
