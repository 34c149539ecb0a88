"""SGEMM throughput: kernelnet vs NumPy (OpenBLAS) vs PyTorch (MKL), on squares and on the GEMMs of
the course CNN (conv layers as im2col products, FC layers, and their gradients).

    python bench/gemm.py [--reps 5] [--threads N] [--only NAME ...] [--clock cpu] [--stat best]

Each library runs in its own persistent worker process (`python bench/gemm.py --worker LIB`);
the parent asks them in turn, shape by shape, alternating A B C A B C ... and reports the median of
the repetitions and the ratios measured in this run. Transposed operands are passed as transposed
views to every library (no copies). The NumPy worker runs without OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE (which may be set on the development machine and slow OpenBLAS down); the kernel
it runs is recorded. Roofline: kernelnet's micro-kernel on L1-resident data, one core, times the
number of threads. Results: bench/results/gemm-<date>.json.

--clock cpu (implies --threads 1) times each call with the calling thread's CPU time: on a machine
whose cores are shared with other jobs this measures the kernels rather than the scheduler.
"""
import argparse
import datetime
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import _common  # noqa: E402

# name, M, N, K, trans_a, trans_b. Layouts follow how the layers store their operands: Linear and
# conv weights are (out, in) so forward products use B^T; weight gradients use A^T.
SHAPES = [
    ("square 512", 512, 512, 512, False, False),
    ("square 1024", 1024, 1024, 1024, False, False),
    ("square 2048", 2048, 2048, 2048, False, False),
    ("fc1 fwd b32  x@W^T", 32, 128, 9216, False, True),
    ("fc1 fwd b128 x@W^T", 128, 128, 9216, False, True),
    ("fc1 dW b32   dY^T@x", 128, 9216, 32, True, False),
    ("fc1 dX b32   dY@W", 32, 9216, 128, False, False),
    ("conv1 fwd b32 im2col", 21632, 32, 9, False, True),
    ("conv2 fwd b32 im2col", 18432, 64, 288, False, True),
    ("conv2 dW b32  dY^T@cols", 64, 288, 18432, True, False),
    ("conv2 dcols b32 dY@W", 18432, 288, 64, False, False),
    # LSTM(28, 128) on a 28-step batch of 64 (bench/rnn.py): the input projection of all steps and
    # its gradients, and W_hh's gradient over all steps (the per-step products run in rnn_sequence)
    ("lstm xproj T28 B64 x@W_ih^T", 1792, 512, 28, False, True),
    ("lstm dX  dG@W_ih", 1792, 28, 512, False, False),
    ("lstm dW_ih dG^T@x", 512, 28, 1792, True, False),
    ("lstm dW_hh dG^T@h", 512, 128, 1792, True, False),
]
LIBS = ["kernelnet", "numpy", "torch"]


# ----------------------------------------------------------------------------- workers
def make_operands(np, M, N, K, ta, tb):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
    B = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
    C = np.zeros((M, N), np.float32)
    return A, B, C


def worker_kernelnet():
    import numpy as np
    sys.path.insert(0, os.path.join(ROOT, "python"))
    from kernelnet import _cpu

    def gemm_fn(M, N, K, ta, tb):
        A, B, C = make_operands(np, M, N, K, ta, tb)
        args = (1, ta, tb, M, N, K, 1.0, A.ctypes.data, A.shape[1], 0, B.ctypes.data, B.shape[1],
                0, 0.0, C.ctypes.data, N, 0, 0, 0, 0)
        return (lambda: _cpu.sgemm(*args)), (A, B, C)

    def handle(req):
        if req["op"] == "info":
            return {"simd": _cpu.simd_active(), "threads": _cpu.num_threads(),
                    "openmp": bool(_cpu.openmp)}
        if req["op"] == "peak":
            # Micro-kernel throughput on L1-resident data: one 12 x 32 x 256 product repeated as
            # a batch with all strides 0 (C accumulates, beta = 1), small enough to run on one
            # thread; A^T is the packed-panel layout.
            M, N, K, reps = 12, 32, 256, 2000
            A, B, C = make_operands(np, M, N, K, True, False)
            call = lambda: _cpu.sgemm(reps, True, False, M, N, K, 1e-9, A.ctypes.data, M, 0,
                                      B.ctypes.data, N, 0, 1.0, C.ctypes.data, N, 0, 0, 0, 0)
            best = min(_common.time_call(call, 0.1, clock=req["clock"]) for _ in range(5))
            return {"gflops_1core": 2.0 * M * N * K * reps / best / 1e9}
        M, N, K, ta, tb = req["shape"]
        fn, keep = gemm_fn(M, N, K, ta, tb)
        return {"seconds": _common.time_call(fn, req["min_time"], clock=req["clock"], best=req.get("best", False))}

    _common.serve(handle)


def worker_numpy():
    import numpy as np

    def handle(req):
        if req["op"] == "info":
            try:
                import threadpoolctl
                info = [{k: d.get(k) for k in ("internal_api", "version", "architecture",
                                                "num_threads")}
                        for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]
            except ImportError:
                info = "threadpoolctl not installed"
            return {"numpy": np.__version__, "blas": info}
        M, N, K, ta, tb = req["shape"]
        A, B, C = make_operands(np, M, N, K, ta, tb)
        a = A.T if ta else A
        b = B.T if tb else B
        return {"seconds": _common.time_call(lambda: np.matmul(a, b, out=C), req["min_time"], best=req.get("best", False),
                                             clock=req["clock"])}

    _common.serve(handle)


