//! Whole training steps on the GPU against the CPU reference: from the same initial weights,
//! with the same shuffles, batches and dropout masks, N steps give the same losses and weights
//! within tolerance, for every optimizer and loss, with dropout, L1/L2 and a last partial batch.
//!
//! Tolerances: every kernel matches the CPU to about 1e-6 relative, but the backends sum in
//! different orders (and a GPU may fuse multiply-adds), so differences of an ulp or so appear
//! and compound over steps. On lavapipe, after 9-12 steps the weights differ by at most ~1e-7
//! and the per-step losses by ~2e-7 relative; the tests allow 1e-5 absolute + 1e-4 relative
//! on weights and predictions and 1e-5 relative on losses (50-100x headroom for other
//! adapters). An accuracy may differ by one row where two logits are within rounding.

mod common;

use common::{gpu, own_gpu};
use wgtrain::backend::Backend;
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::backend::gpu::GpuBackend;
use wgtrain::data::{Dataset, Features, Targets};
use wgtrain::graph::PlanOptions;
use wgtrain::model::{Activation, LossKind, ModelSpec};
use wgtrain::optim::{OptimizerConfig, OptimizerKind, Regularization, Schedule};
use wgtrain::rng::Rng;
use wgtrain::train::{Metrics, RunData, Trainer, fit};

const WEIGHT_ABS: f32 = 1e-5;
const WEIGHT_REL: f32 = 1e-4;
const LOSS_REL: f64 = 1e-5;

/// Points in `dim` dimensions labelled by the largest of `classes` fixed projections, so the
/// task is learnable.
fn blobs(rows: usize, dim: usize, classes: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let proj: Vec<f32> = (0..dim * classes).map(|_| rng.normal() as f32).collect();
    let x: Vec<f32> = (0..rows * dim).map(|_| rng.normal() as f32).collect();
    let labels = x
        .chunks_exact(dim)
        .map(|row| {
            let score =
                |c: usize| -> f32 { row.iter().zip(&proj[c * dim..]).map(|(a, b)| a * b).sum() };
            (0..classes)
                .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                .unwrap() as u32
        })
        .collect();
    Dataset {
        rows,
        dim,
        image_shape: (1, dim),
        features: Features::F32(x),
        targets: Targets::Classes {
            labels,
            num_classes: classes,
        },
    }
}

/// Tiny MNIST-like images: 8x8 bytes whose brightness pattern depends on the class.
fn tiny_digits(rows: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut pixels = Vec::with_capacity(rows * 64);
    let mut labels = Vec::with_capacity(rows);
    for _ in 0..rows {
        let label = rng.below(10);
        for p in 0..64 {
            let on = (p * 7 + label * 13) % 10 < 4;
            pixels.push(if on {
                128 + rng.below(128)
            } else {
                rng.below(40)
            } as u8);
        }
        labels.push(label as u32);
    }
    Dataset {
        rows,
        dim: 64,
        image_shape: (8, 8),
        features: Features::U8(pixels),
        targets: Targets::Classes {
            labels,
            num_classes: 10,
        },
    }
}

/// y = sin of fixed projections of x, `outs` targets per row.
fn waves(rows: usize, dim: usize, outs: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..rows * dim).map(|_| rng.normal() as f32).collect();
    let values = x
        .chunks_exact(dim)
        .flat_map(|row| {
            (0..outs).map(move |o| {
                (row.iter()
                    .enumerate()
                    .map(|(j, v)| v * (1 + j + o) as f32)
                    .sum::<f32>()
                    * 0.3)
                    .sin()
            })
        })
        .collect();
    Dataset {
        rows,
        dim,
        image_shape: (1, dim),
        features: Features::F32(x),
        targets: Targets::Values { values, dim: outs },
    }
}

struct Case {
    name: &'static str,
    spec: ModelSpec,
    optimizer: OptimizerConfig,
    regularization: Regularization,
    data: Dataset,
    batch: usize,
    epochs: usize,
    /// Training images move by up to this many pixels ([`Trainer::with_shift`]).
    shift: u32,
}

fn close(g: f64, c: f64, rel: f64) -> bool {
    (g - c).abs() <= 1e-6 + rel * c.abs()
}

