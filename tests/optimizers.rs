//! Optimizer updates of the CPU reference backend against arithmetic done by hand.
//!
//! Every test runs a few steps of the `Update` op on three parameters with gradients chosen
//! per step, the step's hyper-parameters coming from `OptimizerConfig::update_params` (so the
//! decayed learning rate and Adam's bias corrections are covered too). Expected values are
//! either literal numbers derived in the comments or straightforward f64 formulas written out
//! here independently of `src/ops/optimizer.rs`.

use wgtrain::backend::cpu::CpuBackend;
use wgtrain::backend::{Backend, Buf, DType};
use wgtrain::ops::Update;
use wgtrain::optim::{OptimizerConfig, OptimizerKind, Schedule};

const P0: [f32; 3] = [1.0, -2.0, 0.5];
/// Gradients of steps 1, 2 and 3.
const G: [[f32; 3]; 3] = [[0.5, -1.0, 2.0], [1.0, 0.5, -0.5], [-0.5, 0.25, 1.0]];

/// The optimizer's buffers on a backend.
struct Run {
    b: CpuBackend,
    params: Buf,
    grads: Buf,
    state1: Buf,
    state2: Buf,
}

impl Run {
    fn new(p0: &[f32]) -> Run {
        let mut b = CpuBackend::new();
        let n = p0.len();
        let params = b.alloc(DType::F32, n, "params").unwrap();
        b.write_f32(params, p0).unwrap();
        let grads = b.alloc(DType::F32, n, "grads").unwrap();
        let state1 = b.alloc(DType::F32, n, "state1").unwrap();
        let state2 = b.alloc(DType::F32, n, "state2").unwrap();
        Run {
            b,
            params,
            grads,
            state1,
            state2,
        }
    }

    /// Update `step` (0-based) with gradient `g`; returns the parameters after it.
    fn step(&mut self, cfg: &OptimizerConfig, step: u64, g: &[f32]) -> Vec<f32> {
        self.b.write_f32(self.grads, g).unwrap();
        let u = cfg.update_params(step);
        let update = Update {
            params: self.params,
            grads: self.grads,
            state1: self.state1,
            state2: self.state2,
            hyper: u,
            penalty: None,
            clip: None,
        };
        wgtrain::ops::run(&mut self.b, update).unwrap();
        self.b.read_f32(self.params).unwrap()
    }

    /// The parameters after each of the steps in `grads`.
    fn steps(cfg: &OptimizerConfig, p0: &[f32], grads: &[[f32; 3]]) -> (Run, Vec<Vec<f32>>) {
        let mut run = Run::new(p0);
        let after = grads
            .iter()
            .enumerate()
            .map(|(t, g)| run.step(cfg, t as u64, g))
            .collect();
        (run, after)
    }
}

/// f32 results against exact expectations: a few f32 ulps of the values involved.
fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-6 * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}\ngot:  {got:?}\nwant: {want:?}"
        );
    }
}

fn config(kind: OptimizerKind, lr: f32) -> OptimizerConfig {
    OptimizerConfig {
        lr,
        ..OptimizerConfig::new(kind)
    }
}

// ---------------------------------------------------------------------------------------------
// SGD, PyTorch's convention: buf = μ·buf + g; p -= lr·buf, or p -= lr·(g + μ·buf) for Nesterov.

#[test]
fn sgd_plain() {
    let cfg = OptimizerConfig {
        momentum: 0.0,
        ..config(OptimizerKind::Sgd, 0.1)
    };
    let (_, after) = Run::steps(&cfg, &P0, &G[..2]);
    // p1 = p0 - 0.1·g1 = [1 - 0.05, -2 + 0.1, 0.5 - 0.2]
    assert_close("step 1", &after[0], &[0.95, -1.9, 0.3]);
    // p2 = p1 - 0.1·g2 = [0.95 - 0.1, -1.9 - 0.05, 0.3 + 0.05]
    assert_close("step 2", &after[1], &[0.85, -1.95, 0.35]);
}