def worker_torch():
    import numpy as np
    import torch
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))

    def handle(req):
        if req["op"] == "info":
            return {"torch": torch.__version__, "threads": torch.get_num_threads(),
                    "mkl": torch.backends.mkl.is_available()}
        M, N, K, ta, tb = req["shape"]
        A, B, C = (torch.from_numpy(x) for x in make_operands(np, M, N, K, ta, tb))
        a = A.t() if ta else A
        b = B.t() if tb else B
        with torch.no_grad():
            return {"seconds": _common.time_call(lambda: torch.mm(a, b, out=C), req["min_time"], best=req.get("best", False),
                                                 clock=req["clock"])}

    _common.serve(handle)


def worker_env(lib, threads):
    env = dict(os.environ)
    env["BENCH_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    env["KERNELNET_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    # OpenBLAS threads busy-wait after each call; only the NumPy worker may start them.
    env["OPENBLAS_NUM_THREADS"] = str(threads) if lib == "numpy" else "1"
    if lib == "numpy":
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    return env


# ----------------------------------------------------------------------------- parent
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=5, help="measurements per library and shape")
    ap.add_argument("--stat", choices=["median", "best"], default="median",
                    help="median of the reps' mean call times (default), or the fastest single call of all "
                         "reps (stable on a machine whose speed drifts; see _common.time_call)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--only", nargs="*", help="shape names containing any of these words")
    ap.add_argument("--libs", nargs="*", default=LIBS, choices=LIBS)
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per measurement")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: per-thread CPU time, single thread (for a shared, loaded machine)")
    ap.add_argument("--out", help="JSON path (default bench/results/gemm-<date>.json)")
    args = ap.parse_args()
    if args.clock == "cpu":
        args.threads = 1
    if args.worker:
        return {"kernelnet": worker_kernelnet, "numpy": worker_numpy,
                "torch": worker_torch}[args.worker]()

    shapes = [s for s in SHAPES if not args.only or any(w in s[0] for w in args.only)]
    libs = args.libs
    workers = {lib: _common.Worker([sys.executable, os.path.abspath(__file__), "--worker", lib],
                                   env=worker_env(lib, args.threads)) for lib in libs}
    load_before = _common.load_average()
    info = {lib: w.ask({"op": "info"}) for lib, w in workers.items()}
    print(f"CPU: {_common.cpu_name()}   threads: {args.threads}   clock: {args.clock}   "
          f"reps: {args.reps} (median)   "
          f"load average before: {load_before}")
    for lib in libs:
        print(f"  {lib}: {info[lib]}")

    peak = None
    if "kernelnet" in workers:
        peak = workers["kernelnet"].ask({"op": "peak", "clock": args.clock})["gflops_1core"]
        print(f"roofline: kernelnet micro-kernel on L1-resident data {peak:.1f} GFLOP/s per core, "
              f"x{args.threads} threads = {peak * args.threads:.0f} GFLOP/s")

    results = []
    head = f"{'shape (M x N x K, T=transposed)':44s}" + "".join(f"{lib:>11s}" for lib in libs)
    ratio_cols = [lib for lib in libs if lib != "kernelnet"] if "kernelnet" in libs else []
    head += "".join(f"{'kn/' + lib[:5]:>10s}" for lib in ratio_cols) + f"{'kn spread':>10s}"
    print("\nGFLOP/s,", "median of" if args.stat == "median" else "fastest single call over", args.reps, "reps")
    print(head)
    for name, M, N, K, ta, tb in shapes:
        flop = 2.0 * M * N * K
        samples = {lib: [] for lib in libs}
        for r in range(args.reps):
            order = libs[r % len(libs):] + libs[:r % len(libs)]  # rotate who goes first
            for lib in order:
                res = workers[lib].ask({"op": "time", "shape": [M, N, K, ta, tb], "min_time": args.min_time,
                                        "clock": args.clock, "best": args.stat == "best"})
                samples[lib].append(flop / res["seconds"] / 1e9)
                time.sleep(0.05)
        med = {lib: (_common.median(v) if args.stat == "median" else max(v)) for lib, v in samples.items()}
        ratios = {lib: med["kernelnet"] / med[lib] for lib in ratio_cols}
        kn = samples.get("kernelnet", [0])
        spread = (max(kn) - min(kn)) / max(med.get("kernelnet", 1), 1e-9)
        label = f"{name} {M}x{N}x{K}{' Ta' if ta else ''}{' Tb' if tb else ''}"
        print(f"{label:44s}" + "".join(f"{med[lib]:11.1f}" for lib in libs)
              + "".join(f"{ratios[lib]:10.2f}" for lib in ratio_cols) + f"{spread:10.0%}",
              flush=True)
        results.append({"name": name, "M": M, "N": N, "K": K, "trans_a": ta, "trans_b": tb,
                        "gflops_median": med, "gflops_samples": samples, "ratios": ratios})
    for w in workers.values():
        w.close()

    load_after = _common.load_average()
    print(f"load average after: {load_after}  (2 cores shared with other jobs: "
          f"'kn spread' = (max - min) / median of kernelnet's samples)")
    stamp = f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M}"
    out = args.out or os.path.join(
        HERE, "results", f"gemm-{stamp}{'-cpuclock' if args.clock == 'cpu' else ''}.json")
    _common.write_json_atomic(out, {
        "bench": "gemm", "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "cpu": _common.cpu_name(), "threads": args.threads, "clock": args.clock,
        "reps": args.reps, "stat": args.stat,
        "libs": info, "roofline_gflops_per_core": peak,
        "roofline_gflops": None if peak is None else peak * args.threads,
        "load_average_before": load_before, "load_average_after": load_after,
        "numpy_env_note": "numpy worker runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset",
        "results": results})
    print("wrote", os.path.relpath(out, ROOT))


if __name__ == "__main__":
    main()
