//! Every GPU kernel against the CPU reference on the same seeded inputs.
//!
//! GPU outputs are filled with NaN before each op so an element the kernel fails to write fails
//! the comparison. Tests skip (with a message) where no adapter exists, and fail instead when
//! WGTRAIN_REQUIRE_GPU=1 (CI, which has lavapipe).

mod common;

use common::gpu;
use wgtrain::Error;
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::backend::gpu::{GpuBackend, MatmulTiles, list_adapters};
use wgtrain::backend::{Backend, Buf, DType};
use wgtrain::model::{Activation, LossKind};
use wgtrain::ops::gather::{LabelPair, Shift};
use wgtrain::ops::reduce::{ACC_LEN, STATS_PER_ROW};
use wgtrain::ops::{
    AccumulateStats, ActBackward, ActForward, AvgPool, AvgPoolGrad, Clip, ColSum, Dropout,
    Epilogue, Fill, Flatten, Gather, GatherLabels, Im2Row, Loss, MaskMul, Matmul, MatmulDims,
    MaxPool, MaxPoolGrad, Op, Patches, Penalty, Regularize, Row2Im, SoftmaxCe, SumSquares, Update,
    Window,
};
use wgtrain::optim::{OptimizerConfig, OptimizerKind, Schedule};
use wgtrain::rng::Rng;

/// The CPU reference and a GPU backend holding the same data.
struct Pair {
    cpu: CpuBackend,
    gpu: GpuBackend,
}

/// A buffer on both backends.
#[derive(Clone, Copy)]
struct Both {
    cpu: Buf,
    gpu: Buf,
}

impl Both {
    fn slice(self, start: usize, len: usize) -> Both {
        Both {
            cpu: self.cpu.slice(start, len),
            gpu: self.gpu.slice(start, len),
        }
    }
}

impl Pair {
    fn new() -> Option<Pair> {
        Some(Pair {
            cpu: CpuBackend::new(),
            gpu: gpu()?,
        })
    }

    fn f32s(&mut self, data: &[f32]) -> Both {
        let cpu = self.cpu.alloc(DType::F32, data.len(), "t").unwrap();
        let gpu = self.gpu.alloc(DType::F32, data.len(), "t").unwrap();
        self.cpu.write_f32(cpu, data).unwrap();
        self.gpu.write_f32(gpu, data).unwrap();
        Both { cpu, gpu }
    }

    fn u32s(&mut self, data: &[u32]) -> Both {
        let cpu = self.cpu.alloc(DType::U32, data.len(), "t").unwrap();
        let gpu = self.gpu.alloc(DType::U32, data.len(), "t").unwrap();
        self.cpu.write_u32(cpu, data).unwrap();
        self.gpu.write_u32(gpu, data).unwrap();
        Both { cpu, gpu }
    }

    fn u8s(&mut self, data: &[u8]) -> Both {
        let cpu = self.cpu.alloc(DType::U8, data.len(), "t").unwrap();
        let gpu = self.gpu.alloc(DType::U8, data.len(), "t").unwrap();
        self.cpu.write_u8(cpu, data).unwrap();
        self.gpu.write_u8(gpu, data).unwrap();
        Both { cpu, gpu }
    }

    /// An output: zeros on the CPU, NaN on the GPU.
    fn out(&mut self, len: usize) -> Both {
        let cpu = self.cpu.alloc(DType::F32, len, "out").unwrap();
        let gpu = self.gpu.alloc(DType::F32, len, "out").unwrap();
        self.gpu.write_f32(gpu, &vec![f32::NAN; len]).unwrap();
        Both { cpu, gpu }
    }

    /// Runs the op `op(on_gpu)` builds on both backends (its shape rule checked first).
    fn run<O: Into<Op>>(&mut self, op: impl Fn(bool) -> O) {
        wgtrain::ops::run(&mut self.cpu, op(false)).unwrap();
        wgtrain::ops::run(&mut self.gpu, op(true)).unwrap();
    }

    fn read(&mut self, b: Both) -> (Vec<f32>, Vec<f32>) {
        (
            self.gpu.read_f32(b.gpu).unwrap(),
            self.cpu.read_f32(b.cpu).unwrap(),
        )
    }

    /// A label output: zeros on the CPU, u32::MAX on the GPU.
    fn labels_out(&mut self, len: usize) -> Both {
        let cpu = self.cpu.alloc(DType::U32, len, "labels").unwrap();
        let gpu = self.gpu.alloc(DType::U32, len, "labels").unwrap();
        self.gpu.write_u32(gpu, &vec![u32::MAX; len]).unwrap();
        Both { cpu, gpu }
    }

    /// Asserts the GPU's labels `b` equal the CPU's.
    fn check_labels(&mut self, what: &str, b: Both) {
        let g = self.gpu.read_u32(b.gpu).unwrap();
        let c = self.cpu.read_u32(b.cpu).unwrap();
        assert_eq!(g, c, "{what}");
    }

    /// Asserts the GPU's `b` is within `abs + rel·|cpu|` of the CPU's.
    fn check(&mut self, what: &str, b: Both, abs: f32, rel: f32) {
        let (g, c) = self.read(b);
        assert_close(what, &g, &c, abs, rel);
    }

    fn check_exact(&mut self, what: &str, b: Both) {
        let (g, c) = self.read(b);
        assert_close(what, &g, &c, 0.0, 0.0);
    }
}

/// The fused epilogue, or none for softmax (which the test then runs as the op after).
fn fused(act: Activation, e: Epilogue) -> Epilogue {
    if act == Activation::Softmax {
        Epilogue::None
    } else {
        e
    }
}

/// Picks the buffer of the backend being run.
fn pick(b: Both, on_gpu: bool) -> Buf {
    if on_gpu { b.gpu } else { b.cpu }
}

fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], abs: f32, rel: f32) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    let mut bad = Vec::new();
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        // Written so that NaN on either side fails, and equal infinities pass.
        let ok = g == c || (g - c).abs() <= abs + rel * c.abs();
        if !ok {
            bad.push((i, g, c));
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {} elements differ beyond {abs} + {rel}·|ref|; first (index, gpu, cpu): {:?}",
        bad.len(),
        gpu.len(),
        &bad[..bad.len().min(5)]
    );
}

fn uniform(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n)
        .map(|_| lo + (hi - lo) * rng.next_f64() as f32)
        .collect()
}

const ABS: f32 = 1e-5;
const REL: f32 = 1e-4;

// ---------------------------------------------------------------------------------------------
// matmul

/// Runs one product on both backends with operands at odd offsets inside larger allocations
/// (as views of the flat parameter buffer are) and compares.
fn check_matmul(
    p: &mut Pair,
    rng: &mut Rng,
    (m, k, n): (usize, usize, usize),
    (ta, tb): (bool, bool),
    bias: bool,
) {
    let a = p.f32s(&uniform(rng, m * k + 3, -1.0, 1.0)).slice(3, m * k);
    let b = p.f32s(&uniform(rng, k * n + 5, -1.0, 1.0)).slice(5, k * n);
    let bias = bias.then(|| p.f32s(&uniform(rng, n + 1, -1.0, 1.0)).slice(1, n));
    let c = p.out(m * n + 2).slice(2, m * n);
    let dims = MatmulDims {
        m,
        k,
        n,
        trans_a: ta,
        trans_b: tb,
    };
    p.run(|g| Matmul {
        bias: bias.map(|x| pick(x, g)),
        ..Matmul::new(pick(a, g), pick(b, g), pick(c, g), dims)
    });
    let what = format!(
        "matmul m={m} k={k} n={n} trans_a={ta} trans_b={tb} bias={}",
        bias.is_some()
    );
    p.check(&what, c, 2e-6 * k.max(1) as f32, REL);
}

const FORMS: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

