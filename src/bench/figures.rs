//! The figures one backend is measured on: matrix products, memory bandwidth, a training
//! step's kernels, training and inference throughput.

use super::stats::{Repeats, Spread, repeat};
use super::timed::{OpTimes, Timed};
use crate::backend::{Backend, Buf, DType, KernelTime};
use crate::data::Dataset;
use crate::model::{Activation, LossKind, ModelSpec};
use crate::ops::{Fill, MaskMul, Matmul, MatmulDims, Op, OpLabel};
use crate::optim::{OptimizerConfig, OptimizerKind};
use crate::rng::Rng;
use crate::train::{SUBMIT_EVERY, Trainer};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One measured figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// What was measured, in plain ASCII so peers can report the same figure, e.g. "matmul fwd
    /// 128x784x256" or "train b128".
    pub name: String,
    /// The unit of every value: "GFLOP/s", "GB/s", "samples/s", "s", "us" or "count".
    pub unit: String,
    #[serde(flatten)]
    /// Median, min and max over the repeated runs.
    pub spread: Spread,
    /// The best value the hardware allows for this figure, from the measured matmul peak and
    /// memory bandwidth (in the figure's unit), where one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
    /// Workgroups per call, on the GPU's "step b128:" figures (how much of a big device one
    /// dispatch can fill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workgroups: Option<u64>,
}

/// The figures of one column of the table: a backend of ours or a peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// "cpu", "gpu", or the name a peer reports for itself.
    pub name: String,
    #[serde(default)]
    /// The adapter or device the column ran on, where known.
    pub device: Option<String>,
    /// The figures, in the order they were measured.
    pub figures: Vec<Figure>,
    /// How the column's "step b128:" figures were timed (a [`BreakdownSource`] described),
    /// where it has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<String>,
    /// Kernel launches per training step of the standard MLP at batch 128 (GPU columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatches_per_step: Option<u64>,
    /// Median main-thread microseconds to record and submit one such step, not waiting for
    /// the device (GPU columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_us_per_step: Option<f64>,
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Square matmul sizes.
    pub squares: Vec<usize>,
    /// Batch sizes for training throughput.
    pub batches: Vec<usize>,
    /// Epochs timed per batch size (after one warm-up epoch).
    pub epochs: usize,
    /// Rows of the data set the CNN configuration is timed on (its epoch is extrapolated).
    pub cnn_rows: usize,
    /// Rows the wide configuration ([`WIDE`], batch 1024) is timed on.
    pub wide_rows: usize,
    /// How often each figure is run, and the time budget for its repeats.
    pub repeats: Repeats,
}

/// The wide configuration's layer sizes: where a GPU should win by far (at batch 1024, 114
/// MFLOP a row, nearly all in two 4096-wide products).
pub const WIDE: [usize; 4] = [784, 4096, 4096, 10];

/// The wide configuration's model: [`WIDE`], ReLU, softmax cross-entropy.
pub fn wide_spec() -> Result<ModelSpec> {
    ModelSpec::mlp(
        WIDE[0],
        &WIDE[1..3],
        WIDE[3],
        Activation::Relu,
        0.0,
        LossKind::SoftmaxCrossEntropy,
    )
}

/// The standard configuration's model: [`STANDARD`], ReLU, softmax cross-entropy.
pub fn standard_spec() -> Result<ModelSpec> {
    ModelSpec::mlp(
        STANDARD[0],
        &STANDARD[1..3],
        STANDARD[3],
        Activation::Relu,
        0.0,
        LossKind::SoftmaxCrossEntropy,
    )
}

/// The standard configuration's layer sizes.
pub const STANDARD: [usize; 4] = [784, 256, 128, 10];

/// FLOPs of one training step per row of the standard MLP: forward 2·Σ in·out, backward twice
/// that (weight and input gradients), less the input gradient of the first layer.
pub fn train_flops_per_row(sizes: &[usize]) -> f64 {
    let layers: Vec<(usize, usize)> = sizes.windows(2).map(|w| (w[0], w[1])).collect();
    let fwd: f64 = layers.iter().map(|&(i, o)| 2.0 * (i * o) as f64).sum();
    let first_dx = 2.0 * (layers[0].0 * layers[0].1) as f64;
    3.0 * fwd - first_dx
}

