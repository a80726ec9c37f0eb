//! The CPU backend: the readable reference every GPU kernel is tested against.
//!
//! Allocations are plain vectors; matrix products go through the `gemm` crate's blocked SIMD
//! kernels, threaded over the cores; everything else is a plain loop over slices.

use super::{
    ACC_LEN, Backend, Buf, DType, MatmulDims, STATS_PER_ROW, UpdateParams, check_len, distinct,
};
use crate::model::{Activation, LEAKY_SLOPE, LossKind};
use crate::optim::OptimizerKind;
use crate::rng::{hash_to_unit, hash3};
use crate::{Error, Result};
use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

enum Store {
    F32(Vec<f32>),
    U32(Vec<u32>),
    U8(Vec<u8>),
}

#[derive(Default)]
pub struct CpuBackend {
    stores: Vec<Store>,
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend::default()
    }

    fn f32s(&self, b: Buf) -> &[f32] {
        match &self.stores[b.id as usize] {
            Store::F32(v) => &v[range(b)],
            _ => panic!("buffer {} is not f32", b.id),
        }
    }

    fn u32s(&self, b: Buf) -> &[u32] {
        match &self.stores[b.id as usize] {
            Store::U32(v) => &v[range(b)],
            _ => panic!("buffer {} is not u32", b.id),
        }
    }

    fn f32s_mut(&mut self, b: Buf) -> &mut [f32] {
        match &mut self.stores[b.id as usize] {
            Store::F32(v) => &mut v[range(b)],
            _ => panic!("buffer {} is not f32", b.id),
        }
    }

    /// Takes the f32 allocation behind `b` out of the arena so it can be written while other
    /// allocations are read; [`Self::put`] returns it. Destinations never share an allocation
    /// with a source (checked by the callers' asserts).
    fn take(&mut self, b: Buf) -> Vec<f32> {
        match std::mem::replace(&mut self.stores[b.id as usize], Store::F32(Vec::new())) {
            Store::F32(v) => v,
            _ => panic!("buffer {} is not f32", b.id),
        }
    }

    fn put(&mut self, b: Buf, v: Vec<f32>) {
        self.stores[b.id as usize] = Store::F32(v);
    }

    /// Runs `f(sources..., destination)` with the destination's allocation taken out.
    fn with_dst<R>(&mut self, dst: Buf, f: impl FnOnce(&Self, &mut [f32]) -> R) -> R {
        let mut v = self.take(dst);
        let r = f(self, &mut v[range(dst)]);
        self.put(dst, v);
        r
    }
}

/// A zeroed vector, or an error when memory runs out: sizes come from flags (--batch-size,
/// --hidden) and data files, and a refusal with a hint beats an abort.
fn zeroed<T: Clone + Default>(len: usize, label: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::Config(format!(
            "not enough memory for {label} ({} MiB); use a smaller --batch-size or --hidden",
            (len as u64).saturating_mul(std::mem::size_of::<T>() as u64) >> 20
        ))
    })?;
    v.resize(len, T::default());
    Ok(v)
}