#[test]
fn matmul_matches_cpu_in_every_form() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(1);
    // 1x1x1, the brief's odd sizes, sizes off every tile edge (64 x 64 outputs, 16-deep k
    // slices), a tile exactly, and an empty inner dimension (c = bias).
    let sizes = [
        (1, 1, 1),
        (45, 65, 33),
        (67, 17, 129),
        (130, 3, 70),
        (5, 200, 7),
        (32, 16, 32),
        (64, 16, 64),
        (3, 0, 5),
        (128, 16, 128),
        (257, 33, 131),
    ];
    for (tiles, split) in VARIANTS {
        p.gpu.set_matmul_tiles(tiles);
        p.gpu.set_matmul_split(split);
        for &(m, k, n) in &sizes {
            for (ta, tb) in FORMS {
                for bias in [false, true] {
                    check_matmul(&mut p, &mut rng, (m, k, n), (ta, tb), bias);
                }
            }
        }
    }
}

/// Every matmul kernel (32 x 32, 64 x 64 and 128 x 128 tiles), forced, whatever size picks
/// one.
const KERNELS: [MatmulTiles; 3] = [MatmulTiles::Fine, MatmulTiles::Small, MatmulTiles::Big];

/// The kernels unsplit (`Some(1)`: split-K forbidden), and the smallest split over k (3 slices
/// of k: uneven ones, and fewer where k is short; `split_k_matches_cpu` runs every kernel and
/// split on fewer shapes).
const VARIANTS: [(MatmulTiles, Option<usize>); 4] = [
    (MatmulTiles::Fine, Some(1)),
    (MatmulTiles::Small, Some(1)),
    (MatmulTiles::Big, Some(1)),
    (MatmulTiles::Fine, Some(3)),
];

/// Split-K: every kernel cut into 2, 3, 4 or 256 slices of k (16-deep multiples; fewer where k is
/// short: k = 1 and 20 run unsplit or in 2), the partials added in order by a second dispatch,
/// against the CPU, column sums too; and the same product twice gives the same bits (no
/// atomics).
#[test]
fn split_k_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(21);
    let sizes = [
        (1, 1, 1),
        (3, 0, 5),
        (5, 200, 7),
        (45, 65, 33),
        (2, 784, 256),
        (33, 1000, 17),
        (70, 20, 130),
    ];
    for tiles in KERNELS {
        p.gpu.set_matmul_tiles(tiles);
        for split in [2, 3, 4, 256] {
            p.gpu.set_matmul_split(Some(split));
            for (i, &size) in sizes.iter().enumerate() {
                // Every form at 4 slices; the plain forward form (x · Wᵀ) at the others.
                let forms: &[(bool, bool)] = if split == 4 { &FORMS } else { &[FORMS[2]] };
                for &form in forms {
                    check_matmul(&mut p, &mut rng, size, form, i % 2 == 0);
                }
            }
            check_matmul_col_sum(&mut p, &mut rng, (33, 1000, 17), split % 2 == 0);
            check_matmul_col_sum(&mut p, &mut rng, (130, 67, 70), true);
        }
    }
    // Launched as two dispatches (partials, then their sum), the sum's grid besides the
    // partials' 1 x 1 x 4.
    p.gpu.set_matmul_tiles(MatmulTiles::Small);
    p.gpu.set_matmul_split(Some(4));
    let before = p.gpu.launches().unwrap();
    check_matmul(&mut p, &mut rng, (33, 1000, 17), (false, true), true);
    let after = p.gpu.launches().unwrap();
    assert_eq!(after.dispatches - before.dispatches, 2);
    assert_eq!(after.workgroups - before.workgroups, 4 + 3);
    // Deterministic: a rerun of the same product is bitwise the same.
    let (m, k, n) = (37, 900, 29);
    let a = p.gpu.alloc(DType::F32, m * k, "a").unwrap();
    let b = p.gpu.alloc(DType::F32, k * n, "b").unwrap();
    p.gpu
        .write_f32(a, &uniform(&mut rng, m * k, -1.0, 1.0))
        .unwrap();
    p.gpu
        .write_f32(b, &uniform(&mut rng, k * n, -1.0, 1.0))
        .unwrap();
    let dims = MatmulDims {
        m,
        k,
        n,
        trans_a: false,
        trans_b: false,
    };
    let mut results = Vec::new();
    for _ in 0..3 {
        let c = p.gpu.alloc(DType::F32, m * n, "c").unwrap();
        p.gpu.run(&Op::Matmul(Matmul::new(a, b, c, dims))).unwrap();
        results.push(p.gpu.read_f32(c).unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn matmul_with_more_rows_than_one_grid_dimension() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(2);
    // 70000 rows as a forward layer computes them (x · Wᵀ + b).
    check_matmul(&mut p, &mut rng, (70_000, 2, 3), (false, true), true);
    // A grid capped at 2 x 2 workgroups: every workgroup loops over many tiles.
    p.gpu.set_max_workgroups_per_dimension(2);
    for tiles in KERNELS {
        p.gpu.set_matmul_tiles(tiles);
        for form in FORMS {
            check_matmul(&mut p, &mut rng, (300, 20, 200), form, true);
        }
    }
}

/// Autotuning: the first product of a shape times the three kernels (one warm-up dispatch, one
/// timed, then, being short, five more each; then the product itself), keeps the fastest in the cache file, and a
/// tuner reopened on that file reuses it without timing anything; the cached choice decides
/// the kernel, a forced one wins over it, and the result matches the CPU whichever runs.
#[test]
fn tuning_times_each_kernel_once_caches_the_choice_and_a_forced_kernel_wins() {
    let Some(mut p) = Pair::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiles.json");
    let tuner = p.gpu.open_tuner(Some(path.clone()));
    p.gpu.set_tuner(Some(tuner));
    let mut rng = Rng::new(13);
    let launched = |g: &GpuBackend| g.launches().unwrap();
    let run = |p: &mut Pair, rng: &mut Rng, shape| {
        let before = launched(&p.gpu);
        check_matmul(p, rng, shape, (false, true), true);
        let after = launched(&p.gpu);
        (
            after.dispatches - before.dispatches,
            after.workgroups - before.workgroups,
        )
    };
    // Each candidate 1 + 1 + 5 dispatches, or 1 + 1 where one took 5 ms (a loaded machine).
    let tuned = run(&mut p, &mut rng, (100, 40, 70)).0 - 1;
    assert!(
        (6..=21).contains(&tuned) && (tuned - 6) % 5 == 0,
        "{tuned} dispatches to tune"
    );
    let key = "A·Bᵀ 100x40x70";
    let choices = p.gpu.tuning().unwrap();
    let choice = &choices[key];
    assert_eq!(choice.us.len(), 3, "{choice:?}");
    assert!(choice.us.values().all(|&us| us > 0.0), "{choice:?}");
    // Device time where the adapter has timestamp queries (lavapipe does).
    assert_eq!(choice.timestamps, p.gpu.has_timestamp_queries());
    let fastest = choice.us.iter().min_by(|a, b| a.1.total_cmp(b.1)).unwrap();
    assert_eq!(fastest.0, &choice.tiles.to_string());
    assert!(std::fs::read_to_string(&path).unwrap().contains(key));
    // Tuned: one dispatch, on the chosen kernel's grid.
    let side = choice.tiles;
    let grid = (70usize.div_ceil(side) * 100usize.div_ceil(side)) as u64;
    assert_eq!(run(&mut p, &mut rng, (100, 40, 70)), (1, grid));
    // A tuner reopened on the file has the choice: no timing.
    p.gpu.set_tuner(Some(p.gpu.open_tuner(Some(path.clone()))));
    assert_eq!(p.gpu.tuning().unwrap()[key].tiles, side);
    assert_eq!(run(&mut p, &mut rng, (100, 40, 70)), (1, grid));
    // A choice in the cache decides the kernel (128 x 128 here: 2 x 3 workgroups)...
    let mut tuner = p.gpu.open_tuner(None);
    tuner.insert(
        "A·Bᵀ 300x20x200".into(),
        wgtrain::backend::gpu::Choice {
            tiles: 128,
            split: 1,
            us: Default::default(),
            timestamps: false,
        },
    );
    p.gpu.set_tuner(Some(tuner));
    assert_eq!(run(&mut p, &mut rng, (300, 20, 200)), (1, 6));
    // ... unless one is forced (32 x 32: 7 x 10).
    p.gpu.set_matmul_tiles(MatmulTiles::Fine);
    assert_eq!(run(&mut p, &mut rng, (300, 20, 200)), (1, 70));
    // A cached split-K choice: two dispatches, the partials' 2 tiles x 2 slices of k and the
    // sum's ceil(40 x 30 / 256) = 5 workgroups; a forced split wins over it.
    p.gpu.set_matmul_tiles(MatmulTiles::Auto);
    let mut tuner = p.gpu.open_tuner(None);
    tuner.insert(
        "A·Bᵀ 40x100x30".into(),
        wgtrain::backend::gpu::Choice {
            tiles: 32,
            split: 2,
            us: Default::default(),
            timestamps: false,
        },
    );
    p.gpu.set_tuner(Some(tuner));
    assert_eq!(run(&mut p, &mut rng, (40, 100, 30)), (2, 2 * 2 + 5));
    p.gpu.set_matmul_split(Some(4));
    p.gpu.set_matmul_tiles(MatmulTiles::Fine);
    // 100 in slices of 32: 4 slices.
    assert_eq!(run(&mut p, &mut rng, (40, 100, 30)), (2, 2 * 4 + 5));
    p.gpu.set_matmul_tiles(MatmulTiles::Auto);
    // Tuning a product with a long k and a small output times the split candidates too (k /
    // split at least 64: 2 and 4, on 32 x 32 and 64 x 64 tiles).
    p.gpu.set_matmul_split(None);
    p.gpu.set_tuner(Some(p.gpu.open_tuner(None)));
    run(&mut p, &mut rng, (40, 400, 30));
    let choice = p.gpu.tuning().unwrap()["A·Bᵀ 40x400x30"].clone();
    let names: Vec<&str> = choice.us.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "128",
            "32",
            "32 split 2",
            "32 split 4",
            "64",
            "64 split 2",
            "64 split 4"
        ]
    );
}

