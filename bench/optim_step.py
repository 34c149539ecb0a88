"""Optimizer step benchmark: one step over the course CNN's parameters (1.2 M floats in 8 tensors),
kernelnet's fused native update vs torch.optim on CPU (its default single-tensor loop, and foreach).

    python bench/optim_step.py [--rounds 5] [--threads N]

Each library runs in its own worker process; requests alternate kernelnet, torch, kernelnet, ...
for `rounds` rounds; each answer is the median seconds per step of a timed loop; the table shows
the median over rounds and torch/kernelnet ratios measured in the same run.
Results: bench/results/optim_step-<date>.json.
"""
import argparse
import datetime
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _common import Worker, cpu_name, load_average, serve, time_call, write_json_atomic  # noqa: E402

SHAPES = [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (128, 9216), (128,), (10, 128), (10,)]
CASES = {
    "Adam": dict(lr=1e-3),
    "AdamW(amsgrad)": dict(lr=1e-3, amsgrad=True),
    "SGD(momentum, nesterov)": dict(lr=0.01, momentum=0.9, nesterov=True),
    "RMSprop": dict(lr=1e-3),
}


def _worker(lib):
    import numpy as np
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [rng.standard_normal(s).astype(np.float32) * 1e-3 for s in SHAPES]
    if lib == "kernelnet":
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import kernelnet as kn
        import kernelnet.optim as optim
        ps = [kn.nn.Parameter(kn.tensor(d)) for d in data]
        for p, g in zip(ps, grads):
            p.grad = kn.tensor(g)
        make = lambda name, kw: getattr(optim, name.split("(")[0])(ps, **kw)  # noqa: E731
    else:
        import torch
        ps = [torch.nn.Parameter(torch.tensor(d)) for d in data]
        for p, g in zip(ps, grads):
            p.grad = torch.tensor(g)
        foreach = lib == "torch-foreach"
        make = lambda name, kw: getattr(torch.optim, name.split("(")[0])(ps, foreach=foreach, **kw)  # noqa: E731

    def handle(req):
        opt = make(req["case"], CASES[req["case"]])
        return {"s": time_call(opt.step, min_time=0.5)}

    serve(handle)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--worker", default=None)
    a = ap.parse_args()
    if a.worker:
        return _worker(a.worker)
    env = dict(os.environ)
    if a.threads:
        for k in ("KERNELNET_NUM_THREADS", "OMP_NUM_THREADS"):
            env[k] = str(a.threads)
    libs = ["kernelnet", "torch", "torch-foreach"]
    workers = {lib: Worker([sys.executable, __file__, "--worker", lib], env=env) for lib in libs}
    times = {(c, lib): [] for c in CASES for lib in libs}
    try:
        for _ in range(a.rounds):
            for c in CASES:
                for lib in libs:
                    times[(c, lib)].append(workers[lib].ask({"case": c})["s"])
    finally:
        for w in workers.values():
            w.close()
    rows = []
    print(f"CPU: {cpu_name()}  threads: {a.threads or 'default'}  load: {load_average()}")
    print(f"{'optimizer':26s} {'kernelnet ms':>13s} {'torch ms':>10s} {'foreach ms':>11s} {'torch/kn':>9s}")
    for c in CASES:
        med = {lib: statistics.median(times[(c, lib)]) * 1e3 for lib in libs}
        rows.append(dict(case=c, **{f"{lib}_ms": med[lib] for lib in libs}, ratio=med["torch"] / med["kernelnet"]))
        print(f"{c:26s} {med['kernelnet']:13.3f} {med['torch']:10.3f} {med['torch-foreach']:11.3f} "
              f"{med['torch'] / med['kernelnet']:9.2f}")
    out = os.path.join(HERE, "results", f"optim_step-{datetime.date.today().isoformat()}.json")
    write_json_atomic(out, {"cpu": cpu_name(), "threads": a.threads, "load_average": load_average(),
                            "rounds": a.rounds, "params": sum(int(__import__('math').prod(s)) for s in SHAPES),
                            "results": rows})
    print("wrote", out)


if __name__ == "__main__":
    main()
