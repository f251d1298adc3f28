#!/usr/bin/env python3
"""The PyTorch reference for `cargo xtask bench`: the same VAE, optimiser, batch size and data as a preset.

The model is our MLP VAE: any number of hidden layers (the decoder mirrors the encoder's widths in reverse), an
activation of relu, tanh, leaky-relu (slope 0.01), elu or silu, an encoder whose last hidden layer feeds two separate
Linear heads (mu, logvar), a Bernoulli decoder, every layer initialised as PyTorch's default. With one relu layer of
400 and a latent of 20 (the defaults) it is pytorch/examples' VAE; with `--classes` > 0, the conditional VAE (Sohn et
al. 2015) whose encoder reads [x | one-hot y] and decoder [z | one-hot y]. Training images are binarised as
`--binarize` (or the config) says: none (grey levels as BCE targets), static (thresholded at 0.5, as our trainer
does) or dynamic (a fresh Bernoulli(grey level) draw of each training batch every time it is used).

A config whose model has `conv` (e.g. `vae-train preset mnist-conv`; plain, not conditional) adds our convolutional
stack around that MLP, as `vae-train preset NAME --layers` lists it: nn.Conv2d layers (each + activation) on the
1x28x28 image, flattened channel-major into the encoder's hidden layers; the decoder's hidden layers then
`decoder.project` (Linear + activation) to the last conv's map, and nn.ConvTranspose2d layers mirroring the convs in
reverse (each + activation but the last, `decoder.out`, which gives the logits), each with the output_padding that
restores its mirror conv's input size. Layers are created in our state-dict order, so each keeps PyTorch's default
init drawn in that order.

Prints one JSON object per epoch (the train loss, -ELBO or with `--iwae-k` the negative IWAE bound; test -ELBO;
training seconds, images/s) and a final summary with the peak RSS. With `--save PATH` it also writes the final model
in our safetensors format under our tensor names, with the format our trainer would give it (`vae-candle/1` for a
dense relu or tanh model, `vae-candle/2` for a conv model or another activation), which `vae-train eval` reads, and
`bench/torch_iw_estimate.py` too for a dense relu or tanh model. Requires `pip install torch numpy`.

    python3 bench/torch_reference.py --data-dir data/mnist --hidden 400 --latent 20 --batch-size 128 --lr 1e-3 --epochs 3

or, as `cargo xtask bench` runs it, from a preset resolved by the trainer itself (the data dir is then the root that
holds `<dataset>/`: $VAE_DATA_DIR, else data/; the model, binarisation, batch size, lr and seed come from the
config, an explicit `--seed` overrides the config's, and the epochs are always `--epochs`, default 3):

    vae-train preset mnist-iwae > mnist-iwae.json
    python3 bench/torch_reference.py --config mnist-iwae.json --epochs 100 --save torch.safetensors
"""
import argparse
import gzip
import json
import math
import os
import resource
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "leaky-relu": lambda x: F.leaky_relu(x, 0.01),  # our LeakyRelu slope (crates/vae-model/src/config.rs)
    "elu": F.elu,
    "silu": F.silu,
}


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class VAE(nn.Module):
    """Our MLP VAE (see the module docstring). The layers are created in the order encoder hidden, mu, logvar,
    decoder hidden, out, so that with one hidden layer the same seed gives pytorch/examples' initial weights
    (fc1, fc21, fc22, fc3, fc4)."""

    def __init__(self, hidden_dims, latent, activation="relu", classes=0, input_dim=784):
        super().__init__()
        self.classes = classes
        self.act = ACTIVATIONS[activation]
        widths = [input_dim + classes, *hidden_dims]
        self.enc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.mu = nn.Linear(widths[-1], latent)
        self.logvar = nn.Linear(widths[-1], latent)
        widths = [latent + classes, *reversed(hidden_dims)]
        self.dec = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.out = nn.Linear(widths[-1], input_dim)

    def with_label(self, t, y):
        return torch.cat([t, F.one_hot(y, self.classes).to(t.dtype)], 1) if self.classes else t

    def encode(self, x, y):
        h = self.with_label(x, y)
        for layer in self.enc:
            h = self.act(layer(h))
        return self.mu(h), self.logvar(h)

    def decode(self, z, y):
        h = self.with_label(z, y)
        for layer in self.dec:
            h = self.act(layer(h))
        return self.out(h)

    def forward(self, x, y):
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z, y), mu, logvar

    def named_tensors(self):
        """Our file's tensor names (`vae-candle/1`): encoder.hidden.{i}, encoder.mu, encoder.logvar,
        decoder.hidden.{i}, decoder.out, each a .weight [out, in] and a .bias [out]."""
        layers = [(f"encoder.hidden.{i}", l) for i, l in enumerate(self.enc)]
        layers += [("encoder.mu", self.mu), ("encoder.logvar", self.logvar)]
        layers += [(f"decoder.hidden.{i}", l) for i, l in enumerate(self.dec)]
        layers += [("decoder.out", self.out)]
        for name, layer in layers:
            yield f"{name}.weight", layer.weight
            yield f"{name}.bias", layer.bias