/// The elementwise activations a product can apply on its way out.
const FUSABLE: [Activation; 5] = [
    Activation::Relu,
    Activation::LeakyRelu,
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Linear,
];

/// `f(op(a)·op(b) + bias)` and `(op(a)·op(b)) ⊙ f'(x)` (through y = f(x)), fused on the GPU,
/// against the CPU's product followed by its activation op.
#[test]
fn fused_matmul_activation_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(11);
    let sizes = [
        (1, 1, 1),
        (45, 65, 33),
        (67, 17, 129),
        (64, 16, 64),
        (3, 0, 5),
        (5, 200, 7),
    ];
    for (act, (tiles, split)) in FUSABLE
        .into_iter()
        .chain([Activation::Softmax])
        .flat_map(|act| VARIANTS.map(|v| (act, v)))
    {
        p.gpu.set_matmul_tiles(tiles);
        p.gpu.set_matmul_split(split);
        for &(m, k, n) in &sizes {
            for (ta, tb) in FORMS {
                let dims = MatmulDims {
                    m,
                    k,
                    n,
                    trans_a: ta,
                    trans_b: tb,
                };
                let a = p
                    .f32s(&uniform(&mut rng, m * k + 3, -1.0, 1.0))
                    .slice(3, m * k);
                let b = p
                    .f32s(&uniform(&mut rng, k * n + 5, -1.0, 1.0))
                    .slice(5, k * n);
                let bias = p.f32s(&uniform(&mut rng, n + 1, -1.0, 1.0)).slice(1, n);
                // Stand-ins for the activation's outputs, of both signs so that ReLU's and
                // leaky ReLU's derivatives take both their values.
                let y = p
                    .f32s(&uniform(&mut rng, m * n + 4, -1.0, 1.0))
                    .slice(4, m * n);
                let what = format!(
                    "m={m} k={k} n={n} trans_a={ta} trans_b={tb} {act:?} {tiles:?} {split:?}"
                );

                // Softmax is row-wise: the reference pair stands for the fused op, which the
                // shape rule refuses for it.
                let c = p.out(m * n + 2).slice(2, m * n);
                p.run(|g| {
                    let (a, b, bias, c) = (pick(a, g), pick(b, g), pick(bias, g), pick(c, g));
                    Matmul {
                        bias: Some(bias),
                        epilogue: fused(act, Epilogue::Act(act)),
                        ..Matmul::new(a, b, c, dims)
                    }
                });
                if act == Activation::Softmax {
                    p.run(|g| ActForward {
                        act,
                        x: pick(c, g),
                        y: pick(c, g),
                        rows: m,
                        cols: n,
                    });
                }
                p.check(
                    &format!("matmul_act {what}"),
                    c,
                    2e-6 * k.max(1) as f32,
                    REL,
                );

                let c = p.out(m * n + 2).slice(2, m * n);
                p.run(|g| {
                    let (a, b, y, c) = (pick(a, g), pick(b, g), pick(y, g), pick(c, g));
                    Matmul {
                        epilogue: fused(act, Epilogue::ActGrad { act, y }),
                        ..Matmul::new(a, b, c, dims)
                    }
                });
                if act == Activation::Softmax {
                    p.run(|g| {
                        let (y, c) = (pick(y, g), pick(c, g));
                        ActBackward {
                            act,
                            y,
                            dy: c,
                            dx: c,
                            rows: m,
                            cols: n,
                        }
                    });
                }
                p.check(
                    &format!("matmul_act_grad {what}"),
                    c,
                    2e-6 * k.max(1) as f32,
                    REL,
                );
            }
        }
    }
}

/// `c = aᵀ·op(b)` with the column sums of `a` from the same pass, written beside `c` in one
/// allocation as a Dense layer's weight and bias gradients are, against the CPU's two ops.
fn check_matmul_col_sum(p: &mut Pair, rng: &mut Rng, (m, k, n): (usize, usize, usize), tb: bool) {
    let dims = MatmulDims {
        m,
        k,
        n,
        trans_a: true,
        trans_b: tb,
    };
    let a = p.f32s(&uniform(rng, m * k + 3, -1.0, 1.0)).slice(3, m * k);
    let b = p.f32s(&uniform(rng, k * n + 5, -1.0, 1.0)).slice(5, k * n);
    let grads = p.out(m * n + m + 7);
    let (c, sums) = (grads.slice(2, m * n), grads.slice(m * n + 5, m));
    p.run(|g| Matmul {
        epilogue: Epilogue::ColSums(pick(sums, g)),
        ..Matmul::new(pick(a, g), pick(b, g), pick(c, g), dims)
    });
    let what = format!("m={m} k={k} n={n} trans_b={tb}");
    p.check(
        &format!("matmul_col_sum product {what}"),
        c,
        2e-6 * k.max(1) as f32,
        REL,
    );
    p.check(
        &format!("matmul_col_sum sums {what}"),
        sums,
        2e-6 * k.max(1) as f32,
        REL,
    );
}

