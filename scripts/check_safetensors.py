#!/usr/bin/env python3
"""Checks that a wgtrain model file is usable from Python with no wgtrain code.

It loads the weights with `safetensors.numpy.load_file`, reads the model spec from the file's
metadata, runs the network forward in NumPy on the first N images of an IDX file (read with
NumPy from the .gz), and compares the predicted classes and probabilities with those of
`wgtrain predict --idx FILE --range 0..N --json`. MLPs and CNNs: convolution, pooling and
flatten in PyTorch's NCHW layout, from the file's PyTorch-shaped weights (Conv2d weights
(out, in, kh, kw)), exactly as `nn.Sequential` would compute them.

Not part of the test suite (it needs Python packages); run it by hand:

    pip install safetensors numpy
    wgtrain train --backend cpu --epochs 3 --save model.safetensors      # or --arch cnn
    python3 scripts/check_safetensors.py model.safetensors \
        data/mnist-sample/t10k-images-idx3-ubyte.gz --count 20 [--wgtrain PATH]

With --torch (PyTorch installed) it also builds the `nn.Sequential` the spec describes, loads
the file into it with `load_state_dict` as it is (the tensor names are `layers.<i>.weight|bias`
of a module whose `layers` attribute is that Sequential), and compares its outputs too.

Exits with status 1 if any predicted class differs.
"""

import argparse
import gzip
import json
import subprocess
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def read_idx_images(path):
    """IDX image file (raw or gzip): big-endian magic 2051, count, rows, cols, then u8 pixels."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    magic, count, rows, cols = np.frombuffer(raw, dtype=">u4", count=4)
    assert magic == 2051, f"{path}: not an IDX image file (magic {magic})"
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16, count=count * rows * cols)
    return pixels.reshape(count, rows * cols)


def activate(name, x):
    if name == "relu":
        return np.maximum(x, 0)
    if name == "leaky-relu":
        return np.where(x > 0, x, 0.01 * x)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if name == "linear":
        return x
    raise ValueError(f"unknown activation {name}")


OUTPUT_ACTIVATION = {
    "cross-entropy": "softmax",
    "bce": "sigmoid",
    "mse": "linear",
    "mae": "linear",
}
SCALE = {"zero-one": (1 / 255, 0.0), "minus-one-one": (1 / 127.5, -1.0)}


def windows(x, kh, kw, sh, sw):
    """The (ky, kx) slices of every output position: x (N, C, H, W) -> (kh, kw, N, C, OH, OW)."""
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    return np.stack([
        np.stack([x[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]
                  for kx in range(kw)])
        for ky in range(kh)
    ])


def conv2d(x, weight, bias, stride, padding):
    """PyTorch's nn.Conv2d: x (N, C, H, W), weight (O, C, kh, kw) -> (N, O, OH, OW)."""
    (ph, pw), (sh, sw) = padding, stride
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    _, _, kh, kw = weight.shape
    win = windows(x, kh, kw, sh, sw)
    return np.einsum("yxncij,ocyx->noij", win, weight) + bias[None, :, None, None]


def forward(tensors, spec, pixels):
    """The network of `spec` on u8 pixels, in float32 like wgtrain, with PyTorch's layouts
    (NCHW images); returns the output probabilities."""
    a, b = SCALE[spec["scale"]]
    x = pixels.astype(np.float32) * np.float32(a) + np.float32(b)
    h, w = spec["input_shape"]
    c = spec.get("channels", 1)
    if any(l["type"] in ("conv2d", "maxpool2d", "avgpool2d", "flatten") for l in spec["layers"]):
        # wgtrain's rows are channels last (H, W, C); PyTorch's images are (C, H, W).
        x = x.reshape(len(x), h, w, c).transpose(0, 3, 1, 2)
    for i, layer in enumerate(spec["layers"]):
        kind = layer["type"]
        if kind == "conv2d":
            weight, bias = tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]
            kh, kw = layer["kernel"]
            assert weight.shape == (layer["out_channels"], layer["in_channels"], kh, kw), (i, weight.shape)
            x = conv2d(x, weight, bias, layer["stride"], layer["padding"])
        elif kind in ("maxpool2d", "avgpool2d"):
            kh, kw = layer["kernel"]
            win = windows(x, kh, kw, *layer["stride"])
            x = win.max(axis=(0, 1)) if kind == "maxpool2d" else win.mean(axis=(0, 1))
        elif kind == "flatten":
            x = x.reshape(len(x), -1)  # nn.Flatten: (C, H, W) order
        elif kind == "dense":
            x = x.reshape(len(x), -1)
            w, bias = tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]
            assert w.shape == (layer["outputs"], layer["inputs"]), (i, w.shape)
            x = x @ w.T + bias  # PyTorch's nn.Linear: W is (out, in)
        elif kind == "activation":
            x = activate(layer["activation"], x)
        elif kind == "dropout":
            pass  # the identity at inference
    return activate(OUTPUT_ACTIVATION[spec["loss"]], x)


