"""Shared by the peer scripts: the data, the model's shapes and the output schema.

A peer prints ONE JSON line on stdout: {"name": ..., "device": ..., "figures": [
{"name", "unit", "median", "min", "max"}, ...]} with the same figure names as
`wgtrain bench`, so `wgtrain bench --peer "python3 benches/peers/numpy_peer.py"` puts
its figures in a column of the same table.
"""
import gzip
import json
import os
import statistics
import time

import numpy as np

SIZES = [784, 256, 128, 10]
FASHION = os.environ.get("WGTRAIN_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
HERE = os.path.dirname(os.path.abspath(__file__))
MNIST_SAMPLE = os.path.join(HERE, "..", "..", "data", "mnist-sample")


def _read_idx(path):
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder, stem):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            return p
    return None


def load_data():
    """(name, x_train f32 (60000, 784) in [0,1], y_train int64, x_test, y_test): Fashion-MNIST
    when installed, else mnist-sample repeated to 60,000 rows, as `wgtrain bench` does."""
    for folder, name in ((FASHION, "fashion-mnist"), (MNIST_SAMPLE, "mnist-sample")):
        paths = [_find(folder, s) for s in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
        if all(paths):
            xtr, ytr, xte, yte = (_read_idx(p) for p in paths)
            if len(xtr) < 60000:
                idx = np.arange(60000) % len(xtr)
                xtr, ytr = xtr[idx], ytr[idx]
                name += " repeated to 60000 rows"
            f = lambda x: (x.reshape(len(x), -1).astype(np.float32) / 255.0)
            return name, f(xtr), ytr.astype(np.int64), f(xte), yte.astype(np.int64)
    raise SystemExit("no data found: install dataset-fashion-mnist or run from the repository")


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def figure(name, unit, values, rate_of=None):
    """`values` are seconds; with `rate_of` (work per run) the figure is work/second."""
    if rate_of is not None:
        values = [rate_of / v for v in values]
    return dict(name=name, unit=unit, **spread(values))


def repeat(fn, warmup=1, runs=7, budget_s=10.0):
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < runs:
        times.append(fn())
        if time.perf_counter() - start > budget_s:
            break
    return times


def mlp_shapes(b):
    # (figure name, m, k, n, trans_a, trans_b), as wgtrain's `mlp_shapes`.
    return [
        (f"matmul fwd {b}x784x256", b, 784, 256, False, True),
        (f"matmul dW 256x{b}x784", 256, b, 784, True, False),
        (f"matmul dX {b}x128x256", b, 128, 256, False, False),
    ]


def emit(name, device, figures):
    print(json.dumps({"name": name, "device": device, "figures": figures}))
