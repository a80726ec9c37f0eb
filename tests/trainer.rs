//! The trainer end to end on the CPU backend, on small synthetic data sets built by hand.

use wgtrain::backend::cpu::CpuBackend;
use wgtrain::data::{Dataset, Features, Targets};
use wgtrain::model::{Activation, LossKind, ModelSpec};
use wgtrain::optim::{OptimizerConfig, OptimizerKind};
use wgtrain::rng::Rng;
use wgtrain::train::{EpochReport, ResidentData, RunData, Trainer, fit};

/// Three well-separated Gaussian blobs in the plane (centres on a circle of radius 3, spread
/// 0.5), `rows` points labelled by blob.
fn blobs(rows: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut features = Vec::with_capacity(rows * 2);
    let mut labels = Vec::with_capacity(rows);
    for _ in 0..rows {
        let c = rng.below(3);
        let angle = c as f64 * std::f64::consts::TAU / 3.0;
        features.push((3.0 * angle.cos() + 0.5 * rng.normal()) as f32);
        features.push((3.0 * angle.sin() + 0.5 * rng.normal()) as f32);
        labels.push(c as u32);
    }
    Dataset {
        rows,
        dim: 2,
        image_shape: (1, 2),
        features: Features::F32(features),
        targets: Targets::Classes {
            labels,
            num_classes: 3,
        },
    }
}

/// `y = sin(2x₀) + 0.5·x₁` on `[-1, 1]²`.
fn wave(rows: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut features = Vec::with_capacity(rows * 2);
    let mut values = Vec::with_capacity(rows);
    for _ in 0..rows {
        let (x0, x1) = (rng.next_f64() * 2.0 - 1.0, rng.next_f64() * 2.0 - 1.0);
        features.extend([x0 as f32, x1 as f32]);
        values.push(((2.0 * x0).sin() + 0.5 * x1) as f32);
    }
    Dataset {
        rows,
        dim: 2,
        image_shape: (1, 2),
        features: Features::F32(features),
        targets: Targets::Values { values, dim: 1 },
    }
}

fn trainer(spec: ModelSpec, batch: usize, opt: OptimizerConfig, seed: u64) -> Trainer {
    Trainer::from_spec(Box::new(CpuBackend::new()), spec, batch, opt, seed).unwrap()
}

/// Trains `epochs` epochs without a held-out set. (The one call of `fit`, so that a change of its
/// signature touches one line.)
fn run_epochs(t: &mut Trainer, data: &ResidentData, epochs: usize) -> Vec<EpochReport> {
    fit(
        t,
        RunData {
            train: data,
            val: None,
            test: None,
        },
        epochs,
        &mut [],
    )
    .unwrap()
}

fn adam(lr: f32) -> OptimizerConfig {
    OptimizerConfig {
        lr,
        ..OptimizerConfig::new(OptimizerKind::Adam)
    }
}

#[test]
fn learns_separable_classes() {
    let data = blobs(300, 1);
    let spec = ModelSpec::mlp(
        2,
        &[16],
        3,
        Activation::Relu,
        0.0,
        LossKind::SoftmaxCrossEntropy,
    )
    .unwrap();
    let mut t = trainer(spec, 32, adam(0.01), 7);
    let train = t.upload(&data).unwrap();
    let before = t.evaluate(&train).unwrap();
    let reports = run_epochs(&mut t, &train, 15);
    let after = t.evaluate(&train).unwrap();
    assert!(after.metric > 0.97, "accuracy {}", after.metric);
    assert!(
        after.loss < 0.2 * before.loss,
        "loss {} -> {}",
        before.loss,
        after.loss
    );
    let (first, last) = (&reports[0], reports.last().unwrap());
    assert!(last.train_loss < first.train_loss, "{first:?}\n{last:?}");
    assert!(last.train_metric > 0.95, "{last:?}");
    assert!(reports.iter().all(|r| r.reg_loss == 0.0));
    assert_eq!(t.progress.epoch, 15);
}

/// Sigmoid + BCE on two of the blobs with one output.
#[test]
fn learns_binary_classes_with_one_output() {
    let mut data = blobs(200, 2);
    if let Targets::Classes {
        labels,
        num_classes,
    } = &mut data.targets
    {
        labels.iter_mut().for_each(|l| *l = (*l == 0) as u32);
        *num_classes = 2;
    }
    let spec = ModelSpec::mlp(2, &[8], 1, Activation::Tanh, 0.0, LossKind::SigmoidBce).unwrap();
    let mut t = trainer(spec, 16, adam(0.02), 8);
    let train = t.upload(&data).unwrap();
    run_epochs(&mut t, &train, 10);
    let m = t.evaluate(&train).unwrap();
    assert!(m.metric > 0.97, "accuracy {}", m.metric);
}

