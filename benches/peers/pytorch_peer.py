#!/usr/bin/env python3
"""PyTorch peer for `wgtrain bench`: the same MLP (784-256-128-10 ReLU, softmax + cross-entropy,
Adam 1e-3), CNN (`wgtrain train --arch cnn`'s network) and wide MLP (784-4096-4096-10 at batch
1024), data, batch sizes and figures, with the data resident on the device.

    wgtrain bench --peer "python3 benches/peers/pytorch_peer.py [--device cuda] [--graph] [--quick]"

--device cpu|cuda (default: cuda when available). --graph captures the whole training step
(forward, backward, Adam) in a CUDA graph and replays it; batches are gathered on the GPU from
a per-epoch permutation, as wgtrain does. TF32 is disabled so float32 means float32.
"""
import sys
import time

import numpy as np
import torch

from common import SIZES, emit, figure, load_data, mlp_shapes, repeat

QUICK = "--quick" in sys.argv
GRAPH = "--graph" in sys.argv
DEV = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else (
    "cuda" if torch.cuda.is_available() else "cpu")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    def run():
        sync()
        t = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t
    return run


def matmul_figure(name, m, k, n, ta, tb):
    g = torch.Generator(device=DEV).manual_seed(7)
    a = torch.randn((k, m) if ta else (m, k), device=DEV, generator=g)
    b = torch.randn((n, k) if tb else (k, n), device=DEV, generator=g)
    A, B = (a.T if ta else a), (b.T if tb else b)
    out = torch.empty((m, n), device=DEV)
    flops = 2.0 * m * k * n
    inner = max(1, min(50, int((2e11 if DEV == "cuda" else 2e9) / flops)))

    def run():
        for _ in range(inner):
            torch.matmul(A, B, out=out)

    secs = [s / inner for s in repeat(timed(run), runs=3 if QUICK else 7)]
    return figure(name, "GFLOP/s", secs, rate_of=flops / 1e9)


# The wide configuration: where a GPU should win by far.
WIDE = [784, 4096, 4096, 10]


def make_model(sizes=SIZES):
    torch.manual_seed(1)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(a, b)
        torch.nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        torch.nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(DEV)
    # capturable=True keeps Adam's step count on the device, as a CUDA graph needs.
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=(GRAPH and DEV == "cuda"))
    return model, opt


def train_figures(xtr, ytr, batch):
    model, opt = make_model()
    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(xtr)
    steps = n // batch  # full batches; the last partial batch is run eagerly below
    xb = torch.empty((batch, SIZES[0]), device=DEV)
    yb = torch.empty((batch,), dtype=torch.long, device=DEV)
    loss_sum = torch.zeros((), device=DEV)

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        loss_sum.add_(loss.detach())

    graph = None
    if GRAPH and DEV == "cuda":
        # Warm up on a side stream, then capture one step.
        xb.copy_(xtr[:batch]); yb.copy_(ytr[:batch])
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()

    def epoch():
        perm = torch.randperm(n, device=DEV)
        for s in range(steps):
            i = perm[s * batch:(s + 1) * batch]
            torch.index_select(xtr, 0, i, out=xb)
            torch.index_select(ytr, 0, i, out=yb)
            if graph is not None:
                graph.replay()
            else:
                step()
        rest = perm[steps * batch:]
        if len(rest):
            opt.zero_grad(set_to_none=False)
            loss = loss_fn(model(xtr[rest]), ytr[rest])
            loss.backward()
            opt.step()
        loss_sum.item()  # the one read-back per epoch

    secs = repeat(timed(epoch), runs=1 if QUICK else 3, budget_s=60)
    return [figure(f"train b{batch}", "samples/s", secs, rate_of=n),
            figure(f"epoch b{batch}", "s", secs)]


def make_cnn():
    """`wgtrain train --arch cnn`: conv 32 3 pad 1, relu, conv 32 3 pad 1, relu, maxpool 2,
    conv 64 3 pad 1, relu, conv 64 3 pad 1, relu, maxpool 2, (flatten), dense 256, relu,
    dropout 0.5, dense 10 (the bench times it without augmentation, as wgtrain's does)."""
    torch.manual_seed(1)
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10),
    ).to(DEV)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def cnn_figures(xtr, ytr, batch, rows):
    """Training steps of the CNN on the first `rows` rows, as `wgtrain bench` times them (its
    epoch is extrapolated from that rate)."""
    model, opt = make_cnn()
    return slice_figures("cnn", model, opt, xtr[:rows].reshape(rows, 1, 28, 28), ytr, batch,
                         len(xtr))


def wide_figures(xtr, ytr, batch, rows):
    """Training steps of the wide MLP on the first `rows` rows, as `wgtrain bench` times them."""
    model, opt = make_model(WIDE)
    return slice_figures("wide", model, opt, xtr[:rows], ytr, batch, len(xtr))


def slice_figures(config, model, opt, x, ytr, batch, total):
    """Samples/s of training steps on the rows `x`, and the epoch of `total` rows at that rate."""
    loss_fn = torch.nn.CrossEntropyLoss()
    rows = len(x)
    y = ytr[:rows]

    def epoch():
        perm = torch.randperm(rows, device=DEV)
        for s in range(0, rows, batch):
            i = perm[s:s + batch]
            opt.zero_grad(set_to_none=False)
            loss = loss_fn(model(x[i]), y[i])
            loss.backward()
            opt.step()
        loss.item()

    secs = repeat(timed(epoch), runs=1 if QUICK else 3, budget_s=120)
    return [figure(f"train {config} b{batch}", "samples/s", secs, rate_of=rows),
            figure(f"epoch {config} b{batch}", "s", [total * s / rows for s in secs])]


def main():
    data_name, xtr, ytr, xte, yte = load_data()
    xtr, ytr = torch.from_numpy(xtr).to(DEV), torch.from_numpy(ytr).to(DEV)
    xte = torch.from_numpy(xte).to(DEV)
    figs = []
    shapes = mlp_shapes(128) + mlp_shapes(1024)[:1]
    squares = [512, 1024] if QUICK else [512, 1024, 2048, 4096]
    shapes += [(f"matmul square {s}", s, s, s, False, False) for s in squares]
    for s in shapes:
        figs.append(matmul_figure(*s))
    x = torch.randn(1 << 24, device=DEV)
    m = torch.ones_like(x)
    figs.append(figure("bandwidth x*=m 16Mi", "GB/s", repeat(timed(lambda: x.mul_(m))),
                       rate_of=12 * (1 << 24) / 1e9))
    for batch in (128, 1024):
        figs += train_figures(xtr, ytr, batch)
    figs += cnn_figures(xtr, ytr, 128, 1280 if QUICK else 10240)
    figs += wide_figures(xtr, ytr, 1024, 1024 if QUICK else 4096)
    model, _ = make_model()

    @torch.no_grad()
    def infer():
        for s in range(0, len(xte), 1024):
            model(xte[s:s + 1024])

    figs.append(figure("inference b1024", "samples/s", repeat(timed(infer)), rate_of=len(xte)))
    name = "pytorch" + ("-graph" if graph_used() else "") + ("-" + DEV)
    dev_name = torch.cuda.get_device_name() if DEV == "cuda" else f"{torch.get_num_threads()} threads"
    emit(name, f"torch {torch.__version__}, {dev_name}, {data_name}", figs)


def graph_used():
    return GRAPH and DEV == "cuda"


if __name__ == "__main__":
    main()