fn range(b: Buf) -> std::ops::Range<usize> {
    b.offset as usize..(b.offset + b.len) as usize
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

/// `sign(x)` with `sign(0) = 0`, as WGSL's `sign`.
fn sign0(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Index of the first maximum of a row.
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Fills each `cols`-wide row `r` of `out` with `fill(idx[r] * cols, row)`, in parallel for
/// batches large enough to pay for it.
fn gather(out: &mut [f32], idx: &[u32], cols: usize, fill: impl Fn(usize, &mut [f32]) + Sync) {
    let work = |(o, &i): (&mut [f32], &u32)| fill(i as usize * cols, o);
    if out.len() >= 1 << 16 {
        out.par_chunks_exact_mut(cols).zip(idx).for_each(work);
    } else {
        out.chunks_exact_mut(cols).zip(idx).for_each(work);
    }
}

/// `v = f(v)` in place for rows of `cols` values (softmax is row-wise). v: (rows, cols)
pub(crate) fn activate(act: Activation, v: &mut [f32], cols: usize) {
    match act {
        Activation::Relu => v.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::LeakyRelu => v
            .iter_mut()
            .for_each(|v| *v = if *v > 0.0 { *v } else { LEAKY_SLOPE * *v }),
        Activation::Sigmoid => v.iter_mut().for_each(|v| *v = sigmoid(*v)),
        Activation::Tanh => v.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Softmax => v.chunks_exact_mut(cols).for_each(softmax_row),
        Activation::Linear => {}
    }
}

/// Row-wise softmax in place, stable (subtracts the row max).
pub(crate) fn softmax_row(row: &mut [f32]) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in row.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    for v in row.iter_mut() {
        *v /= s;
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn adapter(&self) -> Option<String> {
        None
    }

    fn alloc(&mut self, dtype: DType, len: usize, label: &str) -> Result<Buf> {
        // Checked before allocating: a `Buf` addresses at most u32::MAX elements.
        let len32 = u32::try_from(len).map_err(|_| {
            Error::Config(format!(
                "{label} needs {len} values, more than one buffer can hold ({}); use a smaller \
                 --batch-size or --hidden",
                u32::MAX
            ))
        })?;
        let id = self.stores.len() as u32;
        self.stores.push(match dtype {
            DType::F32 => Store::F32(zeroed(len, label)?),
            DType::U32 => Store::U32(zeroed(len, label)?),
            DType::U8 => Store::U8(zeroed(len, label)?),
        });
        Ok(Buf {
            id,
            offset: 0,
            len: len32,
            dtype,
        })
    }

    fn write_f32(&mut self, dst: Buf, data: &[f32]) -> Result<()> {
        check_len("write destination", dst, data.len())?;
        self.f32s_mut(dst)[..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn write_u32(&mut self, dst: Buf, data: &[u32]) -> Result<()> {
        check_len("write destination", dst, data.len())?;
        match &mut self.stores[dst.id as usize] {
            Store::U32(v) => v[range(dst)][..data.len()].copy_from_slice(data),
            _ => panic!("buffer {} is not u32", dst.id),
        }
        Ok(())
    }

    fn write_u8(&mut self, dst: Buf, data: &[u8]) -> Result<()> {
        check_len("write destination", dst, data.len())?;
        match &mut self.stores[dst.id as usize] {
            Store::U8(v) => v[range(dst)][..data.len()].copy_from_slice(data),
            _ => panic!("buffer {} is not u8", dst.id),
        }
        Ok(())
    }

    fn read_f32(&mut self, src: Buf) -> Result<Vec<f32>> {
        Ok(self.f32s(src).to_vec())
    }

    fn read_u32(&mut self, src: Buf) -> Result<Vec<u32>> {
        Ok(self.u32s(src).to_vec())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn fill(&mut self, dst: Buf, value: f32) -> Result<()> {
        self.f32s_mut(dst).fill(value);
        Ok(())
    }

    // src: (_, cols) U8 or F32, idx: (rows,) -> dst: (rows, cols)
    fn gather_rows(
        &mut self,
        src: Buf,
        idx: Buf,
        rows: usize,
        cols: usize,
        (a, b): (f32, f32),
        dst: Buf,
    ) -> Result<()> {
        check_len("gather index", idx, rows)?;
        check_len("gather destination", dst, rows * cols)?;
        distinct(dst, &[src]);
        self.with_dst(dst, |me, out| {
            let idx = &me.u32s(idx)[..rows];
            let out = &mut out[..rows * cols];
            let start = src.offset as usize;
            // Rows are independent and each is a cache-missing read from the resident data set:
            // spread them over the cores.
            match &me.stores[src.id as usize] {
                Store::U8(v) => gather(out, idx, cols, |s, o| {
                    let row = &v[start + s..][..cols];
                    o.iter_mut()
                        .zip(row)
                        .for_each(|(o, &p)| *o = a * p as f32 + b);
                }),
                Store::F32(v) => gather(out, idx, cols, |s, o| {
                    let row = &v[start + s..][..cols];
                    o.iter_mut().zip(row).for_each(|(o, &p)| *o = a * p + b);
                }),
                Store::U32(_) => panic!("gather_rows from a u32 buffer"),
            }
        });
        Ok(())
    }

    // src: (_,) idx: (rows,) -> dst: (rows,)
    fn gather_labels(&mut self, src: Buf, idx: Buf, rows: usize, dst: Buf) -> Result<()> {
        check_len("gather index", idx, rows)?;
        check_len("label destination", dst, rows)?;
        let out: Vec<u32> = {
            let (s, i) = (self.u32s(src), self.u32s(idx));
            i[..rows].iter().map(|&k| s[k as usize]).collect()
        };
        self.write_u32(dst, &out)
    }

    // a: (m, k) | (k, m)ᵀ, b: (k, n) | (n, k)ᵀ, bias: (n,) -> c: (m, n)
    fn matmul(&mut self, a: Buf, b: Buf, bias: Option<Buf>, c: Buf, d: MatmulDims) -> Result<()> {
        let MatmulDims { m, k, n, .. } = d;
        check_len("matmul a", a, m * k)?;
        check_len("matmul b", b, k * n)?;
        check_len("matmul c", c, m * n)?;
        distinct(c, &[a, b]);
        if let Some(bias) = bias {
            check_len("matmul bias", bias, n)?;
            distinct(c, &[bias]);
        }
        self.with_dst(c, |me, out| {
            let a = me.f32s(a);
            let b = me.f32s(b);
            let av = if d.trans_a {
                ArrayView2::from_shape((k, m), &a[..m * k]).map(|v| v.reversed_axes())
            } else {
                ArrayView2::from_shape((m, k), &a[..m * k])
            }
            .expect("shape checked above");
            let bv = if d.trans_b {
                ArrayView2::from_shape((n, k), &b[..k * n]).map(|v| v.reversed_axes())
            } else {
                ArrayView2::from_shape((k, n), &b[..k * n])
            }
            .expect("shape checked above");
            let mut cv =
                ArrayViewMut2::from_shape((m, n), &mut out[..m * n]).expect("shape checked above");
            // The product first, then the bias: asking gemm to read a bias-filled destination
            // costs ~20% of its speed on the forward shapes, a separate pass ~1%.
            gemm_into(&av, &bv, 0.0, &mut cv);
            if let Some(bias) = bias {
                let bias = &me.f32s(bias)[..n];
                for row in out[..m * n].chunks_exact_mut(n) {
                    row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
                }
            }
        });
        Ok(())
    }

    // a: (rows, cols) -> out: (cols,)
    fn col_sum(&mut self, a: Buf, rows: usize, cols: usize, out: Buf) -> Result<()> {
        check_len("col_sum input", a, rows * cols)?;
        check_len("col_sum output", out, cols)?;
        distinct(out, &[a]);
        self.with_dst(out, |me, out| {
            let out = &mut out[..cols];
            out.fill(0.0);
            for row in me.f32s(a)[..rows * cols].chunks_exact(cols) {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
        });
        Ok(())
    }

    // x: (rows, cols) -> y: (rows, cols), possibly in place
    fn act_forward(
        &mut self,
        act: Activation,
        x: Buf,
        y: Buf,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let n = rows * cols;
        check_len("activation input", x, n)?;
        check_len("activation output", y, n)?;
        let src: Vec<f32> = if x == y {
            Vec::new()
        } else {
            distinct(y, &[x]);
            self.f32s(x)[..n].to_vec()
        };
        let out = &mut self.f32s_mut(y)[..n];
        if x != y {
            out.copy_from_slice(&src);
        }
        activate(act, out, cols);
        Ok(())
    }

    // y, dy: (rows, cols) -> dx: (rows, cols); dx may alias dy
    fn act_backward(
        &mut self,
        act: Activation,
        y: Buf,
        dy: Buf,
        dx: Buf,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let n = rows * cols;
        check_len("activation output", y, n)?;
        check_len("activation grad", dy, n)?;
        check_len("activation input grad", dx, n)?;
        distinct(dx, &[y]);
        if dx != dy {
            distinct(dx, &[dy]);
            let g = self.f32s(dy)[..n].to_vec();
            self.f32s_mut(dx)[..n].copy_from_slice(&g);
        }
        // Now dx holds dy; scale it in place by f'(x), expressed through y.
        self.with_dst(dx, |me, g| {
            let y = &me.f32s(y)[..n];
            let g = &mut g[..n];
            match act {
                // Written as selects, not branches, so the loops vectorise.
                Activation::Relu => g
                    .iter_mut()
                    .zip(y)
                    .for_each(|(g, &y)| *g = if y > 0.0 { *g } else { 0.0 }),
                Activation::LeakyRelu => g
                    .iter_mut()
                    .zip(y)
                    .for_each(|(g, &y)| *g *= if y > 0.0 { 1.0 } else { LEAKY_SLOPE }),
                Activation::Sigmoid => g.iter_mut().zip(y).for_each(|(g, &y)| *g *= y * (1.0 - y)),
                Activation::Tanh => g.iter_mut().zip(y).for_each(|(g, &y)| *g *= 1.0 - y * y),
                Activation::Softmax => {
                    // dx = y ⊙ (dy - Σ_j dy_j y_j), the Jacobian-vector product per row.
                    for (g, y) in g.chunks_exact_mut(cols).zip(y.chunks_exact(cols)) {
                        let dot: f32 = g.iter().zip(y).map(|(a, b)| a * b).sum();
                        g.iter_mut().zip(y).for_each(|(g, &y)| *g = y * (*g - dot));
                    }
                }
                Activation::Linear => {}
            }
        });
        Ok(())
    }

    // x -> y, mask: (n,)
    fn dropout_forward(
        &mut self,
        x: Buf,
        y: Buf,
        mask: Buf,
        n: usize,
        p: f32,
        seed: u32,
        stream: u32,
    ) -> Result<()> {
        check_len("dropout input", x, n)?;
        check_len("dropout output", y, n)?;
        check_len("dropout mask", mask, n)?;
        distinct(mask, &[x, y]);
        distinct(y, &[x]);
        let keep = 1.0 / (1.0 - p);
        let src = self.f32s(x)[..n].to_vec();
        self.with_dst(mask, |_, m| {
            for (i, m) in m[..n].iter_mut().enumerate() {
                *m = if hash_to_unit(hash3(seed, stream, i as u32)) >= p {
                    keep
                } else {
                    0.0
                };
            }
        });
        self.f32s_mut(y)[..n].copy_from_slice(&src);
        self.mul_inplace(y, mask, n)
    }

    // x, mask: (n,)
    fn mul_inplace(&mut self, x: Buf, mask: Buf, n: usize) -> Result<()> {
        check_len("mul input", x, n)?;
        check_len("mul mask", mask, n)?;
        distinct(x, &[mask]);
        self.with_dst(x, |me, x| {
            for (v, &m) in x[..n].iter_mut().zip(&me.f32s(mask)[..n]) {
                *v *= m;
            }
        });
        Ok(())
    }

    // out, grad: (rows, cols); targets: (rows,) u32 or (rows, cols) f32 -> stats: (rows, 2)
    fn loss(
        &mut self,
        kind: LossKind,
        out: Buf,
        targets: Buf,
        rows: usize,
        cols: usize,
        grad: Option<Buf>,
        stats: Buf,
    ) -> Result<()> {
        let n = rows * cols;
        check_len("loss input", out, n)?;
        check_len("loss stats", stats, rows * STATS_PER_ROW)?;
        if let Some(g) = grad {
            check_len("loss grad", g, n)?;
            distinct(g, &[out, targets, stats]);
        }
        distinct(stats, &[out, targets]);
        let mut g = grad.map(|g| self.take(g));
        let mut st = self.take(stats);
        {
            let z = &self.f32s(out)[..n];
            let gs = g.as_mut().zip(grad).map(|(v, b)| &mut v[range(b)][..n]);
            let st = &mut st[range(stats)][..rows * STATS_PER_ROW];
            let scale = 1.0 / rows as f32;
            if kind.is_classification() {
                let labels = &self.u32s(targets)[..rows];
                loss_classes(kind, z, labels, cols, scale, gs, st);
            } else {
                check_len("loss targets", targets, n)?;
                let t = &self.f32s(targets)[..n];
                loss_values(kind, z, t, cols, scale, gs, st);
            }
        }
        if let (Some(v), Some(b)) = (g, grad) {
            self.put(b, v);
        }
        self.put(stats, st);
        Ok(())
    }

    // stats: (rows, 2) -> acc: (3,) accumulated
    fn accumulate_stats(&mut self, stats: Buf, rows: usize, acc: Buf) -> Result<()> {
        check_len("stats", stats, rows * STATS_PER_ROW)?;
        check_len("accumulator", acc, ACC_LEN)?;
        distinct(acc, &[stats]);
        self.with_dst(acc, |me, acc| {
            let (mut l, mut m) = (0.0f32, 0.0f32);
            for s in me.f32s(stats)[..rows * STATS_PER_ROW].chunks_exact(STATS_PER_ROW) {
                l += s[0];
                m += s[1];
            }
            acc[0] += l;
            acc[1] += m;
            acc[2] += rows as f32;
        });
        Ok(())
    }

    // param, grad: (n,)
    fn regularize(&mut self, param: Buf, grad: Buf, l1: f32, l2: f32) -> Result<()> {
        check_len("regularized grad", grad, param.len())?;
        distinct(grad, &[param]);
        self.with_dst(grad, |me, g| {
            for (g, &p) in g.iter_mut().zip(me.f32s(param)) {
                *g += l1 * sign0(p) + 2.0 * l2 * p;
            }
        });
        Ok(())
    }

    // params, grads, state1, state2: (n,)
    fn update(
        &mut self,
        params: Buf,
        grads: Buf,
        state1: Buf,
        state2: Buf,
        u: &UpdateParams,
    ) -> Result<()> {
        let n = params.len();
        for (what, b) in [("grads", grads), ("state1", state1), ("state2", state2)] {
            check_len(what, b, n)?;
        }
        distinct(params, &[grads, state1, state2]);
        distinct(state1, &[grads, state2]);
        let mut p = self.take(params);
        let mut s1 = self.take(state1);
        let mut s2 = self.take(state2);
        {
            let g = &self.f32s(grads)[..n];
            let p = &mut p[range(params)];
            let s1 = &mut s1[range(state1)];
            let s2 = &mut s2[range(state2)];
            // Independent per element: split over the cores in cache-sized chunks.
            const CHUNK: usize = 1 << 14;
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(s1.par_chunks_mut(CHUNK))
                .zip(s2.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), s1), s2)| update_slices(u, p, g, s1, s2));
        }
        self.put(params, p);
        self.put(state1, s1);
        self.put(state2, s2);
        Ok(())
    }
}

/// Per-row class losses. z, grad: (rows, cols), labels: (rows,) -> stats: (rows, 2)
fn loss_classes(
    kind: LossKind,
    z: &[f32],
    labels: &[u32],
    cols: usize,
    scale: f32,
    mut grad: Option<&mut [f32]>,
    stats: &mut [f32],
) {
    for (r, zr) in z.chunks_exact(cols).enumerate() {
        let label = labels[r] as usize;
        let (loss, correct) = match kind {
            LossKind::SoftmaxCrossEntropy => {
                let m = zr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = zr.iter().map(|&v| (v - m).exp()).sum();
                let lse = m + sum.ln();
                if let Some(g) = grad.as_deref_mut() {
                    for (j, g) in g[r * cols..(r + 1) * cols].iter_mut().enumerate() {
                        let p = (zr[j] - lse).exp();
                        *g = (p - if j == label { 1.0 } else { 0.0 }) * scale;
                    }
                }
                (lse - zr[label.min(cols - 1)], argmax(zr) == label)
            }
            LossKind::SigmoidBce => {
                // With one output the label is the target bit; with several, one-hot.
                let target = |j: usize| {
                    if cols == 1 {
                        label as f32
                    } else if j == label {
                        1.0
                    } else {
                        0.0
                    }
                };
                let mut loss = 0.0;
                for (j, &v) in zr.iter().enumerate() {
                    let t = target(j);
                    // Stable: max(z,0) - z·t + ln(1 + e^-|z|).
                    loss += v.max(0.0) - v * t + (-v.abs()).exp().ln_1p();
                    if let Some(g) = grad.as_deref_mut() {
                        g[r * cols + j] = (sigmoid(v) - t) * scale / cols as f32;
                    }
                }
                let correct = if cols == 1 {
                    (zr[0] > 0.0) == (label == 1)
                } else {
                    argmax(zr) == label
                };
                (loss / cols as f32, correct)
            }
            LossKind::Mse | LossKind::Mae => unreachable!("regression loss given class labels"),
        };
        stats[r * 2] = loss;
        stats[r * 2 + 1] = if correct { 1.0 } else { 0.0 };
    }
}

/// Per-row regression losses. y, t, grad: (rows, cols) -> stats: (rows, 2)
fn loss_values(
    kind: LossKind,
    y: &[f32],
    t: &[f32],
    cols: usize,
    scale: f32,
    mut grad: Option<&mut [f32]>,
    stats: &mut [f32],
) {
    let per = scale / cols as f32;
    for (r, (yr, tr)) in y.chunks_exact(cols).zip(t.chunks_exact(cols)).enumerate() {
        let (mut sq, mut abs) = (0.0, 0.0);
        for j in 0..cols {
            let e = yr[j] - tr[j];
            sq += e * e;
            abs += e.abs();
            if let Some(g) = grad.as_deref_mut() {
                g[r * cols + j] = match kind {
                    LossKind::Mse => 2.0 * e * per,
                    _ => sign0(e) * per,
                };
            }
        }
        let loss = match kind {
            LossKind::Mse => sq,
            LossKind::Mae => abs,
            _ => unreachable!("class loss given regression targets"),
        };
        stats[r * 2] = loss / cols as f32;
        stats[r * 2 + 1] = abs / cols as f32;
    }
}

/// The optimizer rules, element by element. p, g, s1, s2: (n,)
fn update_slices(u: &UpdateParams, p: &mut [f32], g: &[f32], s1: &mut [f32], s2: &mut [f32]) {
    let lr = u.lr;
    match u.kind {
        OptimizerKind::Sgd => {
            // PyTorch's rule: buf = μ·buf + g; step along buf (or g + μ·buf for Nesterov).
            for i in 0..p.len() {
                let step = if u.momentum > 0.0 {
                    s1[i] = u.momentum * s1[i] + g[i];
                    if u.nesterov {
                        g[i] + u.momentum * s1[i]
                    } else {
                        s1[i]
                    }
                } else {
                    g[i]
                };
                p[i] -= lr * step;
            }
        }
        OptimizerKind::Adagrad => {
            for ((p, &g), s) in p.iter_mut().zip(g).zip(s1) {
                *s += g * g;
                *p -= lr * g / (s.sqrt() + u.eps);
            }
        }
        OptimizerKind::Rmsprop => {
            let rho = u.beta2;
            for ((p, &g), s) in p.iter_mut().zip(g).zip(s1) {
                *s = rho * *s + (1.0 - rho) * g * g;
                *p -= lr * g / (s.sqrt() + u.eps);
            }
        }
        OptimizerKind::Adam | OptimizerKind::Adamw => {
            let decay = if u.kind == OptimizerKind::Adamw {
                1.0 - lr * u.weight_decay
            } else {
                1.0
            };
            // PyTorch's arrangement: m̂ / (√v̂ + ε) = (m / c1) / (√v · (1 / √c2) + ε), with the
            // corrections folded into two scalars, leaves one division and one square root per
            // element (the loop is bound by them).
            let step = lr / u.bias_correction1;
            let inv_sqrt_c2 = 1.0 / u.bias_correction2.sqrt();
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(s1).zip(s2) {
                *m = u.beta1 * *m + (1.0 - u.beta1) * g;
                *v = u.beta2 * *v + (1.0 - u.beta2) * g * g;
                *p = *p * decay - step * *m / (v.sqrt() * inv_sqrt_c2 + u.eps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
                    be.fill(cb, f32::NAN).unwrap();
                    be.matmul(ab, bb, with_bias.then_some(biasb), cb, d)
                        .unwrap();
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
}
