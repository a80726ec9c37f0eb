//! Criterion benchmarks of the kernels, one group per op and backend (`cpu/matmul`,
//! `gpu/matmul`, ...). Matmul throughput is reported as elements/s where an "element" is one
//! FLOP (so Gelem/s reads as GFLOP/s); elementwise ops report bytes moved (GB/s). Every
//! iteration waits for the device before the clock stops.
//!
//!     cargo bench --bench kernels            # all groups
//!     cargo bench --bench kernels -- gpu/    # GPU groups only

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wgtrain::backend::{self, Backend, BackendChoice, Buf, DType};
use wgtrain::model::{Activation, LossKind};
use wgtrain::ops::{ActBackward, Loss, Matmul, MatmulDims, Op, Update};
use wgtrain::optim::{OptimizerConfig, OptimizerKind};
use wgtrain::rng::Rng;

fn backends() -> Vec<(&'static str, Box<dyn Backend>)> {
    let mut v: Vec<(&'static str, Box<dyn Backend>)> = Vec::new();
    if let Ok((b, _)) = backend::create(BackendChoice::Cpu, None) {
        v.push(("cpu", b));
    }
    match backend::create(BackendChoice::Gpu, None) {
        Ok((b, _)) => v.push(("gpu", b)),
        Err(e) => eprintln!("gpu benchmarks skipped: {e}"),
    }
    v
}

fn random(b: &mut dyn Backend, len: usize, seed: u64) -> Buf {
    let mut rng = Rng::new(seed);
    let v: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
    let buf = b.alloc(DType::F32, len, "bench").unwrap();
    b.write_f32(buf, &v).unwrap();
    buf
}

/// Checks an op's shape rule once, for the runs the benchmark times.
fn checked(op: impl Into<Op>) -> Op {
    let op = op.into();
    op.check().unwrap();
    op
}

fn matmul(c: &mut Criterion) {
    for (name, mut b) in backends() {
        let mut g = c.benchmark_group(format!("{name}/matmul"));
        let shapes = [
            (
                "fwd 128x784x256",
                MatmulDims {
                    m: 128,
                    k: 784,
                    n: 256,
                    trans_a: false,
                    trans_b: true,
                },
            ),
            (
                "dW 256x128x784",
                MatmulDims {
                    m: 256,
                    k: 128,
                    n: 784,
                    trans_a: true,
                    trans_b: false,
                },
            ),
            (
                "dX 128x128x256",
                MatmulDims {
                    m: 128,
                    k: 128,
                    n: 256,
                    trans_a: false,
                    trans_b: false,
                },
            ),
            (
                "square 1024",
                MatmulDims {
                    m: 1024,
                    k: 1024,
                    n: 1024,
                    trans_a: false,
                    trans_b: false,
                },
            ),
        ];
        for (label, d) in shapes {
            let a = random(b.as_mut(), d.m * d.k, 1);
            let bb = random(b.as_mut(), d.k * d.n, 2);
            let out = b.alloc(DType::F32, d.m * d.n, "c").unwrap();
            g.throughput(Throughput::Elements(2 * (d.m * d.k * d.n) as u64));
            let op = checked(Matmul::new(a, bb, out, d));
            g.bench_function(BenchmarkId::from_parameter(label), |it| {
                it.iter(|| {
                    b.run(&op).unwrap();
                    b.sync().unwrap();
                })
            });
        }
        g.finish();
    }
}

fn elementwise(c: &mut Criterion) {
    let n = 128 * 256;
    for (name, mut b) in backends() {
        let x = random(b.as_mut(), n, 3);
        let dy = random(b.as_mut(), n, 4);
        let mut g = c.benchmark_group(format!("{name}/relu_backward"));
        g.throughput(Throughput::Bytes((3 * 4 * n) as u64));
        let op = checked(ActBackward {
            act: Activation::Relu,
            y: x,
            dy,
            dx: dy,
            rows: 128,
            cols: 256,
        });
        g.bench_function("128x256", |it| {
            it.iter(|| {
                b.run(&op).unwrap();
                b.sync().unwrap();
            })
        });
        g.finish();

        let logits = random(b.as_mut(), 128 * 10, 5);
        let labels = b.alloc(DType::U32, 128, "labels").unwrap();
        b.write_u32(labels, &(0..128).map(|i| i % 10).collect::<Vec<u32>>())
            .unwrap();
        let grad = b.alloc(DType::F32, 128 * 10, "grad").unwrap();
        let stats = b.alloc(DType::F32, 256, "stats").unwrap();
        let mut g = c.benchmark_group(format!("{name}/softmax_ce"));
        g.throughput(Throughput::Bytes((2 * 4 * 128 * 10 + 4 * 128 * 3) as u64));
        let op = checked(Loss {
            kind: LossKind::SoftmaxCrossEntropy,
            out: logits,
            targets: labels,
            rows: 128,
            cols: 10,
            grad: Some(grad),
            stats: Some(stats),
            acc: None,
        });
        g.bench_function("128x10", |it| {
            it.iter(|| {
                b.run(&op).unwrap();
                b.sync().unwrap();
            })
        });
        g.finish();

        // Adam over the standard model's flat parameters: 7 floats moved per parameter.
        let p = 235_200;
        let (params, grads) = (random(b.as_mut(), p, 6), random(b.as_mut(), p, 7));
        let s1 = b.alloc(DType::F32, p, "m").unwrap();
        let s2 = b.alloc(DType::F32, p, "v").unwrap();
        let u = OptimizerConfig::new(OptimizerKind::Adam).update_params(0);
        let mut g = c.benchmark_group(format!("{name}/adam"));
        g.throughput(Throughput::Bytes((7 * 4 * p) as u64));
        let op = checked(Update {
            params,
            grads,
            state1: s1,
            state2: s2,
            hyper: u,
            penalty: None,
            clip: None,
        });
        g.bench_function("235200", |it| {
            it.iter(|| {
                b.run(&op).unwrap();
                b.sync().unwrap();
            })
        });
        g.finish();
    }
}

criterion_group!(benches, matmul, elementwise);
criterion_main!(benches);