/// The CNN configuration's model: `wgtrain train --arch cnn`'s network on 28x28x1 images,
/// 10 classes, softmax cross-entropy.
pub fn cnn_spec() -> Result<ModelSpec> {
    crate::cli::layers::LayerList::parse(crate::cli::layers::CNN)
        .and_then(|l| {
            l.build(
                (28, 28),
                1,
                crate::data::Scale::ZeroOne,
                10,
                LossKind::SoftmaxCrossEntropy,
            )
        })
        .map_err(|e| crate::Error::Config(e.to_string()))
}

/// FLOPs of one training step per row of a model: each product's 2mkn forward, twice that
/// backward (weight and input gradients), less the first parameter layer's input gradient,
/// which nothing needs. (Im2col, pooling and activations move data but do no multiply-adds.)
pub fn model_train_flops_per_row(spec: &ModelSpec) -> f64 {
    let shapes = spec.shapes().unwrap_or_default();
    let mut fwd = Vec::new();
    for (i, l) in spec.layers.iter().enumerate() {
        let (w, _) = l.parameters();
        // Multiply-adds per row: the weight once per output position.
        let positions = match (l, shapes.get(i + 1)) {
            (crate::model::Layer::Conv2d { out_channels, .. }, Some(s)) => s.len() / out_channels,
            _ => 1,
        };
        if w > 0 {
            fwd.push(2.0 * (w * positions) as f64);
        }
    }
    let first = fwd.first().copied().unwrap_or(0.0);
    3.0 * fwd.iter().sum::<f64>() - first
}

/// Samples per second of training steps of `spec` (Adam 1e-3) at `batch` on the first `rows`
/// rows of `data` (a slice, so that a CPU measures in seconds what a whole epoch takes minutes
/// for), and the seconds a whole epoch of `data` takes at that rate.
pub fn slice_throughput(
    backend: Box<dyn Backend>,
    spec: ModelSpec,
    data: &Dataset,
    batch: usize,
    rows: usize,
    repeats: Repeats,
) -> Result<(Spread, Spread)> {
    let adam = OptimizerConfig::new(OptimizerKind::Adam);
    let mut t = Trainer::from_spec(backend, spec, batch, adam, 1)?;
    let rows = rows.min(data.rows);
    let slice = data.subset(&(0..rows).collect::<Vec<_>>());
    let d = t.upload(&slice)?;
    let mut pass = || -> Result<f64> {
        let started = Instant::now();
        t.shuffle(&d)?;
        for start in (0..rows).step_by(batch) {
            t.step(&d, start, batch.min(rows - start))?;
        }
        t.read_acc()?;
        Ok(started.elapsed().as_secs_f64())
    };
    let secs = repeat(repeats, &mut pass)?;
    let rate = Spread::rate(secs, rows as f64);
    let epoch = Spread {
        median: data.rows as f64 / rate.median,
        min: data.rows as f64 / rate.max,
        max: data.rows as f64 / rate.min,
    };
    Ok((rate, epoch))
}

/// FLOPs of a forward pass per row.
pub fn infer_flops_per_row(sizes: &[usize]) -> f64 {
    sizes.windows(2).map(|w| 2.0 * (w[0] * w[1]) as f64).sum()
}

fn random(b: &mut dyn Backend, len: usize, rng: &mut Rng, label: &str) -> Result<Buf> {
    let v: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
    let buf = b.alloc(DType::F32, len, label)?;
    b.write_f32(buf, &v)?;
    Ok(buf)
}

