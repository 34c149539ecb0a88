"""Convolution forward+backward per layer of the course CNN: kernelnet's implicit-GEMM CUDA kernels
vs cuDNN (PyTorch) on the same GPU, in the same run.

Each library runs in its own process, alternating (kn torch kn torch ...); each process times
every layer at every batch size (perf_counter around `iters` calls bracketed by device syncs,
median of `reps`), the driver takes the median over processes and the ratio kn/torch throughput.
Both sides are called at kernel level (kernelnet: the _cuda kernels; torch: aten.convolution and
aten.convolution_backward), FP32 with TF32 disabled in cuDNN, so the comparison is kernel vs kernel.
conv1's input needs no gradient (it is the image), as in training.

    python bench/cuda/conv.py [--batches 32 128] [--procs 2] [--out bench/results/cuda_conv.json]
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/, for _common
from _common import median_by_key, run_workers_alternating, time_synced, write_json_atomic  # noqa: E402

# (name, C, H, W, K, R, S, stride, pad, needs_dx)
LAYERS = [
    ("conv1", 1, 28, 28, 32, 3, 3, 1, 0, False),
    ("conv2", 32, 26, 26, 64, 3, 3, 1, 0, True),
]


def flops(N, C, H, W, K, R, S, st, pd, dx):
    P = (H + 2 * pd - R) // st + 1
    Q = (W + 2 * pd - S) // st + 1
    one = 2.0 * N * K * P * Q * C * R * S
    return one * (3 if dx else 2), P, Q  # forward, weight grad, (input grad)


def worker_kernelnet(batches, iters, reps, dev="cuda"):
    import numpy as np
    import kernelnet as kn
    from kernelnet._device import _load_cuda
    cu = _load_cuda() if dev == "cuda" else kn._cpu
    sync = cu.synchronize if dev == "cuda" else (lambda: None)
    res = {}
    for N in batches:
        for name, C, H, W, K, R, S, st, pd, need_dx in LAYERS:
            _, P, Q = flops(N, C, H, W, K, R, S, st, pd, need_dx)
            rng = np.random.default_rng(0)
            T = lambda *s: kn.tensor(rng.standard_normal(s).astype(np.float32), device=dev)  # noqa: E731
            x, w, b, dy = T(N, C, H, W), T(K, C, R, S), T(K), T(N, K, P, Q)
            y, dx, dw, db = (kn.empty(*s, device=dev) for s in ((N, K, P, Q), (N, C, H, W), (K, C, R, S), (K,)))
            geo = (N, C, H, W, K, R, S, st, st, pd, pd, 1, 1, 1)

            def step():
                cu.conv2d_forward(x.data_ptr(), w.data_ptr(), b.data_ptr(), y.data_ptr(), *geo, 0)
                if need_dx:
                    cu.conv2d_backward_input(dy.data_ptr(), w.data_ptr(), dx.data_ptr(), *geo)
                cu.conv2d_backward_weight(x.data_ptr(), dy.data_ptr(), dw.data_ptr(), *geo, False)
                cu.conv2d_backward_bias(dy.data_ptr(), db.data_ptr(), N, K, P * Q)
            # automatic tile choice, then each configuration pinned (see csrc/cuda/conv.cu)
            cfgs = [0, 1, 2, 3] if hasattr(cu, "_conv_force_config") else [0]
            for c in cfgs:
                if c:
                    cu._conv_force_config(c)
                t = time_synced(step, sync, iters, reps)
                res[f"{name}/N{N}" + (f"/cfg{c}" if c else "")] = t
            if len(cfgs) > 1:
                cu._conv_force_config(0)
    return res


def worker_torch(batches, iters, reps, dev="cuda"):
    import torch
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    conv, conv_bwd = torch.ops.aten.convolution, torch.ops.aten.convolution_backward
    res = {}
    for N in batches:
        for name, C, H, W, K, R, S, st, pd, need_dx in LAYERS:
            _, P, Q = flops(N, C, H, W, K, R, S, st, pd, need_dx)
            g = torch.Generator(device=dev).manual_seed(0)
            T = lambda *s: torch.randn(*s, device=dev, generator=g)  # noqa: E731
            x, w, b, dy = T(N, C, H, W), T(K, C, R, S), T(K), T(N, K, P, Q)

            def step():
                conv(x, w, b, [st, st], [pd, pd], [1, 1], False, [0, 0], 1)
                conv_bwd(dy, x, w, [K], [st, st], [pd, pd], [1, 1], False, [0, 0], 1, [need_dx, True, True])
            res[f"{name}/N{N}"] = time_synced(step, sync, iters, reps)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["kernelnet", "torch"])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself")
    ap.add_argument("--procs", type=int, default=2, help="processes per library (alternating)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(os.environ.get("KN_BENCH_OUT") or
                                                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results"),
                                                     "cuda_conv.json"))
    a = ap.parse_args()
    if a.worker:
        fn = worker_kernelnet if a.worker == "kernelnet" else worker_torch
        print(json.dumps(fn(a.batches, a.iters, a.reps, a.device)))
        return
    runs, _ = run_workers_alternating(__file__, ("kernelnet", "torch"),
                                      ["--iters", str(a.iters), "--reps", str(a.reps), "--device", a.device,
                                       "--batches", *map(str, a.batches)], a.procs)
    import torch
    rows = []
    for N in a.batches:
        for name, C, H, W, K, R, S, st, pd, need_dx in LAYERS:
            key = f"{name}/N{N}"
            fl, _, _ = flops(N, C, H, W, K, R, S, st, pd, need_dx)
            med = median_by_key(runs, key)
            row = {"layer": name, "batch": N, "shape": f"{C}x{H}x{W}->{K} {R}x{S}",
                   "kernelnet_ms": med["kernelnet"] and med["kernelnet"] * 1e3,
                   "cudnn_ms": med["torch"] and med["torch"] * 1e3,
                   "kernelnet_gflops": med["kernelnet"] and fl / med["kernelnet"] / 1e9,
                   "cudnn_gflops": med["torch"] and fl / med["torch"] / 1e9}
            row["ratio_vs_cudnn"] = (med["torch"] / med["kernelnet"]) if med["torch"] and med["kernelnet"] else None
            for c in (1, 2, 3):  # the pinned tile configurations (kernelnet only)
                ts = [r.get(f"{key}/cfg{c}") for r in runs["kernelnet"] if r and r.get(f"{key}/cfg{c}")]
                row[f"kernelnet_cfg{c}_ms"] = statistics.median(ts) * 1e3 if ts else None
            rows.append(row)
            print(f"{key:12s} kernelnet {row['kernelnet_ms'] or float('nan'):8.3f} ms   cuDNN "
                  f"{row['cudnn_ms'] or float('nan'):8.3f} ms   ratio {row['ratio_vs_cudnn'] or float('nan'):.2f}x")
    out = {"bench": "cuda_conv_fwd_bwd", "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "procs_per_lib": a.procs, "iters": a.iters, "reps": a.reps,
           "note": "fp32, TF32 off; kernel-level calls on both sides; ratio = cuDNN time / kernelnet time (>1: kernelnet faster)",
           "rows": rows}
    write_json_atomic(a.out, out)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