/// Asserts the metrics agree; returns the relative difference of the losses.
fn assert_metrics(what: &str, g: Metrics, c: Metrics, task_is_classes: bool) -> f64 {
    assert_eq!(g.rows, c.rows, "{what}: rows");
    assert!(
        close(g.loss, c.loss, LOSS_REL),
        "{what}: loss gpu {} cpu {}",
        g.loss,
        c.loss
    );
    let metric_tol = if task_is_classes {
        1.0 / c.rows.max(1) as f64 + 1e-6
    } else {
        1e-5 + LOSS_REL * c.metric.abs()
    };
    assert!(
        (g.metric - c.metric).abs() <= metric_tol,
        "{what}: metric gpu {} cpu {}",
        g.metric,
        c.metric
    );
    (g.loss - c.loss).abs() / c.loss.abs().max(1e-12)
}

/// The largest |gpu - cpu| over the weights, after asserting they are within tolerance.
fn assert_weights(what: &str, g: &[f32], c: &[f32]) -> f32 {
    assert_weights_within(what, g, c, WEIGHT_ABS, WEIGHT_REL)
}

/// [`assert_weights`] with a tolerance of `abs` + `rel` |cpu| of its own.
fn assert_weights_within(what: &str, g: &[f32], c: &[f32], abs: f32, rel: f32) -> f32 {
    assert_eq!(g.len(), c.len());
    let mut worst = 0.0f32;
    for (i, (&a, &b)) in g.iter().zip(c).enumerate() {
        let d = (a - b).abs();
        assert!(
            d <= abs + rel * b.abs(),
            "{what}: weight {i}: gpu {a} cpu {b}"
        );
        worst = worst.max(d);
    }
    worst
}

fn trainers(case: &Case, gpu: GpuBackend) -> (Trainer, Trainer) {
    let make = |b: Box<dyn Backend>| {
        Trainer::from_spec(b, case.spec.clone(), case.batch, case.optimizer.clone(), 7)
            .unwrap()
            .with_regularization(case.regularization)
            .unwrap()
            .with_shift(case.shift)
            .unwrap()
    };
    (make(Box::new(CpuBackend::new())), make(Box::new(gpu)))
}

/// Trains both backends step by step, comparing each step's loss and the weights after it,
/// then evaluation and prediction.
fn run(case: Case) {
    let Some(gpu) = gpu() else { return };
    run_on(case, gpu);
}

/// [`run`] on `gpu`.
fn run_on(case: Case, gpu: GpuBackend) {
    let (mut c, mut g) = trainers(&case, gpu);
    let classes = case.spec.loss.is_classification();
    assert_eq!(
        g.params().unwrap(),
        c.params().unwrap(),
        "{}: initial weights",
        case.name
    );
    let (cd, gd) = (c.upload(&case.data).unwrap(), g.upload(&case.data).unwrap());
    let rows = case.data.rows;
    assert!(
        !rows.is_multiple_of(case.batch),
        "{}: the last batch should be partial",
        case.name
    );
    let mut worst = 0.0f32;
    let mut worst_loss = 0.0f64;
    for epoch in 0..case.epochs {
        c.shuffle(&cd).unwrap();
        g.shuffle(&gd).unwrap();
        for start in (0..rows).step_by(case.batch) {
            let n = case.batch.min(rows - start);
            c.write_acc([0.0; 2]).unwrap();
            g.write_acc([0.0; 2]).unwrap();
            c.step(&cd, start, n).unwrap();
            g.step(&gd, start, n).unwrap();
            let what = format!("{}: epoch {epoch} step at row {start}", case.name);
            let metrics = |t: &mut Trainer| {
                let [loss, metric] = t.read_acc().unwrap();
                Metrics {
                    loss: loss as f64 / n as f64,
                    metric: metric as f64 / n as f64,
                    rows: n,
                }
            };
            worst_loss = worst_loss.max(assert_metrics(
                &what,
                metrics(&mut g),
                metrics(&mut c),
                classes,
            ));
            worst = worst.max(assert_weights(
                &what,
                &g.params().unwrap(),
                &c.params().unwrap(),
            ));
        }
    }
    let what = format!("{}: evaluation", case.name);
    assert_metrics(
        &what,
        g.evaluate(&gd).unwrap(),
        c.evaluate(&cd).unwrap(),
        classes,
    );
    let gp = g.model_mut().outputs(&gd).unwrap();
    let cp = c.model_mut().outputs(&cd).unwrap();
    for (i, (a, b)) in gp.iter().zip(&cp).enumerate() {
        assert!(
            (a - b).abs() <= WEIGHT_ABS + WEIGHT_REL * b.abs(),
            "{}: prediction {i}: gpu {a} cpu {b}",
            case.name
        );
    }
    let gpen = g.penalty().unwrap();
    let cpen = c.penalty().unwrap();
    assert!(
        close(gpen, cpen, 1e-4),
        "{}: penalty gpu {gpen} cpu {cpen}",
        case.name
    );
    eprintln!(
        "{}: after {} steps, largest weight difference {worst:e}, largest relative loss \
         difference {worst_loss:e}",
        case.name, c.progress.step
    );
}