/// GFLOP/s of `reps` back-to-back products of one shape, as in a training step (the inputs
/// stay resident; the clock stops when the device is done).
pub fn matmul_gflops(b: &mut dyn Backend, dims: MatmulDims, r: Repeats) -> Result<Spread> {
    let mut rng = Rng::new(7);
    let (m, k, n) = (dims.m, dims.k, dims.n);
    let a = random(b, m * k, &mut rng, "bench a")?;
    let bb = random(b, k * n, &mut rng, "bench b")?;
    let c = b.alloc(DType::F32, m * n, "bench c")?;
    let flops = 2.0 * (m * k * n) as f64;
    // Enough products per timing that launch overheads are amortised like in a real step.
    let inner = ((2e9 / flops) as usize).clamp(1, 50);
    let op = Op::from(Matmul::new(a, bb, c, dims));
    op.check()?;
    let secs = repeat(r, || {
        b.sync()?;
        let t = Instant::now();
        for _ in 0..inner {
            b.run(&op)?;
        }
        b.sync()?;
        Ok(t.elapsed().as_secs_f64() / inner as f64)
    })?;
    Ok(Spread::rate(secs, flops / 1e9))
}

/// GB/s of an elementwise pass (`x *= m` over 16 Mi floats: 12 bytes per element).
pub fn bandwidth_gbs(b: &mut dyn Backend, r: Repeats) -> Result<Spread> {
    let n = 1 << 24;
    let mut rng = Rng::new(9);
    let x = random(b, n, &mut rng, "bench x")?;
    let ones = vec![1.0f32; n];
    let m = b.alloc(DType::F32, n, "bench m")?;
    b.write_f32(m, &ones)?;
    let op = Op::from(MaskMul {
        x,
        mask: m,
        y: x,
        n,
    });
    op.check()?;
    let secs = repeat(r, || {
        b.sync()?;
        let t = Instant::now();
        b.run(&op)?;
        b.sync()?;
        Ok(t.elapsed().as_secs_f64())
    })?;
    Ok(Spread::rate(secs, 12.0 * n as f64 / 1e9))
}

/// The standard trainer (784-256-128-10 ReLU, softmax-CE, Adam 1e-3) on `backend`.
pub fn standard_trainer(backend: Box<dyn Backend>, batch: usize) -> Result<Trainer> {
    Trainer::from_spec(
        backend,
        standard_spec()?,
        batch,
        OptimizerConfig::new(OptimizerKind::Adam),
        1,
    )
}

/// Samples per second of whole training epochs (shuffle, steps, and the one metrics read at
/// the end), and the seconds per epoch.
pub fn train_throughput(
    backend: Box<dyn Backend>,
    data: &Dataset,
    batch: usize,
    epochs: usize,
) -> Result<(Spread, Spread)> {
    let mut t = standard_trainer(backend, batch)?;
    let d = t.upload(data)?;
    let mut epoch = || -> Result<f64> {
        let started = Instant::now();
        t.shuffle(&d)?;
        t.write_acc([0.0; 2])?;
        for start in (0..d.rows).step_by(batch) {
            t.step(&d, start, batch.min(d.rows - start))?;
        }
        t.read_acc()?;
        Ok(started.elapsed().as_secs_f64())
    };
    let secs = repeat(
        Repeats {
            warmup: 1,
            runs: epochs,
            budget_s: 60.0,
        },
        &mut epoch,
    )?;
    Ok((Spread::rate(secs, data.rows as f64), secs))
}

/// Kernel launches per training step of the standard model at `batch` (on the GPU, counted as
/// they are recorded), or where the backend launches none (the CPU) the ops of the step's
/// compiled plan.
pub fn dispatches_per_step(backend: Box<dyn Backend>, data: &Dataset, batch: usize) -> Result<f64> {
    let mut t = standard_trainer(backend, batch)?;
    let d = t.upload(data)?;
    t.shuffle(&d)?;
    let steps = (d.rows / batch).clamp(1, 8);
    // The first step compiles the plan (and on some drivers the shaders).
    t.step(&d, 0, batch.min(d.rows))?;
    t.backend().sync()?;
    let Some(before) = t.backend().launches() else {
        return Ok(t.plan(batch.min(d.rows)).ops.len() as f64);
    };
    for s in 0..steps {
        t.step(&d, s * batch, batch.min(d.rows))?;
    }
    t.backend().sync()?;
    let after = t.backend().launches().unwrap_or(before);
    Ok((after.dispatches - before.dispatches) as f64 / steps as f64)
}