#[test]
fn sgd_momentum() {
    let cfg = OptimizerConfig {
        momentum: 0.9,
        ..config(OptimizerKind::Sgd, 0.1)
    };
    let (mut run, after) = Run::steps(&cfg, &P0, &G);
    // buf1 = g1 = [0.5, -1, 2]                      (the buffer starts at the first gradient)
    // p1   = p0 - 0.1·buf1 = [0.95, -1.9, 0.3]
    assert_close("step 1", &after[0], &[0.95, -1.9, 0.3]);
    // buf2 = 0.9·buf1 + g2 = [0.45 + 1, -0.9 + 0.5, 1.8 - 0.5] = [1.45, -0.4, 1.3]
    // p2   = p1 - 0.1·buf2 = [0.95 - 0.145, -1.9 + 0.04, 0.3 - 0.13]
    assert_close("step 2", &after[1], &[0.805, -1.86, 0.17]);
    // buf3 = 0.9·buf2 + g3 = [1.305 - 0.5, -0.36 + 0.25, 1.17 + 1] = [0.805, -0.11, 2.17]
    // p3   = p2 - 0.1·buf3 = [0.805 - 0.0805, -1.86 + 0.011, 0.17 - 0.217]
    assert_close("step 3", &after[2], &[0.7245, -1.849, -0.047]);
    let buf = run.b.read_f32(run.state1).unwrap();
    assert_close("momentum buffer", &buf, &[0.805, -0.11, 2.17]);
}

#[test]
fn sgd_nesterov() {
    let cfg = OptimizerConfig {
        momentum: 0.9,
        nesterov: true,
        ..config(OptimizerKind::Sgd, 0.1)
    };
    let (_, after) = Run::steps(&cfg, &P0, &G);
    // The buffers are those of plain momentum: [0.5, -1, 2], [1.45, -0.4, 1.3], [0.805, -0.11, 2.17].
    // step1 = g1 + 0.9·buf1 = 1.9·g1 = [0.95, -1.9, 3.8];        p1 = p0 - 0.1·step1
    assert_close("step 1", &after[0], &[0.905, -1.81, 0.12]);
    // step2 = g2 + 0.9·buf2 = [1 + 1.305, 0.5 - 0.36, -0.5 + 1.17] = [2.305, 0.14, 0.67]
    // p2 = [0.905 - 0.2305, -1.81 - 0.014, 0.12 - 0.067]
    assert_close("step 2", &after[1], &[0.6745, -1.824, 0.053]);
    // step3 = g3 + 0.9·buf3 = [-0.5 + 0.7245, 0.25 - 0.099, 1 + 1.953] = [0.2245, 0.151, 2.953]
    // p3 = [0.6745 - 0.02245, -1.824 - 0.0151, 0.053 - 0.2953]
    assert_close("step 3", &after[2], &[0.65205, -1.8391, -0.2423]);
}

// ---------------------------------------------------------------------------------------------
// Adaptive methods. Reference: the textbook rules in f64, written out for each.

/// Adagrad: cache += g²; p -= lr·g / (√cache + ε).
fn adagrad_reference(lr: f64, eps: f64, grads: &[[f32; 3]]) -> Vec<Vec<f64>> {
    let mut p: Vec<f64> = P0.iter().map(|&v| v as f64).collect();
    let mut cache = [0.0f64; 3];
    let mut out = Vec::new();
    for g in grads {
        for i in 0..3 {
            let g = g[i] as f64;
            cache[i] += g * g;
            p[i] -= lr * g / (cache[i].sqrt() + eps);
        }
        out.push(p.clone());
    }
    out
}