fn mlp(
    inputs: usize,
    hidden: &[usize],
    outputs: usize,
    act: Activation,
    dropout: f32,
    loss: LossKind,
) -> ModelSpec {
    ModelSpec::mlp(inputs, hidden, outputs, act, dropout, loss).unwrap()
}

fn optimizer(kind: OptimizerKind) -> OptimizerConfig {
    OptimizerConfig::new(kind)
}

#[test]
fn sgd_momentum_relu_cross_entropy() {
    run(Case {
        name: "sgd",
        spec: mlp(
            6,
            &[16, 8],
            3,
            Activation::Relu,
            0.0,
            LossKind::SoftmaxCrossEntropy,
        ),
        optimizer: optimizer(OptimizerKind::Sgd),
        regularization: Regularization::default(),
        data: blobs(50, 6, 3, 1),
        batch: 16,
        epochs: 3,
        shift: 0,
    });
}

#[test]
fn sgd_nesterov_with_dropout_and_l1_l2() {
    let mut opt = optimizer(OptimizerKind::Sgd);
    opt.nesterov = true;
    opt.schedule = Schedule::InverseTime { decay: 0.05 };
    run(Case {
        name: "sgd nesterov + dropout + l1/l2",
        spec: mlp(
            6,
            &[24],
            4,
            Activation::LeakyRelu,
            0.25,
            LossKind::SoftmaxCrossEntropy,
        ),
        optimizer: opt,
        regularization: Regularization {
            l1_weights: 1e-3,
            l2_weights: 1e-3,
            l1_biases: 1e-4,
            l2_biases: 1e-4,
        },
        data: blobs(45, 6, 4, 2),
        batch: 16,
        epochs: 3,
        shift: 0,
    });
}

#[test]
fn adagrad_tanh_bce_several_outputs() {
    run(Case {
        name: "adagrad bce",
        spec: mlp(5, &[12], 4, Activation::Tanh, 0.0, LossKind::SigmoidBce),
        optimizer: optimizer(OptimizerKind::Adagrad),
        regularization: Regularization::default(),
        data: blobs(40, 5, 4, 3),
        batch: 16,
        epochs: 3,
        shift: 0,
    });
}

#[test]
fn rmsprop_sigmoid_bce_one_output() {
    run(Case {
        name: "rmsprop bce-1",
        spec: mlp(4, &[10], 1, Activation::Sigmoid, 0.0, LossKind::SigmoidBce),
        optimizer: optimizer(OptimizerKind::Rmsprop),
        regularization: Regularization {
            l2_weights: 1e-3,
            ..Regularization::default()
        },
        data: blobs(40, 4, 2, 4),
        batch: 16,
        epochs: 3,
        shift: 0,
    });
}

#[test]
fn adam_dropout_on_byte_images() {
    run(Case {
        name: "adam images + dropout",
        spec: mlp(
            64,
            &[32],
            10,
            Activation::Relu,
            0.3,
            LossKind::SoftmaxCrossEntropy,
        ),
        optimizer: optimizer(OptimizerKind::Adam),
        regularization: Regularization::default(),
        data: tiny_digits(40, 5),
        batch: 16,
        epochs: 3,
        shift: 0,
    });
}

/// Every product that can be split over k split into 3 (2 where k is 32): the forward
/// products with their activations and the input gradients with the activation's derivative.
#[test]
fn split_k_steps_match_cpu() {
    let Some(mut gpu) = gpu() else { return };
    gpu.set_matmul_split(Some(3));
    run_on(
        Case {
            name: "adam, split-K",
            spec: mlp(
                64,
                &[48, 32],
                10,
                Activation::Tanh,
                0.2,
                LossKind::SoftmaxCrossEntropy,
            ),
            optimizer: optimizer(OptimizerKind::Adam),
            regularization: Regularization::default(),
            data: tiny_digits(40, 6),
            batch: 16,
            epochs: 2,
            shift: 0,
        },
        gpu,
    );
}

