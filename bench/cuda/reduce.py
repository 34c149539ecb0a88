"""Reduction / softmax kernel lab: GB/s of kernelnet's CUDA reduce and softmax vs PyTorch.

Shapes cover the strategies of csrc/cuda/reduce.cu: row reduce (warp or block per row), split
rows (few long rows, two passes), column reduce, split columns. Each case is checked against
NumPy float64 before timing.
Usage: python bench/cuda/reduce.py [--quick]   writes bench/results/cuda_reduce.json
"""
import sys

import numpy as np

from _lab import F32, G, Dev, HAVE_TORCH_CUDA, as_torch, bench_pair, table, torch, write_json

QUICK = "--quick" in sys.argv
R_SUM, R_MAX, R_ARGMAX = 0, 2, 4


def main():
    rng = np.random.default_rng(0)
    s = 1 if not QUICK else 4
    cases = [  # name, op, (outer, R, inner)
        ("sum all (1 long row)", R_SUM, (1, (1 << 26) // s, 1)),
        ("sum rows 4096x4096", R_SUM, (4096 // s, 4096, 1)),
        ("sum rows 1M x 16 (warp/row)", R_SUM, ((1 << 20) // s, 16, 1)),
        ("sum cols 4096x4096 (dim 0)", R_SUM, (1, 4096 // s, 4096)),
        ("sum cols split (1, 1M, 8)", R_SUM, (1, (1 << 20) // s, 8)),
        ("sum mid (64, 1024, 256)", R_SUM, (64 // s, 1024, 256)),
        ("max rows 4096x4096", R_MAX, (4096 // s, 4096, 1)),
        ("argmax rows 1M x 10 (classes)", R_ARGMAX, ((1 << 20) // s, 10, 1)),
    ]
    rows = []
    for name, op, (outer, R, inner) in cases:
        n = outer * R * inner
        x_np = rng.standard_normal(n).astype(np.float32)
        x = Dev(x_np)
        out_dt = np.int64 if op == R_ARGMAX else np.float32
        o = Dev(shape=(outer, inner), dtype=out_dt)
        ours = lambda: G.reduce(op, F32, o.ptr, x.ptr, outer, R, inner)  # noqa: E731
        ours()
        x3 = x_np.reshape(outer, R, inner)
        if op == R_SUM:
            ok = bool(np.allclose(o.get(), x3.astype(np.float64).sum(1), rtol=1e-4, atol=1e-3 * np.sqrt(R)))
        elif op == R_MAX:
            ok = bool(np.array_equal(o.get(), x3.max(1)))
        else:
            ok = bool(np.array_equal(o.get(), x3.argmax(1)))
        ref = None
        if HAVE_TORCH_CUDA:
            tx = as_torch(x).view(outer, R, inner)
            ref = {R_SUM: lambda: tx.sum(1), R_MAX: lambda: tx.amax(1), R_ARGMAX: lambda: tx.argmax(1)}[op]
        t, tr = bench_pair(ours, ref)
        nbytes = n * 4 + outer * inner * np.dtype(out_dt).itemsize
        r = {"case": name, "shape": [outer, R, inner], "us": round(t * 1e6, 1), "GB/s": round(nbytes / t * 1e-9, 1),
             "correct": ok}
        if tr is not None:
            r.update({"torch_us": round(tr * 1e6, 1), "torch_GB/s": round(nbytes / tr * 1e-9, 1),
                      "ratio": round(tr / t, 3)})
        rows.append(r)
        table([r], list(r.keys()))
    for name, rws, cols in [("softmax 32768x10", 32768, 10), ("softmax 4096x4096", 4096 // s, 4096),
                            ("log_softmax 65536x1000", 65536 // s, 1000)]:
        x_np = rng.standard_normal(rws * cols).astype(np.float32)
        x, y = Dev(x_np), Dev(shape=(rws, cols))
        fn = G.log_softmax_forward if name.startswith("log") else G.softmax_forward
        ours = lambda: fn(x.ptr, y.ptr, rws, cols)  # noqa: E731
        ours()
        xd = x_np.reshape(rws, cols).astype(np.float64)
        lse = np.log(np.exp(xd - xd.max(1, keepdims=True)).sum(1, keepdims=True)) + xd.max(1, keepdims=True)
        expect = xd - lse if name.startswith("log") else np.exp(xd - lse)
        ok = bool(np.allclose(y.get(), expect, rtol=1e-4, atol=1e-6))
        ref = None
        if HAVE_TORCH_CUDA:
            tx = as_torch(x).view(rws, cols)
            ref = (lambda: torch.log_softmax(tx, 1)) if name.startswith("log") else (lambda: torch.softmax(tx, 1))
        t, tr = bench_pair(ours, ref)
        nbytes = 2 * rws * cols * 4
        r = {"case": name, "shape": [rws, cols], "us": round(t * 1e6, 1), "GB/s": round(nbytes / t * 1e-9, 1),
             "correct": ok}
        if tr is not None:
            r.update({"torch_us": round(tr * 1e6, 1), "torch_GB/s": round(nbytes / tr * 1e-9, 1),
                      "ratio": round(tr / t, 3)})
        rows.append(r)
        table([r], list(r.keys()))
    print()
    table(rows, ["case", "us", "GB/s", "torch_GB/s", "ratio", "correct"])
    write_json("reduce", rows, {"ratio": "torch time / our time (>1: we are faster)"})


if __name__ == "__main__":
    main()
