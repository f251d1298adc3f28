#!/usr/bin/env python3
"""An independent importance-weighted estimate of -log p(x) in PyTorch, for a model in our `model.safetensors` format.

It reads the file itself (the safetensors layout is an 8-byte header length, a JSON header, then raw little-endian
tensors), rebuilds the MLP from the `config` metadata, and estimates
-log p(x) = -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x), on the images of a `.npy` file (`vae-train eval
--inputs-out FILE.npy` writes exactly the binarised test images that its own estimate used). Samples are decoded
in chunks of `--chunk` per image, with a running logsumexp, as large batched products. Requires `pip install torch
numpy`. Prints one JSON object: nll, se (standard error over images), seconds (the estimate alone), images, k.

    vae-train eval --model runs/mnist-iwae/model.safetensors --iw-samples 5000 --test-subset 1000 --inputs-out x.npy
    python3 bench/torch_iw_estimate.py --model runs/mnist-iwae/model.safetensors --inputs x.npy --k 5000
"""
import argparse
import json
import math
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n :]
    tensors = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", f"{name}: {info['dtype']} (only F32 is read)"
        start, end = info["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(body[start:end], dtype="<f4").reshape(info["shape"]).copy())
    return meta, tensors


class Mlp:
    """Our architecture from its config: encoder.hidden.i, encoder.mu / encoder.logvar, decoder.hidden.i, decoder.out."""

    def __init__(self, config, t):
        self.act = {"relu": torch.relu, "tanh": torch.tanh}[config["activation"]]
        n = len(config["hidden_dims"])
        self.enc = [(t[f"encoder.hidden.{i}.weight"], t[f"encoder.hidden.{i}.bias"]) for i in range(n)]
        self.mu = (t["encoder.mu.weight"], t["encoder.mu.bias"])
        self.logvar = (t["encoder.logvar.weight"], t["encoder.logvar.bias"])
        self.dec = [(t[f"decoder.hidden.{i}.weight"], t[f"decoder.hidden.{i}.bias"]) for i in range(n)]
        self.out = (t["decoder.out.weight"], t["decoder.out.bias"])

    def encode(self, x):
        h = x
        for w, b in self.enc:
            h = self.act(F.linear(h, w, b))
        return F.linear(h, *self.mu), F.linear(h, *self.logvar)

    def decode(self, z):
        h = z
        for w, b in self.dec:
            h = self.act(F.linear(h, w, b))
        return F.linear(h, *self.out)


def log_px(model, x, k, chunk, gen):
    """log p^(x) per image of x [B, D] with k samples, chunk samples at a time."""
    mu, logvar = model.encode(x)
    std = torch.exp(0.5 * logvar)
    b, d = mu.shape
    acc = None
    done = 0
    while done < k:
        s = min(chunk, k - done)
        eps = torch.randn((s, b, d), generator=gen)
        z = mu + std * eps
        logits = model.decode(z.reshape(s * b, d)).reshape(s, b, -1)
        log_px_z = -F.binary_cross_entropy_with_logits(logits, x.expand(s, -1, -1), reduction="none").sum(-1)
        log_w = log_px_z + 0.5 * (logvar + eps * eps - z * z).sum(-1)
        lse = torch.logsumexp(log_w, 0)
        acc = lse if acc is None else torch.logaddexp(acc, lse)
        done += s
    return acc.double() - math.log(k)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", required=True, help=".npy of [n, input_dim] f32 images")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--batch", type=int, default=100, help="images per batch")
    p.add_argument("--chunk", type=int, default=50, help="samples per image decoded at once")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    meta, tensors = read_safetensors(a.model)
    model = Mlp(json.loads(meta["config"]), tensors)
    x = torch.from_numpy(np.load(a.inputs).astype(np.float32))
    gen = torch.Generator().manual_seed(a.seed)
    start = time.perf_counter()
    with torch.no_grad():
        nll = torch.cat([-log_px(model, xb, a.k, a.chunk, gen) for xb in x.split(a.batch)])
    seconds = time.perf_counter() - start
    n = nll.numel()
    se = nll.std().item() / math.sqrt(n) if n > 1 else 0.0
    print(json.dumps({"nll": nll.mean().item(), "se": se, "seconds": seconds, "images": n, "k": a.k,
                      "threads": a.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