#[test]
fn matmul_with_column_sums_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(12);
    // Several tiles each way (only the first column of tiles writes the sums), edges off
    // every tile, an empty inner dimension (zero sums) and an empty product (sums alone).
    let sizes = [
        (1, 1, 1),
        (130, 67, 200),
        (45, 65, 33),
        (7, 200, 3),
        (5, 0, 9),
        (9, 5, 0),
    ];
    for (tiles, split) in VARIANTS {
        // Split, each slice of k adds up its part of the sums too.
        p.gpu.set_matmul_tiles(tiles);
        p.gpu.set_matmul_split(split);
        for &size in &sizes {
            for tb in [false, true] {
                check_matmul_col_sum(&mut p, &mut rng, size, tb);
            }
        }
    }
    // A grid capped at 2 x 2 workgroups: each loops over tiles, the first tile column too.
    p.gpu.set_max_workgroups_per_dimension(2);
    for tiles in KERNELS {
        p.gpu.set_matmul_tiles(tiles);
        check_matmul_col_sum(&mut p, &mut rng, (300, 20, 200), false);
    }
}

// ---------------------------------------------------------------------------------------------
// gather

#[test]
fn gather_rows_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(3);
    let (src_rows, cols, rows) = (50, 13, 37);
    // 13 columns: rows of bytes straddle the packed words.
    let pixels: Vec<u8> = (0..src_rows * cols).map(|_| rng.below(256) as u8).collect();
    let values = uniform(&mut rng, src_rows * cols, -3.0, 3.0);
    let order: Vec<u32> = (0..rows + 7).map(|_| rng.below(src_rows) as u32).collect();
    let u8src = p.u8s(&pixels);
    let f32src = p.f32s(&values);
    // A slice at an odd offset, as `ResidentData::gather` takes `index.slice(start, rows)`.
    // From entry 7 of the order on, as a batch in mid-epoch reads it.
    let idx = p.u32s(&order);
    for (src, affine) in [
        (u8src, (1.0 / 255.0, 0.0)),
        (u8src, (1.0 / 127.5, -1.0)),
        (f32src, (1.0, 0.0)),
        (f32src, (0.5, 2.0)),
    ] {
        let dst = p.out(rows * cols + 1).slice(1, rows * cols);
        p.run(|g| Gather {
            src: pick(src, g),
            idx: pick(idx, g),
            start: 7,
            rows,
            cols,
            affine,
            dst: pick(dst, g),
            labels: None,
            shift: None,
        });
        p.check("gather_rows", dst, 1e-6, 1e-6);
    }
}

#[test]
fn shifted_gather_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(6);
    // (height, width, channels, most pixels moved): odd sizes, 1 and 3 channels, the largest
    // shift an image allows, and batch rows past one workgroup.
    for (h, w, c, max, rows) in [
        (5, 7, 1, 2, 300),
        (28, 28, 1, 2, 33),
        (4, 3, 3, 2, 17),
        (2, 2, 1, 1, 1),
    ] {
        let cols = h * w * c;
        let pixels: Vec<u8> = (0..50 * cols).map(|_| rng.below(256) as u8).collect();
        let values = uniform(&mut rng, 50 * cols, -1.0, 1.0);
        let order: Vec<u32> = (0..rows + 3).map(|_| rng.below(50) as u32).collect();
        let labels: Vec<u32> = (0..50).map(|_| rng.below(10) as u32).collect();
        let (u8src, f32src) = (p.u8s(&pixels), p.f32s(&values));
        let (idx, lab) = (p.u32s(&order), p.u32s(&labels));
        for (src, affine) in [(u8src, (1.0 / 127.5, -1.0)), (f32src, (0.5, 2.0))] {
            let dst = p.out(rows * cols);
            let fused = p.labels_out(rows);
            let shift = Shift {
                height: h,
                width: w,
                channels: c,
                max,
                seed: 42 ^ rows as u32,
                stream: 7,
            };
            p.run(|g| Gather {
                src: pick(src, g),
                idx: pick(idx, g),
                start: 3,
                rows,
                cols,
                affine,
                dst: pick(dst, g),
                labels: Some(LabelPair {
                    src: pick(lab, g),
                    dst: pick(fused, g),
                }),
                shift: Some(shift),
            });
            p.check_exact(&format!("{h}x{w}x{c} shifted by up to {max}"), dst);
            p.check_labels("labels beside shifted rows", fused);
        }
    }
}

#[test]
fn gather_with_more_rows_than_one_grid_dimension() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(4);
    let (src_rows, cols, rows) = (1000, 5, 70_000);
    let pixels: Vec<u8> = (0..src_rows * cols).map(|_| rng.below(256) as u8).collect();
    let labels: Vec<u32> = (0..src_rows).map(|_| rng.below(10) as u32).collect();
    let order: Vec<u32> = (0..rows).map(|_| rng.below(src_rows) as u32).collect();
    let src = p.u8s(&pixels);
    let lab = p.u32s(&labels);
    let idx = p.u32s(&order);
    // Full grid, then one capped at 64 workgroups per dimension so the grid wraps into y.
    for cap in [None, Some(64)] {
        if let Some(cap) = cap {
            p.gpu.set_max_workgroups_per_dimension(cap);
        }
        let dst = p.out(rows * cols);
        let labels = p.labels_out(rows);
        // The rows and their labels in one pass, as the fused training plan gathers them.
        p.run(|g| Gather {
            src: pick(src, g),
            idx: pick(idx, g),
            start: 0,
            rows,
            cols,
            affine: (1.0 / 255.0, 0.0),
            dst: pick(dst, g),
            labels: Some(LabelPair {
                src: pick(lab, g),
                dst: pick(labels, g),
            }),
            shift: None,
        });
        p.check("gather_rows", dst, 1e-6, 1e-6);
        p.check_labels("fused labels", labels);
        let alone = p.labels_out(rows);
        p.run(|g| GatherLabels {
            src: pick(lab, g),
            idx: pick(idx, g),
            start: 0,
            rows,
            dst: pick(alone, g),
        });
        p.check_labels("labels", alone);
    }
}

#[test]
fn gather_labels_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(5);
    let labels: Vec<u32> = (0..100).map(|_| rng.below(10) as u32).collect();
    let order: Vec<u32> = (0..40).map(|_| rng.below(100) as u32).collect();
    let lab = p.u32s(&labels);
    let idx = p.u32s(&order);
    let out = p.labels_out(33).slice(2, 31);
    p.run(|g| GatherLabels {
        src: pick(lab, g),
        idx: pick(idx, g),
        start: 3,
        rows: 31,
        dst: pick(out, g),
    });
    p.check_labels("labels", out);
    // Fused with a row gather from f32 rows.
    let rows_src = p.f32s(&uniform(&mut rng, 100 * 3, -1.0, 1.0));
    let dst = p.out(31 * 3);
    let fused = p.labels_out(31);
    p.run(|g| Gather {
        src: pick(rows_src, g),
        idx: pick(idx, g),
        start: 3,
        rows: 31,
        cols: 3,
        affine: (1.0, 0.0),
        dst: pick(dst, g),
        labels: Some(LabelPair {
            src: pick(lab, g),
            dst: pick(fused, g),
        }),
        shift: None,
    });
    p.check("fused gather rows", dst, 0.0, 0.0);
    p.check_labels("fused gather labels", fused);
}

#[test]
fn write_u8_keeps_the_rest_of_a_partly_written_word() {
    let Some(mut p) = Pair::new() else { return };
    let data: Vec<u8> = (1..=11).collect();
    let src = p.u8s(&data);
    // Bytes 4..7 rewritten; byte 7 shares their word and must survive.
    p.cpu
        .write_u8(src.cpu.slice(4, 3), &[200, 201, 202])
        .unwrap();
    p.gpu
        .write_u8(src.gpu.slice(4, 3), &[200, 201, 202])
        .unwrap();
    let idx = p.u32s(&[0]);
    let dst = p.out(11);
    p.run(|g| Gather {
        src: pick(src, g),
        idx: pick(idx, g),
        start: 0,
        rows: 1,
        cols: 11,
        affine: (1.0, 0.0),
        dst: pick(dst, g),
        labels: None,
        shift: None,
    });
    p.check_exact("bytes after a partial write", dst);
}

