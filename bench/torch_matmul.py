#!/usr/bin/env python3
"""Each product shape's GFLOP/s through torch.matmul, beside ours, for `cargo xtask bench --sgemm`.

A shape is written as our profile writes it, "NT 128x400x784": whether a is stored transposed (as [k, m]) and b (as
[n, k]), then m, n, k. torch multiplies the same layouts (a transposed view of the stored matrix), into a preallocated
c. Each shape is timed call by call for at least --ms milliseconds (and five calls), after three untimed calls; the
median call gives the rate, 2·m·n·k FLOPs over its time. Requires `pip install torch`. One JSON line per shape.

    python3 bench/torch_matmul.py --ms 300 "NT 128x400x784" "NN 128x784x400"
"""
import argparse
import json
import time

import torch


def parse(shape):
    transposes, dims = shape.split()
    m, n, k = (int(d) for d in dims.split("x"))
    return transposes[0] == "T", transposes[1] == "T", m, n, k


def rate(shape, seconds):
    ta, tb, m, n, k = parse(shape)
    a = torch.randn(k, m).t() if ta else torch.randn(m, k)
    b = torch.randn(n, k).t() if tb else torch.randn(k, n)
    c = torch.zeros(m, n)
    for _ in range(3):
        torch.matmul(a, b, out=c)
    times, start = [], time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        times.append(time.perf_counter() - t0)
    times.sort()
    return 2.0 * m * n * k / max(times[len(times) // 2], 1e-12) / 1e9


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ms", type=float, default=300.0, help="milliseconds of timed calls per shape, at least")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("shapes", nargs="+")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    for shape in args.shapes:
        print(json.dumps({"shape": shape, "backend": "torch", "gflop_per_s": rate(shape, args.ms / 1000.0),
                          "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
