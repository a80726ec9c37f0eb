//! Per-kernel timing with timestamp queries: what it reports, that it changes no result, and
//! that with it off a step is recorded exactly as before (one pass per submission, no new bind
//! groups). Where the adapter has no timestamp queries, that timing says so and the bench's
//! step breakdown falls back to timing each op alone.

use std::collections::BTreeSet;
mod common;

use common::{gpu, own_gpu};
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::backend::gpu::{GpuBackend, list_adapters};
use wgtrain::backend::{Backend, Buf, DType, KernelTime};
use wgtrain::bench::{BreakdownSource, host_us_per_step, step_breakdown, submission_us_per_step};
use wgtrain::data::{Dataset, Features, Targets};
use wgtrain::model::{Activation, LossKind, ModelSpec};
use wgtrain::ops::{Matmul, MatmulDims, Update};
use wgtrain::optim::{OptimizerConfig, OptimizerKind, Regularization};
use wgtrain::rng::Rng;
use wgtrain::train::{SUBMIT_EVERY, Trainer};

/// Whether the adapter the backend opened lists timestamp queries, and its name.
fn adapter_has_timestamps(g: &GpuBackend) -> (bool, String) {
    let opened = g.adapter().unwrap();
    let a = list_adapters()
        .into_iter()
        .find(|a| opened == format!("{} ({})", a.name, a.backend))
        .expect("the opened adapter is listed");
    (a.timestamp_query, opened)
}

fn random(b: &mut dyn Backend, len: usize, rng: &mut Rng) -> Buf {
    let v: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
    let buf = b.alloc(DType::F32, len, "t").unwrap();
    b.write_f32(buf, &v).unwrap();
    buf
}

fn dims(m: usize, k: usize, n: usize, trans_a: bool, trans_b: bool) -> MatmulDims {
    MatmulDims {
        m,
        k,
        n,
        trans_a,
        trans_b,
    }
}

/// Three products of one shape with a bias, two of another, one Adam update of 1000
/// parameters; returns every output.
fn some_ops(b: &mut dyn Backend) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(5);
    let x = random(b, 8 * 16, &mut rng);
    let w = random(b, 4 * 16, &mut rng);
    let bias = random(b, 4, &mut rng);
    let v = random(b, 4 * 5, &mut rng);
    let h = b.alloc(DType::F32, 8 * 4, "h").unwrap();
    let y = b.alloc(DType::F32, 8 * 5, "y").unwrap();
    let params = random(b, 1000, &mut rng);
    let grads = random(b, 1000, &mut rng);
    let m1 = b.alloc(DType::F32, 1000, "m1").unwrap();
    let m2 = b.alloc(DType::F32, 1000, "m2").unwrap();
    for _ in 0..3 {
        // h = x · wᵀ + bias: x (8, 16), w (4, 16) -> h (8, 4)
        let op = Matmul {
            bias: Some(bias),
            ..Matmul::new(x, w, h, dims(8, 16, 4, false, true))
        };
        wgtrain::ops::run(b, op).unwrap();
    }
    for _ in 0..2 {
        // y = h · v: h (8, 4), v (4, 5) -> y (8, 5)
        wgtrain::ops::run(b, Matmul::new(h, v, y, dims(8, 4, 5, false, false))).unwrap();
    }
    let u = OptimizerConfig::new(OptimizerKind::Adam).update_params(0);
    let update = Update {
        params,
        grads,
        state1: m1,
        state2: m2,
        hyper: u,
        penalty: None,
        clip: None,
    };
    wgtrain::ops::run(b, update).unwrap();
    [h, y, params, m1, m2]
        .into_iter()
        .map(|buf| b.read_f32(buf).unwrap())
        .collect()
}

fn names(times: &[KernelTime]) -> Vec<&str> {
    times.iter().map(|t| t.name.as_str()).collect()
}

#[test]
fn timing_is_offered_exactly_where_the_adapter_has_timestamp_queries() {
    let Some(mut g) = gpu() else { return };
    let (listed, adapter) = adapter_has_timestamps(&g);
    eprintln!(
        "{adapter}: TIMESTAMP_QUERY {}",
        if listed { "supported" } else { "not supported" }
    );
    assert_eq!(g.has_timestamp_queries(), listed);
    assert_eq!(g.start_kernel_timing(), listed);
    // Nothing ran since: no times, and timing is off again.
    assert_eq!(g.take_kernel_times().unwrap(), vec![]);
    assert_eq!(g.take_kernel_times().unwrap(), vec![]);
    // The CPU reference has no device timing.
    assert!(!CpuBackend::new().start_kernel_timing());
}

