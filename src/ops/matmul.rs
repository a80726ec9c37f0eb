//! Matrix products: `c = op(a) · op(b) (+ bias)` in the forms the network uses (A·B, Aᵀ·B,
//! A·Bᵀ; Aᵀ·Bᵀ too), with an optional epilogue that fuses the op after the product into it:
//! the activation of a Dense layer, the activation's derivative of a backward product, the
//! bias gradient beside the weight gradient, or the softmax cross-entropy of the last layer.
//! Column sums ([`super::ColSum`]) are in `reduce.rs`.

use super::{Access, Loss, OpLabel, Rules, disjoint, distinct, need, push_opt, words};
use crate::Error;
use crate::Result;
use crate::backend::cpu::CpuMem;
use crate::backend::{Buf, DType};
use crate::model::Activation;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};

/// `c = op(a) · op(b)` with `op` a transpose where asked; `c` is `(m, n)`, the inner size `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulDims {
    /// Rows of `c` (and of `op(a)`).
    pub m: usize,
    /// The inner size, summed over: columns of `op(a)`, rows of `op(b)`.
    pub k: usize,
    /// Columns of `c` (and of `op(b)`).
    pub n: usize,
    /// `a` is stored `(k, m)` and used transposed.
    pub trans_a: bool,
    /// `b` is stored `(n, k)` and used transposed.
    pub trans_b: bool,
}

/// What runs on the product before it is stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Epilogue {
    /// The product (plus bias) as it is.
    None,
    /// `c = f(product + bias)` for an elementwise activation `f` (not softmax, which needs
    /// whole rows): a Dense layer and the activation after it.
    Act(Activation),
    /// `c = product ⊙ f'(x)` with the derivative read through the activation's output
    /// `y = f(x)`, y: (m, n): the input gradient of a Dense layer carried back through the
    /// activation before it.
    ActGrad {
        /// The activation whose derivative is applied; not softmax.
        act: Activation,
        /// The activation's output `f(x)`, (m, n): every derivative here is a function of it.
        y: Buf,
    },
    /// Beside the product, `sums = Σ_rows a` over `a` as stored (k, m), sums: (m,): a Dense
    /// layer's bias gradient Σ dY beside its weight gradient dYᵀ·X. Needs `trans_a`.
    ColSums(Buf),
    /// `c` as it is, then its rows' softmax cross-entropy ([`Matmul::loss`]): the last layer's
    /// logits, the loss's gradient and the metrics accumulation in one kernel. Rows of at most
    /// [`LOSS_MAX_COLS`] columns (one tile wide) and at most [`super::loss::LOSS_ACC_MAX_ROWS`]
    /// rows: the GPU runs it in one workgroup, which sums the rows in the order the loss
    /// kernel does.
    SoftmaxCe(SoftmaxCe),
}

/// The operands of a softmax cross-entropy riding on a product ([`Epilogue::SoftmaxCe`]);
/// the logits are the product `c`, (m, n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxCe {
    /// `U32` class labels, (m,), below n.
    pub labels: Buf,
    /// Where to write the gradient of the batch's mean loss with respect to the logits,
    /// (m, n); `None` when only evaluating.
    pub grad: Option<Buf>,
    /// The metrics accumulator `[Σ loss, Σ correct]` the rows are added to, (2,).
    pub acc: Buf,
}

/// The widest row a product with a loss epilogue ([`Epilogue::SoftmaxCe`]) takes: one 64-wide
/// tile.
pub const LOSS_MAX_COLS: usize = 64;

