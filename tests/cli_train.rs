//! `wgtrain train` end to end, through the real binary, on the CPU backend.

mod common;

use common::{stderr, wgtrain, wgtrain_json, wgtrain_ok};
use std::process::Command;
use std::time::{Duration, Instant};
use wgtrain::store::load_checkpoint;

#[test]
fn default_training_learns_mnist_sample() {
    let s = wgtrain_json(&["train", "--backend", "cpu", "--json", "--quiet"], None);
    let acc = s["test_accuracy"].as_f64().unwrap();
    // A broken model (chance is 0.1, a linear model ~0.88 on this sample) cannot get here.
    assert!(acc >= 0.95, "test accuracy {acc}");
    assert_eq!(s["backend"], "cpu");
    assert!(s["adapter"].is_null());
    assert_eq!(s["epochs"], 10);
    assert_eq!(
        s["parameters"],
        784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    );
    for key in [
        "train_loss",
        "test_loss",
        "seconds",
        "samples_per_sec",
        "batch_size",
    ] {
        assert!(s[key].is_number(), "{key} missing in {s}");
    }
}

#[test]
fn spiral_learns() {
    let s = wgtrain_json(
        &[
            "train",
            "--backend",
            "cpu",
            "--data",
            "spiral",
            "--json",
            "--quiet",
        ],
        None,
    );
    let acc = s["test_accuracy"].as_f64().unwrap();
    // Chance is 1/3; a linear model cannot separate the arms (~0.5).
    assert!(acc >= 0.8, "spiral test accuracy {acc}");
}

#[test]
fn sine_regression_learns() {
    let s = wgtrain_json(
        &[
            "train",
            "--backend",
            "cpu",
            "--data",
            "sine",
            "--json",
            "--quiet",
        ],
        None,
    );
    assert!(s["test_accuracy"].is_null());
    let mae = s["test_mae"].as_f64().unwrap();
    // Predicting the mean gives MAE ~0.64; a straight line ~0.4.
    assert!(mae < 0.05, "sine test MAE {mae}");
}

#[test]
fn every_optimizer_and_activation_trains() {
    // On the spiral, with steps that suit each optimizer. (Saturating activations learn the
    // spiral slowly from Xavier init: an independent NumPy MLP gets the same ~0.4 with tanh.)
    for (opt, act, lr, extra) in [
        ("sgd", "relu", "0.1", None),
        ("sgd", "leaky-relu", "0.1", Some("--nesterov")),
        ("adagrad", "leaky-relu", "0.1", None),
        ("rmsprop", "relu", "0.005", None),
        ("adamw", "sigmoid", "0.05", None),
    ] {
        let mut args = vec![
            "train",
            "--backend",
            "cpu",
            "--data",
            "spiral",
            "--optimizer",
            opt,
            "--activation",
            act,
            "--lr",
            lr,
            "--epochs",
            "100",
            "--json",
            "--quiet",
        ];
        args.extend(extra);
        let s = wgtrain_json(&args, None);
        let acc = s["test_accuracy"].as_f64().unwrap();
        assert!(acc > 0.75, "{opt} with {act}: spiral test accuracy {acc}");
    }
    // Tanh on the digits: one epoch of a small network.
    let s = wgtrain_json(
        &[
            "train",
            "--backend",
            "cpu",
            "--activation",
            "tanh",
            "--hidden",
            "64",
            "--epochs",
            "1",
            "--json",
            "--quiet",
        ],
        None,
    );
    let acc = s["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.85, "tanh on mnist-sample: {acc}");
}

#[test]
fn validation_split_dropout_and_penalties_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m.csv");
    let s = wgtrain_json(
        &[
            "train",
            "--backend",
            "cpu",
            "--hidden",
            "32",
            "--epochs",
            "2",
            "--val-split",
            "0.1",
            "--dropout",
            "0.2",
            "--l2",
            "1e-4",
            "--l1-bias",
            "1e-5",
            "--json",
            "--quiet",
            "--metrics",
            metrics.to_str().unwrap(),
        ],
        None,
    );
    assert!(s["val_accuracy"].as_f64().unwrap() > 0.8, "{s}");
    assert!(s["test_accuracy"].as_f64().unwrap() > 0.8, "{s}");
    assert!(s["reg_loss"].as_f64().unwrap() > 0.0, "{s}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("epoch,train_loss,reg_loss,train_accuracy"),
        "{text}"
    );
    assert!(lines[2].starts_with("2,"), "{text}");
}