// ---------------------------------------------------------------------------------------------
// activations

const ACTIVATIONS: [Activation; 6] = [
    Activation::Relu,
    Activation::LeakyRelu,
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Softmax,
    Activation::Linear,
];

#[test]
fn activations_forward_match_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(6);
    let (rows, cols) = (37, 19);
    let n = rows * cols;
    let mut x = uniform(&mut rng, n, -5.0, 5.0);
    // Saturating inputs for sigmoid / tanh / softmax, and exact zeros for the ReLU kinks.
    x[0] = 60.0;
    x[1] = -60.0;
    x[2] = 0.0;
    x[cols] = 95.0;
    for act in ACTIVATIONS {
        let xs = p.f32s(&x);
        let y = p.out(n + 4).slice(4, n);
        p.run(|g| ActForward {
            act,
            x: pick(xs, g),
            y: pick(y, g),
            rows,
            cols,
        });
        p.check(&format!("{act:?} forward"), y, ABS, REL);
        // In place.
        let xy = p.f32s(&x).slice(0, n);
        p.run(|g| ActForward {
            act,
            x: pick(xy, g),
            y: pick(xy, g),
            rows,
            cols,
        });
        p.check(&format!("{act:?} forward in place"), xy, ABS, REL);
    }
}

#[test]
fn activations_backward_match_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(7);
    let (rows, cols) = (29, 23);
    let n = rows * cols;
    let x = uniform(&mut rng, n, -4.0, 4.0);
    let dy = uniform(&mut rng, n, -1.0, 1.0);
    for act in ACTIVATIONS {
        // The forward output, as the network keeps it.
        let y = p.f32s(&x);
        p.run(|g| ActForward {
            act,
            x: pick(y, g),
            y: pick(y, g),
            rows,
            cols,
        });
        let dys = p.f32s(&dy);
        let dx = p.out(n + 1).slice(1, n);
        p.run(|g| ActBackward {
            act,
            y: pick(y, g),
            dy: pick(dys, g),
            dx: pick(dx, g),
            rows,
            cols,
        });
        p.check(&format!("{act:?} backward"), dx, ABS, REL);
        // dx aliasing dy, as the network calls it.
        let g2 = p.f32s(&dy);
        p.run(|g| ActBackward {
            act,
            y: pick(y, g),
            dy: pick(g2, g),
            dx: pick(g2, g),
            rows,
            cols,
        });
        p.check(&format!("{act:?} backward in place"), g2, ABS, REL);
    }
}

// ---------------------------------------------------------------------------------------------
// dropout

#[test]
fn dropout_masks_equal_the_cpu_masks_exactly() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(8);
    let n = 100_003;
    let x = uniform(&mut rng, n, -2.0, 2.0);
    for (p_drop, seed, stream) in [
        (0.5, 1, 0),
        (0.3, 0xDEAD_BEEF, 64 * 7 + 2),
        (0.9, 42, u32::MAX),
    ] {
        let xs = p.f32s(&x);
        let y = p.out(n);
        let mask = p.out(n + 3).slice(3, n);
        p.run(|g| Dropout {
            x: pick(xs, g),
            y: pick(y, g),
            mask: pick(mask, g),
            n,
            p: p_drop,
            seed,
            stream,
        });
        p.check_exact("dropout mask", mask);
        p.check_exact("dropout output", y);
        let kept = p
            .gpu
            .read_f32(mask.gpu)
            .unwrap()
            .iter()
            .filter(|&&m| m > 0.0)
            .count();
        let frac = kept as f64 / n as f64;
        assert!(
            (frac - (1.0 - p_drop as f64)).abs() < 0.01,
            "kept {frac} at p={p_drop}"
        );
        // Backward: the gradient masked in place, and into a buffer of its own.
        let grad = p.f32s(&uniform(&mut rng, n, -1.0, 1.0));
        let into = p.out(n);
        p.run(|g| MaskMul {
            x: pick(grad, g),
            mask: pick(mask, g),
            y: pick(into, g),
            n,
        });
        p.check_exact("masked gradient", into);
        p.run(|g| MaskMul {
            x: pick(grad, g),
            mask: pick(mask, g),
            y: pick(grad, g),
            n,
        });
        p.check_exact("masked gradient in place", grad);
    }
}

// ---------------------------------------------------------------------------------------------
// losses

fn check_loss(
    p: &mut Pair,
    rng: &mut Rng,
    kind: LossKind,
    rows: usize,
    cols: usize,
    with_grad: bool,
) {
    let mut z = uniform(rng, rows * cols, -4.0, 4.0);
    // Large logits: the fused kinds must stay finite.
    z[0] = 40.0;
    if rows * cols > 1 {
        z[1] = -40.0;
    }
    let out = p.f32s(&z);
    let targets = if kind.is_classification() {
        let classes = cols.max(2);
        let labels: Vec<u32> = (0..rows).map(|_| rng.below(classes) as u32).collect();
        p.u32s(&labels)
    } else {
        p.f32s(&uniform(rng, rows * cols, -3.0, 3.0))
    };
    let grad = with_grad.then(|| p.out(rows * cols + 1).slice(1, rows * cols));
    let stats = p
        .out(rows * STATS_PER_ROW + 2)
        .slice(2, rows * STATS_PER_ROW);
    let loss = |g: bool| Loss {
        kind,
        out: pick(out, g),
        targets: pick(targets, g),
        rows,
        cols,
        grad: grad.map(|x| pick(x, g)),
        stats: Some(pick(stats, g)),
        acc: None,
    };
    p.run(loss);
    let what = format!("{kind:?} rows={rows} cols={cols}");
    p.check(&format!("{what} stats"), stats, ABS, REL);
    if let Some(grad) = grad {
        p.check(&format!("{what} grad"), grad, 1e-6, REL);
    }
    // Fused with the metrics accumulation (the one-workgroup kernel), stats written or not.
    for keep_stats in [false, true] {
        let acc = p.f32s(&[0.25, 0.5, 7.0]).slice(0, ACC_LEN);
        let stats = p.out(rows * STATS_PER_ROW);
        p.run(|g| Loss {
            stats: keep_stats.then(|| pick(stats, g)),
            acc: Some(pick(acc, g)),
            ..loss(g)
        });
        p.check(&format!("{what} accumulated"), acc, 1e-4, 1e-5);
        if keep_stats {
            p.check(
                &format!("{what} stats beside the accumulator"),
                stats,
                ABS,
                REL,
            );
        }
        if let Some(grad) = grad {
            p.check(
                &format!("{what} grad beside the accumulator"),
                grad,
                1e-6,
                REL,
            );
        }
    }
}

#[test]
fn losses_match_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(9);
    let cases = [
        (LossKind::SoftmaxCrossEntropy, 33, 10),
        (LossKind::SoftmaxCrossEntropy, 300, 3),
        (LossKind::SigmoidBce, 41, 1),
        (LossKind::SigmoidBce, 41, 4),
        (LossKind::Mse, 37, 3),
        (LossKind::Mse, 20, 1),
        (LossKind::Mae, 37, 3),
        (LossKind::Mae, 20, 1),
    ];
    for (kind, rows, cols) in cases {
        for with_grad in [true, false] {
            check_loss(&mut p, &mut rng, kind, rows, cols, with_grad);
        }
    }
}