#[test]
fn adamw_mse_regression_with_softmax_hidden_layer() {
    run(Case {
        name: "adamw mse",
        spec: mlp(3, &[9, 7], 2, Activation::Softmax, 0.0, LossKind::Mse),
        optimizer: optimizer(OptimizerKind::Adamw),
        regularization: Regularization {
            l1_weights: 1e-4,
            ..Regularization::default()
        },
        data: waves(45, 3, 2, 6),
        batch: 16,
        epochs: 3,
        shift: 0,
    });
}

#[test]
fn adam_mae_regression() {
    run(Case {
        name: "adam mae",
        spec: mlp(3, &[16], 1, Activation::Tanh, 0.1, LossKind::Mae),
        optimizer: optimizer(OptimizerKind::Adam),
        regularization: Regularization::default(),
        data: waves(37, 3, 1, 7),
        batch: 8,
        epochs: 2,
        shift: 0,
    });
}

#[test]
fn fit_reports_match_cpu() {
    let Some(gpu) = gpu() else { return };
    let case = Case {
        name: "fit",
        spec: mlp(
            64,
            &[20],
            10,
            Activation::Relu,
            0.2,
            LossKind::SoftmaxCrossEntropy,
        ),
        optimizer: optimizer(OptimizerKind::Adam),
        regularization: Regularization {
            l2_weights: 1e-4,
            ..Regularization::default()
        },
        data: tiny_digits(50, 8),
        batch: 16,
        epochs: 2,
        shift: 0,
    };
    let test = tiny_digits(21, 9);
    let (mut c, mut g) = trainers(&case, gpu);
    let (cd, gd) = (c.upload(&case.data).unwrap(), g.upload(&case.data).unwrap());
    let (ct, gt) = (c.upload(&test).unwrap(), g.upload(&test).unwrap());
    let run = |train, test| RunData {
        train,
        val: None,
        test: Some(test),
    };
    let cr = fit(&mut c, run(&cd, &ct), case.epochs, &mut []).unwrap();
    let gr = fit(&mut g, run(&gd, &gt), case.epochs, &mut []).unwrap();
    for (a, b) in gr.iter().zip(&cr) {
        let what = format!("fit epoch {}", b.epoch);
        assert!(
            close(a.train_loss, b.train_loss, LOSS_REL),
            "{what}: train loss gpu {} cpu {}",
            a.train_loss,
            b.train_loss
        );
        assert!(
            close(a.reg_loss, b.reg_loss, 1e-4),
            "{what}: penalty gpu {} cpu {}",
            a.reg_loss,
            b.reg_loss
        );
        assert_metrics(&what, a.test.unwrap(), b.test.unwrap(), true);
    }
    assert_weights("fit", &g.params().unwrap(), &c.params().unwrap());
}

#[test]
fn a_training_step_creates_nothing_and_moves_only_uniform_blocks() {
    steady_state_step(None);
}

/// The same with split-K products (their scratch allocated by the first step), which launch
/// a second dispatch each.
#[test]
fn a_split_k_training_step_creates_nothing_either() {
    if gpu().is_none() {
        return;
    }
    let split = steady_state_step(Some(2));
    let whole = steady_state_step(Some(1));
    assert!(split > whole, "{split} dispatches split, {whole} not");
}

/// Checks three steps after the first, returns their dispatches.
fn steady_state_step(split: Option<usize>) -> u64 {
    let Some(mut g) = own_gpu() else { return 0 };
    g.set_matmul_split(split);
    let probe = g.share_device();
    let spec = mlp(
        64,
        &[32, 16],
        10,
        Activation::Relu,
        0.2,
        LossKind::SoftmaxCrossEntropy,
    );
    let reg = Regularization {
        l2_weights: 1e-4,
        ..Regularization::default()
    };
    let adam = optimizer(OptimizerKind::Adam);
    let mut t = Trainer::from_spec(Box::new(g), spec, 16, adam, 3)
        .unwrap()
        .with_regularization(reg)
        .unwrap();
    let data = t.upload(&tiny_digits(64, 10)).unwrap();
    t.shuffle(&data).unwrap();
    t.step(&data, 0, 16).unwrap();
    t.backend().flush().unwrap();
    let before = probe.traffic();
    for start in [16, 32, 48] {
        t.step(&data, start, 16).unwrap();
        t.backend().flush().unwrap();
    }
    let after = probe.traffic();
    // Every launch but those with a new uniform block is replayed as the step before prepared
    // it: no lookups.
    let launched = after.dispatches - before.dispatches;
    let blocks = after.uniform_blocks_written - before.uniform_blocks_written;
    assert_eq!(
        after.launches_remembered - before.launches_remembered,
        launched - blocks,
        "launches remembered of {launched}"
    );
    assert_eq!(after.bind_groups_created, before.bind_groups_created);
    assert_eq!(after.bytes_written, before.bytes_written);
    assert_eq!(after.bytes_read, before.bytes_read);
    assert_eq!(after.submissions, before.submissions + 3);
    // One compute pass per submission: kernel timing is off.
    assert_eq!(after.compute_passes, before.compute_passes + 3);
    // New per step (128 bytes each): the gather's index offset (the labels ride on it), the
    // two dropout layers' streams, and the update's bias corrections (the L2 penalty rides on
    // it). Every other op repeats its shapes.
    assert_eq!(blocks, 3 * 4, "uniform blocks written in 3 steps");
    launched
}