/// `c = op(a) · op(b) (+ bias broadcast over rows)`, then the epilogue.
/// a: (m, k), or (k, m) if trans_a; b: (k, n), or (n, k) if trans_b; bias: (n,) -> c: (m, n).
#[derive(Clone, Debug, PartialEq)]
pub struct Matmul {
    /// Left operand, (m, k), or (k, m) if `dims.trans_a`.
    pub a: Buf,
    /// Right operand, (k, n), or (n, k) if `dims.trans_b`.
    pub b: Buf,
    /// Bias added to every row of the product, (n,); `None` for none.
    pub bias: Option<Buf>,
    /// The result, (m, n); must not share an allocation with any source.
    pub c: Buf,
    /// The shapes and which operands are used transposed.
    pub dims: MatmulDims,
    /// What runs on the product before it is stored in `c`.
    pub epilogue: Epilogue,
    /// Implicit GEMM: one operand is a batch of NHWC images read as their patch matrix.
    pub patches: Option<Patches>,
}

/// Implicit GEMM: the operand of a product that is a batch of NHWC images whose patch matrix
/// under a window ([`super::Im2Row`]'s `cols`) the product reads in place, instead of from an
/// im2col buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patches {
    /// `op(a)` (m = positions, k = patch), untransposed, without column sums: a convolution's
    /// forward `patches · Wᵀ`, where nothing needs the patches afterwards (evaluation,
    /// prediction, and training where the patch matrix would not fit one buffer).
    A(super::Window),
    /// `op(b)` (k = positions, n = patch), untransposed, with `trans_a`: a convolution's weight
    /// gradient `dZᵀ · patches` where the patch matrix would not fit one buffer.
    B(super::Window),
}

impl Patches {
    /// The window whose patches the operand is.
    pub fn window(self) -> super::Window {
        match self {
            Patches::A(g) | Patches::B(g) => g,
        }
    }
}

impl Matmul {
    /// The loss the epilogue runs over the product, where it is [`Epilogue::SoftmaxCe`]: the
    /// very op that runs unfused.
    pub fn loss(&self) -> Option<Loss> {
        match self.epilogue {
            Epilogue::SoftmaxCe(ce) => Some(Loss {
                kind: crate::model::LossKind::SoftmaxCrossEntropy,
                out: self.c,
                targets: ce.labels,
                rows: self.dims.m,
                cols: self.dims.n,
                grad: ce.grad,
                stats: None,
                acc: Some(ce.acc),
            }),
            _ => None,
        }
    }

    /// A plain product (no bias, no epilogue).
    pub fn new(a: Buf, b: Buf, c: Buf, dims: MatmulDims) -> Matmul {
        Matmul {
            a,
            b,
            bias: None,
            c,
            dims,
            epilogue: Epilogue::None,
            patches: None,
        }
    }
}

thread_local! {
    /// The CPU's patch matrix of a product over implicit patches, kept for the next.
    static PATCHES: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

fn form(d: &MatmulDims) -> &'static str {
    match (d.trans_a, d.trans_b) {
        (false, false) => "A·B",
        (true, false) => "Aᵀ·B",
        (false, true) => "A·Bᵀ",
        (true, true) => "Aᵀ·Bᵀ",
    }
}

pub(crate) fn act_name(act: Activation) -> String {
    format!("{act:?}").to_lowercase()
}

impl Rules for Matmul {
    fn operands_mut(&mut self) -> Vec<(&mut Buf, Access)> {
        let mut v = vec![(&mut self.a, Access::Read), (&mut self.b, Access::Read)];
        push_opt(&mut v, &mut self.bias, Access::Read);
        v.push((&mut self.c, Access::Write));
        match &mut self.epilogue {
            Epilogue::ActGrad { y, .. } => v.push((y, Access::Read)),
            Epilogue::ColSums(s) => v.push((s, Access::Write)),
            Epilogue::SoftmaxCe(ce) => {
                v.push((&mut ce.labels, Access::Read));
                push_opt(&mut v, &mut ce.grad, Access::Write);
                v.push((&mut ce.acc, Access::ReadWrite));
            }
            Epilogue::None | Epilogue::Act(_) => {}
        }
        v
    }

