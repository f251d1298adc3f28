#!/usr/bin/env python3
"""Our model file read without us: a numpy-only forward pass of a `vae-candle/1` or `vae-candle/2` model.safetensors.

It reads the file with the `safetensors` package, rebuilds the model from the `config` metadata alone (the MLP, and
the convolutions of a `conv` model: conv2d and conv_transpose2d written out below), and checks what
`vae-train` wrote for the same examples: the encoder's posterior means, and the mean of the decoder's distribution at
those means, clamped to [0, 1] (what `reconstruct` and `sample` write), for each `likelihood` (bernoulli, gaussian of
fixed or learned σ, continuous-bernoulli, logistic; see docs/decoders.md). The reconstructions are `[n, *input_shape]`,
or `[n, H, W]` for a square grey model without one. It exits 1 if any value differs by more than the tolerance, or a
shape is not the model's. Needs `pip install numpy safetensors`.

    vae-train encode --model M --n 16 --out mu.npy --inputs-out x.npy
    vae-train reconstruct --model M --n 16 --out recon.npy
    python3 crates/vae-model/scripts/numpy_forward.py --model M --inputs x.npy --means mu.npy --recon recon.npy
"""
import argparse
import json
import sys

import numpy as np
from safetensors import safe_open

FORMATS = ("vae-candle/1", "vae-candle/2")

# LeakyReLU's slope below 0, PyTorch's default (crates/vae-model/src/config.rs).
LEAKY_SLOPE = 0.01

# Below this |logit| the continuous Bernoulli's mean is its series (crates/vae-model/src/likelihood.rs).
CB_MEAN_SERIES_BELOW = 0.1


def load(path):
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        tensors = {name: f.get_tensor(name).astype(np.float64) for name in f.keys()}
    if meta.get("format") not in FORMATS:
        sys.exit(f"{path}: format {meta.get('format')!r}, expected one of {FORMATS}")
    return json.loads(meta["config"]), tensors


def elu(v):
    """x above 0, exp(x) − 1 below (α = 1)."""
    return np.where(v > 0.0, v, np.expm1(np.minimum(v, 0.0)))


ACTIVATIONS = {
    "relu": lambda v: np.maximum(v, 0.0),
    "tanh": np.tanh,
    "leaky-relu": lambda v: np.where(v > 0.0, v, LEAKY_SLOPE * v),
    "elu": elu,
    "silu": lambda v: v * sigmoid(v),
    None: lambda v: v,
}


def activate(y, activation):
    if activation not in ACTIVATIONS:
        sys.exit(f"unknown activation {activation!r}")
    return ACTIVATIONS[activation](y)


def dense(t, name, x, activation):
    y = x @ t[f"{name}.weight"].T + t[f"{name}.bias"]
    return activate(y, activation)


def conv2d(x, w, stride, padding):
    """PyTorch's Conv2d: `x [n, C_in, H, W]`, `w [C_out, C_in, k, k]` to `[n, C_out, H', W']`, by im2col."""
    _, _, h, wd = x.shape
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
    # cols[n, C_in, ki, kj, ho, wo]: the input under kernel tap (ki, kj) at every output position.
    cols = np.stack([np.stack([xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
                               for j in range(k)], axis=2) for i in range(k)], axis=2)
    return np.einsum("ncijhw,ocij->nohw", cols, w, optimize=True)


def conv_transpose2d(x, w, stride, padding, output_padding):
    """PyTorch's ConvTranspose2d: `x [n, C_in, H, W]`, `w [C_in, C_out, k, k]` to `[n, C_out, H', W']` with
    H' = (H − 1)·stride − 2·padding + k + output_padding: every input scatters its kernel, then the border is cut."""
    n, _, h, wd = x.shape
    k = w.shape[2]
    grow = k + output_padding
    full = np.zeros((n, w.shape[1], (h - 1) * stride + grow, (wd - 1) * stride + grow))
    for i in range(k):
        for j in range(k):
            tap = np.einsum("nchw,co->nohw", x, w[:, :, i, j], optimize=True)
            full[:, :, i:i + stride * h:stride, j:j + stride * wd:stride] += tap
    ho, wo = full.shape[2] - 2 * padding, full.shape[3] - 2 * padding
    return full[:, :, padding:padding + ho, padding:padding + wo]


def outputs_per_value(cfg):
    """2 where the decoder predicts a log-scale beside each mean (gaussian without `sigma`, logistic), else 1."""
    likelihood = cfg.get("likelihood", "bernoulli")
    two = likelihood == "logistic" or (likelihood == "gaussian" and cfg.get("sigma") is None)
    return 2 if two else 1


def sigmoid(l):
    return 0.5 * (1.0 + np.tanh(0.5 * l))


def continuous_bernoulli_mean(l):
    """E[x] under CB(σ(l)): σ(l)/tanh(l/2) − 1/l, and ½ + l/12 − l³/720 + l⁵/30240 below |l| = 0.1."""
    small = np.abs(l) < CB_MEAN_SERIES_BELOW
    safe = np.where(small, 1.0, l)
    direct = sigmoid(safe) / np.tanh(0.5 * safe) - 1.0 / safe
    taylor = 0.5 + l / 12.0 - l**3 / 720.0 + l**5 / 30240.0
    return np.where(small, taylor, direct)


def distribution_mean(cfg, out):
    """The decoder distribution's mean of each value from its output `out [n, k·D]`, clamped to [0, 1]."""
    likelihood = cfg.get("likelihood", "bernoulli")
    d = out.shape[1] // outputs_per_value(cfg)
    if likelihood == "bernoulli":
        return sigmoid(out)
    if likelihood in ("gaussian", "logistic"):
        m = out[:, :d]
    elif likelihood == "continuous-bernoulli":
        m = continuous_bernoulli_mean(out)
    else:
        sys.exit(f"unknown likelihood {likelihood!r}")
    return np.clip(m, 0.0, 1.0)