/// This thread's CPU time where the OS keeps one, else wall time: a host cost measured so that
/// a software GPU's threads sharing the cores (lavapipe) do not count in it.
enum HostClock {
    Cpu(cpu_time::ThreadTime),
    Wall(Instant),
}

impl HostClock {
    fn start() -> HostClock {
        match cpu_time::ThreadTime::try_now() {
            Ok(t) => HostClock::Cpu(t),
            Err(_) => HostClock::Wall(Instant::now()),
        }
    }

    fn us(&self) -> f64 {
        let d = match self {
            HostClock::Cpu(t) => t.try_elapsed().unwrap_or_default(),
            HostClock::Wall(t) => t.elapsed(),
        };
        d.as_secs_f64() * 1e6
    }
}

/// Main-thread CPU microseconds to record and submit one training step of the standard model
/// at `batch`, as a long training run does it: [`SUBMIT_EVERY`] steps recorded, then submitted
/// together (by the last step). Each group starts with the device idle (everything recorded
/// before submitted and waited for, untimed), so no wait for the device is counted; the figure
/// is a group's time over its steps, over `groups` groups after a warm-up one.
pub fn host_us_per_step(
    backend: Box<dyn Backend>,
    data: &Dataset,
    batch: usize,
    groups: usize,
) -> Result<Spread> {
    let mut t = standard_trainer(backend, batch)?;
    let d = t.upload(data)?;
    t.shuffle(&d)?;
    let batch = batch.min(d.rows);
    let mut step = 0usize;
    let mut group = |t: &mut Trainer| -> Result<f64> {
        // Not a read through the trainer, which would start its groups again from one step.
        t.submit()?;
        t.backend().sync()?;
        let clock = HostClock::start();
        for _ in 0..SUBMIT_EVERY {
            t.step(&d, (step * batch) % (d.rows - batch + 1), batch)?;
            step += 1;
        }
        Ok(clock.us() / SUBMIT_EVERY as f64)
    };
    // The first steps compile the plan and, on some drivers, the shaders.
    group(&mut t)?;
    let us = (0..groups.max(1))
        .map(|_| group(&mut t))
        .collect::<Result<Vec<f64>>>()?;
    t.backend().sync()?;
    Ok(Spread::of(us))
}

/// The floor under [`host_us_per_step`]: main-thread CPU microseconds per step that the device
/// API and its driver take to encode and submit `dispatches` launches per step, recorded
/// beforehand (untimed): [`SUBMIT_EVERY`] steps' worth of one-workgroup fills, each with its own
/// uniform block, submitted as training submits them. Only where the backend launches kernels.
pub fn submission_us_per_step(
    mut b: Box<dyn Backend>,
    dispatches: usize,
    groups: usize,
) -> Result<Spread> {
    let dst = b.alloc(DType::F32, 1, "submission floor")?;
    let group = |b: &mut dyn Backend| -> Result<f64> {
        b.sync()?;
        for i in 0..dispatches * SUBMIT_EVERY as usize {
            crate::ops::run(
                b,
                Fill {
                    dst,
                    value: i as f32,
                },
            )?;
        }
        let clock = HostClock::start();
        b.flush()?;
        Ok(clock.us() / SUBMIT_EVERY as f64)
    };
    // The first group compiles the kernel.
    group(b.as_mut())?;
    let us = (0..groups.max(1))
        .map(|_| group(b.as_mut()))
        .collect::<Result<Vec<f64>>>()?;
    b.sync()?;
    Ok(Spread::of(us))
}