#[test]
fn learns_a_regression_with_mse() {
    let data = wave(256, 3);
    let spec = ModelSpec::mlp(2, &[32], 1, Activation::Tanh, 0.0, LossKind::Mse).unwrap();
    let mut t = trainer(spec, 16, adam(0.02), 9);
    let train = t.upload(&data).unwrap();
    let before = t.evaluate(&train).unwrap();
    let reports = run_epochs(&mut t, &train, 40);
    assert!(reports.last().unwrap().train_loss < reports[0].train_loss);
    let after = t.evaluate(&train).unwrap();
    // The targets have variance about 0.68: an MSE of 0.01 leaves 1.5% of it unexplained.
    assert!(
        after.loss < 0.01 && after.loss < 0.05 * before.loss,
        "mse {} -> {}",
        before.loss,
        after.loss
    );
    // The metric of a regression is the MAE, which must agree with the MSE's scale.
    assert!(after.metric < 0.1, "mae {}", after.metric);
    assert!(after.metric * after.metric <= after.loss + 1e-12);
}

/// 10 rows in batches of 4: every epoch has a last batch of 2 rows, which must be trained on
/// and counted.
#[test]
fn last_partial_batch_is_processed() {
    let data = blobs(10, 4);
    let spec = ModelSpec::mlp(
        2,
        &[8],
        3,
        Activation::Relu,
        0.0,
        LossKind::SoftmaxCrossEntropy,
    )
    .unwrap();
    let mut t = trainer(spec.clone(), 4, adam(0.01), 10);
    let train = t.upload(&data).unwrap();
    let reports = run_epochs(&mut t, &train, 3);
    // Without an evaluation set the accumulator still holds the last epoch's training metrics,
    // summed over all 10 rows.
    let [loss_sum, _] = t.read_acc().unwrap();
    assert_eq!(reports[2].train_loss, loss_sum as f64 / 10.0);
    // ceil(10 / 4) = 3 updates per epoch.
    assert_eq!(t.progress.step, 9);
    assert_eq!(t.evaluate(&train).unwrap().rows, 10);

    // Evaluating in batches of 4, 4, 2 gives the loss of one batch of 10 (same parameters):
    // the partial batch's rows are neither dropped nor padded.
    let mut whole = trainer(spec, 10, adam(0.01), 10);
    let params = t.params().unwrap();
    whole.model_mut().set_params(&params).unwrap();
    let train_whole = whole.upload(&data).unwrap();
    let (a, b) = (
        t.evaluate(&train).unwrap(),
        whole.evaluate(&train_whole).unwrap(),
    );
    assert_eq!(b.rows, 10);
    assert!((a.loss - b.loss).abs() <= 1e-6 * b.loss, "{a:?} vs {b:?}");
    assert_eq!(a.metric, b.metric);
}

/// The partial batch is trained on: one epoch on 5 rows in batches of 4 is two updates, and the
/// second follows the fifth row. Plain SGD (no momentum) leaves the parameters where they are
/// on a zero gradient, so an ignored partial batch would fail the first check, and a partial
/// batch that read the wrong row would fail the second.
#[test]
fn partial_batch_updates_the_parameters() {
    let data = blobs(5, 5);
    let spec = ModelSpec::mlp(
        2,
        &[4],
        3,
        Activation::Tanh,
        0.0,
        LossKind::SoftmaxCrossEntropy,
    )
    .unwrap();
    let sgd = OptimizerConfig {
        lr: 0.1,
        momentum: 0.0,
        ..OptimizerConfig::new(OptimizerKind::Sgd)
    };
    let epoch_on = |data: &Dataset| {
        let mut t = trainer(spec.clone(), 4, sgd.clone(), 11);
        let train = t.upload(data).unwrap();
        t.shuffle(&train).unwrap();
        t.step(&train, 0, 4).unwrap();
        let after_full = t.params().unwrap();
        t.step(&train, 4, 1).unwrap();
        (after_full, t.params().unwrap())
    };
    let (after_full, after_partial) = epoch_on(&data);
    assert_ne!(after_full, after_partial, "the partial batch moved nothing");
    assert!(after_partial.iter().all(|v| v.is_finite()));
    // The same rows in the same order, but the row the partial batch holds has another label:
    // the first update is the same, the second is not.
    let mut t = trainer(spec.clone(), 4, sgd.clone(), 11);
    let r = t.upload(&data).unwrap();
    let order = t
        .shuffle(&r)
        .ok()
        .map(|_| t.backend().read_u32(r.index).unwrap())
        .unwrap();
    let last = order[4] as usize;
    let mut other = data.clone();
    if let Targets::Classes { labels, .. } = &mut other.targets {
        labels[last] = (labels[last] + 1) % 3;
    }
    let (other_full, other_partial) = epoch_on(&other);
    assert_eq!(other_full, after_full);
    assert_ne!(
        other_partial, after_partial,
        "the partial batch did not read its row"
    );
}

