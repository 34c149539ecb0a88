"""Training-step throughput on the GPU: kernelnet vs PyTorch eager, same GPU, same run.

Measures, per library, each in its own process, alternating (kn torch kn torch):
  - the course CNN (Conv 1->32, Conv 32->64, maxpool 2, dropout, FC 9216->128->10, Adam) training
    step, samples/s at batch 32, 128 and 512 (data already on the GPU, one batch reused);
  - one Fashion-MNIST epoch of that CNN at batch 128 with the dataset resident on the GPU
    (kernelnet: kernelnet.utils.gpu_loader.GPUDataLoader; torch: index the resident tensors with a
    randperm), seconds;
  - MLP steps: the course MLP (64-32-16, digits-sized input) and 784-100-10 (Fashion-MNIST-sized),
    samples/s at batch 128;
  - kernelnet only: the same CNN step with forward + backward replayed as a CUDA graph
    (kernelnet.graphed; the Adam step stays eager), samples/s, against PyTorch eager's row.
The same model code runs on both libraries (kernelnet's API mirrors torch's). The Fashion-MNIST
IDX files are read when present; otherwise random data of the same shape is used (the epoch time
does not depend on the pixel values; the JSON says which).

    python bench/cuda/train_step.py [--procs 2] [--out bench/results/cuda_train_step.json]
"""
import argparse
import gzip
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/, for _common
from _common import course_cnn, median_by_key, run_workers_alternating, write_json_atomic  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