class ConvVAE(nn.Module):
    """Our conv VAE (see the module docstring) for Bernoulli images of `image` = [C, H, W], unconditional. The
    modules are created in our state-dict order: encoder.conv.{i}, encoder.hidden.{i}, encoder.mu, encoder.logvar,
    decoder.hidden.{i}, decoder.project, decoder.deconv.{i}, decoder.out."""

    def __init__(self, hidden_dims, latent, activation, conv, image=(1, 28, 28)):
        super().__init__()
        self.act = ACTIVATIONS[activation]
        k, s, pad = conv["kernel"], conv["stride"], conv["padding"]
        # The encoder's maps, input first: [C, H, W], then each conv's output.
        self.maps = [list(image)]
        for c in conv["channels"]:
            _, h, w = self.maps[-1]
            self.maps.append([c, (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1])
        self.convs = nn.ModuleList(nn.Conv2d(a[0], b[0], k, s, pad) for a, b in zip(self.maps, self.maps[1:]))
        flat = self.maps[-1][0] * self.maps[-1][1] * self.maps[-1][2]
        widths = [flat, *hidden_dims]
        self.enc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.mu = nn.Linear(widths[-1], latent)
        self.logvar = nn.Linear(widths[-1], latent)
        widths = [latent, *reversed(hidden_dims)]
        self.dec = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.project = nn.Linear(widths[-1], flat)
        deconvs = []
        for i in reversed(range(len(self.maps) - 1)):  # mirroring conv i: maps[i + 1] back to maps[i]
            src, dst = self.maps[i + 1], self.maps[i]
            op = tuple(dst[d] - ((src[d] - 1) * s - 2 * pad + k) for d in (1, 2))
            deconvs.append(nn.ConvTranspose2d(src[0], dst[0], k, s, pad, output_padding=op))
        self.deconvs = nn.ModuleList(deconvs[:-1])
        self.out = deconvs[-1]

    def forward(self, x, y=None):
        h = x.reshape(x.shape[0], *self.maps[0])
        for layer in self.convs:
            h = self.act(layer(h))
        h = h.flatten(1)  # NCHW, channel-major
        for layer in self.enc:
            h = self.act(layer(h))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        h = z
        for layer in self.dec:
            h = self.act(layer(h))
        h = self.act(self.project(h)).reshape(z.shape[0], *self.maps[-1])
        for layer in self.deconvs:
            h = self.act(layer(h))
        return self.out(h).flatten(1), mu, logvar

    def named_tensors(self):
        """Our file's tensor names: the state-dict order above, each a .weight (Linear [out, in], Conv2d
        [out, in, k, k], ConvTranspose2d [in, out, k, k], as PyTorch stores them) and a .bias [out]."""
        layers = [(f"encoder.conv.{i}", l) for i, l in enumerate(self.convs)]
        layers += [(f"encoder.hidden.{i}", l) for i, l in enumerate(self.enc)]
        layers += [("encoder.mu", self.mu), ("encoder.logvar", self.logvar)]
        layers += [(f"decoder.hidden.{i}", l) for i, l in enumerate(self.dec)]
        layers += [("decoder.project", self.project)]
        layers += [(f"decoder.deconv.{i}", l) for i, l in enumerate(self.deconvs)]
        layers += [("decoder.out", self.out)]
        for name, layer in layers:
            yield f"{name}.weight", layer.weight
            yield f"{name}.bias", layer.bias


def file_format(model_config):
    """The `format` our trainer writes this config in (crates/vae-model/src/io.rs, `format_of`): `vae-candle/1` for
    a dense Bernoulli model without `input_shape` and with relu or tanh, else `vae-candle/2`."""
    first = (model_config.get("likelihood", "bernoulli") == "bernoulli" and model_config.get("input_shape") is None
             and model_config.get("conv") is None and model_config.get("activation", "relu") in ("relu", "tanh"))
    return "vae-candle/1" if first else "vae-candle/2"


def save_safetensors(path, tensors, metadata):
    """Writes f32 tensors as safetensors by hand (an 8-byte little-endian header length, a JSON header with each
    tensor's dtype, shape and data_offsets plus `__metadata__`, then the raw little-endian data), so the
    `safetensors` package is not needed."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors:
        data = t.detach().cpu().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # pad the header as safetensors does, so the data starts 8-byte aligned
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.writelines(blobs)
    os.replace(tmp, path)


def binarized(x, how, gen=None):
    """The targets of images x in [0, 1]: grey levels, thresholded at 0.5, or a Bernoulli(x) draw from `gen`."""
    if how == "none":
        return x
    if how == "static":
        return (x > 0.5).to(x.dtype)
    if how == "dynamic":
        return torch.bernoulli(x, generator=gen)
    raise SystemExit(f"unknown binarisation {how!r} (expected none, static or dynamic)")


def mean_loss(model, x, y):
    """The batch's mean negative ELBO, the quantity a step minimises."""
    logits, mu, logvar = model(x, y)
    recon, kl = loss_terms(logits, x, mu, logvar)
    return (recon + kl) / x.shape[0]


def mean_iwae_loss(model, x, y, k):
    """The batch's mean negative importance-weighted bound with k samples per image (Burda et al. 2016), the
    quantity an `objective = "iwae"` step minimises: -log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z | x)."""
    mu, logvar = model.encode(x, y)
    eps = torch.randn((k, *mu.shape), dtype=mu.dtype)
    z = mu + eps * torch.exp(0.5 * logvar)  # [k, B, latent]
    ys = y.repeat(k) if model.classes else y
    logits = model.decode(z.reshape(-1, mu.shape[1]), ys).reshape(k, *x.shape)
    log_px = -F.binary_cross_entropy_with_logits(logits, x.expand(k, *x.shape), reduction="none").sum(-1)
    # log p(z) - log q(z | x); the 2π terms cancel.
    log_ratio = -0.5 * (z.pow(2) - eps.pow(2) - logvar).sum(-1)
    bound = torch.logsumexp(log_px + log_ratio, 0) - math.log(k)
    return -bound.mean()


def loss_terms(logits, x, mu, logvar):
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return recon, kl


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.environ.get("VAE_DATA_DIR") or "data")
    p.add_argument("--hidden", default="400", help="hidden widths, comma-separated (e.g. 200,200)")
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS))
    p.add_argument("--binarize", default="none", choices=["none", "static", "dynamic"])
    p.add_argument("--classes", type=int, default=0, help="a conditional VAE over this many classes (0: plain)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=None, help="default: the config's seed, else 1")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--config", help="a resolved run config (`vae-train preset NAME`): sets the model, binarisation, batch size, lr, seed and dataset")
    p.add_argument("--save", help="write the final model here, in our safetensors format (vae-candle/1 or /2, as our trainer would)")
    p.add_argument("--iwae-k", type=int, default=0,
                   help="train on the importance-weighted bound with this many samples per image (0: the ELBO)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the forward pass and loss, and use Adam(fused=True): the fastest PyTorch we know on a CPU")
    args = p.parse_args()
    args.hidden = [int(w) for w in args.hidden.split(",")]
    dataset, seed = "mnist", 1
    model_config = None
    if args.config:
        with open(args.config) as f:
            cfg = json.load(f)
        model_config = cfg["model"]
        if model_config.get("likelihood", "bernoulli") != "bernoulli":
            raise SystemExit(f"{args.config}: the PyTorch reference has only the Bernoulli decoder")
        if model_config.get("input_dim", 784) != 784:
            raise SystemExit(f"{args.config}: the PyTorch reference reads 784-pixel MNIST-format images")
        args.hidden, args.latent = list(model_config["hidden_dims"]), model_config["latent_dim"]
        args.activation = model_config.get("activation", "relu")
        if args.activation not in ACTIVATIONS:
            raise SystemExit(f"{args.config}: the PyTorch reference has no activation {args.activation!r}")
        if model_config.get("conv") is not None:
            if model_config.get("conditional"):
                raise SystemExit(f"{args.config}: the PyTorch reference's conv model is not conditional")
            if model_config.get("input_shape") not in (None, [1, 28, 28]):
                raise SystemExit(f"{args.config}: the PyTorch reference's conv model reads 1x28x28 images")
        if model_config.get("conditional"):
            args.classes = model_config.get("num_classes", 10)
        t = cfg["training"]
        objective = t.get("objective", "elbo")
        if objective not in ("elbo", "iwae"):
            raise SystemExit(f"{args.config}: the PyTorch reference trains the ELBO or the IWAE bound, not {objective!r}")
        if objective == "iwae":
            if model_config.get("conv") is not None:
                raise SystemExit(f"{args.config}: the PyTorch reference trains its conv model on the ELBO only")
            args.iwae_k = t["k"]
        args.batch_size, args.lr = t["batch_size"], t["lr"]
        args.binarize = t.get("binarize", "none")
        seed = t["seed"]
        dataset = cfg["dataset"]
        args.data_dir = f"{args.data_dir.rstrip('/')}/{dataset}"
    if args.seed is None:
        args.seed = seed
    if model_config is None:
        model_config = {"input_dim": 784, "hidden_dims": args.hidden, "latent_dim": args.latent,
                        "activation": args.activation, "likelihood": "bernoulli"}
        if args.classes:
            model_config.update(conditional=True, num_classes=args.classes)

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    d = args.data_dir.rstrip("/")
    train = torch.from_numpy(idx(f"{d}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0)
    test = torch.from_numpy(idx(f"{d}/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0)
    train_y = torch.from_numpy(idx(f"{d}/train-labels-idx1-ubyte.gz").astype(np.int64))
    test_y = torch.from_numpy(idx(f"{d}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    # Static binarisation is the same every epoch, so it is done once. The test -ELBO printed each epoch is on the
    # test images binarised as the training ones, where dynamic means one fixed Bernoulli draw made here from its
    # own generator (Burda et al.'s fixed binarised test set; not the same draw as `vae-train eval --inputs-out`),
    # so the model's own RNG stream is not disturbed by it.
    if args.binarize == "static":
        train = binarized(train, "static")
    test = binarized(test, args.binarize, torch.Generator().manual_seed(args.seed + 1_000_003))
    if model_config.get("conv") is not None:
        model = ConvVAE(args.hidden, args.latent, args.activation, model_config["conv"])
    else:
        model = VAE(args.hidden, args.latent, args.activation, args.classes)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, fused=True if args.compile else None)
    step_loss = mean_loss
    if args.iwae_k:
        def step_loss(model, x, y):
            return mean_iwae_loss(model, x, y, args.iwae_k)
    batch_loss = torch.compile(step_loss) if args.compile else step_loss
    if args.compile:
        # Compiled before the timed epochs, forward and backward, at both batch sizes an epoch uses (the warm-up's
        # noise draws move the RNG stream, so a compiled run's numbers are not an eager run's).
        for rows in {args.batch_size, train.shape[0] % args.batch_size or args.batch_size}:
            batch_loss(model, binarized(train[:rows], args.binarize), train_y[:rows]).backward()
        opt.zero_grad()
    n = train.shape[0]
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(n)
        total = 0.0
        start = time.perf_counter()
        for i in range(0, n, args.batch_size):
            rows = perm[i : i + args.batch_size]
            x = train[rows]
            if args.binarize == "dynamic":
                x = binarized(x, "dynamic")  # a fresh draw every time the image is used
            opt.zero_grad()
            loss = batch_loss(model, x, train_y[rows])
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
    if args.save:
        metadata = {"format": file_format(model_config), "config": json.dumps(model_config, separators=(",", ":")),
                    "dataset": dataset, "binarize": args.binarize}
        save_safetensors(args.save, model.named_tensors(), metadata)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "peak_rss_mib": peak_kib / 1024}))


if __name__ == "__main__":
    main()
