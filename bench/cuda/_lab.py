"""Shared helpers for the CUDA kernel lab (bench/cuda/*.py), in the spirit of llm.c's dev/cuda:
device buffers from NumPy, GPU timing, a reference in the same run, JSON results.

Timing: CUDA events from PyTorch when it has CUDA (our kernels and PyTorch's both run on the
legacy default stream, so events bracket both), else wall clock around synchronize(). Each
measurement: warm-up, then `reps` repetitions of `iters` back-to-back calls, alternating our
kernel and the reference (A B A B ...), median per call. Both run in this one process (the GPU is
the measured resource; Python call overhead is similar for both and included for both).
"""
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    from kernelnet import _cuda as G
except ImportError as e:
    print(f"kernelnet._cuda not built: {e}")
    sys.exit(0)
if G.device_count() == 0:
    print("no CUDA GPU visible")
    sys.exit(0)

try:
    import torch
    HAVE_TORCH_CUDA = torch.cuda.is_available()
except ImportError:
    torch = None
    HAVE_TORCH_CUDA = False

F32, I64, BOOL = 0, 1, 2


class Dev:
    """Device memory holding a copy of a NumPy array."""

    def __init__(self, arr=None, shape=None, dtype=np.float32):
        if arr is not None:
            arr = np.ascontiguousarray(arr)
            shape, dtype = arr.shape, arr.dtype
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.buf = G.Buffer(max(self.nbytes, 4))
        self.ptr = self.buf.ptr
        if arr is not None and self.nbytes:
            G.memcpy_htod(self.ptr, arr.ctypes.data, self.nbytes)

    def get(self):
        out = np.empty(self.shape, self.dtype)
        if self.nbytes:
            G.memcpy_dtoh(out.ctypes.data, self.ptr, self.nbytes)
        return out


def as_torch(d):
    """A torch CUDA tensor sharing d's memory (DLPack, no copy)."""
    code = {np.dtype(np.float32): F32, np.dtype(np.int64): I64, np.dtype(np.uint8): BOOL}[d.dtype]
    strides, acc = [], 1
    for s in reversed(d.shape):
        strides.append(acc)
        acc *= s
    cap = G.to_dlpack(d.ptr, list(d.shape), list(reversed(strides)), code, 0, d.buf)
    return torch.utils.dlpack.from_dlpack(cap)


def _time_once(fn, iters):
    if HAVE_TORCH_CUDA:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(iters):
            fn()
        e.record()
        e.synchronize()
        return s.elapsed_time(e) * 1e-3 / iters
    G.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    G.synchronize()
    return (time.perf_counter() - t0) / iters


def bench_pair(ours, ref=None, reps=5, target_s=0.02):
    """Median seconds per call of `ours` and `ref` (None if no reference), alternating."""
    ours()
    if ref is not None:
        ref()
    G.synchronize()
    t = _time_once(ours, 1)
    iters = max(1, min(200, int(target_s / max(t, 1e-6))))
    a, b = [], []
    for _ in range(reps):
        a.append(_time_once(ours, iters))
        if ref is not None:
            b.append(_time_once(ref, iters))
    return statistics.median(a), (statistics.median(b) if b else None)


def metadata():
    commit = os.environ.get("KN_COMMIT")
    if not commit:
        try:
            commit = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%H"], capture_output=True,
                                    text=True, timeout=5).stdout.strip() or "unknown"
        except Exception:
            commit = "unknown"
    cap = G.device_capability(0)
    return {"device": G.device_name(0), "capability": f"{cap[0]}.{cap[1]}",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": commit, "torch": torch.__version__ if torch else None,
            "timing": "CUDA events" if HAVE_TORCH_CUDA else "wall clock + synchronize",
            "method": "median of 5 alternating repetitions (ours, reference), same process"}


def write_json(name, results, extra=None):
    out_dir = os.environ.get("KN_BENCH_OUT", os.path.join(ROOT, "bench", "results"))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"cuda_{name}.json")
    doc = {"bench": name, **metadata(), **(extra or {}), "results": results}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {path}")
    return path


def table(rows, cols):
    widths = [max(len(c), *(len(f"{r.get(c, '')}") for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(f"{r.get(c, '')}".rjust(w) for c, w in zip(cols, widths)))
    sys.stdout.flush()
