//! Helpers shared by the integration tests: driving the real binary, and opening the GPU (or
//! skipping where there is none).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The binary, with matmul autotuning off (tests compare kernels, not times; the tuning tests
/// turn it on).
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgtrain"));
    c.env("WGTRAIN_TUNE", "off");
    c
}

/// Runs `wgtrain` with `args` in `dir` (or the current directory).
pub fn wgtrain(args: &[&str], dir: Option<&Path>) -> Output {
    let mut c = command();
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.output().expect("the binary runs")
}

/// Runs `wgtrain` and returns the JSON object on the last line of stdout, asserting success.
pub fn wgtrain_json(args: &[&str], dir: Option<&Path>) -> serde_json::Value {
    let out = wgtrain(args, dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "wgtrain {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `wgtrain` with `args` then `extra` in the current directory, asserting success.
pub fn wgtrain_ok(args: &[&str], extra: &[&str]) {
    let all: Vec<&str> = args.iter().chain(extra).copied().collect();
    let out = wgtrain(&all, None);
    assert!(out.status.success(), "{all:?}: {}", stderr(&out));
}

/// Where a test finds no GPU adapter: a skip, printed with `why`, or a failure when
/// WGTRAIN_REQUIRE_GPU=1 (as CI sets it), so CI can never pass by skipping.
pub fn skip_without_gpu(why: &str) {
    if std::env::var("WGTRAIN_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("WGTRAIN_REQUIRE_GPU=1 but there is no GPU adapter: {why}");
    }
    eprintln!("skipping GPU test: no GPU adapter ({why})");
}

/// A backend on the one device this test binary opens: kernels compile once (lavapipe takes up
/// to a second per shader) and are shared; each test gets its own buffers, and matmul
/// autotuning off (the tuning tests turn it on). `None` (after [`skip_without_gpu`]) where
/// there is no adapter.
pub fn gpu() -> Option<wgtrain::backend::gpu::GpuBackend> {
    use std::sync::OnceLock;
    use wgtrain::backend::gpu::GpuBackend;
    static DEVICE: OnceLock<Result<GpuBackend, String>> = OnceLock::new();
    let opened = DEVICE.get_or_init(|| match GpuBackend::new(None) {
        Ok(g) => Ok(g),
        Err(wgtrain::Error::NoAdapter(msg)) => Err(msg),
        Err(e) => panic!("a GPU adapter exists but could not be used: {e}"),
    });
    match opened {
        Ok(g) => {
            let mut g = g.share_device();
            g.set_tuner(None);
            Some(g)
        }
        Err(msg) => {
            skip_without_gpu(msg);
            None
        }
    }
}

/// A backend on a device of its own, so that no other test's traffic counts in the device's
/// counters (`share_device().traffic()`); matmul autotuning off. `None` (after
/// [`skip_without_gpu`]) where there is no adapter.
pub fn own_gpu() -> Option<wgtrain::backend::gpu::GpuBackend> {
    gpu()?;
    let mut g = wgtrain::backend::gpu::GpuBackend::new(None).expect("the adapter opened once");
    g.set_tuner(None);
    Some(g)
}

/// A random valid sequence: 1-3 Dense layers, each followed by 0-2 activations (any, stacked)
/// and maybe dropout; maybe an activation or dropout before the first Dense layer, and maybe
/// an activation or dropout after the last; a random loss (not MAE, whose kinks are at every
/// target).
pub fn random_spec(rng: &mut wgtrain::rng::Rng) -> wgtrain::model::ModelSpec {
    loop {
        // Cross-entropy over a single output is refused: draw again.
        if let Ok(spec) = random_sequence(rng) {
            return spec;
        }
    }
}

fn random_sequence(rng: &mut wgtrain::rng::Rng) -> wgtrain::Result<wgtrain::model::ModelSpec> {
    use wgtrain::model::{Activation, Layer, LossKind, ModelSpec};
    let acts = [
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softmax,
        Activation::Linear,
    ];
    let act = |rng: &mut wgtrain::rng::Rng| Layer::Activation {
        activation: acts[rng.below(acts.len())],
    };
    let dropout = |rng: &mut wgtrain::rng::Rng| Layer::Dropout {
        p: [0.2, 0.5][rng.below(2)],
    };
    let inputs = 1 + rng.below(4);
    let mut layers = Vec::new();
    match rng.below(4) {
        0 => layers.push(act(rng)),
        1 => layers.push(dropout(rng)),
        _ => {}
    }
    let dense = 1 + rng.below(3);
    let mut width = inputs;
    for d in 0..dense {
        let outputs = 1 + rng.below(4);
        layers.push(Layer::Dense {
            inputs: width,
            outputs,
        });
        width = outputs;
        if d + 1 < dense {
            for _ in 0..rng.below(3) {
                layers.push(act(rng));
            }
            if rng.below(3) == 0 {
                layers.push(dropout(rng));
            }
        }
    }
    match rng.below(4) {
        0 => layers.push(act(rng)),
        1 => layers.push(dropout(rng)),
        _ => {}
    }
    let loss = [
        LossKind::SoftmaxCrossEntropy,
        LossKind::SigmoidBce,
        LossKind::Mse,
    ][rng.below(3)];
    let mut spec = ModelSpec::mlp(inputs, &[], 1, Activation::Linear, 0.0, loss)?;
    spec.layers = layers;
    spec.validate()?;
    Ok(spec)
}