#[test]
fn timed_kernels_have_their_names_calls_and_times() {
    let Some(mut g) = gpu() else { return };
    if !g.start_kernel_timing() {
        assert!(!adapter_has_timestamps(&g).0);
        assert_eq!(g.take_kernel_times().unwrap(), vec![]);
        return;
    }
    some_ops(&mut g);
    let times = g.take_kernel_times().unwrap();
    assert_eq!(
        names(&times),
        [
            "matmul A·Bᵀ 8x16x4 +bias",
            "matmul A·B 8x4x5",
            "adam update 1000"
        ],
        "{times:?}"
    );
    let calls: Vec<usize> = times.iter().map(|t| t.calls).collect();
    assert_eq!(calls, [3, 2, 1]);
    for t in &times {
        assert!(
            t.seconds.is_finite() && t.seconds > 0.0 && t.seconds < 10.0,
            "{t:?}"
        );
    }
    // Timing stopped with the take: ops after it are not timed, and a new start counts afresh.
    some_ops(&mut g);
    assert!(g.start_kernel_timing());
    let mut rng = Rng::new(1);
    let a = random(&mut g, 6, &mut rng);
    let c = g.alloc(DType::F32, 4, "c").unwrap();
    let b2 = random(&mut g, 6, &mut rng);
    // c = aᵀ · b2ᵀ: a stored (3, 2), b2 stored (2, 3) -> c (2, 2)
    wgtrain::ops::run(&mut g, Matmul::new(a, b2, c, dims(2, 3, 2, true, true))).unwrap();
    let times = g.take_kernel_times().unwrap();
    assert_eq!(names(&times), ["matmul Aᵀ·Bᵀ 2x3x2"], "{times:?}");
    assert_eq!(times[0].calls, 1);
}

#[test]
fn timing_changes_no_result() {
    let Some(mut off) = gpu() else { return };
    let mut on = off.share_device();
    let timing = on.start_kernel_timing();
    let expected = some_ops(&mut off);
    let got = some_ops(&mut on);
    let times = on.take_kernel_times().unwrap();
    assert_eq!(times.is_empty(), !timing);
    // Bit for bit: the same kernels on the same inputs, only in more passes.
    assert_eq!(got, expected);

    // Every kernel of a training step (dropout, L2, Adam), through the trainer.
    let trained = |mut b: GpuBackend, time: bool| {
        if time {
            assert_eq!(b.start_kernel_timing(), timing);
        }
        let mut t = trainer(Box::new(b), 0.25);
        let d = t.upload(&digits(64, 3)).unwrap();
        t.shuffle(&d).unwrap();
        for start in [0, 16, 32] {
            t.step(&d, start, 16).unwrap();
        }
        let times = t.backend().take_kernel_times().unwrap();
        assert_eq!(times.is_empty(), !(time && timing));
        (t.params().unwrap(), t.read_acc().unwrap())
    };
    let (p_off, m_off) = trained(off.share_device(), false);
    let (p_on, m_on) = trained(off.share_device(), true);
    assert_eq!(p_on, p_off);
    assert_eq!(m_on.map(f32::to_bits), m_off.map(f32::to_bits));
}

/// The trainer of the traffic test in tests/gpu_training.rs: 64-32-16-10 ReLU, Adam, L2.
fn trainer(b: Box<dyn Backend>, dropout: f32) -> Trainer {
    let spec = ModelSpec::mlp(
        64,
        &[32, 16],
        10,
        Activation::Relu,
        dropout,
        LossKind::SoftmaxCrossEntropy,
    )
    .unwrap();
    let reg = Regularization {
        l2_weights: 1e-4,
        ..Regularization::default()
    };
    let opt = OptimizerConfig::new(OptimizerKind::Adam);
    Trainer::from_spec(b, spec, 16, opt, 3)
        .unwrap()
        .with_regularization(reg)
        .unwrap()
}