/// Thousands of steps with no read between them: the block new each step (Adam's bias
/// corrections; the batch offsets repeat each epoch) fills the uniform arena, which is handed
/// out afresh, twice, while the replay keeps the launches it remembered. The weights still
/// follow the CPU's (the tolerance allows for the rounding that compounds over 4,480 steps; a
/// launch bound to a stale or reused slot would train with the wrong scalars or rows).
#[test]
fn a_long_replay_recycles_the_uniform_arena_and_matches_the_cpu() {
    let Some(g) = own_gpu() else { return };
    let probe = g.share_device();
    let spec = mlp(
        6,
        &[16, 8],
        3,
        Activation::Tanh,
        0.0,
        LossKind::SoftmaxCrossEntropy,
    );
    let make = |b: Box<dyn Backend>| {
        Trainer::from_spec(b, spec.clone(), 4, optimizer(OptimizerKind::Adam), 5).unwrap()
    };
    let (mut c, mut g) = (make(Box::new(CpuBackend::new())), make(Box::new(g)));
    let data = blobs(64, 6, 3, 2);
    let (cd, gd) = (c.upload(&data).unwrap(), g.upload(&data).unwrap());
    let before = probe.traffic();
    for _ in 0..280 {
        c.shuffle(&cd).unwrap();
        g.shuffle(&gd).unwrap();
        for start in (0..64).step_by(4) {
            c.step(&cd, start, 4).unwrap();
            g.step(&gd, start, 4).unwrap();
        }
    }
    let (gp, cp) = (g.params().unwrap(), c.params().unwrap());
    let blocks = probe.traffic().uniform_blocks_written - before.uniform_blocks_written;
    assert!(
        blocks > 2 * 2048,
        "{blocks} uniform blocks: the arena was not recycled twice"
    );
    assert_weights_within("after 4,480 steps", &gp, &cp, 1e-4, 1e-3);
}

/// The same steps with the fusion pass on and off agree on the GPU (on the CPU they agree bit
/// for bit: tests/gradcheck.rs), dropout, penalties and a partial batch included.
#[test]
fn fused_and_unfused_steps_agree_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    let spec = mlp(
        64,
        &[32, 16],
        10,
        Activation::Tanh,
        0.25,
        LossKind::SoftmaxCrossEntropy,
    );
    let reg = Regularization {
        l1_weights: 1e-4,
        l2_biases: 1e-3,
        ..Regularization::default()
    };
    let make = |b: GpuBackend, fuse: bool| {
        let adam = optimizer(OptimizerKind::Adam);
        let mut t = Trainer::from_spec(Box::new(b), spec.clone(), 16, adam, 5)
            .unwrap()
            .with_regularization(reg)
            .unwrap();
        t.set_plan_options(PlanOptions { fuse });
        t
    };
    let (mut f, mut u) = (make(gpu.share_device(), true), make(gpu, false));
    let data = tiny_digits(40, 3);
    let (fd, ud) = (f.upload(&data).unwrap(), u.upload(&data).unwrap());
    f.shuffle(&fd).unwrap();
    u.shuffle(&ud).unwrap();
    for start in [0, 16, 32] {
        let rows = 16.min(40 - start);
        f.step(&fd, start, rows).unwrap();
        u.step(&ud, start, rows).unwrap();
    }
    assert_weights(
        "fused vs unfused",
        &f.params().unwrap(),
        &u.params().unwrap(),
    );
    let (a, b) = (f.read_acc().unwrap(), u.read_acc().unwrap());
    assert!(close(a[0] as f64, b[0] as f64, LOSS_REL), "{a:?} vs {b:?}");
    let (fm, um) = (f.evaluate(&fd).unwrap(), u.evaluate(&ud).unwrap());
    assert_metrics("fused vs unfused evaluation", fm, um, true);
}

