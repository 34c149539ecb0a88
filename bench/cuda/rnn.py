"""Recurrent layers on the GPU: kernelnet's LSTM/GRU (our SGEMM + fused cell kernels per step, the
time loop on the host) vs PyTorch's (cuDNN) on the same GPU, in the same run, forward + backward of
sum(output) with the input and every parameter requiring grad: the shapes of bench/rnn.py.

Each library runs in its own process, alternating (kn torch kn torch ...); each process times every
shape (perf_counter around `iters` steps bracketed by device syncs, median of `reps`); the driver
takes the median over processes and the ratio torch time / kernelnet time (> 1: kernelnet faster).
FP32 with TF32 off on both sides.

    python bench/cuda/rnn.py [--modes LSTM GRU] [--seqs 28 256] [--hiddens 128 512] [--batch 64]
                             [--procs 2] [--device cpu (a dry run of the script)]
"""
import argparse
import json
import os
import sys
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/, for _common
from _common import median_by_key, run_workers_alternating, time_synced, write_json_atomic  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def shapes(a):
    return [(m, T, H) for m in a.modes for T in a.seqs for H in a.hiddens]


def worker(lib, a):
    import numpy as np
    dev = a.device
    if lib == "torch":
        import torch as L
        torch = L
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        tensor = lambda arr: torch.tensor(arr, device=dev, requires_grad=True)  # noqa: E731
        to_dev = lambda m: m.to(dev)  # noqa: E731
    else:
        sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
        import kernelnet as L
        if dev == "cuda":
            from kernelnet._device import _load_cuda
            sync = _load_cuda().synchronize
        else:
            sync = lambda: None  # noqa: E731
        tensor = lambda arr: L.tensor(arr, device=dev, requires_grad=True)  # noqa: E731
        to_dev = lambda m: m.to(dev)  # noqa: E731
    res = {}
    for mode, T, H in shapes(a):
        m = to_dev(getattr(L.nn, mode)(a.input, H))
        x = tensor(np.random.default_rng(0).standard_normal((T, a.batch, a.input)).astype(np.float32))

        def step():
            m(x)[0].sum().backward()
        iters = max(1, a.iters if T < 100 else a.iters // 4)
        res[f"{mode}/T{T}/H{H}"] = time_synced(step, sync, iters, a.reps)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["kernelnet", "torch"])
    ap.add_argument("--modes", nargs="+", default=["LSTM", "GRU"])
    ap.add_argument("--seqs", nargs="+", type=int, default=[28, 256])
    ap.add_argument("--hiddens", nargs="+", type=int, default=[128, 512])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--input", type=int, default=28)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself")
    ap.add_argument("--procs", type=int, default=2, help="processes per library (alternating)")
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.environ.get("KN_BENCH_OUT") or os.path.join(HERE, "..", "results"),
                                                  "cuda_rnn.json"))
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a)))
        return
    passthrough = ["--modes", *a.modes, "--seqs", *map(str, a.seqs), "--hiddens", *map(str, a.hiddens),
                   "--batch", str(a.batch), "--input", str(a.input), "--device", a.device,
                   "--iters", str(a.iters), "--reps", str(a.reps)]
    runs, _ = run_workers_alternating(__file__, ("kernelnet", "torch"), passthrough, a.procs)
    rows = []
    for mode, T, H in shapes(a):
        key = f"{mode}/T{T}/H{H}"
        med = median_by_key(runs, key)
        ratio = med["torch"] / med["kernelnet"] if med["torch"] and med["kernelnet"] else None
        rows.append({"mode": mode, "T": T, "H": H, "B": a.batch, "kernelnet_ms": med["kernelnet"] and med["kernelnet"] * 1e3,
                     "torch_ms": med["torch"] and med["torch"] * 1e3, "ratio_vs_torch": ratio})
        print(f"{key:16s} kernelnet {rows[-1]['kernelnet_ms'] or float('nan'):9.3f} ms   torch "
              f"{rows[-1]['torch_ms'] or float('nan'):9.3f} ms   torch/kn {ratio or float('nan'):.2f}x")
    device = None
    if a.device == "cuda":
        import torch
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    out = {"bench": "cuda_rnn_fwd_bwd", "device": device or a.device, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "procs_per_lib": a.procs, "iters": a.iters, "reps": a.reps,
           "note": "fp32, TF32 off; forward + backward of sum(output); ratio = torch time / kernelnet time", "rows": rows}
    write_json_atomic(a.out, out)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
