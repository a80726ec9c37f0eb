//! `wgtrain bench`: measured figures for each backend (and peers) side by side, each with the
//! floor the hardware allows, so the table shows how far from the limit each one is.
//!
//! Figure names are plain ASCII so peer scripts (benches/peers/) can report the same ones.

mod figures;
mod stats;
mod table;
pub mod timed;

pub use figures::{
    BreakdownSource, Column, Figure, OpTime, Plan, STANDARD, WIDE, cnn_spec, host_us_per_step,
    infer_flops_per_row, matmul_gflops, standard_spec, step_breakdown, submission_us_per_step,
    train_flops_per_row, wide_spec,
};
pub use stats::{Repeats, Spread, repeat};
pub use table::render;

use crate::Result;
use crate::backend::Backend;
use crate::data::Dataset;
use crate::ops::MatmulDims;

/// The MLP's own matrix products at batch `b`: forward x·Wᵀ, weight gradient dYᵀ·x and input
/// gradient dY·W (for the first and second layers, where the time goes).
pub fn mlp_shapes(b: usize) -> Vec<(String, MatmulDims)> {
    let d = |m, k, n, trans_a, trans_b| MatmulDims {
        m,
        k,
        n,
        trans_a,
        trans_b,
    };
    vec![
        (
            format!("matmul fwd {b}x784x256"),
            d(b, 784, 256, false, true),
        ),
        (
            format!("matmul dW 256x{b}x784"),
            d(256, b, 784, true, false),
        ),
        (
            format!("matmul dX {b}x128x256"),
            d(b, 128, 256, false, false),
        ),
    ]
}

/// Measures one backend. `make` opens a fresh backend for each part (so the parts do not share
/// allocations); `data` is the training set for throughput figures.
pub fn measure_backend(
    make: &dyn Fn() -> Result<Box<dyn Backend>>,
    data: &Dataset,
    test: &Dataset,
    plan: &Plan,
    log: &dyn Fn(&str),
) -> Result<Column> {
    let mut b = make()?;
    let name = b.name().to_string();
    let device = b.adapter();
    let mut figs: Vec<Figure> = Vec::new();
    let fig = |name: String, unit: &str, spread: Spread| Figure {
        name,
        unit: unit.into(),
        spread,
        floor: None,
        workgroups: None,
    };
    let mut shapes = mlp_shapes(128);
    shapes.push(mlp_shapes(1024).swap_remove(0));
    for &n in &plan.squares {
        shapes.push((
            format!("matmul square {n}"),
            MatmulDims {
                m: n,
                k: n,
                n,
                trans_a: false,
                trans_b: false,
            },
        ));
    }
    for (label, dims) in shapes {
        log(&format!("{name}: {label}"));
        let s = matmul_gflops(b.as_mut(), dims, plan.repeats)?;
        figs.push(fig(label, "GFLOP/s", s));
    }
    let peak = figs.iter().map(|f| f.spread.median).fold(0.0f64, f64::max);
    for f in figs.iter_mut() {
        f.floor = Some(peak);
    }
    log(&format!("{name}: bandwidth"));
    let bw = bandwidth_gbs(b.as_mut(), plan.repeats)?;
    let gbs = bw.median;
    figs.push(fig("bandwidth x*=m 16Mi".into(), "GB/s", bw));
    // Recording and submission cost only where the backend records kernels: on the CPU a
    // step's time is its work.
    let launches = b.launches().is_some();
    drop(b);

    log(&format!("{name}: dispatches per step"));
    let per_step = figures::dispatches_per_step(make()?, data, 128)?;
    figs.push(fig(
        "dispatches per step b128".into(),
        "count",
        Spread {
            median: per_step,
            min: per_step,
            max: per_step,
        },
    ));
    let (mut dispatches_per_step, mut host_us_per_step) = (None, None);
    if launches {
        dispatches_per_step = Some(per_step.round() as u64);
        log(&format!("{name}: host time per step"));
        let host = figures::host_us_per_step(make()?, data, 128, 12)?;
        host_us_per_step = Some(host.median);
        // Its floor: what the device API and driver alone take to submit as many launches.
        let floor = figures::submission_us_per_step(make()?, per_step.round() as usize, 20)?;
        figs.push(Figure {
            floor: Some(floor.median),
            ..fig("host us per step b128".into(), "us", host)
        });
    }
    // "train <what>" (samples/s) and "epoch <what>" (s over the data set), each with its floor
    // at the matmul peak for a model of `flops` per row.
    let rows = data.rows as f64;
    let train_figures = |figs: &mut Vec<Figure>, what: &str, rate, epoch, flops: f64| {
        figs.push(Figure {
            floor: Some(peak * 1e9 / flops),
            ..fig(format!("train {what}"), "samples/s", rate)
        });
        figs.push(Figure {
            floor: Some(rows * flops / (peak * 1e9)),
            ..fig(format!("epoch {what}"), "s", epoch)
        });
    };
    let train_flops = train_flops_per_row(&STANDARD);
    for &batch in &plan.batches {
        log(&format!("{name}: training, batch {batch}"));
        let (rate, secs) = figures::train_throughput(make()?, data, batch, plan.epochs)?;
        train_figures(&mut figs, &format!("b{batch}"), rate, secs, train_flops);
    }
    log(&format!("{name}: CNN training, batch 128"));
    let cnn = figures::cnn_spec()?;
    let cnn_flops = figures::model_train_flops_per_row(&cnn);
    let (rate, epoch) =
        figures::slice_throughput(make()?, cnn.clone(), data, 128, plan.cnn_rows, plan.repeats)?;
    train_figures(&mut figs, "cnn b128", rate, epoch, cnn_flops);
    log(&format!("{name}: wide MLP training, batch 1024"));
    let wide_flops = train_flops_per_row(&WIDE);
    let once = Repeats {
        warmup: 1,
        runs: plan.repeats.runs.min(3),
        budget_s: plan.repeats.budget_s,
    };
    let (rate, epoch) =
        figures::slice_throughput(make()?, wide_spec()?, data, 1024, plan.wide_rows, once)?;
    train_figures(&mut figs, "wide b1024", rate, epoch, wide_flops);
    log(&format!("{name}: inference"));
    let inf = figures::infer_throughput(make()?, test, plan.repeats)?;
    figs.push(Figure {
        floor: Some(peak * 1e9 / infer_flops_per_row(&STANDARD)),
        ..fig("inference b1024".into(), "samples/s", inf)
    });
    log(&format!("{name}: step breakdown"));
    let (source, ops) = step_breakdown(make()?, data, 128, 50)?;
    for t in ops {
        let us = t.seconds * 1e6;
        figs.push(Figure {
            floor: t.floor_seconds(peak, gbs).map(|s| s * 1e6),
            workgroups: t.workgroups,
            ..fig(
                format!("step b128: {}", t.op.name),
                "us",
                Spread {
                    median: us,
                    min: us,
                    max: us,
                },
            )
        });
    }
    Ok(Column {
        name,
        device,
        figures: figs,
        breakdown: Some(source.describe().into()),
        dispatches_per_step,
        host_us_per_step,
    })
}

use figures::bandwidth_gbs;
