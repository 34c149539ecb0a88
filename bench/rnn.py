"""Recurrent layers: forward + backward time of kernelnet vs PyTorch CPU.

    python bench/rnn.py [--rounds 3] [--modes LSTM GRU] [--seqs 28 256] [--hiddens 128 512] [--batch 64]
                        [--threads N] [--input 28] [--stat median|best]

One persistent worker process per library; the requests alternate (kernelnet, torch, kernelnet,
torch ...) for `rounds` rounds; each request times one shape (median of --reps repetitions of
forward + backward of sum(output), input and all parameters requiring grad, after at least 0.2 s
of warm-up steps). The table shows the median over rounds (--stat best: the fastest single step of
all rounds, which moves less when the machine's speed drifts) and the ratio torch_time /
kernelnet_time (> 1: kernelnet faster).
Results go to bench/results/rnn-<date>.json.
"""
import argparse
import datetime
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _common import Worker, cpu_name, load_average, serve, write_json_atomic  # noqa: E402


def _worker(lib, threads):
    import numpy as np
    if lib == "torch":
        import torch as L
        L.set_num_threads(threads)
        nn = L.nn
        tensor = lambda a: L.tensor(a, requires_grad=True)  # noqa: E731
    else:
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import kernelnet as L
        L.set_num_threads(threads)
        nn = L.nn
        tensor = lambda a: L.tensor(a, requires_grad=True)  # noqa: E731

    def handle(req):
        mode, T, H, B, I, reps = req["mode"], req["T"], req["H"], req["B"], req["I"], req["reps"]
        m = getattr(nn, mode)(I, H)
        x = tensor(np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32))

        def step():
            out = m(x)[0]
            out.sum().backward()
        # warm up (fresh module and buffers each request; the first steps after the other library's
        # request also share the cores with its spinning threads): at least 2 steps and 0.2 s
        t_warm = time.perf_counter() + 0.2
        for i in range(1000):
            step()
            if i >= 1 and time.perf_counter() > t_warm:
                break
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        return {"s": statistics.median(ts), "best": min(ts)}

    serve(handle)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=["LSTM", "GRU"])
    ap.add_argument("--seqs", nargs="+", type=int, default=[28, 256])
    ap.add_argument("--hiddens", nargs="+", type=int, default=[128, 512])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--input", type=int, default=28)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--stat", choices=["median", "best"], default="median",
                    help="median over rounds of each round's median step (default), or the fastest single "
                         "step of all rounds (stable on a machine whose speed drifts)")
    ap.add_argument("--worker")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.worker:
        return _worker(a.worker, a.threads)
    libs = ["kernelnet", "torch"]
    workers = {l: Worker([sys.executable, __file__, "--worker", l, "--threads", str(a.threads)]) for l in libs}
    load_before = load_average()
    rows = []
    for mode in a.modes:
        for T in a.seqs:
            for H in a.hiddens:
                req = {"mode": mode, "T": T, "H": H, "B": a.batch, "I": a.input, "reps": a.reps}
                res = {l: [] for l in libs}
                for _ in range(a.rounds):
                    for l in libs:
                        r = workers[l].ask(req)
                        res[l].append(r["s"] if a.stat == "median" else r["best"])
                pick = statistics.median if a.stat == "median" else min
                t = {l: pick(v) for l, v in res.items()}
                row = {**req, "kernelnet_s": t["kernelnet"], "torch_s": t["torch"],
                       "speedup_vs_torch": t["torch"] / t["kernelnet"], "raw": res}
                rows.append(row)
                print(f"{mode:5s} T={T:4d} H={H:4d} B={a.batch}: kernelnet {t['kernelnet']*1e3:9.1f} ms  "
                      f"torch {t['torch']*1e3:9.1f} ms  torch/kn {row['speedup_vs_torch']:.2f}x", flush=True)
    for w in workers.values():
        w.close()
    out = {"bench": "rnn forward+backward (sum of output), " + (
               "median over alternating rounds" if a.stat == "median" else "fastest step over alternating rounds"),
           "stat": a.stat,
           "cpu": cpu_name(), "threads": a.threads, "load_before": load_before, "load_after": load_average(),
           "note": "shared 2-core machine loaded by other engineers' builds/tests: wall-clock numbers are noisy",
           "date": datetime.datetime.utcnow().isoformat() + "Z", "rows": rows}
    path = a.out or os.path.join(HERE, "results", f"rnn-{datetime.datetime.utcnow():%Y%m%d-%H%M%S}.json")
    write_json_atomic(path, out)
    print("wrote", path)


if __name__ == "__main__":
    main()