/// The same seed gives bit-identical parameters and losses, dropout and shuffling included; a
/// different seed does not.
#[test]
fn identical_seeds_give_identical_training() {
    let data = blobs(100, 6);
    let spec = ModelSpec::mlp(
        2,
        &[12, 8],
        3,
        Activation::Relu,
        0.3,
        LossKind::SoftmaxCrossEntropy,
    )
    .unwrap();
    let run = |seed: u64| {
        let mut t = trainer(spec.clone(), 16, adam(0.01), seed);
        let resident = t.upload(&data).unwrap();
        let reports = run_epochs(&mut t, &resident, 3);
        let losses: Vec<u64> = reports.iter().map(|r| r.train_loss.to_bits()).collect();
        let params: Vec<u32> = t.params().unwrap().iter().map(|v| v.to_bits()).collect();
        (params, losses)
    };
    let (p1, l1) = run(42);
    let (p2, l2) = run(42);
    assert_eq!(p1, p2);
    assert_eq!(l1, l2);
    let (p3, _) = run(43);
    assert_ne!(p1, p3);
}

/// `predict` returns one row per data row in the data set's order, even after training on the
/// same resident copy has reordered its rows.
#[test]
fn predict_keeps_the_data_order_after_training() {
    let data = blobs(20, 7);
    let spec = ModelSpec::mlp(
        2,
        &[8],
        3,
        Activation::Relu,
        0.0,
        LossKind::SoftmaxCrossEntropy,
    )
    .unwrap();
    let mut t = trainer(spec, 8, adam(0.01), 12);
    let resident = t.upload(&data).unwrap();
    run_epochs(&mut t, &resident, 2);
    let fresh = t.upload(&data).unwrap();
    let want = t.model_mut().outputs(&fresh).unwrap();
    assert_eq!(want.len(), 20 * 3);
    // Rows of probabilities.
    for row in want.chunks_exact(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{row:?}");
    }
    assert_eq!(t.model_mut().outputs(&resident).unwrap(), want);
}

/// Stops training after `steps` steps, as Ctrl-C does (the CLI's handler sets a flag that
/// `should_stop` reads after every step).
struct StopAfter {
    steps: usize,
    seen: usize,
}

impl wgtrain::train::Callback for StopAfter {
    fn step(&mut self, _: usize, _: Option<wgtrain::train::Metrics>) {
        self.seen += 1;
    }
    fn should_stop(&self) -> bool {
        self.seen >= self.steps
    }
}

/// Resuming from a checkpoint written where training was stopped (mid-epoch, or after an
/// epoch's last step but before its evaluation) gives bitwise the weights and losses of the
/// uninterrupted run on the CPU: dropout masks, shuffles, the learning-rate schedule and the
/// epoch's partial metrics all continue where they were.
#[test]
fn resuming_where_training_stopped_is_bitwise_exact() {
    let mlp = ModelSpec::mlp(
        2,
        &[12, 8],
        3,
        Activation::Relu,
        0.3,
        LossKind::SoftmaxCrossEntropy,
    )
    .unwrap();
    check_resume(mlp, blobs(100, 8), 0);
    // A CNN too: convolution, pooling and dropout on images.
    let cnn = wgtrain::model::Sequential::images(6, 6, 1, wgtrain::data::Scale::ZeroOne)
        .conv_with(3, [3, 3], [1, 1], [1, 1])
        .relu()
        .max_pool(2)
        .dropout(0.2)
        .dense(3)
        .cross_entropy()
        .unwrap();
    let mut rng = Rng::new(9);
    let labels: Vec<u32> = (0..100).map(|_| rng.below(3) as u32).collect();
    let pixels = ndarray::Array2::from_shape_fn((100, 36), |(r, p)| {
        (if p % 3 == labels[r] as usize {
            200
        } else {
            rng.below(60)
        }) as u8
    });
    let images = Dataset::images(pixels.view(), (6, 6), &labels, 3).unwrap();
    // Augmented: the shifts continue where they were too.
    check_resume(cnn, images, 1);
}

