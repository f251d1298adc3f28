#!/usr/bin/env python3
"""Our model file read without us: a numpy-only forward pass of a `vae-candle/1` model.safetensors.

It reads the file with the `safetensors` package, rebuilds the MLP from the `config` metadata alone, and checks what
`vae-train` wrote for the same images: the encoder's posterior means, and the decoder's probabilities at those
means. It exits 1 if any value differs by more than the tolerance. Needs `pip install numpy safetensors`.

    vae-train encode --model M --n 16 --out mu.npy --inputs-out x.npy
    vae-train reconstruct --model M --n 16 --out recon.npy
    python3 crates/vae-model/scripts/numpy_forward.py --model M --inputs x.npy --means mu.npy --recon recon.npy
"""
import argparse
import json
import sys

import numpy as np
from safetensors import safe_open


def load(path):
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
        tensors = {name: f.get_tensor(name).astype(np.float64) for name in f.keys()}
    if meta.get("format") != "vae-candle/1":
        sys.exit(f"{path}: format {meta.get('format')!r}, expected 'vae-candle/1'")
    return json.loads(meta["config"]), tensors


def dense(t, name, x, activation):
    y = x @ t[f"{name}.weight"].T + t[f"{name}.bias"]
    return {"relu": lambda v: np.maximum(v, 0.0), "tanh": np.tanh, None: lambda v: v}[activation](y)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", required=True, help="the images encoded, [n, input_dim]")
    p.add_argument("--means", required=True, help="vae-train's posterior means, [n, latent_dim]")
    p.add_argument("--recon", required=True, help="vae-train's decoded probabilities at the means, [n, 28, 28]")
    p.add_argument("--tolerance", type=float, default=1e-5)
    args = p.parse_args()
    cfg, t = load(args.model)
    if cfg.get("conditional"):
        sys.exit(f"{args.model}: a conditional model needs labels; this check covers plain models")
    act, layers = cfg["activation"], len(cfg["hidden_dims"])
    h = np.load(args.inputs).astype(np.float64)
    for i in range(layers):
        h = dense(t, f"encoder.hidden.{i}", h, act)
    mu = dense(t, "encoder.mu", h, None)
    g = mu
    for i in range(layers):
        g = dense(t, f"decoder.hidden.{i}", g, act)
    recon = 1.0 / (1.0 + np.exp(-dense(t, "decoder.out", g, None)))

    worst = 0.0
    for what, ours, theirs in [("means", mu, np.load(args.means)), ("recon", recon, np.load(args.recon))]:
        theirs = theirs.reshape(ours.shape)
        diff = float(np.max(np.abs(ours - theirs)))
        print(json.dumps({"check": what, "shape": list(ours.shape), "max_abs_diff": diff}))
        worst = max(worst, diff)
    if worst > args.tolerance:
        sys.exit(f"numpy and vae-train differ by {worst} > {args.tolerance}")


if __name__ == "__main__":
    main()