    fn check(&self) -> Result<()> {
        let MatmulDims { m, k, n, .. } = self.dims;
        let (a_len, b_len) = (m * k, k * n);
        match self.patches {
            None => {
                need("matmul a", self.a, a_len, DType::F32)?;
                need("matmul b", self.b, b_len, DType::F32)?;
            }
            Some(Patches::A(g)) => {
                g.check()?;
                if self.dims.trans_a || matches!(self.epilogue, Epilogue::ColSums(_)) {
                    return Err(Error::Shape(
                        "a matmul over implicit patches of a takes them untransposed, without \
                         column sums"
                            .into(),
                    ));
                }
                if (m, k) != (g.positions(), g.patch()) {
                    return Err(Error::Shape(format!(
                        "a matmul over the patches of {} needs m = {} and k = {}, not {m} and {k}",
                        g.describe(),
                        g.positions(),
                        g.patch()
                    )));
                }
                need("matmul a (images)", self.a, g.input_len(), DType::F32)?;
                need("matmul b", self.b, b_len, DType::F32)?;
            }
            Some(Patches::B(g)) => {
                g.check()?;
                if self.dims.trans_b || !self.dims.trans_a {
                    return Err(Error::Shape(
                        "a matmul over implicit patches of b takes them untransposed, with a \
                         transposed (a weight gradient dZᵀ · patches)"
                            .into(),
                    ));
                }
                if (k, n) != (g.positions(), g.patch()) {
                    return Err(Error::Shape(format!(
                        "a matmul over the patches of {} needs k = {} and n = {}, not {k} and {n}",
                        g.describe(),
                        g.positions(),
                        g.patch()
                    )));
                }
                need("matmul a", self.a, a_len, DType::F32)?;
                need("matmul b (images)", self.b, g.input_len(), DType::F32)?;
            }
        }
        need("matmul c", self.c, m * n, DType::F32)?;
        distinct("matmul c", self.c, &[self.a, self.b])?;
        if let Some(bias) = self.bias {
            need("matmul bias", bias, n, DType::F32)?;
            distinct("matmul c", self.c, &[bias])?;
        }
        match self.epilogue {
            Epilogue::None => {}
            Epilogue::Act(act) | Epilogue::ActGrad { act, .. } if act == Activation::Softmax => {
                return Err(Error::Shape(
                    "softmax is row-wise and cannot ride on a matmul's tiles".into(),
                ));
            }
            Epilogue::Act(_) => {}
            Epilogue::ActGrad { y, .. } => {
                need("matmul activation output", y, m * n, DType::F32)?;
                distinct("matmul c", self.c, &[y])?;
            }
            Epilogue::ColSums(sums) => {
                if !self.dims.trans_a {
                    return Err(Error::Shape(
                        "matmul column sums are of a stored (k, m): they need trans_a".into(),
                    ));
                }
                need("matmul column sums", sums, m, DType::F32)?;
                distinct("matmul column sums", sums, &[self.a, self.b])?;
                disjoint(
                    "matmul column sums and product",
                    sums.slice(0, m),
                    self.c.slice(0, m * n),
                )?;
            }
            Epilogue::SoftmaxCe(ce) => {
                if n > LOSS_MAX_COLS || m > super::loss::LOSS_ACC_MAX_ROWS {
                    return Err(Error::Shape(format!(
                        "a matmul's softmax cross-entropy epilogue takes rows of n <= \
                         {LOSS_MAX_COLS} columns and m <= {} rows, not ({m}, {n})",
                        super::loss::LOSS_ACC_MAX_ROWS
                    )));
                }
                self.loss().expect("a loss epilogue").check()?;
                for other in [ce.labels, ce.acc].into_iter().chain(ce.grad) {
                    distinct("matmul loss operands", other, &[self.a, self.b])?;
                    if let Some(bias) = self.bias {
                        distinct("matmul loss operands", other, &[bias])?;
                    }
                }
            }
        }
        Ok(())
    }