/// Trains `spec` on `data` for 3 epochs in one go, then stopping after steps 10, 7 and 1 and
/// resuming from a checkpoint each time, and compares losses and weights bit for bit.
fn check_resume(spec: ModelSpec, data: Dataset, shift: u32) {
    use wgtrain::model::Model;
    use wgtrain::optim::Schedule;
    use wgtrain::store::{
        Checkpoint, CheckpointMeta, SavedModel, load_checkpoint, save_checkpoint,
    };

    let opt = OptimizerConfig {
        schedule: Schedule::InverseTime { decay: 0.01 },
        ..adam(0.01)
    };
    // 100 rows in batches of 16: 7 steps per epoch, the last of 4 rows.
    let mut whole = trainer(spec.clone(), 16, opt.clone(), 5)
        .with_shift(shift)
        .unwrap();
    let resident = whole.upload(&data).unwrap();
    let want = run_epochs(&mut whole, &resident, 3);
    let want_params = whole.params().unwrap();

    let dir = tempfile::tempdir().unwrap();
    for stop_at in [10, 7, 1] {
        let mut t = trainer(spec.clone(), 16, opt.clone(), 5)
            .with_shift(shift)
            .unwrap();
        let resident = t.upload(&data).unwrap();
        let run = RunData {
            train: &resident,
            val: None,
            test: None,
        };
        let mut stop = StopAfter {
            steps: stop_at,
            seen: 0,
        };
        let before = fit(&mut t, run, 3, &mut [&mut stop]).unwrap();
        assert_eq!(t.progress.step, stop_at as u64);
        // What the CLI writes on Ctrl-C.
        let path = dir.path().join(format!("stop{stop_at}.safetensors"));
        let (state1, state2) = t.optimizer_state().unwrap();
        let checkpoint = Checkpoint {
            model: SavedModel {
                spec: spec.clone(),
                params: t.params().unwrap(),
            },
            state1,
            state2,
            meta: CheckpointMeta {
                progress: t.progress.clone(),
                optimizer: t.optimizer.clone(),
                regularization: t.regularization(),
                batch_size: 16,
                run: serde_json::Value::Null,
                history: before.clone(),
            },
        };
        save_checkpoint(&path, &checkpoint).unwrap();
        drop(t);

        let c = load_checkpoint(&path).unwrap();
        let model = Model::with_params(
            Box::new(CpuBackend::new()),
            c.model.spec.clone(),
            &c.model.params,
        )
        .unwrap();
        let mut t = Trainer::new(model, c.meta.batch_size, c.meta.optimizer.clone(), 5)
            .unwrap()
            .with_shift(shift)
            .unwrap();
        t.restore(
            &c.model.params,
            &c.state1,
            &c.state2,
            c.meta.progress.clone(),
        )
        .unwrap();
        let resident = t.upload(&data).unwrap();
        let after = run_epochs(&mut t, &resident, 3);
        let got: Vec<u64> = before
            .iter()
            .chain(&after)
            .map(|r| r.train_loss.to_bits())
            .collect();
        let expected: Vec<u64> = want.iter().map(|r| r.train_loss.to_bits()).collect();
        assert_eq!(got, expected, "losses, stopped after step {stop_at}");
        assert_eq!(
            t.params().unwrap(),
            want_params,
            "weights, stopped after step {stop_at}"
        );
    }
}

/// Rows are counted in integers: 2^24 + 1 rows, one more than f32 counts exactly, are all
/// counted (an f32 row counter, as the metrics accumulator once held, says 2^24).
#[test]
fn more_rows_than_f32_counts_are_counted() {
    use wgtrain::model::{Model, Sequential};
    let rows = (1usize << 24) + 1;
    let x = ndarray::Array2::<f32>::zeros((rows, 1));
    let labels: Vec<u32> = (0..rows).map(|i| (i % 2) as u32).collect();
    let data = Dataset::classification(x.view(), &labels, 2).unwrap();
    drop(x);
    let spec = Sequential::new(1).dense(2).cross_entropy().unwrap();
    let mut model = Model::new(Box::new(CpuBackend::new()), spec, 1).unwrap();
    model.set_batch_size(1 << 22).unwrap();
    let resident = model.upload(&data).unwrap();
    let m = model.evaluate(&resident).unwrap();
    assert_eq!(m.rows, rows);
    // Zero inputs: every row gets the same logits, so half the rows are right.
    assert!((m.metric - 0.5).abs() < 1e-3, "{m:?}");
}