/// Samples per second of forward passes over `data` (evaluation, batch 1024).
pub fn infer_throughput(backend: Box<dyn Backend>, data: &Dataset, r: Repeats) -> Result<Spread> {
    let mut t = standard_trainer(backend, 1024)?;
    let d = t.upload(data)?;
    let secs = repeat(r, || {
        let started = Instant::now();
        t.evaluate(&d)?;
        Ok(started.elapsed().as_secs_f64())
    })?;
    Ok(Spread::rate(secs, data.rows as f64))
}

/// How [`step_breakdown`] timed the ops of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakdownSource {
    /// Device timestamps around each kernel, the steps recorded and submitted as in training.
    Timestamps,
    /// Each op alone between two syncs (on a GPU this includes a submission and a wait).
    SyncedOps,
}

impl BreakdownSource {
    /// How the table's note describes it.
    pub fn describe(self) -> &'static str {
        match self {
            BreakdownSource::Timestamps => "kernel times from GPU timestamp queries",
            BreakdownSource::SyncedOps => "each op timed alone between syncs",
        }
    }
}

/// One op of a step breakdown: what it is and costs, and its mean seconds per call.
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    /// The op, its shape and its cost.
    pub op: OpLabel,
    /// Mean seconds per call.
    pub seconds: f64,
    /// Workgroups per call, where the backend launches kernels.
    pub workgroups: Option<u64>,
}

impl OpTime {
    /// The least time the op could take at `gflops` and `gbs`: its FLOPs at the matmul peak or
    /// its bytes at the memory bandwidth, whichever is longer; `None` for an op of no cost (a
    /// host transfer).
    pub fn floor_seconds(&self, gflops: f64, gbs: f64) -> Option<f64> {
        let t = (self.op.flops / (gflops * 1e9)).max(self.op.bytes / (gbs * 1e9));
        (t > 0.0 && t.is_finite()).then_some(t)
    }
}

/// Mean time per call of each op kind over `steps` training steps at `batch`, slowest first:
/// from the device's timestamp queries where the backend has them, else with each op timed
/// alone.
pub fn step_breakdown(
    mut backend: Box<dyn Backend>,
    data: &Dataset,
    batch: usize,
    steps: usize,
) -> Result<(BreakdownSource, Vec<OpTime>)> {
    // Starting the timing is how to ask whether the backend has it: one that does runs the
    // steps as in training (stopped here, it restarts after the warm-up step); any other is
    // wrapped in `Timed`.
    let source = if backend.start_kernel_timing() {
        backend.take_kernel_times()?;
        BreakdownSource::Timestamps
    } else {
        BreakdownSource::SyncedOps
    };
    let mut times: Option<OpTimes> = None;
    if source == BreakdownSource::SyncedOps {
        let (timed, t) = Timed::new(backend);
        backend = Box::new(timed);
        times = Some(t);
    }
    let mut t = standard_trainer(backend, batch)?;
    let d = t.upload(data)?;
    t.shuffle(&d)?;
    let steps = steps.min(d.rows / batch).max(1);
    // One untimed warm-up step (first dispatches compile shaders on some drivers).
    t.step(&d, 0, batch)?;
    t.backend().sync()?;
    match &times {
        Some(times) => times.borrow_mut().clear(),
        None if !t.backend().start_kernel_timing() => {
            return Err(Error::Device(
                "kernel timing could not be restarted after the warm-up step".into(),
            ));
        }
        None => {}
    }
    for s in 0..steps {
        t.step(&d, (s * batch) % (d.rows - batch + 1), batch)?;
    }
    let kernels: Vec<KernelTime> = match times {
        None => t.backend().take_kernel_times()?,
        Some(times) => times.borrow().values().cloned().collect(),
    };
    let mut v: Vec<OpTime> = kernels
        .into_iter()
        .map(|k| OpTime {
            seconds: k.seconds / k.calls as f64,
            workgroups: (k.workgroups > 0).then(|| k.workgroups / k.calls as u64),
            op: OpLabel {
                name: k.name,
                flops: k.flops,
                bytes: k.bytes,
            },
        })
        .collect();
    v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    Ok((source, v))
}