/// The last layer's product with its softmax cross-entropy in the epilogue (one workgroup)
/// against the CPU's product followed by its loss: logits, gradient and the accumulator, in
/// every form, with and without bias and gradient; one row, odd sizes, rows over one 64-row
/// tile and over the 256 invocations that share the rows, and a row one tile wide.
#[test]
fn matmul_with_softmax_cross_entropy_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(12);
    let sizes = [
        (1, 1, 2),
        (1, 17, 10),
        (33, 5, 3),
        (65, 128, 10),
        (300, 19, 17),
        (128, 128, 64),
    ];
    for &(m, k, n) in &sizes {
        for (ta, tb) in FORMS {
            for (bias, with_grad) in [(true, true), (false, true), (true, false)] {
                let dims = MatmulDims {
                    m,
                    k,
                    n,
                    trans_a: ta,
                    trans_b: tb,
                };
                let a = p.f32s(&uniform(&mut rng, m * k, -1.0, 1.0));
                let b = p.f32s(&uniform(&mut rng, k * n, -1.0, 1.0));
                let bias = bias.then(|| p.f32s(&uniform(&mut rng, n, -1.0, 1.0)));
                let labels: Vec<u32> = (0..m).map(|_| rng.below(n) as u32).collect();
                let labels = p.u32s(&labels);
                let c = p.out(m * n);
                let grad = with_grad.then(|| p.out(m * n + 1).slice(1, m * n));
                let acc = p.f32s(&[0.25, 0.5, 7.0]).slice(0, ACC_LEN);
                p.run(|g| Matmul {
                    a: pick(a, g),
                    b: pick(b, g),
                    bias: bias.map(|x| pick(x, g)),
                    c: pick(c, g),
                    dims,
                    epilogue: Epilogue::SoftmaxCe(SoftmaxCe {
                        labels: pick(labels, g),
                        grad: grad.map(|x| pick(x, g)),
                        acc: pick(acc, g),
                    }),
                    patches: None,
                });
                let what = format!(
                    "matmul + softmax-CE m={m} k={k} n={n} trans_a={ta} trans_b={tb} bias={} grad={with_grad}",
                    bias.is_some()
                );
                p.check(&format!("{what}: logits"), c, 2e-6 * k as f32, REL);
                p.check(&format!("{what}: accumulated"), acc, 1e-4, 1e-5);
                if let Some(grad) = grad {
                    p.check(&format!("{what}: grad"), grad, 1e-6, REL);
                }
            }
        }
    }
}

/// The shape rule refuses a loss epilogue the kernel cannot run: rows wider than one tile.
#[test]
fn a_loss_epilogue_wider_than_a_tile_is_refused() {
    let mut cpu = CpuBackend::new();
    let (m, k, n) = (4, 3, 65);
    let mut f = |len| cpu.alloc(DType::F32, len, "t").unwrap();
    let (a, b, c, grad) = (f(m * k), f(k * n), f(m * n), f(m * n));
    let acc = f(ACC_LEN);
    let labels = cpu.alloc(DType::U32, m, "labels").unwrap();
    let op = Matmul {
        epilogue: Epilogue::SoftmaxCe(SoftmaxCe {
            labels,
            grad: Some(grad),
            acc,
        }),
        ..Matmul::new(
            a,
            b,
            c,
            MatmulDims {
                m,
                k,
                n,
                trans_a: false,
                trans_b: true,
            },
        )
    };
    let err = wgtrain::ops::run(&mut cpu, op).unwrap_err().to_string();
    assert!(err.contains("n <= 64 columns"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// reductions

#[test]
fn col_sum_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(10);
    for (rows, cols) in [(1, 1), (1000, 70), (33, 3), (7, 130), (0, 5)] {
        let a = p
            .f32s(&uniform(&mut rng, rows * cols + 1, -1.0, 1.0))
            .slice(1, rows * cols);
        let out = p.out(cols + 3).slice(3, cols);
        p.run(|g| ColSum {
            a: pick(a, g),
            rows,
            cols,
            out: pick(out, g),
        });
        p.check(
            &format!("col_sum {rows}x{cols}"),
            out,
            1e-6 * rows.max(1) as f32,
            REL,
        );
    }
    // More column blocks than the grid holds: workgroups loop.
    p.gpu.set_max_workgroups_per_dimension(2);
    let (rows, cols) = (9, 300);
    let a = p.f32s(&uniform(&mut rng, rows * cols, -1.0, 1.0));
    let out = p.out(cols);
    p.run(|g| ColSum {
        a: pick(a, g),
        rows,
        cols,
        out: pick(out, g),
    });
    p.check("col_sum on a capped grid", out, 1e-5, REL);
}

#[test]
fn accumulate_stats_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(11);
    // One slot past the accumulator, which must stay as it is.
    let acc = p.f32s(&[0.5, 1.5, 9.0]);
    for rows in [1000, 1, 257] {
        let stats = p
            .f32s(&uniform(&mut rng, rows * STATS_PER_ROW + 2, 0.0, 2.0))
            .slice(2, rows * STATS_PER_ROW);
        p.run(|g| AccumulateStats {
            stats: pick(stats, g),
            rows,
            acc: pick(acc, g).slice(0, ACC_LEN),
        });
    }
    p.check("accumulator", acc, 1e-4, 1e-5);
}

#[test]
fn sum_of_squares_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(14);
    for n in [1, 255, 256, 257, 100_003] {
        let x = p.f32s(&uniform(&mut rng, n + 3, -1.0, 1.0)).slice(3, n);
        let out = p.out(2).slice(1, 1);
        p.run(|g| SumSquares {
            x: pick(x, g),
            out: pick(out, g),
        });
        p.check(&format!("sum of squares of {n}"), out, 1e-5, 1e-5);
    }
}

#[test]
fn fill_writes_exactly_its_view() {
    let Some(mut p) = Pair::new() else { return };
    let buf = p.f32s(&[1.0; 600]);
    p.run(|g| Fill {
        dst: pick(buf, g).slice(5, 513),
        value: -2.5,
    });
    p.check_exact("fill", buf);
}

// ---------------------------------------------------------------------------------------------
// regularisation and optimizers

#[test]
fn regularize_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(12);
    let n = 1000;
    let mut w = uniform(&mut rng, n + 64, -1.0, 1.0);
    w[64] = 0.0; // sign(0) = 0
    let param = p.f32s(&w).slice(64, n);
    let grad = p.f32s(&uniform(&mut rng, n + 64, -1.0, 1.0)).slice(64, n);
    p.run(|g| Regularize {
        param: pick(param, g),
        grad: pick(grad, g),
        l1: 1e-3,
        l2: 5e-4,
    });
    p.check("regularized gradient", grad, 1e-6, 1e-5);
}

