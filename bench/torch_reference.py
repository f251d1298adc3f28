#!/usr/bin/env python3
"""The PyTorch reference for `cargo xtask bench`: the same VAE, optimiser, batch size and data as a preset.

Prints one JSON object per epoch (train/test -ELBO, training seconds, images/s) and a final summary with the
peak RSS. Requires `pip install torch numpy`.

    python3 bench/torch_reference.py --data-dir data/mnist --hidden 400 --latent 20 --batch-size 128 --lr 1e-3 --epochs 3

or, as `cargo xtask bench` runs it, from a preset resolved by the trainer itself (the data dir is then the root that
holds `<dataset>/`: $VAE_DATA_DIR, else data/):

    vae-train preset mnist > mnist.json
    python3 bench/torch_reference.py --config mnist.json --epochs 3
"""
import argparse
import gzip
import json
import os
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class VAE(nn.Module):
    """pytorch/examples' VAE, with the hidden width and latent size as parameters; with `classes` > 0, the
    conditional VAE (Sohn et al. 2015) whose encoder reads [x | one-hot y] and decoder [z | one-hot y]."""

    def __init__(self, hidden, latent, classes=0):
        super().__init__()
        self.classes = classes
        self.fc1 = nn.Linear(784 + classes, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent + classes, hidden)
        self.fc4 = nn.Linear(hidden, 784)

    def with_label(self, t, y):
        return torch.cat([t, F.one_hot(y, self.classes).to(t.dtype)], 1) if self.classes else t

    def forward(self, x, y):
        h = F.relu(self.fc1(self.with_label(x, y)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.fc4(F.relu(self.fc3(self.with_label(z, y)))), mu, logvar


def loss_terms(logits, x, mu, logvar):
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return recon, kl


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.environ.get("VAE_DATA_DIR") or "data")
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--classes", type=int, default=0, help="a conditional VAE over this many classes (0: plain)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--config", help="a resolved run config (`vae-train preset NAME`): sets the model, batch size, lr, seed and dataset")
    args = p.parse_args()
    if args.config:
        with open(args.config) as f:
            cfg = json.load(f)
        if len(cfg["model"]["hidden_dims"]) != 1:
            raise SystemExit(f"{args.config}: the PyTorch reference has exactly one hidden layer")
        args.hidden, args.latent = cfg["model"]["hidden_dims"][0], cfg["model"]["latent_dim"]
        if cfg["model"].get("conditional"):
            args.classes = cfg["model"].get("num_classes", 10)
        args.batch_size, args.lr = cfg["training"]["batch_size"], cfg["training"]["lr"]
        args.seed = cfg["training"]["seed"]
        args.data_dir = f"{args.data_dir.rstrip('/')}/{cfg['dataset']}"

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    d = args.data_dir.rstrip("/")
    train = torch.from_numpy(idx(f"{d}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0)
    test = torch.from_numpy(idx(f"{d}/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0)
    train_y = torch.from_numpy(idx(f"{d}/train-labels-idx1-ubyte.gz").astype(np.int64))
    test_y = torch.from_numpy(idx(f"{d}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    model = VAE(args.hidden, args.latent, args.classes)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n = train.shape[0]
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(n)
        total = 0.0
        start = time.perf_counter()
        for i in range(0, n, args.batch_size):
            rows = perm[i : i + args.batch_size]
            x = train[rows]
            opt.zero_grad()
            logits, mu, logvar = model(x, train_y[rows])
            recon, kl = loss_terms(logits, x, mu, logvar)
            loss = (recon + kl) / x.shape[0]
            loss.backward()
            opt.step()
            total += loss.item() * x.shape[0]
        secs = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            tl = 0.0
            for i in range(0, test.shape[0], 1000):
                x = test[i : i + 1000]
                logits, mu, logvar = model(x, test_y[i : i + 1000])
                recon, kl = loss_terms(logits, x, mu, logvar)
                tl += (recon + kl).item()
        print(json.dumps({
            "epoch": epoch, "train_loss": total / n, "test_loss": tl / test.shape[0],
            "epoch_s": secs, "images_per_s": n / secs,
        }), flush=True)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "peak_rss_mib": peak_kib / 1024}))


if __name__ == "__main__":
    main()
