"""Shared helpers for the bench/ scripts.

Conventions (see HELPER_PROTOCOL.md): each library runs in its own process; measurements alternate
between libraries (A B A B ...) so that machine noise hits all of them alike; report medians and
ratios measured in the same run; name the CPU and thread count; write JSON atomically.

Persistent workers: `Worker(cmd)` starts `cmd` once (e.g. `python bench/gemm.py --worker numpy`),
then `worker.ask(request)` sends one JSON line and reads one JSON line back. The worker side is
`serve(handler)`, which answers each request line with handler(request).
"""
import json
import glob
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def cpu_name():
    """The CPU model as the OS reports it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median(xs):
    return statistics.median(xs)


def load_average():
    try:
        return os.getloadavg()
    except OSError:
        return None


def write_json_atomic(path, obj):
    """Write obj as JSON to path without ever leaving a half-written file (temp file + rename)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def course_cnn(lib):
    """The course's CNN (Conv 1->32, Conv 32->64, max-pool 2, dropout, FC 9216->128->10) in lib
    (kernelnet or torch), for the benchmarks that train or measure it."""
    nn = lib.nn
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(128, 10))


def time_best(fn):
    """The fastest call of fn over 0.2 s of calls, after 0.1 s of warm-up calls: per-op overhead
    benchmarks, where the minimum is the op's own cost and the rest is the machine's noise."""
    time_call(fn, min_time=0.1)
    return time_call(fn, min_time=0.2, best=True)


def time_call(fn, min_time=0.2, max_iters=1000, clock="wall", best=False):
    """Seconds per call of fn(): one warm-up call, then enough calls to fill about min_time.

    clock="wall": elapsed time. clock="cpu": CPU time of the calling thread, which does not count
    the time the OS gives to other processes; valid only for single-threaded work done on the
    calling thread, and the way to compare kernels on a machine shared with other jobs.
    best=True: the fastest single call instead of the mean. Interference only ever slows a call
    down, so on a machine whose speed drifts by tens of percent the best call is the stable
    estimate of what the code can do (A/B runs agreed to a few percent where means did not).
    """
    now = time.thread_time if clock == "cpu" else time.perf_counter
    fn()
    t = now()
    fn()
    once = now() - t
    iters = max(1, min(max_iters, int(min_time / max(once, 1e-9))))
    if best:
        fastest = once
        for _ in range(iters):
            t = now()
            fn()
            fastest = min(fastest, now() - t)
        return fastest
    t = now()
    for _ in range(iters):
        fn()
    return (now() - t) / iters


def time_synced(fn, sync, iters, reps):
    """Seconds per call of fn() on an asynchronous device: one warm-up call, then `reps` timings of
    `iters` back-to-back calls bracketed by sync() (the GPU benchmarks); median."""
    fn()
    sync()
    out = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        sync()
        out.append((time.perf_counter() - t0) / iters)
    return statistics.median(out)


def run_workers_alternating(script, libs, worker_args, procs, err_tail=3000):
    """One-shot workers: run `python script --worker LIB *worker_args` in a fresh process for each
    library in turn (A B A B ...), `procs` times; each prints its results as JSON on its last stdout
    line. Returns ({lib: [results of the runs that succeeded]}, {lib: stderr tail of its last failed
    run}); a failure is reported on stderr and skipped, so the other library still gets measured."""
    runs = {lib: [] for lib in libs}
    errors = {}
    for _ in range(procs):
        for lib in libs:
            p = subprocess.run([sys.executable, script, "--worker", lib, *worker_args], capture_output=True, text=True)
            if p.returncode != 0:
                errors[lib] = p.stderr[-err_tail:]
                print(f"{lib} worker failed:\n{errors[lib]}", file=sys.stderr)
                continue
            runs[lib].append(json.loads(p.stdout.strip().splitlines()[-1]))
    return runs, errors


def median_by_key(runs, key):
    """{lib: median of run[key] over that library's runs, or None when it has none}."""
    return {lib: (statistics.median([r[key] for r in rs]) if rs else None) for lib, rs in runs.items()}