    /// 2mkn FLOPs; a, b read and c written once, plus the bias and what the epilogue reads or
    /// writes besides the product.
    fn cost(&self) -> OpLabel {
        let d = &self.dims;
        let MatmulDims { m, k, n, .. } = *d;
        let bias = if self.bias.is_some() { " +bias" } else { "" };
        let mut name = format!("matmul {} {m}x{k}x{n}{bias}", form(d));
        // Implicit patches: the images are what is read.
        let (a_len, b_len) = match self.patches {
            None => (m * k, k * n),
            Some(Patches::A(g)) => (g.input_len(), k * n),
            Some(Patches::B(g)) => (m * k, g.input_len()),
        };
        match self.patches {
            Some(Patches::A(_)) => name += " (implicit im2col)",
            Some(Patches::B(_)) => name += " (implicit im2col of b)",
            None => {}
        }
        let mut bytes =
            words(a_len + b_len + m * n) + if self.bias.is_some() { words(n) } else { 0.0 };
        match self.epilogue {
            Epilogue::None => {}
            Epilogue::Act(act) => name += &format!(" +{}", act_name(act)),
            Epilogue::ActGrad { act, .. } => {
                name += &format!(" ×{}'", act_name(act));
                bytes += words(m * n);
            }
            Epilogue::ColSums(_) => {
                name += " +col_sum";
                bytes += words(m);
            }
            Epilogue::SoftmaxCe(_) => {
                // The logits stay in the kernel: what the loss reads besides them.
                name += " +softmax-ce +accumulate";
                bytes += self.loss().expect("a loss epilogue").cost().bytes - words(m * n);
            }
        }
        OpLabel::new(name, 2.0 * (m * k * n) as f64, bytes)
    }

    // a: (m, k) | (k, m)ᵀ, b: (k, n) | (n, k)ᵀ, bias: (n,) -> c: (m, n)
    fn cpu(&self, mem: &mut CpuMem) {
        let MatmulDims { m, k, n, .. } = self.dims;
        let d = self.dims;
        mem.with_dst(self.c, |mem, out| {
            let out = &mut out[..m * n];
            // Implicit patches: the reference builds the patch matrix, as Im2Row does, in a
            // buffer kept from call to call (fresh megabytes per batch cost page faults).
            let mut scratch = PATCHES.take();
            let (a, b) = match self.patches {
                None => (&mem.f32s(self.a)[..m * k], &mem.f32s(self.b)[..k * n]),
                Some(Patches::A(g)) => {
                    scratch.resize(scratch.len().max(m * k), 0.0);
                    let x = &mem.f32s(self.a)[..g.input_len()];
                    super::conv::fill_patches(g, x, &mut scratch[..m * k]);
                    (&scratch[..m * k], &mem.f32s(self.b)[..k * n])
                }
                Some(Patches::B(g)) => {
                    scratch.resize(scratch.len().max(k * n), 0.0);
                    let x = &mem.f32s(self.b)[..g.input_len()];
                    super::conv::fill_patches(g, x, &mut scratch[..k * n]);
                    (&mem.f32s(self.a)[..m * k], &scratch[..k * n])
                }
            };
            let av = if d.trans_a {
                ArrayView2::from_shape((k, m), a).map(|v| v.reversed_axes())
            } else {
                ArrayView2::from_shape((m, k), a)
            }
            .expect("shape checked by the plan");
            let bv = if d.trans_b {
                ArrayView2::from_shape((n, k), b).map(|v| v.reversed_axes())
            } else {
                ArrayView2::from_shape((k, n), b)
            }
            .expect("shape checked by the plan");
            let mut cv =
                ArrayViewMut2::from_shape((m, n), &mut *out).expect("shape checked by the plan");
            // The product first, then the bias: asking gemm to read a bias-filled destination
            // costs ~20% of its speed on the forward shapes, a separate pass ~1%.
            gemm_into(&av, &bv, 0.0, &mut cv);
            if let Some(bias) = self.bias {
                let bias = &mem.f32s(bias)[..n];
                for row in out.chunks_exact_mut(n.max(1)) {
                    row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
                }
            }
            match self.epilogue {
                Epilogue::Act(act) => super::activation::apply(act, out, n),
                Epilogue::ActGrad { act, y } => {
                    super::activation::times_grad(act, &mem.f32s(y)[..m * n], out, n)
                }
                Epilogue::None | Epilogue::ColSums(_) | Epilogue::SoftmaxCe(_) => {}
            }
            PATCHES.set(scratch);
        });
        match self.epilogue {
            // a is stored (k, m): its column sums are the row sums of op(a).
            Epilogue::ColSums(sums) => mem.with_dst(sums, |mem, s| {
                super::reduce::col_sums(&mem.f32s(self.a)[..m * k], k, m, &mut s[..m])
            }),
            // The very reference the unfused loss runs, over the product just stored.
            Epilogue::SoftmaxCe(_) => self.loss().expect("a loss epilogue").cpu(mem),
            _ => {}
        }
    }
}