/// A handful of random layer sequences (stacked activations, dropout and activations at either
/// end, every loss but MAE) train the same on the GPU as on the CPU.
#[test]
fn random_layer_sequences_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(77);
    for _ in 0..6 {
        let spec = common::random_spec(&mut rng);
        let rows = 7;
        let x: Vec<f32> = (0..rows * spec.inputs())
            .map(|_| rng.normal() as f32)
            .collect();
        let targets = if spec.loss.is_classification() {
            let classes = spec.outputs().max(2);
            Targets::Classes {
                labels: (0..rows).map(|_| rng.below(classes) as u32).collect(),
                num_classes: classes,
            }
        } else {
            Targets::Values {
                values: (0..rows * spec.outputs())
                    .map(|_| rng.normal() as f32)
                    .collect(),
                dim: spec.outputs(),
            }
        };
        let data = Dataset::new(Features::F32(x), rows, spec.inputs(), targets).unwrap();
        run(Case {
            name: "random sequence",
            spec,
            optimizer: optimizer(OptimizerKind::Adam),
            regularization: Regularization::default(),
            data,
            batch: 3,
            epochs: 2,
            shift: 0,
        });
    }
    drop(gpu);
}

/// A small CNN on 8x8 byte images: convolution (padded, then strided), ReLU, max pooling,
/// average pooling, dropout, flattening of several channels and Dense layers, step by step
/// against the CPU, partial batch included.
#[test]
fn cnn_steps_match_cpu() {
    use wgtrain::data::Scale;
    use wgtrain::model::Sequential;
    let spec = Sequential::images(8, 8, 1, Scale::ZeroOne)
        .conv_with(4, [3, 3], [1, 1], [1, 1])
        .relu()
        .max_pool(2)
        .conv_with(6, [3, 3], [1, 1], [1, 1])
        .tanh()
        .avg_pool(2)
        .dropout(0.2)
        .dense(16)
        .relu()
        .dense(10)
        .cross_entropy()
        .unwrap();
    run(Case {
        name: "cnn",
        spec,
        optimizer: optimizer(OptimizerKind::Adam),
        regularization: Regularization::default(),
        data: tiny_digits(50, 5),
        batch: 16,
        epochs: 2,
        // Augmentation: both backends move each image by the same offsets.
        shift: 2,
    });
}

/// A CNN whose patch matrices exceed the device's largest binding (here capped at 5,000
/// bytes, as a 128 MiB binding is by the CNN preset at batch 1024): training reads the patches
/// in place (forward and weight gradient) and builds their gradient in slices of the batch;
/// step by step it follows the CPU's plan with whole patch matrices, partial batch included.
#[test]
fn cnn_steps_over_the_binding_limit_match_cpu() {
    use wgtrain::data::Scale;
    use wgtrain::model::Sequential;
    let Some(mut gpu) = gpu() else { return };
    gpu.set_max_buffer_bytes(Some(5_000));
    let spec = Sequential::images(8, 8, 1, Scale::ZeroOne)
        .conv_with(4, [3, 3], [1, 1], [1, 1])
        .relu()
        .conv_with(5, [3, 3], [2, 2], [1, 1])
        .relu()
        .max_pool(2)
        .conv_with(6, [2, 2], [1, 1], [0, 0])
        .dense(10)
        .cross_entropy()
        .unwrap();
    let (batch, steps) = (16, 4);
    let plan = {
        let mut probe = gpu.share_device();
        probe.set_max_buffer_bytes(Some(5_000));
        let adam = optimizer(OptimizerKind::Adam);
        let t = Trainer::from_spec(Box::new(probe), spec.clone(), batch, adam, 7).unwrap();
        t.plan(batch)
    };
    let printed = plan.to_string();
    assert!(!printed.contains("layer 0 patches"), "{printed}");
    assert!(printed.contains("implicit im2col of b"), "{printed}");
    assert!(
        printed.contains("grad of layer 2 patches, slice 8 of 8"),
        "{printed}"
    );
    run_on(
        Case {
            name: "cnn over the binding limit",
            spec,
            optimizer: optimizer(OptimizerKind::Adam),
            regularization: Regularization::default(),
            data: tiny_digits(batch * steps - 6, 9),
            batch,
            epochs: 1,
            shift: 1,
        },
        gpu,
    );
}
