//! The binary on the GPU backend: training, resume within float32 tolerance, and the summary
//! naming the adapter. Skips (printing why) without an adapter; fails with
//! WGTRAIN_REQUIRE_GPU=1.

mod common;

use common::{stderr, wgtrain, wgtrain_json};
use wgtrain::backend::gpu::list_adapters;
use wgtrain::store::load_checkpoint;

fn have_gpu() -> bool {
    if !list_adapters().is_empty() {
        return true;
    }
    if std::env::var("WGTRAIN_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("WGTRAIN_REQUIRE_GPU=1 but wgpu lists no adapter");
    }
    eprintln!("skipping GPU CLI test: no GPU adapter");
    false
}

/// The same run on both backends ends within a hair of each other, and the GPU summary names
/// the adapter.
#[test]
fn gpu_training_matches_cpu() {
    if !have_gpu() {
        return;
    }
    let args = |b: &'static str| {
        vec![
            "train",
            "--backend",
            b,
            "--hidden",
            "32",
            "--epochs",
            "2",
            "--batch-size",
            "100",
            "--json",
            "--quiet",
        ]
    };
    let g = wgtrain_json(&args("gpu"), None);
    let c = wgtrain_json(&args("cpu"), None);
    assert_eq!(g["backend"], "gpu");
    assert!(g["adapter"].as_str().is_some_and(|a| !a.is_empty()), "{g}");
    let (ga, ca) = (
        g["test_accuracy"].as_f64().unwrap(),
        c["test_accuracy"].as_f64().unwrap(),
    );
    assert!((ga - ca).abs() <= 0.01, "gpu {ga} vs cpu {ca}");
    let (gl, cl) = (
        g["train_loss"].as_f64().unwrap(),
        c["train_loss"].as_f64().unwrap(),
    );
    assert!(
        (gl - cl).abs() <= 1e-4 * cl.abs() + 1e-5,
        "gpu loss {gl} vs cpu {cl}"
    );
}

/// 2 epochs + resume + 1 epoch on the GPU equals 3 epochs within float32 tolerance.
#[test]
fn gpu_resume_matches_uninterrupted() {
    if !have_gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let common = [
        "train",
        "--backend",
        "gpu",
        "--hidden",
        "32",
        "--batch-size",
        "100",
        "--dropout",
        "0.1",
        "--quiet",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = common
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect();
        let out = wgtrain(&args, None);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    run(&["--epochs", "3", "--checkpoint", &p("full.st")]);
    run(&["--epochs", "2", "--checkpoint", &p("part.st")]);
    run(&["--resume", &p("part.st"), "--epochs", "3"]);
    let full = load_checkpoint(p("full.st").as_ref()).unwrap();
    let part = load_checkpoint(p("part.st").as_ref()).unwrap();
    assert_eq!(full.meta.progress, part.meta.progress);
    let worst = full
        .model
        .params
        .iter()
        .zip(&part.model.params)
        .map(|(a, b)| (a - b).abs() / (1e-5 + 1e-4 * a.abs()))
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1.0,
        "weights differ beyond 1e-5 + 1e-4·|w| (ratio {worst})"
    );
}