def torch_forward(model_path, spec, pixels):
    """The spec's network as PyTorch modules, the file loaded into them as it is."""
    import torch
    from safetensors.torch import load_file as load_torch

    acts = {"relu": torch.nn.ReLU, "leaky-relu": lambda: torch.nn.LeakyReLU(0.01),
            "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh,
            "softmax": lambda: torch.nn.Softmax(dim=1), "linear": torch.nn.Identity}
    layers = []
    for layer in spec["layers"]:
        kind = layer["type"]
        if kind == "dense":
            layers.append(torch.nn.Linear(layer["inputs"], layer["outputs"]))
        elif kind == "conv2d":
            layers.append(torch.nn.Conv2d(layer["in_channels"], layer["out_channels"],
                                          layer["kernel"], layer["stride"], layer["padding"]))
        elif kind == "maxpool2d":
            layers.append(torch.nn.MaxPool2d(layer["kernel"], layer["stride"]))
        elif kind == "avgpool2d":
            layers.append(torch.nn.AvgPool2d(layer["kernel"], layer["stride"]))
        elif kind == "flatten":
            layers.append(torch.nn.Flatten())
        elif kind == "activation":
            layers.append(acts[layer["activation"]]())
        elif kind == "dropout":
            layers.append(torch.nn.Dropout(layer["p"]))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(*layers)

        def forward(self, x):
            return self.layers(x)

    net = Net()
    net.load_state_dict(load_torch(model_path))  # strict: every tensor, each its shape
    net.eval()
    a, b = SCALE[spec["scale"]]
    x = torch.from_numpy(pixels.astype(np.float32) * np.float32(a) + np.float32(b))
    h, w = spec["input_shape"]
    c = spec.get("channels", 1)
    if any(isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for m in layers):
        x = x.reshape(len(x), h, w, c).permute(0, 3, 1, 2)
    with torch.no_grad():
        z = net(x)
    return activate(OUTPUT_ACTIVATION[spec["loss"]], z.numpy().astype(np.float64))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("images", help="IDX image file, raw or .gz")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--wgtrain", default="wgtrain", help="path of the wgtrain binary")
    ap.add_argument("--torch", action="store_true", help="also load the file into PyTorch")
    args = ap.parse_args()

    tensors = load_file(args.model)
    with safe_open(args.model, framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "wgtrain" and meta["format_version"] == "1", meta
    spec = json.loads(meta["spec"])
    print(f"tensors: " + ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in sorted(tensors.items())))

    pixels = read_idx_images(args.images)[: args.count]
    probs = forward(tensors, spec, pixels)
    numpy_classes = probs.argmax(axis=1)

    out = subprocess.run(
        [args.wgtrain, "predict", "--model", args.model, "--idx", args.images,
         "--range", f"0..{len(pixels)}", "--top-k", "1", "--backend", "cpu", "--json", "-q"],
        check=True, capture_output=True, text=True,
    ).stdout
    preds = json.loads(out.strip().splitlines()[-1])["predictions"]
    wg_classes = np.array([p["top"][0]["class"] for p in preds])
    wg_probs = np.array([p["top"][0]["probability"] for p in preds])

    np_top = probs[np.arange(len(probs)), numpy_classes]
    print(f"numpy   classes: {numpy_classes.tolist()}")
    print(f"wgtrain classes: {wg_classes.tolist()}")
    agree = int((numpy_classes == wg_classes).sum())
    print(f"agree on {agree}/{len(pixels)}; max |p_numpy - p_wgtrain| of the top class: "
          f"{np.abs(np_top - wg_probs).max():.3g}")
    ok = agree == len(pixels)
    if args.torch:
        t = torch_forward(args.model, spec, pixels)
        t_classes = t.argmax(axis=1)
        t_agree = int((t_classes == wg_classes).sum())
        print(f"pytorch classes: {t_classes.tolist()}")
        print(f"pytorch agrees with wgtrain on {t_agree}/{len(pixels)}; max |p_torch - p_numpy|: "
              f"{np.abs(t - probs).max():.3g}")
        ok = ok and t_agree == len(pixels)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