def load_fmnist():
    def idx(path):
        op = gzip.open if path.endswith(".gz") else open
        with op(path, "rb") as f:
            data = f.read()
        ndim = data[3]
        shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    for suffix in ("", ".gz"):
        xi = os.path.join(FMNIST, "train-images-idx3-ubyte" + suffix)
        yi = os.path.join(FMNIST, "train-labels-idx1-ubyte" + suffix)
        if os.path.exists(xi) and os.path.exists(yi):
            x = idx(xi).astype(np.float32)[:, None] / 255.0
            return ((x - 0.2860) / 0.3530).astype(np.float32), idx(yi).astype(np.int64), "fashion-mnist"
    rng = np.random.default_rng(0)
    return rng.standard_normal((60000, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 60000).astype(np.int64), "random"


def mlp(lib, sizes):
    nn = lib.nn
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def worker(libname, batches, steps, dev="cuda", epoch_limit=None):
    if libname == "torch":
        import torch as lib
        lib.backends.cudnn.benchmark = True
        lib.backends.cudnn.allow_tf32 = False
        lib.backends.cuda.matmul.allow_tf32 = False
        sync = lib.cuda.synchronize if dev == "cuda" else (lambda: None)
    else:
        import kernelnet as lib
        sync = lib.cuda.synchronize
    lib.manual_seed(0)
    res = {}

    def train_steps(model, x, y, n, opt):
        loss_fn = lib.nn.CrossEntropyLoss()
        for _ in range(n):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        return loss

    def throughput(model, shape, classes, B):
        model = model.to(dev)
        opt = lib.optim.Adam(model.parameters(), lr=1e-3)
        rng = np.random.default_rng(1)
        x = lib.tensor(rng.standard_normal((B,) + shape).astype(np.float32), device=dev)
        y = lib.tensor(rng.integers(0, classes, B).astype(np.int64), device=dev)
        train_steps(model, x, y, 3, opt)  # warm-up (allocator cache, cuDNN autotune)
        sync()
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            train_steps(model, x, y, steps, opt)
            sync()
            ts.append(time.perf_counter() - t0)
        return B * steps / statistics.median(ts)

    def throughput_graphed(model, shape, classes, B):
        model = model.to(dev)
        opt = lib.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = lib.nn.CrossEntropyLoss()
        rng = np.random.default_rng(1)
        x = lib.tensor(rng.standard_normal((B,) + shape).astype(np.float32), device=dev)
        y = lib.tensor(rng.integers(0, classes, B).astype(np.int64), device=dev)

        def fwd_bwd(x, y):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        step = lib.graphed(fwd_bwd, x, y, warmup=2)
        for _ in range(3):
            step(x, y)
            opt.step()
        sync()
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(steps):
                step(x, y)
                opt.step()
            sync()
            ts.append(time.perf_counter() - t0)
        return B * steps / statistics.median(ts)

    for B in batches:
        res[f"cnn/B{B}"] = throughput(course_cnn(lib), (1, 28, 28), 10, B)
    if libname == "kernelnet":
        for B in batches:
            try:
                res[f"cnn_graphed/B{B}"] = throughput_graphed(course_cnn(lib), (1, 28, 28), 10, B)
            except Exception as e:  # report, and keep measuring the rest
                res[f"cnn_graphed/B{B}"] = None
                res["graphed_error"] = f"{type(e).__name__}: {e}"[:1000]
    res["mlp_digits/B128"] = throughput(mlp(lib, [64, 32, 16, 10]), (64,), 10, 128)
    res["mlp_fmnist/B128"] = throughput(mlp(lib, [784, 100, 10]), (784,), 10, 128)

    # one Fashion-MNIST epoch, data resident on the GPU
    X, Y, src = load_fmnist()
    if epoch_limit:  # (a quick dry run on the CPU)
        X, Y = X[:epoch_limit], Y[:epoch_limit]
    model = course_cnn(lib).to(dev)
    opt = lib.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = lib.nn.CrossEntropyLoss()
    if libname == "torch":
        Xd, Yd = lib.tensor(X, device=dev), lib.tensor(Y, device=dev)

        def batches_of():
            perm = lib.randperm(len(X), device=dev)
            for i in range(0, len(X), 128):
                idx = perm[i:i + 128]
                yield Xd[idx], Yd[idx]
    else:
        from kernelnet.utils.gpu_loader import GPUDataLoader
        loader = GPUDataLoader((X, Y), batch_size=128, shuffle=True, device=dev)
        batches_of = loader.__iter__
    train_steps(model, lib.tensor(X[:128], device=dev), lib.tensor(Y[:128], device=dev), 2, opt)
    sync()
    t0 = time.perf_counter()
    for xb, yb in batches_of():
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
    sync()
    res["fmnist_epoch_s"] = time.perf_counter() - t0
    res["fmnist_last_loss"] = float(loss.item())
    res["fmnist_data"] = src
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["kernelnet", "torch"])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself")
    ap.add_argument("--epoch-limit", type=int, default=None, help="train on only this many images (dry runs)")
    ap.add_argument("--procs", type=int, default=1, help="processes per library (alternating)")
    ap.add_argument("--out", default=os.path.join(os.environ.get("KN_BENCH_OUT") or
                                                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results"),
                                                     "cuda_train_step.json"))
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.batches, a.steps, a.device, a.epoch_limit)))
        return
    runs, errors = run_workers_alternating(
        __file__, ("kernelnet", "torch"),
        ["--steps", str(a.steps), "--device", a.device, "--batches", *map(str, a.batches)]
        + (["--epoch-limit", str(a.epoch_limit)] if a.epoch_limit else []), a.procs, err_tail=2000)
    keys = [f"cnn/B{B}" for B in a.batches] + ["mlp_digits/B128", "mlp_fmnist/B128", "fmnist_epoch_s"]
    rows = []
    for k in keys:
        med = median_by_key(runs, k)
        if k == "fmnist_epoch_s":
            ratio = med["torch"] / med["kernelnet"] if med["torch"] and med["kernelnet"] else None
            unit = "s"
        else:
            ratio = med["kernelnet"] / med["torch"] if med["torch"] and med["kernelnet"] else None
            unit = "samples/s"
        rows.append({"metric": k, "unit": unit, "kernelnet": med["kernelnet"], "torch": med["torch"],
                     "speedup_vs_torch": ratio})
        print(f"{k:18s} {unit:9s} kernelnet {med['kernelnet']}  torch {med['torch']}  speedup {ratio}")
    for B in a.batches:  # graphed kernelnet against PyTorch eager
        kvals = [r.get(f"cnn_graphed/B{B}") for r in runs["kernelnet"]]
        kvals = [v for v in kvals if v is not None]
        kmed = statistics.median(kvals) if kvals else None
        tmed = median_by_key(runs, f"cnn/B{B}")["torch"]
        ratio = kmed / tmed if kmed and tmed else None
        rows.append({"metric": f"cnn_graphed/B{B}", "unit": "samples/s", "kernelnet": kmed, "torch": tmed,
                     "speedup_vs_torch": ratio, "note": "kernelnet.graphed forward+backward vs torch eager"})
        print(f"cnn_graphed/B{B:<6} samples/s kernelnet {kmed}  torch(eager) {tmed}  speedup {ratio}")
    graphed_errors = [r.get("graphed_error") for r in runs["kernelnet"] if r.get("graphed_error")]
    try:
        import torch
        devname = torch.cuda.get_device_name(0)
    except Exception:
        devname = None
    out = {"bench": "cuda_train_step", "device": devname, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "procs_per_lib": a.procs, "steps": a.steps, "note": "fp32, TF32 off in torch; speedup > 1: kernelnet faster",
           "fmnist_data": (runs["kernelnet"] or runs["torch"] or [{}])[0].get("fmnist_data"),
           "rows": rows, "errors": errors, "graphed_errors": graphed_errors}
    write_json_atomic(a.out, out)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