#[test]
fn optimizers_match_cpu_over_several_steps() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(13);
    let n = 3000;
    let mut configs: Vec<OptimizerConfig> = [
        OptimizerKind::Sgd,
        OptimizerKind::Adagrad,
        OptimizerKind::Rmsprop,
        OptimizerKind::Adam,
        OptimizerKind::Adamw,
    ]
    .into_iter()
    .map(OptimizerConfig::new)
    .collect();
    let mut nesterov = OptimizerConfig::new(OptimizerKind::Sgd);
    nesterov.nesterov = true;
    let mut plain = OptimizerConfig::new(OptimizerKind::Sgd);
    plain.momentum = 0.0;
    let mut decayed = OptimizerConfig::new(OptimizerKind::Adam);
    decayed.schedule = Schedule::InverseTime { decay: 0.1 };
    configs.extend([nesterov, plain, decayed]);
    // Each plain, then with penalties (weights [0, 1000), biases after) and clipping fused in.
    let fused = [(None, None), (Some((1e-3, 2e-3, 0.0, 5e-4)), Some(0.5f32))];
    for (cfg, (penalty, clip)) in configs
        .into_iter()
        .flat_map(|c| fused.map(|f| (c.clone(), f)))
    {
        let params = p.f32s(&uniform(&mut rng, n, -1.0, 1.0));
        let grads = p.f32s(&vec![0.0; n]);
        let s1 = p.f32s(&vec![0.0; n]);
        let s2 = p.f32s(&vec![0.0; n]);
        let norm2 = p.out(1);
        for step in 0..5 {
            let g = uniform(&mut rng, n, -1.0, 1.0);
            p.cpu.write_f32(grads.cpu, &g).unwrap();
            p.gpu.write_f32(grads.gpu, &g).unwrap();
            if clip.is_some() {
                p.run(|on| SumSquares {
                    x: pick(grads, on),
                    out: pick(norm2, on),
                });
            }
            let u = cfg.update_params(step);
            p.run(|on| Update {
                params: pick(params, on),
                grads: pick(grads, on),
                state1: pick(s1, on),
                state2: pick(s2, on),
                hyper: u,
                penalty: penalty.map(|(l1w, l2w, l1b, l2b)| Penalty {
                    bias_start: 1000,
                    weights: (l1w, l2w),
                    biases: (l1b, l2b),
                }),
                clip: clip.map(|max_norm| Clip {
                    norm2: pick(norm2, on),
                    max_norm,
                }),
            });
        }
        let what = format!(
            "{:?} (nesterov {}, momentum {}, schedule {:?}, penalty {penalty:?}, clip {clip:?})",
            cfg.kind, cfg.nesterov, cfg.momentum, cfg.schedule
        );
        p.check(&format!("{what} params"), params, ABS, REL);
        p.check(&format!("{what} state 1"), s1, ABS, REL);
        p.check(&format!("{what} state 2"), s2, ABS, REL);
    }
}

// ---------------------------------------------------------------------------------------------
// recording, limits, adapters

#[test]
fn writes_and_reads_keep_the_order_of_recorded_ops() {
    let Some(mut g) = gpu() else { return };
    let x = g.alloc(DType::F32, 1000, "x").unwrap();
    let y = g.alloc(DType::F32, 1000, "y").unwrap();
    let idx = g.alloc(DType::U32, 1, "idx").unwrap();
    g.write_u32(idx, &[0]).unwrap();
    // Recorded: fill x, copy it to y (gather of row 0). Then x is overwritten: the copy must
    // still see the filled values.
    let copy = |affine| Gather {
        src: x,
        idx,
        start: 0,
        rows: 1,
        cols: 1000,
        affine,
        dst: y,
        labels: None,
        shift: None,
    };
    wgtrain::ops::run(&mut g, Fill { dst: x, value: 3.0 }).unwrap();
    wgtrain::ops::run(&mut g, copy((1.0, 0.0))).unwrap();
    g.write_f32(x, &[7.0; 1000]).unwrap();
    assert_eq!(g.read_f32(y).unwrap(), vec![3.0; 1000]);
    assert_eq!(g.read_f32(x).unwrap(), vec![7.0; 1000]);
    // An op recorded after a write sees it.
    wgtrain::ops::run(&mut g, copy((2.0, 1.0))).unwrap();
    assert_eq!(g.read_f32(y).unwrap(), vec![15.0; 1000]);
}

#[test]
fn many_distinct_uniform_blocks_recycle_the_arena() {
    let Some(mut g) = gpu() else { return };
    let x = g.alloc(DType::F32, 5000, "x").unwrap();
    // More distinct uniform blocks than the arena has slots, without a read in between.
    for i in 0..2500 {
        let fill = Fill {
            dst: x.slice(i, 1),
            value: i as f32,
        };
        wgtrain::ops::run(&mut g, fill).unwrap();
    }
    let got = g.read_f32(x.slice(0, 2500)).unwrap();
    assert_eq!(got, (0..2500).map(|i| i as f32).collect::<Vec<_>>());
}

#[test]
fn an_allocation_over_the_binding_limit_is_a_device_limit_error() {
    let Some(mut g) = gpu() else { return };
    match g.alloc(DType::F32, u32::MAX as usize, "huge") {
        Err(Error::DeviceLimit {
            limit, needed, max, ..
        }) => {
            assert!(limit == "max_storage_buffer_binding_size" || limit == "max_buffer_size");
            assert!(needed > max);
        }
        other => panic!("expected a DeviceLimit error, got {other:?}"),
    }
}

#[test]
fn adapters_are_listed_with_their_limits() {
    let Some(g) = gpu() else { return };
    let list = list_adapters();
    assert!(!list.is_empty());
    let name = g.adapter().unwrap();
    assert!(
        list.iter().any(|a| name.starts_with(&a.name)),
        "{name} not in {list:?}"
    );
    for a in &list {
        assert!(
            a.max_storage_buffer_binding_size > 0 && a.max_compute_workgroups_per_dimension > 0
        );
    }
}

#[test]
fn backend_choice_opens_the_gpu_or_falls_back() {
    use wgtrain::backend::{BackendChoice, create};
    let have_gpu = gpu().is_some();
    let (b, notice) = create(BackendChoice::Auto, None).unwrap();
    if !have_gpu {
        assert_eq!(b.name(), "cpu");
        assert_eq!(
            notice.as_deref(),
            Some("note: no GPU adapter found; training on the CPU (--backend cpu to silence this)")
        );
        match create(BackendChoice::Gpu, None) {
            Err(e @ Error::NoAdapter(_)) => assert!(
                e.to_string()
                    .ends_with("(use --backend cpu to train on the CPU)")
            ),
            Err(e) => panic!("expected NoAdapter, got {e}"),
            Ok(_) => panic!("a GPU opened without an adapter"),
        }
        return;
    }
    // Auto takes a hardware GPU; with only a software rasteriser (lavapipe) it keeps to the
    // faster CPU backend and says so; naming the adapter opens it either way.
    let software = wgtrain::backend::gpu::list_adapters()
        .iter()
        .all(|a| a.device_type == "Cpu");
    if software {
        assert_eq!(b.name(), "cpu");
        let n = notice.expect("a notice explains the choice");
        assert!(n.contains("software") && n.contains("--backend gpu"), "{n}");
        let (b, _) = create(BackendChoice::Auto, Some(0)).unwrap();
        assert_eq!(b.name(), "gpu");
    } else {
        assert_eq!((b.name(), notice), ("gpu", None));
    }
    let (b, notice) = create(BackendChoice::Gpu, None).unwrap();
    assert_eq!((b.name(), notice), ("gpu", None));
    match create(BackendChoice::Gpu, Some(999)) {
        Err(e @ Error::Config(_)) => assert!(e.to_string().contains("--adapter 999")),
        Err(e) => panic!("expected a Config error, got {e}"),
        Ok(_) => panic!("adapter 999 opened"),
    }
}

// ---------------------------------------------------------------------------------------------
// convolution (im2col, col2im), pooling, flattening

/// Kernels 1, 3 and 5 (and a non-square one); strides 1 and 2; padding 0, 1 and "same";
/// 1, 3 and 17 channels; batches of 1 and 2; 8x8, 28x28 and odd-sized images.
fn conv_windows() -> Vec<Window> {
    let mut v = Vec::new();
    let images = [(8, 8), (28, 28), (9, 7)];
    let channels = [1, 3, 17];
    let mut i = 0;
    for (kh, kw) in [(1, 1), (3, 3), (5, 5), (3, 2)] {
        for (sh, sw) in [(1, 1), (2, 2)] {
            for pad in [0, 1, usize::MAX] {
                let (h, w) = images[i % images.len()];
                let c = channels[i / 2 % channels.len()];
                let batch = 1 + i % 2;
                i += 1;
                // "same": (k - 1) / 2 on each side.
                let (ph, pw) = if pad == usize::MAX {
                    ((kh - 1) / 2, (kw - 1) / 2)
                } else {
                    (pad.min(kh - 1), pad.min(kw - 1))
                };
                v.push(Window {
                    batch,
                    h,
                    w,
                    c,
                    kh,
                    kw,
                    sh,
                    sw,
                    ph,
                    pw,
                });
            }
        }
    }
    v
}