#[test]
fn adagrad() {
    let cfg = config(OptimizerKind::Adagrad, 0.1);
    assert_eq!(cfg.eps, 1e-7);
    let (mut run, after) = Run::steps(&cfg, &P0, &G);
    // Step 1: cache = g1², so p1 = p0 - 0.1·g1/|g1| = p0 - 0.1·sign(g1) (ε shifts it by 1e-8).
    assert_close("step 1", &after[0], &[0.9, -1.9, 0.4]);
    // Step 2, element 0: cache = 0.25 + 1 = 1.25, p2 = 0.9 - 0.1·1/√1.25 = 0.9 - 0.0894427191.
    assert_close("step 2[0]", &after[1][..1], &[0.8105572809]);
    let want = adagrad_reference(0.1, 1e-7, &G);
    for (t, (got, want)) in after.iter().zip(&want).enumerate() {
        assert_close(&format!("step {}", t + 1), got, want);
    }
    // The cache after three steps: Σ g² = [0.25+1+0.25, 1+0.25+0.0625, 4+0.25+1].
    let cache = run.b.read_f32(run.state1).unwrap();
    assert_close("cache", &cache, &[1.5, 1.3125, 5.25]);
}

/// RMSprop: s = ρ·s + (1-ρ)·g²; p -= lr·g / (√s + ε).
fn rmsprop_reference(lr: f64, rho: f64, eps: f64, grads: &[[f32; 3]]) -> Vec<Vec<f64>> {
    let mut p: Vec<f64> = P0.iter().map(|&v| v as f64).collect();
    let mut s = [0.0f64; 3];
    let mut out = Vec::new();
    for g in grads {
        for i in 0..3 {
            let g = g[i] as f64;
            s[i] = rho * s[i] + (1.0 - rho) * g * g;
            p[i] -= lr * g / (s[i].sqrt() + eps);
        }
        out.push(p.clone());
    }
    out
}

#[test]
fn rmsprop() {
    let cfg = config(OptimizerKind::Rmsprop, 0.01);
    // RMSprop's ρ is carried in beta2 (0.9 by default).
    assert_eq!(cfg.beta2, 0.9);
    let (mut run, after) = Run::steps(&cfg, &P0, &G);
    // Step 1: s = 0.1·g1², so g/√s = sign(g)/√0.1 = 3.16227766·sign(g), times lr = 0.01:
    // p1 = p0 - 0.0316227766·sign(g1).
    assert_close(
        "step 1",
        &after[0],
        &[0.9683772234, -1.9683772234, 0.4683772234],
    );
    let want = rmsprop_reference(0.01, 0.9, 1e-7, &G);
    for (t, (got, want)) in after.iter().zip(&want).enumerate() {
        assert_close(&format!("step {}", t + 1), got, want);
    }
    // s after three steps, element 0: 0.9·(0.9·0.025 + 0.1) + 0.1·0.25 = 0.13525.
    let s = run.b.read_f32(run.state1).unwrap();
    assert_close("s[0]", &s[..1], &[0.13525]);
}

/// Adam (AdamW with `wd > 0`): m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
/// p = p·(1 - lr·wd) - lr·(m / (1-β1ᵗ)) / (√(v / (1-β2ᵗ)) + ε), t counted from 1.
fn adam_reference(lr: f64, wd: f64, grads: &[[f32; 3]]) -> Vec<Vec<f64>> {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut p: Vec<f64> = P0.iter().map(|&v| v as f64).collect();
    let (mut m, mut v) = ([0.0f64; 3], [0.0f64; 3]);
    let mut out = Vec::new();
    for (t, g) in grads.iter().enumerate() {
        let t = (t + 1) as i32;
        for i in 0..3 {
            let g = g[i] as f64;
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            let m_hat = m[i] / (1.0 - b1.powi(t));
            let v_hat = v[i] / (1.0 - b2.powi(t));
            p[i] = p[i] * (1.0 - lr * wd) - lr * m_hat / (v_hat.sqrt() + eps);
        }
        out.push(p.clone());
    }
    out
}