def output_shape(cfg, n):
    """The shape vae-train writes n outputs in: `[n, *input_shape]`, `[n, H, W]` if square and grey, else `[n, D]`."""
    if cfg.get("input_shape") is not None:
        return [n, *cfg["input_shape"]]
    side = int(round(cfg["input_dim"] ** 0.5))
    return [n, side, side] if side * side == cfg["input_dim"] else [n, cfg["input_dim"]]


def image_shape(cfg):
    """`[C, H, W]` of the images: `input_shape`, or a square grey image without one."""
    shape = output_shape(cfg, 1)[1:]
    if len(shape) == 2:
        shape = [1, *shape]
    if len(shape) != 3:
        sys.exit(f"conv needs images [C, H, W], and the examples are {shape}")
    return shape


def conv_plan(cfg):
    """The encoder's maps, input first: `[C, H, W]` then each convolution's output (config/conv.rs)."""
    conv = cfg["conv"]
    k, s, p = conv["kernel"], conv["stride"], conv["padding"]
    maps = [image_shape(cfg)]
    for c in conv["channels"]:
        _, h, w = maps[-1]
        maps.append([c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1])
    return maps


def conv_layer(t, name, x, shape_in, conv, transposed, output_padding, activation):
    """One (transposed) convolution on flat, channel-major `x [n, C·H·W]` of map `shape_in`; flat out."""
    maps = x.reshape(x.shape[0], *shape_in)
    w, b = t[f"{name}.weight"], t[f"{name}.bias"]
    if transposed:
        y = conv_transpose2d(maps, w, conv["stride"], conv["padding"], output_padding)
    else:
        y = conv2d(maps, w, conv["stride"], conv["padding"])
    y = y + b.reshape(1, -1, 1, 1)
    return activate(y, activation).reshape(x.shape[0], -1)


def encode_convs(cfg, t, x):
    """The encoder's convolutions, if any, on flat `x`."""
    if cfg.get("conv") is None:
        return x
    maps = conv_plan(cfg)
    for i in range(len(maps) - 1):
        x = conv_layer(t, f"encoder.conv.{i}", x, maps[i], cfg["conv"], False, 0, cfg["activation"])
    return x


def decode_convs(cfg, t, g):
    """The decoder's tail from the last hidden layer's `g`: `decoder.out` (dense), or `decoder.project`, the
    activated `decoder.deconv.{i}` and the transposed `decoder.out`, each mirroring an encoder convolution."""
    act = cfg["activation"]
    if cfg.get("conv") is None:
        return dense(t, "decoder.out", g, None)
    conv, maps = cfg["conv"], conv_plan(cfg)
    k, s, p = conv["kernel"], conv["stride"], conv["padding"]
    g = dense(t, "decoder.project", g, act)
    last = len(maps) - 2
    for j, i in enumerate(range(last, -1, -1)):
        shape_in, target = maps[i + 1], maps[i]
        output_padding = target[1] - ((shape_in[1] - 1) * s - 2 * p + k)
        name, a = (f"decoder.deconv.{j}", act) if i > 0 else ("decoder.out", None)
        g = conv_layer(t, name, g, shape_in, conv, True, output_padding, a)
    return g


def forward(cfg, t, x):
    """(posterior means, decoded distribution means) for inputs `x [n, input_dim]`."""
    act, layers = cfg["activation"], len(cfg["hidden_dims"])
    h = encode_convs(cfg, t, x)
    for i in range(layers):
        h = dense(t, f"encoder.hidden.{i}", h, act)
    mu = dense(t, "encoder.mu", h, None)
    g = mu
    for i in range(layers):
        g = dense(t, f"decoder.hidden.{i}", g, act)
    out = decode_convs(cfg, t, g)
    if out.shape[1] != cfg["input_dim"] * outputs_per_value(cfg):
        sys.exit(f"decoder.out gives {out.shape[1]} values per example for input_dim {cfg['input_dim']}")
    return mu, distribution_mean(cfg, out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", required=True, help="the examples encoded, [n, input_dim]")
    p.add_argument("--means", required=True, help="vae-train's posterior means, [n, latent_dim]")
    p.add_argument("--recon", required=True, help="vae-train's reconstructions, [n, *input_shape] (or [n, H, W])")
    p.add_argument("--tolerance", type=float, default=1e-5)
    args = p.parse_args()
    cfg, t = load(args.model)
    if cfg.get("conditional"):
        sys.exit(f"{args.model}: a conditional model needs labels; this check covers plain models")
    x = np.load(args.inputs).astype(np.float64)
    x = x.reshape(x.shape[0], -1)
    mu, recon = forward(cfg, t, x)
    theirs_recon = np.load(args.recon)
    want = output_shape(cfg, x.shape[0])
    if list(theirs_recon.shape) != want:
        sys.exit(f"{args.recon}: shape {list(theirs_recon.shape)}, the model's outputs are {want}")

    failed = False
    for what, ours, theirs in [("means", mu, np.load(args.means)), ("recon", recon, theirs_recon)]:
        line = {"check": what, "likelihood": cfg.get("likelihood", "bernoulli"), "shape": list(theirs.shape)}
        diff = np.abs(ours - theirs.astype(np.float64).reshape(ours.shape))
        line["max_abs_diff"] = float(np.max(diff))
        print(json.dumps(line))
        failed |= not np.all(diff <= args.tolerance)
    if failed:
        sys.exit(f"numpy and vae-train differ by more than {args.tolerance}")

if __name__ == "__main__":
    main()