#[test]
fn im2col_and_col2im_match_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(20);
    for g in conv_windows() {
        let x = p
            .f32s(&uniform(&mut rng, g.input_len() + 3, -1.0, 1.0))
            .slice(3, g.input_len());
        let n = g.positions() * g.patch();
        let cols = p.out(n + 1).slice(1, n);
        p.run(|on| Im2Row {
            x: pick(x, on),
            cols: pick(cols, on),
            g,
        });
        p.check_exact(&format!("im2col {g:?}"), cols);
        let dcols = p.f32s(&uniform(&mut rng, n, -1.0, 1.0));
        let dx = p.out(g.input_len() + 2).slice(2, g.input_len());
        p.run(|on| Row2Im {
            cols: pick(dcols, on),
            x: pick(dx, on),
            g,
        });
        // Both sum each input's entries in the order of their positions.
        p.check(&format!("col2im {g:?}"), dx, 1e-6, 1e-6);
    }
}

/// Implicit GEMM: a convolution's forward reading its patches from the images in place
/// (`Matmul::patches`), with bias and ReLU, on every kernel and split over k, against the
/// CPU's (which builds the patch matrix), over every window of `conv_windows`.
#[test]
fn implicit_patches_convolution_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(22);
    let variants = [
        (MatmulTiles::Fine, Some(1)),
        (MatmulTiles::Small, Some(1)),
        (MatmulTiles::Big, Some(1)),
        (MatmulTiles::Small, Some(3)),
    ];
    for (i, g) in conv_windows().into_iter().enumerate() {
        let (tiles, split) = variants[i % variants.len()];
        p.gpu.set_matmul_tiles(tiles);
        p.gpu.set_matmul_split(split);
        let out = [1, 5, 33][i % 3];
        let x = p
            .f32s(&uniform(&mut rng, g.input_len() + 3, -1.0, 1.0))
            .slice(3, g.input_len());
        let w = p.f32s(&uniform(&mut rng, out * g.patch(), -1.0, 1.0));
        let bias = p.f32s(&uniform(&mut rng, out, -1.0, 1.0));
        let z = p.out(g.positions() * out + 1).slice(1, g.positions() * out);
        let dims = MatmulDims {
            m: g.positions(),
            k: g.patch(),
            n: out,
            trans_a: false,
            trans_b: true,
        };
        p.run(|on| Matmul {
            bias: Some(pick(bias, on)),
            epilogue: Epilogue::Act(Activation::Relu),
            patches: Some(Patches::A(g)),
            ..Matmul::new(pick(x, on), pick(w, on), pick(z, on), dims)
        });
        let what = format!("implicit conv {g:?} out {out} {tiles:?} split {split:?}");
        p.check(&what, z, 2e-6 * g.patch() as f32, REL);
    }
}

/// Implicit GEMM of b: a convolution's weight gradient dZᵀ · patches with the patches read
/// from the layer's input in place (`Patches::B`, where the patch matrix would not fit one
/// buffer), with the bias gradient as column sums beside it, on every kernel and split over
/// k, against the CPU's, over every window of `conv_windows`.
#[test]
fn implicit_patches_weight_gradient_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(23);
    let variants = [
        (MatmulTiles::Fine, Some(1)),
        (MatmulTiles::Small, Some(1)),
        (MatmulTiles::Big, Some(1)),
        (MatmulTiles::Small, Some(3)),
        (MatmulTiles::Fine, Some(2)),
    ];
    for (i, g) in conv_windows().into_iter().enumerate() {
        let (tiles, split) = variants[i % variants.len()];
        p.gpu.set_matmul_tiles(tiles);
        p.gpu.set_matmul_split(split);
        let out = [1, 5, 33][i % 3];
        let x = p
            .f32s(&uniform(&mut rng, g.input_len() + 2, -1.0, 1.0))
            .slice(2, g.input_len());
        let dz = p.f32s(&uniform(&mut rng, g.positions() * out, -1.0, 1.0));
        let dw = p.out(out * g.patch() + 1).slice(1, out * g.patch());
        let db = p.out(out);
        let dims = MatmulDims {
            m: out,
            k: g.positions(),
            n: g.patch(),
            trans_a: true,
            trans_b: false,
        };
        p.run(|on| Matmul {
            epilogue: Epilogue::ColSums(pick(db, on)),
            patches: Some(Patches::B(g)),
            ..Matmul::new(pick(dz, on), pick(x, on), pick(dw, on), dims)
        });
        let what = format!("implicit dW {g:?} out {out} {tiles:?} split {split:?}");
        p.check(&what, dw, 2e-6 * g.positions() as f32, REL);
        p.check(
            &format!("{what} bias"),
            db,
            2e-6 * g.positions() as f32,
            REL,
        );
    }
}

#[test]
fn pooling_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(21);
    let mut i = 0;
    for (h, w) in [(8, 8), (28, 28), (9, 7)] {
        for c in [1, 3, 17] {
            for (k, s) in [(2, 2), (3, 3), (3, 2), (2, 1)] {
                let g = Window {
                    batch: 1 + i % 2,
                    h,
                    w,
                    c,
                    kh: k,
                    kw: k,
                    sh: s,
                    sw: s,
                    ph: 0,
                    pw: 0,
                };
                i += 1;
                let what = format!("{g:?}");
                let x = p.f32s(&uniform(&mut rng, g.input_len(), -1.0, 1.0));
                let out = g.positions() * c;
                let y = p.out(out + 1).slice(1, out);
                let argmax = p.labels_out(out);
                p.run(|on| MaxPool {
                    x: pick(x, on),
                    y: pick(y, on),
                    argmax: pick(argmax, on),
                    g,
                });
                p.check_exact(&format!("max pool {what}"), y);
                p.check_labels(&format!("max pool argmax {what}"), argmax);
                let dy = p.f32s(&uniform(&mut rng, out, -1.0, 1.0));
                let dx = p.out(g.input_len());
                p.run(|on| MaxPoolGrad {
                    dy: pick(dy, on),
                    argmax: pick(argmax, on),
                    dx: pick(dx, on),
                    g,
                });
                p.check_exact(&format!("max pool backward {what}"), dx);
                let ya = p.out(out);
                p.run(|on| AvgPool {
                    x: pick(x, on),
                    y: pick(ya, on),
                    g,
                });
                p.check(&format!("average pool {what}"), ya, 1e-6, 1e-5);
                let dxa = p.out(g.input_len());
                p.run(|on| AvgPoolGrad {
                    dy: pick(dy, on),
                    dx: pick(dxa, on),
                    g,
                });
                p.check(&format!("average pool backward {what}"), dxa, 1e-6, 1e-5);
            }
        }
    }
}

#[test]
fn flatten_matches_cpu_both_ways() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(22);
    for (batch, h, w, c) in [(1, 1, 1, 1), (2, 7, 5, 3), (3, 28, 28, 17)] {
        let n = batch * h * w * c;
        let x = p.f32s(&uniform(&mut rng, n + 1, -1.0, 1.0)).slice(1, n);
        let y = p.out(n);
        let back = p.out(n);
        for (src, dst, inverse) in [(x, y, false), (y, back, true)] {
            p.run(|on| Flatten {
                x: pick(src, on),
                y: pick(dst, on),
                batch,
                h,
                w,
                c,
                inverse,
            });
            p.check_exact(
                &format!("flatten {batch}x{h}x{w}x{c} inverse {inverse}"),
                dst,
            );
        }
        // Unflattening undoes flattening.
        let (a, b) = (
            p.cpu.read_f32(x.cpu).unwrap(),
            p.cpu.read_f32(back.cpu).unwrap(),
        );
        assert_eq!(a, b);
    }
}