#[test]
fn adam_with_bias_corrections() {
    let cfg = config(OptimizerKind::Adam, 0.1);
    assert_eq!((cfg.beta1, cfg.beta2, cfg.eps), (0.9, 0.999, 1e-8));
    // The host computes 1 - βᵗ with t = step + 1.
    let u = cfg.update_params(0);
    assert_close(
        "corrections at t=1",
        &[u.bias_correction1, u.bias_correction2],
        &[0.1, 0.001],
    );
    let u = cfg.update_params(1);
    assert_close(
        "corrections at t=2",
        &[u.bias_correction1, u.bias_correction2],
        &[0.19, 0.001999],
    );

    let (mut run, after) = Run::steps(&cfg, &P0, &G);
    // Step 1: m = 0.1·g, v = 0.001·g²; corrected m̂ = g, v̂ = g², so the step is lr·sign(g).
    // (Without the corrections it would be 0.1·0.1·g / (√0.001·|g|) = 0.316·sign(g).)
    assert_close("step 1", &after[0], &[0.9, -1.9, 0.4]);
    // Step 2, element 0 (g1 = 0.5, g2 = 1):
    //   m = 0.9·0.05 + 0.1·1 = 0.145,          m̂ = 0.145 / 0.19 = 0.763157895
    //   v = 0.999·0.00025 + 0.001·1 = 0.00124975, v̂ = 0.00124975 / 0.001999 = 0.625187594
    //   p2 = 0.9 - 0.1·0.763157895 / 0.790688051 = 0.9 - 0.0965181994 = 0.8034818006
    assert_close("step 2[0]", &after[1][..1], &[0.8034818006]);
    let want = adam_reference(0.1, 0.0, &G);
    for (t, (got, want)) in after.iter().zip(&want).enumerate() {
        assert_close(&format!("step {}", t + 1), got, want);
    }
    // The moments after three steps, element 0.
    //   m = 0.9·0.145 - 0.1·0.5 = 0.0805;  v = 0.999·0.00124975 + 0.001·0.25 = 0.00149850025
    let m = run.b.read_f32(run.state1).unwrap();
    let v = run.b.read_f32(run.state2).unwrap();
    assert_close("m[0], v[0]", &[m[0], v[0]], &[0.0805, 0.00149850025]);
}

#[test]
fn adamw_decays_weights_decoupled_from_the_gradient() {
    let cfg = OptimizerConfig {
        weight_decay: 0.1,
        ..config(OptimizerKind::Adamw, 0.1)
    };
    let (_, after) = Run::steps(&cfg, &P0, &G);
    // Step 1: p1 = p0·(1 - 0.1·0.1) - 0.1·sign(g1) = [0.99 - 0.1, -1.98 + 0.1, 0.495 - 0.1].
    // (Decay folded into the gradient, Adam-style, would be normalised away by v̂ instead.)
    assert_close("step 1", &after[0], &[0.89, -1.88, 0.395]);
    let want = adam_reference(0.1, 0.1, &G);
    for (t, (got, want)) in after.iter().zip(&want).enumerate() {
        assert_close(&format!("step {}", t + 1), got, want);
    }

    // A parameter with a zero gradient only decays: p_t = p0·0.99ᵗ.
    let zero = [[0.0f32; 3]; 3];
    let (_, after) = Run::steps(&cfg, &P0, &zero);
    assert_close("decay only", &after[2], &[0.970299, -1.940598, 0.4851495]);
    // Plain Adam leaves it alone.
    let (_, after) = Run::steps(&config(OptimizerKind::Adam, 0.1), &P0, &zero);
    assert_close("adam, zero gradient", &after[2], &[1.0, -2.0, 0.5]);
}

