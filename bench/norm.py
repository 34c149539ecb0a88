"""BatchNorm / LayerNorm forward + backward: kernelnet vs PyTorch, each in its own process, alternating.

    python bench/norm.py [--procs 5] [--threads 2] [--device cpu|cuda] [--out FILE]

Per case, a worker times y = layer(x); (y * g).sum().backward() in training mode (input, weight
and bias gradients), best of 30 steps after warm-up, on the course-sized shapes below; the table
shows the median over the processes and torch_time / kernelnet_time (> 1: kernelnet faster).
On CUDA each step is synchronised and timed the same way (bench/cuda/norm.py runs it there).
"""
import argparse
import glob
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import compare_cases, write_compare_results  # noqa: E402

CASES = [  # (name, layer, input shape)
    ("BatchNorm2d conv1-sized", "bn2d", (32, 32, 26, 26)),
    ("BatchNorm2d 128x64x12x12", "bn2d", (128, 64, 12, 12)),
    ("BatchNorm1d 512x256", "bn1d", (512, 256)),
    ("LayerNorm 4096x128", "ln", (4096, 128)),
    ("LayerNorm 64x50x512", "ln", (64, 50, 512)),
]


def worker(lib, threads, device):
    if lib == "torch":
        import torch as L
        L.set_num_threads(threads)
        sync = L.cuda.synchronize if device == "cuda" else (lambda: None)
    else:
        src = os.path.join(os.path.dirname(HERE), "python")
        if glob.glob(os.path.join(src, "kernelnet", "_cpu*.so")):  # a development build; else the installed one
            sys.path.insert(0, src)
        import kernelnet as L
        L.set_num_threads(threads)
        sync = L.cuda.synchronize if device == "cuda" else (lambda: None)
    rng = np.random.default_rng(0)
    res = {}
    for name, kind, shape in CASES:
        C = shape[1] if kind != "ln" else shape[-1]
        layer = {"bn2d": L.nn.BatchNorm2d, "bn1d": L.nn.BatchNorm1d, "ln": L.nn.LayerNorm}[kind](C).to(device)
        x = L.tensor(rng.standard_normal(shape).astype(np.float32), device=device, requires_grad=True)
        g = L.tensor(rng.standard_normal(shape).astype(np.float32), device=device)

        def step():
            y = layer(x)
            (y * g).sum().backward()
        t_warm = time.perf_counter() + 0.2
        while time.perf_counter() < t_warm:
            step()
        sync()
        ts = []
        for _ in range(30):
            t0 = time.perf_counter()
            step()
            sync()
            ts.append(time.perf_counter() - t0)
        res[name] = min(ts)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["kernelnet", "torch"])
    ap.add_argument("--procs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.threads, a.device)))
        return
    shapes = {name: shape for name, _, shape in CASES}
    rows, errors = compare_cases(__file__, list(shapes), ["--threads", str(a.threads), "--device", a.device],
                                 a.procs, unit="ms", width=26, extra=lambda n: {"shape": list(shapes[n])})
    write_compare_results(a.out, f"norm-{a.device}", "norm", a.device, a.threads, a.procs,
                          "median over processes of the best of 30", rows, errors)


if __name__ == "__main__":
    main()