/// Products smaller than this many FLOPs run on one thread: splitting them costs more in
/// scheduling than the second core gives back.
const PARALLEL_MIN_FLOPS: usize = 1 << 20;

/// Products of more FLOPs than this (2048³ is 2^34) use the crate's own threading: split by
/// output columns, each thread would pack all of `a` itself (64 MiB at 4096³), and at 4096³
/// that measured 135 GFLOP/s against the crate's 157; at 2048³ and below the split wins.
const SPLIT_MAX_FLOPS: usize = 1 << 34;

/// `c = beta · c + a · b` on ndarray views of any strides (so transposes are free).
///
/// The kernel is the `gemm` crate's (the one candle uses), single-threaded; we do the
/// threading ourselves, splitting the output into one block of columns (or rows, when it is
/// taller than wide) per rayon thread. On this MLP's small-batch shapes that beats the crate's
/// own threading (`gemm::Parallelism::Rayon`) by 10-35% (128x784x256: 124 -> 157 GFLOP/s on
/// two cores, a training step at batch 128 +13%) and up to 2048³ (+8%); larger products use
/// the crate's threading. The split depends only on the shape and the thread count, so
/// results are reproducible.
fn gemm_into(a: &ArrayView2<f32>, b: &ArrayView2<f32>, beta: f32, c: &mut ArrayViewMut2<f32>) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "inner dimensions differ");
    assert_eq!(c.dim(), (m, n), "output shape");
    let threads = rayon::current_num_threads();
    let flops = 2 * m * n * k;
    if threads < 2 || flops < PARALLEL_MIN_FLOPS {
        return gemm_serial(a, b, beta, c);
    }
    if flops > SPLIT_MAX_FLOPS {
        return gemm_with(a, b, beta, c, gemm::Parallelism::Rayon(0));
    }
    // Blocks are whole multiples of 16 (the micro-kernels' widths) so no thread gets a ragged
    // sliver of the work.
    let chunk = |len: usize| len.div_ceil(threads).next_multiple_of(16);
    rayon::scope(|s| {
        if n >= m {
            let w = chunk(n);
            for (mut cc, bc) in c
                .axis_chunks_iter_mut(Axis(1), w)
                .zip(b.axis_chunks_iter(Axis(1), w))
            {
                s.spawn(move |_| gemm_serial(a, &bc, beta, &mut cc));
            }
        } else {
            let h = chunk(m);
            for (mut cc, ac) in c
                .axis_chunks_iter_mut(Axis(0), h)
                .zip(a.axis_chunks_iter(Axis(0), h))
            {
                s.spawn(move |_| gemm_serial(&ac, b, beta, &mut cc));
            }
        }
    });
}

/// [`gemm_into`] on the calling thread.
fn gemm_serial(a: &ArrayView2<f32>, b: &ArrayView2<f32>, beta: f32, c: &mut ArrayViewMut2<f32>) {
    gemm_with(a, b, beta, c, gemm::Parallelism::None)
}

