#!/usr/bin/env python3
"""NumPy float32 peer for `wgtrain bench`: the same MLP (784-256-128-10 ReLU, softmax +
cross-entropy, Adam 1e-3, He init), data, batches and figures, the from-scratch tutorial way.

    wgtrain bench --peer "python3 benches/peers/numpy_peer.py [--quick]"
"""
import sys
import time

import numpy as np

from common import SIZES, emit, figure, load_data, mlp_shapes, repeat

QUICK = "--quick" in sys.argv


def matmul_figure(name, m, k, n, ta, tb):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    A, B = (a.T if ta else a), (b.T if tb else b)
    out = np.empty((m, n), dtype=np.float32)
    flops = 2.0 * m * k * n
    inner = max(1, min(50, int(2e9 / flops)))

    def run():
        t = time.perf_counter()
        for _ in range(inner):
            np.matmul(A, B, out=out)
        return (time.perf_counter() - t) / inner

    return figure(name, "GFLOP/s", repeat(run, runs=3 if QUICK else 7), rate_of=flops / 1e9)


class Mlp:
    def __init__(self, seed=1):
        rng = np.random.default_rng(seed)
        self.W, self.b = [], []
        for i, o in zip(SIZES[:-1], SIZES[1:]):
            self.W.append((rng.standard_normal((i, o)) * np.sqrt(2.0 / i)).astype(np.float32))
            self.b.append(np.zeros(o, np.float32))
        self.params = self.W + self.b
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def forward(self, x):
        hs = [x]
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            z = hs[-1] @ W + b
            hs.append(np.maximum(z, 0) if i < len(self.W) - 1 else z)
        return hs

    def step(self, x, y, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        hs = self.forward(x)
        z = hs[-1]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        n = len(x)
        g = p
        g[np.arange(n), y] -= 1
        g /= n
        gW, gb = [None] * len(self.W), [None] * len(self.W)
        for i in reversed(range(len(self.W))):
            gW[i] = hs[i].T @ g
            gb[i] = g.sum(axis=0)
            if i > 0:
                g = (g @ self.W[i].T) * (hs[i] > 0)
        self.t += 1
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for P, G, M, V in zip(self.params, gW + gb, self.m, self.v):
            M *= b1
            M += (1 - b1) * G
            V *= b2
            V += (1 - b2) * G * G
            P -= lr * (M / c1) / (np.sqrt(V / c2) + eps)


def main():
    data_name, xtr, ytr, xte, yte = load_data()
    figs = []
    shapes = mlp_shapes(128) + mlp_shapes(1024)[:1]
    squares = [512, 1024] if QUICK else [512, 1024, 2048, 4096]
    shapes += [(f"matmul square {s}", s, s, s, False, False) for s in squares]
    for s in shapes:
        figs.append(matmul_figure(*s))
    x = np.random.default_rng(9).standard_normal(1 << 24, dtype=np.float32)
    m = np.ones_like(x)

    def bw():
        t = time.perf_counter()
        np.multiply(x, m, out=x)
        return time.perf_counter() - t

    figs.append(figure("bandwidth x*=m 16Mi", "GB/s", repeat(bw), rate_of=12 * (1 << 24) / 1e9))
    rng = np.random.default_rng(3)
    for batch in (128, 1024):
        net = Mlp()

        def epoch():
            t = time.perf_counter()
            order = rng.permutation(len(xtr))
            for s in range(0, len(xtr), batch):
                i = order[s:s + batch]
                net.step(xtr[i], ytr[i])
            return time.perf_counter() - t

        secs = repeat(epoch, runs=1 if QUICK else 3, budget_s=60)
        figs.append(figure(f"train b{batch}", "samples/s", secs, rate_of=len(xtr)))
        figs.append(figure(f"epoch b{batch}", "s", secs))
    net = Mlp()

    def infer():
        t = time.perf_counter()
        for s in range(0, len(xte), 1024):
            net.forward(xte[s:s + 1024])
        return time.perf_counter() - t

    figs.append(figure("inference b1024", "samples/s", repeat(infer), rate_of=len(xte)))
    emit("numpy", f"numpy {np.__version__}, {data_name}", figs)


if __name__ == "__main__":
    main()
