"""Convolution benchmark: the course CNN's two conv layers, kernelnet vs PyTorch CPU.

    python bench/conv.py [--rounds 5] [--batches 32 128] [--threads N] [--clock wall|cpu]

Each library runs in its own subprocess, alternating kernelnet, torch, kernelnet, torch ... for
`rounds` rounds; a subprocess times every layer (median of its repetitions) and the table shows
the median over rounds. Backward = the gradients the course CNN needs: conv1 (the network input)
weight + bias; conv2 input + weight + bias. PyTorch's backward is timed through
aten.convolution_backward (the kernel, no autograd bookkeeping), kernelnet's through the raw
_cpu.conv2d_backward kernel (what the autograd Function calls: the wanted gradients in one pass
over the images), so both sides measure kernels only. Results go to bench/results/conv-<date>.json.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name: (C, H, W, K, R, S, stride, pad, input_grad)
LAYERS = {
    "conv1": (1, 28, 28, 32, 3, 3, 1, 0, False),
    "conv2": (32, 26, 26, 64, 3, 3, 1, 0, True),
}

sys.path.insert(0, HERE)
from _common import cpu_name, load_average, write_json_atomic  # noqa: E402  (bench/_common.py)

CLOCK = time.perf_counter  # --clock cpu: time.process_time (CPU seconds of all the process's threads)


def timeit(fn, min_reps=5, min_time=0.3, max_time=3.0):
    """Median seconds of fn() after one warm-up; at least min_reps runs or min_time seconds."""
    fn()
    ts, start = [], time.perf_counter()
    while True:
        t0 = CLOCK()
        fn()
        ts.append(CLOCK() - t0)
        el = time.perf_counter() - start
        if (len(ts) >= min_reps and el >= min_time) or (len(ts) >= 3 and el >= max_time):
            break
    return statistics.median(ts)


def out_size(H, R, s, p):
    return (H + 2 * p - R) // s + 1


def worker_kernelnet(batches, threads):
    import numpy as np
    sys.path.insert(0, os.path.join(ROOT, "python"))
    from kernelnet import _cpu
    if threads:
        _cpu.set_num_threads(threads)
    rng = np.random.default_rng(0)
    res = {}
    for N in batches:
        for name, (C, H, W, K, R, S, st, pd, igrad) in LAYERS.items():
            P, Q = out_size(H, R, st, pd), out_size(W, S, st, pd)
            x = rng.standard_normal((N, C, H, W), dtype=np.float32)
            w = rng.standard_normal((K, C, R, S), dtype=np.float32) * 0.1
            b = rng.standard_normal(K, dtype=np.float32)
            y = np.empty((N, K, P, Q), np.float32)
            dy = rng.standard_normal((N, K, P, Q), dtype=np.float32)
            dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
            p = lambda a: a.ctypes.data  # noqa: E731
            geo = (N, C, H, W, K, R, S, st, st, pd, pd, 1, 1, 1)

            def fwd():
                _cpu.conv2d_forward(p(x), p(w), p(b), p(y), *geo, 0)

            def bwd():  # the call kernelnet.nn.Conv2d's backward makes: all gradients, one pass
                _cpu.conv2d_backward(p(x), p(dy), p(w), p(dx) if igrad else 0, p(dw), p(db), *geo)

            res[f"{name}/b{N}"] = {"fwd": timeit(fwd), "bwd": timeit(bwd)}
    return {"threads": _cpu.num_threads(), "results": res}


def worker_torch(batches, threads):
    import torch
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    res = {}
    with torch.no_grad():
        for N in batches:
            for name, (C, H, W, K, R, S, st, pd, igrad) in LAYERS.items():
                x = torch.randn(N, C, H, W)
                w = torch.randn(K, C, R, S) * 0.1
                b = torch.randn(K)
                y = torch.nn.functional.conv2d(x, w, b, st, pd)
                dy = torch.randn_like(y)

                def fwd():
                    torch.nn.functional.conv2d(x, w, b, st, pd)

                def bwd():
                    torch.ops.aten.convolution_backward(dy, x, w, [K], [st, st], [pd, pd], [1, 1],
                                                        False, [0, 0], 1, [igrad, True, True])

                res[f"{name}/b{N}"] = {"fwd": timeit(fwd), "bwd": timeit(bwd)}
    return {"threads": torch.get_num_threads(), "results": res, "version": torch.__version__}


def flops(name, N):
    C, H, W, K, R, S, st, pd, igrad = LAYERS[name]
    f = 2.0 * N * K * out_size(H, R, st, pd) * out_size(W, S, st, pd) * C * R * S
    return f, f * (2 if igrad else 1)


def run_worker(lib, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--batches",
           *map(str, args.batches)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    cmd += ["--clock", args.clock]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--threads", type=int, default=0, help="0: each library's default")
    ap.add_argument("--worker", choices=["kernelnet", "torch"])
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: CPU time of the process (less sensitive to other jobs on a shared machine; "
                         "with several threads it includes their spin-waits)")
    ap.add_argument("--no-json", action="store_true")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.worker:
        fn = worker_kernelnet if args.worker == "kernelnet" else worker_torch
        print(json.dumps(fn(args.batches, args.threads)))
        return

    runs = {"kernelnet": [], "torch": []}
    for _ in range(args.rounds):  # A B A B ...: drifting machine load hits both alike
        for lib in runs:
            runs[lib].append(run_worker(lib, args))
    threads = {lib: runs[lib][0]["threads"] for lib in runs}
    med = {lib: {key: {ph: statistics.median(r["results"][key][ph] for r in runs[lib])
                       for ph in ("fwd", "bwd")} for key in runs[lib][0]["results"]} for lib in runs}

    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs); threads: kernelnet "
          f"{threads['kernelnet']}, torch {threads['torch']} (torch {runs['torch'][0]['version']})")
    print(f"clock: {args.clock}; median of {args.rounds} alternating rounds, each library in its own process; "
          "ratio = torch time / kernelnet time (> 1: kernelnet faster)")
    hdr = (f"{'layer':<12}{'kn fwd ms':>10}{'kn bwd ms':>10}{'pt fwd ms':>10}{'pt bwd ms':>10}"
           f"{'fwd ratio':>10}{'bwd ratio':>10}{'kn fwd GF/s':>12}{'kn bwd GF/s':>12}{'pt fwd GF/s':>12}{'pt bwd GF/s':>12}")
    print(hdr)
    rows = []
    for key in med["kernelnet"]:
        name, b = key.split("/")
        ff, fb = flops(name, int(b[1:]))
        k, t = med["kernelnet"][key], med["torch"][key]
        row = {"layer": key, "kernelnet_fwd_ms": k["fwd"] * 1e3, "kernelnet_bwd_ms": k["bwd"] * 1e3,
               "torch_fwd_ms": t["fwd"] * 1e3, "torch_bwd_ms": t["bwd"] * 1e3,
               "fwd_ratio": t["fwd"] / k["fwd"], "bwd_ratio": t["bwd"] / k["bwd"],
               "kernelnet_fwd_gflops": ff / k["fwd"] / 1e9, "kernelnet_bwd_gflops": fb / k["bwd"] / 1e9,
               "torch_fwd_gflops": ff / t["fwd"] / 1e9, "torch_bwd_gflops": fb / t["bwd"] / 1e9,
               "bwd_parts": "input+weight+bias" if LAYERS[name][-1] else "weight+bias"}
        rows.append(row)
        print(f"{key:<12}{row['kernelnet_fwd_ms']:>10.2f}{row['kernelnet_bwd_ms']:>10.2f}"
              f"{row['torch_fwd_ms']:>10.2f}{row['torch_bwd_ms']:>10.2f}{row['fwd_ratio']:>10.2f}"
              f"{row['bwd_ratio']:>10.2f}{row['kernelnet_fwd_gflops']:>12.1f}{row['kernelnet_bwd_gflops']:>12.1f}"
              f"{row['torch_fwd_gflops']:>12.1f}{row['torch_bwd_gflops']:>12.1f}")
    print("backward: conv1 weight+bias (the network input needs no gradient); conv2 input+weight+bias")
    print(f"load average at the end: {load_average()} (other jobs share this machine: noisy)")

    if not args.no_json:
        now = datetime.datetime.now(datetime.timezone.utc)
        doc = {"benchmark": "conv", "date": now.isoformat(timespec="seconds"), "cpu": cpu_name(),
               "logical_cpus": os.cpu_count(), "threads": threads, "rounds": args.rounds, "clock": args.clock,
               "torch_version": runs["torch"][0]["version"], "load_average": load_average(),
               "rows": rows, "raw": runs}
        tag = f"-t{args.threads}" if args.threads else ""
        tag += "-cpuclock" if args.clock == "cpu" else ""
        path = os.path.join(HERE, "results", f"conv-{now.strftime('%Y%m%d-%H%M%S')}{tag}.json")
        write_json_atomic(path, doc)
        print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