/// [`gemm_into`] threaded by the crate as `parallelism` says.
fn gemm_with(
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
    parallelism: gemm::Parallelism,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: only the existing part (the bias) stays.
        c.mapv_inplace(|v| beta * v);
        return;
    }
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the pointers and strides come from ndarray views whose shapes were checked by
    // `gemm_into`, so every element gemm touches lies inside them; `c` is borrowed mutably and
    // does not overlap `a` or `b` (they are shared borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            beta != 0.0,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::backend::cpu::CpuBackend;
    use crate::rng::Rng;

    /// `c = op(a) · op(b) + bias` by the definition, in f64.
    fn reference(a: &[f32], b: &[f32], bias: Option<&[f32]>, d: MatmulDims) -> Vec<f64> {
        let MatmulDims { m, k, n, .. } = d;
        let at = |i: usize, p: usize| {
            if d.trans_a {
                a[p * m + i]
            } else {
                a[i * k + p]
            }
        };
        let bt = |p: usize, j: usize| {
            if d.trans_b {
                b[j * k + p]
            } else {
                b[p * n + j]
            }
        };
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| at(i, p) as f64 * bt(p, j) as f64).sum();
                c[i * n + j] = dot + bias.map_or(0.0, |b| b[j] as f64);
            }
        }
        c
    }

    /// Every transpose form, with and without bias, on sizes 1, odd sizes, sizes that are not
    /// multiples of the 16-wide split, and products large enough to be split over the threads
    /// by columns (wide) and by rows (tall).
    #[test]
    fn matmul_matches_the_definition() {
        let mut rng = Rng::new(7);
        let shapes = [
            (1, 1, 1),
            (1, 5, 3),
            (7, 1, 9),
            (3, 17, 2),
            (33, 65, 17),
            (128, 784, 256),
            (300, 129, 37),
            (37, 129, 300),
            (1, 2048, 700),
        ];
        for (m, k, n) in shapes {
            for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
                for with_bias in [false, true] {
                    let d = MatmulDims {
                        m,
                        k,
                        n,
                        trans_a,
                        trans_b,
                    };
                    let mut rand = |len: usize| -> Vec<f32> {
                        (0..len).map(|_| rng.normal() as f32).collect()
                    };
                    let (a, b, bias) = (rand(m * k), rand(k * n), rand(n));
                    let mut be = CpuBackend::new();
                    let ab = be.alloc(DType::F32, m * k, "ab").unwrap();
                    let bb = be.alloc(DType::F32, k * n, "bb").unwrap();
                    let biasb = be.alloc(DType::F32, n, "biasb").unwrap();
                    let cb = be.alloc(DType::F32, m * n, "cb").unwrap();
                    be.write_f32(ab, &a).unwrap();
                    be.write_f32(bb, &b).unwrap();
                    be.write_f32(biasb, &bias).unwrap();
                    be.write_f32(cb, &vec![f32::NAN; m * n]).unwrap();
                    let op = Matmul {
                        bias: with_bias.then_some(biasb),
                        ..Matmul::new(ab, bb, cb, d)
                    };
                    crate::ops::run(&mut be, op).unwrap();
                    let got = be.read_f32(cb).unwrap();
                    let want = reference(&a, &b, with_bias.then_some(&bias[..]), d);
                    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                        let tol = 1e-5 * (k as f64).sqrt() * (1.0 + w.abs());
                        assert!(
                            (g as f64 - w).abs() <= tol,
                            "{d:?} bias {with_bias}: c[{i}] = {g}, want {w}"
                        );
                    }
                }
            }
        }
    }

    /// A product over implicit patches is the product over Im2Row's patch matrix, bit for
    /// bit; the plan refuses one transposed, with column sums, or of the wrong shape.
    #[test]
    fn implicit_patches_are_the_im2col_product() {
        use crate::ops::{Im2Row, Window};
        let g = Window {
            batch: 2,
            h: 9,
            w: 7,
            c: 3,
            kh: 3,
            kw: 2,
            sh: 2,
            sw: 1,
            ph: 1,
            pw: 1,
        };
        let (m, k, n) = (g.positions(), g.patch(), 5);
        let mut rng = Rng::new(9);
        let mut rand =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.next_f64() as f32 - 0.5).collect() };
        let mut be = CpuBackend::new();
        let buf = |be: &mut CpuBackend, data: &[f32]| {
            let b = be.alloc(DType::F32, data.len(), "t").unwrap();
            be.write_f32(b, data).unwrap();
            b
        };
        let x = buf(&mut be, &rand(g.input_len()));
        let w = buf(&mut be, &rand(n * k));
        let bias = buf(&mut be, &rand(n));
        let cols = buf(&mut be, &vec![0.0; m * k]);
        let c1 = buf(&mut be, &vec![0.0; m * n]);
        let c2 = buf(&mut be, &vec![0.0; m * n]);
        let dims = MatmulDims {
            m,
            k,
            n,
            trans_a: false,
            trans_b: true,
        };
        crate::ops::run(&mut be, Im2Row { x, cols, g }).unwrap();
        let product = |a, c| Matmul {
            bias: Some(bias),
            epilogue: Epilogue::Act(Activation::Tanh),
            ..Matmul::new(a, w, c, dims)
        };
        crate::ops::run(&mut be, product(cols, c1)).unwrap();
        let implicit = Matmul {
            patches: Some(Patches::A(g)),
            ..product(x, c2)
        };
        crate::ops::run(&mut be, implicit.clone()).unwrap();
        assert_eq!(be.read_f32(c1).unwrap(), be.read_f32(c2).unwrap());
        let refused = |op: Matmul| {
            let e = op.check().unwrap_err().to_string();
            assert!(
                e.contains("implicit patches") || e.contains("needs m"),
                "{e}"
            );
        };
        refused(Matmul {
            dims: MatmulDims {
                trans_a: true,
                ..dims
            },
            ..implicit.clone()
        });
        refused(Matmul {
            dims: MatmulDims { m: m - 1, ..dims },
            ..implicit.clone()
        });
        let sums = buf(&mut be, &vec![0.0; m]);
        refused(Matmul {
            epilogue: Epilogue::ColSums(sums),
            ..implicit.clone()
        });
        // The weight gradient dZᵀ · patches over the patches of b read in place, with the bias
        // gradient beside it: bit for bit the product over the patch matrix.
        let dz = buf(&mut be, &rand(m * n));
        let (dw1, dw2) = (
            buf(&mut be, &vec![0.0; n * k]),
            buf(&mut be, &vec![0.0; n * k]),
        );
        let (db1, db2) = (buf(&mut be, &vec![0.0; n]), buf(&mut be, &vec![0.0; n]));
        let wdims = MatmulDims {
            m: n,
            k: m,
            n: k,
            trans_a: true,
            trans_b: false,
        };
        let explicit = Matmul {
            epilogue: Epilogue::ColSums(db1),
            ..Matmul::new(dz, cols, dw1, wdims)
        };
        crate::ops::run(&mut be, explicit).unwrap();
        let implicit_b = Matmul {
            epilogue: Epilogue::ColSums(db2),
            patches: Some(Patches::B(g)),
            ..Matmul::new(dz, x, dw2, wdims)
        };
        crate::ops::run(&mut be, implicit_b.clone()).unwrap();
        assert_eq!(be.read_f32(dw1).unwrap(), be.read_f32(dw2).unwrap());
        assert_eq!(be.read_f32(db1).unwrap(), be.read_f32(db2).unwrap());
        for dims in [
            MatmulDims {
                trans_b: true,
                ..wdims
            },
            MatmulDims {
                trans_a: false,
                ..wdims
            },
            MatmulDims { k: m - 1, ..wdims },
        ] {
            let e = Matmul {
                dims,
                ..implicit_b.clone()
            }
            .check()
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("implicit patches") || e.contains("needs k"),
                "{e}"
            );
        }
    }
}