/// 8x8 byte images whose brightness pattern depends on the class.
fn digits(rows: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let labels: Vec<u32> = (0..rows).map(|_| rng.below(10) as u32).collect();
    let pixels = labels
        .iter()
        .flat_map(|&l| (0..64).map(move |p| if (p * 7 + l * 13) % 10 < 4 { 200 } else { 20 }))
        .collect();
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

#[test]
fn with_timing_off_a_step_is_one_pass_and_creates_nothing_before_and_after_timing() {
    let Some(g) = own_gpu() else { return };
    let probe = g.share_device();
    let mut t = trainer(Box::new(g), 0.0);
    let data = t.upload(&digits(160, 10)).unwrap();
    t.shuffle(&data).unwrap();
    t.step(&data, 0, 16).unwrap();
    t.backend().flush().unwrap();
    // Three steps at batch offsets not seen before; each flushed as training does.
    let steps = |t: &mut Trainer, starts: [usize; 3]| {
        let before = probe.traffic();
        for start in starts {
            t.step(&data, start, 16).unwrap();
            t.backend().flush().unwrap();
        }
        let after = probe.traffic();
        (
            after.submissions - before.submissions,
            after.compute_passes - before.compute_passes,
            after.bind_groups_created - before.bind_groups_created,
            after.uniform_blocks_written - before.uniform_blocks_written,
            after.bytes_written - before.bytes_written,
            after.bytes_read - before.bytes_read,
        )
    };
    let untimed = steps(&mut t, [16, 32, 48]);
    // New per step: the gather's index offset (labels ride on the row gather) and Adam's bias
    // corrections (the L2 penalty rides on the update).
    assert_eq!(untimed, (3, 3, 0, 3 * 2, 0, 0), "before timing");

    if t.backend().start_kernel_timing() {
        let (subs, passes, groups, blocks, written, read) = steps(&mut t, [64, 80, 96]);
        let times = t.backend().take_kernel_times().unwrap();
        let dispatches: usize = times.iter().map(|k| k.calls).sum();
        // Timing adds passes (one per dispatch) but no submission, bind group or transfer
        // (its timestamps are read back apart from `bytes_read`).
        assert_eq!(
            (subs, groups, blocks, written, read),
            (3, 0, 3 * 2, 0, 0),
            "while timing"
        );
        assert_eq!(passes as usize, dispatches);
        // Ten dispatches a step: the gather, six products, the last with its loss, the update.
        assert_eq!(dispatches, 3 * 10, "{times:?}");
    }
    assert_eq!(steps(&mut t, [112, 128, 144]), untimed, "after timing");
}

#[test]
fn training_submits_in_groups_that_double_after_a_read() {
    let Some(g) = own_gpu() else { return };
    let probe = g.share_device();
    let mut t = trainer(Box::new(g), 0.0);
    let data = t.upload(&digits(160, 12)).unwrap();
    t.shuffle(&data).unwrap();
    // The steps after which a submission went out, counting from a fresh trainer.
    let submitted_after = |t: &mut Trainer, steps: usize| -> Vec<usize> {
        (1..=steps)
            .filter(|s| {
                let before = probe.traffic().submissions;
                t.step(&data, (s * 16) % 144, 16).unwrap();
                probe.traffic().submissions > before
            })
            .collect()
    };
    assert_eq!(SUBMIT_EVERY, 128);
    assert_eq!(
        submitted_after(&mut t, 400),
        [1, 3, 7, 15, 31, 63, 127, 255, 383]
    );
    // A read waits for the device: the groups start again from one step. What was recorded
    // since the last submission went out with the read.
    t.read_acc().unwrap();
    assert_eq!(submitted_after(&mut t, 8), [1, 3, 7]);
    let before = probe.traffic().submissions;
    t.backend().flush().unwrap();
    assert_eq!(probe.traffic().submissions - before, 1);
}

/// A data set the bench's standard model (784 inputs, 10 classes) takes.
fn mnist_shaped(rows: usize) -> Dataset {
    let mut rng = Rng::new(11);
    Dataset {
        rows,
        dim: 784,
        image_shape: (28, 28),
        features: Features::U8((0..rows * 784).map(|_| rng.below(256) as u8).collect()),
        targets: Targets::Classes {
            labels: (0..rows).map(|_| rng.below(10) as u32).collect(),
            num_classes: 10,
        },
    }
}

#[test]
fn host_time_per_step_counts_recording_and_submission() {
    let Some(g) = gpu() else { return };
    let data = mnist_shaped(64);
    let host = host_us_per_step(Box::new(g), &data, 16, 5).unwrap();
    // A step records and submits something, and doing so takes less than a second.
    assert!(host.min > 0.0 && host.max < 1e6, "{host:?}");
}

/// The floor under the host time: submitting launches recorded beforehand costs something,
/// and less than a second.
#[test]
fn submission_floor_times_a_submission() {
    let Some(g) = gpu() else { return };
    let floor = submission_us_per_step(Box::new(g), 10, 3).unwrap();
    assert!(floor.min > 0.0 && floor.max < 1e6, "{floor:?}");
}

#[test]
fn bench_breakdown_uses_timestamps_where_it_can_and_lines_up_with_the_cpu() {
    let Some(g) = gpu() else { return };
    let has = g.has_timestamp_queries();
    let data = mnist_shaped(64);
    let (cpu_source, cpu) = step_breakdown(Box::new(CpuBackend::new()), &data, 16, 3).unwrap();
    let (gpu_source, gpu) = step_breakdown(Box::new(g), &data, 16, 3).unwrap();
    assert_eq!(cpu_source, BreakdownSource::SyncedOps);
    let expected = if has {
        BreakdownSource::Timestamps
    } else {
        BreakdownSource::SyncedOps
    };
    assert_eq!(gpu_source, expected);
    for t in cpu.iter().chain(&gpu) {
        assert!(t.seconds.is_finite() && t.seconds >= 0.0, "{t:?}");
        // Every kernel has a cost, so a floor; matmuls have FLOPs (2mkn).
        if !["upload indices", "read back"].contains(&t.op.name.as_str()) {
            assert!(
                t.op.bytes > 0.0 && t.floor_seconds(1.0, 1.0).is_some(),
                "{t:?}"
            );
        }
        assert_eq!(t.op.name.starts_with("matmul"), t.op.flops > 0.0, "{t:?}");
    }
    let fwd = gpu
        .iter()
        .find(|t| t.op.name == "matmul A·Bᵀ 16x784x256 +bias +relu")
        .expect("the first layer's forward");
    assert_eq!(fwd.op.flops, 2.0 * 16.0 * 784.0 * 256.0);
    // Kernels carry their workgroups per call (the product's tiles), the CPU's ops none.
    assert!(cpu.iter().all(|t| t.workgroups.is_none()), "{cpu:?}");
    assert!(
        gpu.iter()
            .filter(|t| !["upload indices", "read back"].contains(&t.op.name.as_str()))
            .all(|t| t.workgroups.is_some_and(|w| w > 0)),
        "{gpu:?}"
    );
    assert_eq!(
        fwd.op.bytes,
        4.0 * (16.0 * 784.0 + 784.0 * 256.0 + 16.0 * 256.0 + 256.0)
    );
    // The same op costs the same on both backends.
    for g in &gpu {
        if let Some(c) = cpu.iter().find(|c| c.op.name == g.op.name) {
            assert_eq!(c.op, g.op);
        }
    }
    // Slowest first.
    assert!(
        gpu.windows(2).all(|w| w[0].seconds >= w[1].seconds),
        "{gpu:?}"
    );
    let cpu_names: BTreeSet<&str> = cpu.iter().map(|t| t.op.name.as_str()).collect();
    let gpu_names: BTreeSet<&str> = gpu.iter().map(|t| t.op.name.as_str()).collect();
    assert!(
        gpu_names.contains("matmul A·Bᵀ 16x784x256 +bias +relu"),
        "{gpu_names:?}"
    );
    // Every ReLU and every bias gradient rides on a product: no separate dispatch is left.
    assert!(
        gpu_names.contains("matmul A·B 16x128x256 ×relu'")
            && gpu_names.contains("matmul Aᵀ·B 256x16x784 +col_sum")
            && !gpu_names.iter().any(|n| n.starts_with("col_sum"))
            && !gpu_names.iter().any(|n| n.starts_with("relu ")),
        "{gpu_names:?}"
    );
    if has {
        // Kernels only: the CPU's breakdown also times the transfers around them.
        let transfers: BTreeSet<&str> = cpu_names.difference(&gpu_names).copied().collect();
        assert!(
            gpu_names.is_subset(&cpu_names),
            "{gpu_names:?} vs {cpu_names:?}"
        );
        assert!(
            transfers
                .iter()
                .all(|n| ["upload indices", "read back"].contains(n)),
            "{transfers:?}"
        );
    } else {
        assert_eq!(gpu_names, cpu_names);
    }
}