/// ε is added to the root, as in PyTorch (`g / (√v + ε)`, not `g / √(v + ε)`): pinned with an ε
/// large enough to show, on the first step where √v (or √v̂) is |g|.
#[test]
fn eps_is_added_after_the_square_root() {
    // p1 = p0 - 0.1·g / (|g| + 0.5) = [1 - 0.05/1, -2 + 0.1/1.5, 0.5 - 0.2/2.5]
    let want = [0.95, -1.9333333333, 0.42];
    for kind in [OptimizerKind::Adagrad, OptimizerKind::Adam] {
        let cfg = OptimizerConfig {
            eps: 0.5,
            ..config(kind, 0.1)
        };
        let (_, after) = Run::steps(&cfg, &P0, &G[..1]);
        assert_close(&format!("{kind:?}"), &after[0], &want);
    }
}

// ---------------------------------------------------------------------------------------------
// The learning-rate schedule lr_t = lr / (1 + decay·t), t the 0-based update.

#[test]
fn lr_decay_schedule() {
    let cfg = OptimizerConfig {
        schedule: Schedule::InverseTime { decay: 0.5 },
        momentum: 0.0,
        ..config(OptimizerKind::Sgd, 0.1)
    };
    // 0.1/1, 0.1/1.5, 0.1/2, 0.1/2.5
    let lrs: Vec<f32> = (0..4).map(|t| cfg.update_params(t).lr).collect();
    assert_close("lr_t", &lrs, &[0.1, 0.0666666667, 0.05, 0.04]);
    let at: Vec<f32> = (0..4).map(|t| cfg.lr_at(t)).collect();
    assert_eq!(at, lrs);

    // Three SGD steps with g = 1: p3 = p0 - (0.1 + 0.0666667 + 0.05) = p0 - 0.2166667.
    let ones = [[1.0f32; 3]; 3];
    let (_, after) = Run::steps(&cfg, &P0, &ones);
    assert_close(
        "decayed sgd",
        &after[2],
        &[0.7833333333, -2.2166666667, 0.2833333333],
    );

    // Decay applies to Adam's step too: with a constant gradient, m̂/√v̂ = sign(g) at every
    // step, so the update of step t is exactly lr_t·sign(g) (up to ε).
    let cfg = OptimizerConfig {
        schedule: Schedule::InverseTime { decay: 0.5 },
        ..config(OptimizerKind::Adam, 0.1)
    };
    let (_, after) = Run::steps(&cfg, &P0, &ones);
    assert_close(
        "decayed adam",
        &after[2],
        &[0.7833333333, -2.2166666667, 0.2833333333],
    );
}

/// The update runs over views of the flat buffers: it must touch exactly their elements.
#[test]
fn update_touches_only_its_views() {
    let mut b = CpuBackend::new();
    let n = 8;
    let bufs: Vec<Buf> = (0..4)
        .map(|_| b.alloc(DType::F32, n, "flat").unwrap())
        .collect();
    let init: Vec<f32> = (0..n).map(|i| i as f32).collect();
    for &buf in &bufs {
        b.write_f32(buf, &init).unwrap();
    }
    let view = |buf: Buf| buf.slice(2, 3);
    let cfg = config(OptimizerKind::Adam, 0.1);
    let update = Update {
        params: view(bufs[0]),
        grads: view(bufs[1]),
        state1: view(bufs[2]),
        state2: view(bufs[3]),
        hyper: cfg.update_params(0),
        penalty: None,
        clip: None,
    };
    wgtrain::ops::run(&mut b, update).unwrap();
    let p = b.read_f32(bufs[0]).unwrap();
    // Outside the views nothing changes, in any of the four buffers; inside, the parameters move.
    for i in (0..2).chain(5..n) {
        for (k, &buf) in bufs.iter().enumerate() {
            assert_eq!(b.read_f32(buf).unwrap()[i], i as f32, "buffer {k}[{i}]");
        }
    }
    for (i, &v) in p.iter().enumerate().take(5).skip(2) {
        assert_ne!(v, i as f32, "params[{i}] not updated");
    }
}