/// `--val-split 0` means no validation set, as in the tools users know: the run trains and
/// reports no validation figures.
#[test]
fn validation_split_zero_means_none() {
    let s = wgtrain_json(
        &[
            "train",
            "--backend",
            "cpu",
            "--data",
            "spiral",
            "--hidden",
            "8",
            "--epochs",
            "2",
            "--val-split",
            "0",
            "--json",
            "--quiet",
        ],
        None,
    );
    assert!(
        s["val_loss"].is_null() && s["val_accuracy"].is_null(),
        "{s}"
    );
    assert!(s["test_accuracy"].is_number(), "{s}");
}

/// 2 epochs, then resume for a 3rd, gives bitwise the weights and optimizer state of 3
/// uninterrupted epochs.
#[test]
fn resume_is_exact_on_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let common = [
        "train",
        "--backend",
        "cpu",
        "--hidden",
        "48,24",
        "--dropout",
        "0.1",
        "--batch-size",
        "100",
        "--quiet",
    ];
    let run = |extra: &[&str]| wgtrain_ok(&common, extra);
    run(&["--epochs", "3", "--checkpoint", &p("full.st")]);
    run(&["--epochs", "2", "--checkpoint", &p("part.st")]);
    // The flags it was trained with are taken from the checkpoint.
    let out = wgtrain(
        &[
            "train",
            "--backend",
            "cpu",
            "--resume",
            &p("part.st"),
            "--epochs",
            "3",
            "--quiet",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let full = load_checkpoint(p("full.st").as_ref()).unwrap();
    let part = load_checkpoint(p("part.st").as_ref()).unwrap();
    assert_eq!(part.meta.progress.epoch, 3);
    assert_eq!(full.meta.progress, part.meta.progress);
    assert!(
        full.model.params == part.model.params,
        "weights differ after resume"
    );
    assert!(
        full.state1 == part.state1 && full.state2 == part.state2,
        "optimizer state differs"
    );
    assert_eq!(part.meta.history.len(), 3);
}

#[test]
fn resume_with_contradicting_flags_fails() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("c.st");
    let ck = ck.to_str().unwrap();
    let out = wgtrain(
        &[
            "train",
            "--backend",
            "cpu",
            "--hidden",
            "16",
            "--epochs",
            "1",
            "--checkpoint",
            ck,
            "--quiet",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wgtrain(
        &[
            "train",
            "--backend",
            "cpu",
            "--resume",
            ck,
            "--hidden",
            "32",
        ],
        None,
    );
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("--hidden") && e.contains("contradicts the checkpoint"),
        "{e}"
    );
    let out = wgtrain(
        &[
            "train",
            "--backend",
            "cpu",
            "--resume",
            ck,
            "--data",
            "spiral",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("contradicts the checkpoint"),
        "{}",
        stderr(&out)
    );
}

/// Trains on the CPU with `args`, sends Ctrl-C (SIGINT) once training is under way, and asserts
/// that the run stopped within seconds with status 130, a checkpoint at `ck` and the command
/// that resumes it.
fn interrupt(args: &[&str], ck: &std::path::Path) {
    stop_with("INT", 130, args, ck);
}

/// As [`interrupt`], with the signal `signal` (a name `kill` takes), after which the run must
/// exit with status `status`.
fn stop_with(signal: &str, status: i32, args: &[&str], ck: &std::path::Path) {
    let child = common::command()
        .args(["train", "--backend", "cpu", "--quiet", "--checkpoint"])
        .arg(ck)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // A run that ignores the interrupt is killed and fails the test rather than hang it.
    let started = Instant::now();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("wgtrain train {args:?} did not stop within 20 s of SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "SIG{signal}, stderr: {e}");
    assert!(e.contains("--resume"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

/// Ctrl-C finishes the step, writes a checkpoint and exits with 130; resuming from it
/// continues the interrupted epoch and finishes the run.
#[test]
fn ctrl_c_writes_a_checkpoint_that_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    let args = ["--hidden", "64", "--batch-size", "16", "--epochs", "50"];
    interrupt(&args, &ck);
    let c = load_checkpoint(&ck).unwrap();
    assert!(c.meta.progress.step > 0);
    assert!(c.meta.progress.epoch < 50);
    // Resume to a near total so the test stays short.
    let target = (c.meta.progress.epoch + 1).to_string();
    let out = wgtrain(
        &[
            "train",
            "--backend",
            "cpu",
            "--resume",
            ck.to_str().unwrap(),
            "--epochs",
            &target,
            "--quiet",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let c2 = load_checkpoint(&ck).unwrap();
    assert_eq!(c2.meta.progress.epoch, c.meta.progress.epoch + 1);
    assert_eq!(c2.meta.progress.rows_done, 0);
    assert!(c2.meta.progress.step > c.meta.progress.step);
}

/// SIGTERM (what systemd, Slurm, Kubernetes and `timeout` send) and SIGHUP stop training as
/// Ctrl-C does: a checkpoint, status 143 or 129, and a resume that goes on from it.
#[cfg(unix)]
#[test]
fn sigterm_and_sighup_write_a_checkpoint_that_resumes() {
    for (signal, status) in [("TERM", 143), ("HUP", 129)] {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("ck.safetensors");
        let args = ["--hidden", "64", "--batch-size", "16", "--epochs", "50"];
        stop_with(signal, status, &args, &ck);
        let c = load_checkpoint(&ck).unwrap();
        assert!(c.meta.progress.step > 0, "SIG{signal}");
        let target = (c.meta.progress.epoch + 1).to_string();
        let ck = ck.to_str().unwrap();
        let resume = [
            "train",
            "--backend",
            "cpu",
            "--resume",
            ck,
            "--epochs",
            &target,
        ];
        let out = wgtrain(&[&resume[..], &["--quiet"]].concat(), None);
        assert!(out.status.success(), "SIG{signal}: {}", stderr(&out));
        let c2 = load_checkpoint(std::path::Path::new(ck)).unwrap();
        assert_eq!(
            c2.meta.progress.epoch,
            c.meta.progress.epoch + 1,
            "SIG{signal}"
        );
        assert!(c2.meta.progress.step > c.meta.progress.step, "SIG{signal}");
    }
}

/// Ctrl-C is honoured when every epoch is a single step (a batch larger than the data set):
/// the step ends an epoch, and the stop is taken there, not after the whole run.
#[test]
fn ctrl_c_stops_a_run_of_one_step_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    let args = [
        "--data",
        "spiral",
        "--batch-size",
        "4096",
        "--epochs",
        "10000000",
    ];
    interrupt(&args, &ck);
    let c = load_checkpoint(&ck).unwrap();
    assert!(c.meta.progress.step > 0 && c.meta.progress.epoch < 10_000_000);
}

/// `--early-stop N` ends the run once the validation loss has not improved for N epochs;
/// `--schedule` and `--clip-norm` train.
#[test]
fn early_stopping_schedules_and_clipping() {
    let base = [
        "train",
        "--backend",
        "cpu",
        "--data",
        "spiral",
        "--json",
        "--quiet",
    ];
    let run = |extra: &[&str]| {
        let all: Vec<&str> = base.iter().chain(extra).copied().collect();
        wgtrain_json(&all, None)
    };
    let s = run(&[
        "--epochs",
        "2000",
        "--val-split",
        "0.2",
        "--early-stop",
        "5",
    ]);
    let epochs = s["epochs"].as_u64().unwrap();
    assert!(epochs < 2000, "early stopping never stopped: {s}");
    for extra in [
        &[
            "--schedule",
            "cosine",
            "--warmup-epochs",
            "5",
            "--clip-norm",
            "1.0",
        ][..],
        &[
            "--schedule",
            "step",
            "--step-epochs",
            "50",
            "--gamma",
            "0.5",
        ][..],
        &["--decay", "1e-3"][..],
    ] {
        let s = run(extra);
        let acc = s["test_accuracy"].as_f64().unwrap();
        assert!(acc > 0.8, "{extra:?}: test accuracy {acc}");
    }
}
