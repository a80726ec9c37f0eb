//! The binary on the GPU backend: training, resume within float32 tolerance, and the summary
//! naming the adapter. Skips (printing why) without an adapter; fails with
//! WGTRAIN_REQUIRE_GPU=1.

mod common;

use common::{skip_without_gpu, stderr, wgtrain, wgtrain_json, wgtrain_ok};
use wgtrain::backend::gpu::list_adapters;
use wgtrain::store::load_checkpoint;

fn have_gpu() -> bool {
    if !list_adapters().is_empty() {
        return true;
    }
    skip_without_gpu("wgpu lists none");
    false
}

/// The same run on both backends ends within a hair of each other, and the GPU summary names
/// the adapter.
/// `wgtrain tune` times the products of the three configurations, prints their table and
/// writes the cache file (here one of the test's own).
#[test]
fn tune_prints_the_table_and_writes_the_cache() {
    if !have_gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tiles.json");
    let out = common::command()
        .env("WGTRAIN_TUNE_CACHE", &cache)
        .args(["tune", "--batch-sizes", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    // The first layers' forward products of the MLPs and the CNN's first convolution.
    for shape in ["A·Bᵀ 2x784x256", "A·Bᵀ 2x784x4096", "A·Bᵀ 1568x9x32"] {
        assert!(stdout.contains(shape), "{shape} missing from:\n{stdout}");
    }
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(text.contains("A·Bᵀ 2x784x256"), "{text}");
}

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
    let run = |extra: &[&str]| wgtrain_ok(&common, extra);
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

/// A model whose buffer exceeds the adapter's binding limit fails with one line naming the limit
/// and what to do, and leaves an existing output file alone.
#[test]
fn gpu_buffer_over_the_limit_is_a_clear_error() {
    let Some(a) = list_adapters().into_iter().next().or_else(|| {
        have_gpu();
        None
    }) else {
        return;
    };
    // One weight matrix of 784 x hidden floats just over the binding limit.
    let hidden = (a.max_storage_buffer_binding_size / 4 / 784 + 1).to_string();
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("model.safetensors");
    std::fs::write(&save, b"previous model").unwrap();
    let out = wgtrain(
        &[
            "train",
            "--backend",
            "gpu",
            "--hidden",
            &hidden,
            "--epochs",
            "1",
            "--save",
            save.to_str().unwrap(),
        ],
        None,
    );
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains("max_storage_buffer_binding_size"), "{e}");
    assert!(e.contains("--backend cpu"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.trim().lines().count() <= 2, "{e}");
    assert_eq!(std::fs::read(&save).unwrap(), b"previous model");
    // A temporary over the limit, a convolution's output (784 positions x 64 channels per
    // image), is named by the value it holds. (A patch matrix over the limit no longer is one:
    // training then reads the patches in place.) Only where the batch that takes fits the
    // bundled digits.
    let batch = a.max_storage_buffer_binding_size / (784 * 64 * 4) + 1;
    if batch > 8000 {
        eprintln!("skipping the patch-matrix case: it would need a batch of {batch}");
        return;
    }
    let out = wgtrain(
        &[
            "train",
            "--backend",
            "gpu",
            "--layers",
            "conv 64 3 pad 1, relu, dense",
            "--batch-size",
            &batch.to_string(),
            "--epochs",
            "1",
        ],
        None,
    );
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains("layer 1 out"), "{e}");
    assert!(e.contains("max_storage_buffer_binding_size"), "{e}");
}

/// Losing the device mid-training surfaces as an error from the next step or read (never a
/// panic), so the training loop stops before writing anything after it.
#[test]
fn gpu_device_lost_is_reported() {
    use wgtrain::backend::gpu::GpuBackend;
    use wgtrain::data::{Dataset, Features, Targets};
    use wgtrain::model::{Activation, LossKind, ModelSpec};
    use wgtrain::optim::{OptimizerConfig, OptimizerKind};
    use wgtrain::train::Trainer;
    if !have_gpu() {
        return;
    }
    // Its own device, so destroying it disturbs no other test; the sibling backend on the same
    // device is the handle that destroys it while the trainer owns the first.
    let mut gpu = GpuBackend::new(None).unwrap();
    gpu.set_tuner(None);
    let mut sibling = gpu.share_device();
    let rows = 64;
    let data = Dataset {
        rows,
        dim: 4,
        image_shape: (1, 4),
        features: Features::F32((0..rows * 4).map(|i| (i % 7) as f32 / 7.0).collect()),
        targets: Targets::Classes {
            labels: (0..rows as u32).map(|i| i % 3).collect(),
            num_classes: 3,
        },
    };
    let spec = ModelSpec::mlp(
        4,
        &[8],
        3,
        Activation::Relu,
        0.0,
        LossKind::SoftmaxCrossEntropy,
    )
    .unwrap();
    let adam = OptimizerConfig::new(OptimizerKind::Adam);
    let mut t = Trainer::from_spec(Box::new(gpu), spec, 16, adam, 1).unwrap();
    let d = t.upload(&data).unwrap();
    t.shuffle(&d).unwrap();
    t.step(&d, 0, 16).unwrap();
    t.read_acc().unwrap();
    sibling.lose_device();
    let step = t.step(&d, 16, 16);
    let read = t.read_acc();
    let e = step
        .err()
        .or(read.err())
        .expect("a lost device must be reported")
        .to_string();
    assert!(e.starts_with("GPU error"), "{e}");
}

/// On a headless machine (no XDG_RUNTIME_DIR, no display) listing adapters prints nothing on
/// stderr: the Vulkan instance enables no window-system extension, so Mesa's device-selection
/// layer (before Mesa 24, as in Debian 12's stock mesa-vulkan-drivers) does not try to reach a
/// Wayland server and libwayland does not print "error: XDG_RUNTIME_DIR is invalid".
#[test]
fn devices_print_nothing_on_stderr_without_a_display() {
    if !have_gpu() {
        return;
    }
    let out = common::command()
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DISPLAY")
        .output()
        .expect("the binary runs");
    let e = stderr(&out);
    assert!(out.status.success(), "{e}");
    assert_eq!(e, "", "stderr should be empty");
    // The adapter `auto` opens is marked, once.
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listing.matches("<- auto").count(), 1, "{listing}");
    let json = common::command()
        .args(["devices", "--json"])
        .output()
        .expect("the binary runs");
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let marked = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["auto"] == true);
    assert_eq!(marked.count(), 1, "{list}");
}