def load_library(lib, threads, baseline=None):
    """A worker's library: torch, this tree's kernelnet ("kernelnet"), or the kernelnet package in
    the directory `baseline` ("before"), with `threads` threads."""
    if lib == "torch":
        import torch as L
    else:
        here = os.path.dirname(os.path.abspath(__file__))
        tree = os.path.join(os.path.dirname(here), "python")
        if lib == "before":
            if not glob.glob(os.path.join(baseline, "kernelnet", "_cpu*.so")):
                raise SystemExit(f"--baseline {baseline}: no built kernelnet package there (kernelnet/_cpu*.so)")
            sys.path.insert(0, baseline)
        elif glob.glob(os.path.join(tree, "kernelnet", "_cpu*.so")):
            sys.path.insert(0, tree)  # this tree, built in place (tools/dev_build.sh); else the installed one
        import kernelnet as L
    L.set_num_threads(threads)
    return L


def compare_parser(threads):
    """The command line of a compare_cases script: --worker (internal), --procs, --threads,
    --baseline DIR (an older kernelnet package, measured as "before"), --out FILE."""
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["kernelnet", "torch", "before"])
    ap.add_argument("--procs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--baseline", default=None, help="a directory holding an older kernelnet package")
    ap.add_argument("--out", default=None)
    return ap


def write_compare_results(out, stem, bench, device, threads, procs, stat, rows, errors):
    """Write a compare_cases run as JSON (to `out`, or results_path's default for `stem`), with the
    machine and run facts every such file carries, and say where."""
    out = results_path(out, stem)
    write_json_atomic(out, {"bench": bench, "device": device, "cpu": cpu_name(), "threads": threads,
                            "procs_per_lib": procs, "load_average": load_average(),
                            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "stat": stat,
                            "rows": rows, "errors": errors})
    print("wrote", out)


def compare_cases(script, cases, worker_args, procs, baseline=None, unit="us", width=34, extra=None):
    """The usual CPU comparison: `script --worker LIB *worker_args` for kernelnet and torch (and
    "before", the package in `baseline`, when given) in alternating processes; per case the median
    over processes of the time each worker reported (seconds, keyed by case name), one printed line
    and one JSON row: kernelnet_<unit>, torch_<unit>, torch_over_kernelnet (> 1: kernelnet faster),
    before_<unit> and speedup_vs_before with a baseline, plus extra(name)'s fields. Returns
    (rows, errors)."""
    scale = {"us": 1e6, "ms": 1e3}[unit]
    libs = ("kernelnet", "torch") + (("before",) if baseline else ())
    args = list(worker_args) + (["--baseline", baseline] if baseline else [])
    runs, errors = run_workers_alternating(script, libs, args, procs)

    def shown(v):
        return f"{v * scale:8.3f}" if unit == "ms" and v else f"{v * scale:8.1f}" if v else "     nan"

    rows = []
    for name in cases:
        med = median_by_key(runs, name)
        k, t, b = med["kernelnet"], med["torch"], med.get("before")
        ratio = t / k if k and t else None
        row = {"case": name, **(extra(name) if extra else {}), f"kernelnet_{unit}": k and k * scale,
               f"torch_{unit}": t and t * scale, "torch_over_kernelnet": ratio}
        line = (f"{name:{width}s} kernelnet {shown(k)} {unit}  torch {shown(t)} {unit}  torch/kn "
                f"{ratio if ratio else float('nan'):5.2f}x")
        if b:
            row.update({f"before_{unit}": b * scale, "speedup_vs_before": b / k if k else None})
            line += f"  before {shown(b)} {unit}" + (f"  before/now {b / k:.2f}x" if k else "")
        rows.append(row)
        print(line)
    return rows, errors


def results_path(explicit, stem):
    """explicit if given, else <KN_BENCH_OUT or bench/results>/<stem>-<date-time>.json."""
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.environ.get("KN_BENCH_OUT") or os.path.join(here, "results"),
                        f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.json")


class Worker:
    """A benchmark subprocess that answers JSON requests, one line each way."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True, bufsize=1)

    def ask(self, request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker {self.proc.args} died")
        return json.loads(line)

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


def serve(handler):
    """Worker main loop: answer each JSON request line on stdin with handler(request) on stdout."""
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the protocol
    for line in sys.stdin:
        if line.strip():
            out.write(json.dumps(handler(json.loads(line))) + "\n")
            out.flush()
