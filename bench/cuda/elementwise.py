"""Elementwise kernel lab: GB/s of kernelnet's CUDA elementwise kernels vs PyTorch, and vs the
device-to-device copy bandwidth (cudaMemcpy) measured in the same run (target: >= 80 % of copy).

Each case checks its result against NumPy on a sample before timing.
Usage: python bench/cuda/elementwise.py [--quick]   writes bench/results/cuda_elementwise.json
"""
import sys

import numpy as np

from _lab import F32, I64, G, Dev, HAVE_TORCH_CUDA, as_torch, bench_pair, table, torch, write_json

QUICK = "--quick" in sys.argv
B_ADD, B_MUL, B_GT = 0, 2, 11
U_EXP, U_RELU, U_GELU = 1, 5, 16


def main():
    n = 1 << (24 if QUICK else 26)  # 64 M floats = 256 MB per operand: far beyond L2
    rng = np.random.default_rng(0)
    a_np = rng.standard_normal(n).astype(np.float32)
    b_np = rng.standard_normal(n).astype(np.float32)
    a, b, o = Dev(a_np), Dev(b_np), Dev(shape=(n,))
    row = Dev(b_np[:4096])
    oi = Dev(shape=(n,), dtype=np.int64)
    ob = Dev(shape=(n,), dtype=np.uint8)
    side = 4096 if not QUICK else 2048
    sq = Dev(a_np[: side * side].reshape(side, side))
    sqo = Dev(shape=(side, side))
    T = HAVE_TORCH_CUDA
    if T:
        ta, tb, to, trow = as_torch(a), as_torch(b), as_torch(o), as_torch(row)
        tsq, tsqo = as_torch(sq), as_torch(sqo)
        toi = as_torch(oi)
    f = 4  # bytes per float
    cases = [
        # name, ours, torch, bytes moved, check (ours -> numpy of first 4096 outputs vs expected)
        ("copy (memcpy d2d)", lambda: G.memcpy_dtod(o.ptr, a.ptr, n * f),
         (lambda: to.copy_(ta)) if T else None, 2 * n * f, lambda: (o, a_np)),
        ("fill", lambda: G.fill(F32, o.ptr, n, 1.5), (lambda: to.fill_(1.5)) if T else None, n * f,
         lambda: (o, np.full(n, 1.5, np.float32))),
        ("add a+b", lambda: G.binary(B_ADD, F32, o.ptr, a.ptr, [1], b.ptr, [1], [n]),
         (lambda: torch.add(ta, tb, out=to)) if T else None, 3 * n * f, lambda: (o, a_np + b_np)),
        ("mul a*scalar", lambda: G.binary(B_MUL, F32, o.ptr, a.ptr, [1], b.ptr, [0], [n]),
         (lambda: torch.mul(ta, tb[:1], out=to)) if T else None, 2 * n * f, lambda: (o, a_np * b_np[0])),
        ("add row-broadcast [n/4096,4096]+[4096]",
         lambda: G.binary(B_ADD, F32, o.ptr, a.ptr, [4096, 1], row.ptr, [0, 1], [n // 4096, 4096]),
         (lambda: torch.add(ta.view(-1, 4096), trow, out=to.view(-1, 4096))) if T else None, 2 * n * f,
         lambda: (o, (a_np.reshape(-1, 4096) + b_np[:4096]).ravel())),
        ("gt a>b -> bool", lambda: G.binary(B_GT, F32, ob.ptr, a.ptr, [1], b.ptr, [1], [n]),
         (lambda: torch.gt(ta, tb)) if T else None, 2 * n * f + n, lambda: (ob, (a_np > b_np).astype(np.uint8))),
        ("exp", lambda: G.unary(U_EXP, o.ptr, a.ptr, [1], [n], 0.0, 0.0),
         (lambda: torch.exp(ta, out=to)) if T else None, 2 * n * f, lambda: (o, np.exp(a_np))),
        ("relu", lambda: G.unary(U_RELU, o.ptr, a.ptr, [1], [n], 0.0, 0.0),
         (lambda: torch.relu(ta)) if T else None, 2 * n * f, lambda: (o, np.maximum(a_np, 0))),
        ("gelu", lambda: G.unary(U_GELU, o.ptr, a.ptr, [1], [n], 0.0, 0.0),
         (lambda: torch.nn.functional.gelu(ta)) if T else None, 2 * n * f, None),
        ("relu backward", lambda: G.unary_backward(U_RELU, o.ptr, b.ptr, a.ptr, a.ptr, n, 0.0, 0.0),
         (lambda: torch.ops.aten.threshold_backward(tb, ta, 0.0)) if T else None, 3 * n * f,
         lambda: (o, np.where(a_np > 0, b_np, 0))),
        ("transpose copy_strided", lambda: G.copy_strided(F32, sqo.ptr, sq.ptr, [side, side], [1, side]),
         (lambda: tsqo.copy_(tsq.t())) if T else None, 2 * side * side * f,
         lambda: (sqo, a_np[: side * side].reshape(side, side).T.ravel())),
        ("cast f32->i64", lambda: G.cast(F32, I64, oi.ptr, a.ptr, n),
         (lambda: toi.copy_(ta)) if T else None, n * (f + 8), lambda: (oi, a_np.astype(np.int64))),
    ]
    rows = []
    copy_gbs = None
    for name, ours, ref, nbytes, check in cases:
        ok = None
        if check is not None:
            ours()
            dst, expect = check()
            got = dst.get().ravel()
            ok = bool(np.allclose(got[:4096], np.asarray(expect).ravel()[:4096], rtol=1e-5, atol=1e-6)
                      and np.allclose(got[-4096:], np.asarray(expect).ravel()[-4096:], rtol=1e-5, atol=1e-6))
        t, tr = bench_pair(ours, ref)
        gbs = nbytes / t * 1e-9
        if copy_gbs is None:
            copy_gbs = gbs
        r = {"op": name, "n": n, "bytes": nbytes, "us": round(t * 1e6, 1), "GB/s": round(gbs, 1),
             "vs_copy": round(gbs / copy_gbs, 3), "correct": ok}
        if tr is not None:
            r.update({"torch_us": round(tr * 1e6, 1), "torch_GB/s": round(nbytes / tr * 1e-9, 1),
                      "ratio": round(tr / t, 3)})
        rows.append(r)
        table([r], list(r.keys()))
    print()
    table(rows, ["op", "us", "GB/s", "vs_copy", "torch_GB/s", "ratio", "correct"])
    write_json("elementwise", rows, {"ratio": "torch time / our time (>1: we are faster)",
                                     "vs_copy": "our GB/s / our device-to-device copy GB/s"})


if __name__ == "__main__":
    main()
