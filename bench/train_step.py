"""Course CNN training step on the CPU: kernelnet vs PyTorch, samples/s.

    python bench/train_step.py [--batches 32 128] [--steps 20] [--rounds 3] [--baseline DIR]

The model is the course's listing (Conv 1->32, Conv 32->64, max-pool, dropout, FC 9216->128->10)
with Adam (lr 1e-3) and cross-entropy on random 28x28 inputs. Each library runs in its own
process (a worker mode of this script), alternating kernelnet, torch, kernelnet, torch, ... so
their thread pools never share the cores; the table reports medians over rounds and the ratio
kernelnet/torch (> 1: kernelnet faster) as the median of the per-round ratios: each round's two
processes run back to back, so a slow phase of a shared machine (we have seen the whole machine
run 1.6x slower for minutes) affects both sides of a ratio instead of one side of a median. JSON goes to bench/results/train_step-<date>.json.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import course_cnn, cpu_name, load_average, load_library, median, write_json_atomic  # noqa: E402


def worker(lib, batch, steps, threads, baseline=None):
    if lib == "torch":
        import torch as T
        import torch.nn as nn
        import torch.optim as optim
        T.set_num_threads(threads)
    else:
        T = load_library(lib, threads, baseline)  # this tree's package, or --baseline's as "before"
        nn, optim = T.nn, T.optim
    T.manual_seed(0)

    model = course_cnn(T)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()
    x = T.rand(batch, 1, 28, 28)
    y = T.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    print(json.dumps({"lib": lib, "batch": batch, "step_ms": dt * 1e3, "samples_per_s": batch / dt}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per process (default: 2000 / batch, at least 20: ~2 s each)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--worker", choices=["kernelnet", "torch", "before"])
    ap.add_argument("--baseline", help="a directory holding an older kernelnet package, timed as 'before'")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.batch, a.steps, a.threads, a.baseline)
        return
    rows = []
    print(f"CPU: {cpu_name()}, threads {a.threads}, load average at start {load_average()}")
    print("course CNN training step (Adam), median of", a.rounds, "alternating rounds, each library in its own process")
    print(f"{'batch':>6} {'kernelnet ms':>13} {'torch ms':>9} {'kn samples/s':>13} {'torch samples/s':>16} {'ratio':>6}")
    print("(ratio: median over rounds of torch ms / kernelnet ms; > 1 means kernelnet is faster)")
    for b in a.batches:
        steps = a.steps or max(20, 2000 // b)
        libs = ["kernelnet", "torch"] + (["before"] if a.baseline else [])
        res = {lib: [] for lib in libs}
        for r in range(a.rounds):
            order = libs if r % 2 == 0 else libs[::-1]
            for lib in order:
                cmd = [sys.executable, __file__, "--worker", lib, "--batch", str(b), "--steps", str(steps),
                       "--threads", str(a.threads)] + (["--baseline", a.baseline] if a.baseline else [])
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                res[lib].append(json.loads(out.stdout.strip().splitlines()[-1])["step_ms"])
        kn, pt = median(res["kernelnet"]), median(res["torch"])
        ratio = median([t / k for k, t in zip(res["kernelnet"], res["torch"])])
        row = {"batch": b, "kernelnet_step_ms": kn, "torch_step_ms": pt,
               "kernelnet_samples_per_s": b / kn * 1e3, "torch_samples_per_s": b / pt * 1e3,
               "ratio": ratio, "ratio_of_medians": pt / kn, "raw": res}
        extra = ""
        if a.baseline:
            row["before_step_ms"] = median(res["before"])
            row["before_over_now"] = median([p / k for k, p in zip(res["kernelnet"], res["before"])])
            extra = f"   before {row['before_step_ms']:.1f} ms, before/now {row['before_over_now']:.2f}"
        rows.append(row)
        print(f"{b:>6} {kn:>13.1f} {pt:>9.1f} {b / kn * 1e3:>13.0f} {b / pt * 1e3:>16.0f} {ratio:>6.2f}{extra}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    path = a.out or os.path.join(HERE, "results", f"train_step-{stamp}.json")
    write_json_atomic(path, {"cpu": cpu_name(), "threads": a.threads, "load_average_end": load_average(),
                             "rows": rows})
    print("wrote", path)


if __name__ == "__main__":
    main()
