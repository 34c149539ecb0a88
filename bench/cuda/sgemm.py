"""SGEMM kernel lab: correctness sweep + GFLOP/s of kernelnet's CUDA sgemm vs cuBLAS (PyTorch).

Versions (csrc/cuda/gemm.cu, forced with _sgemm_force_config): FP32 tile configs
  0: 128x128x8, 8x8/thread, <=128 regs (2 blocks/SM)   1: 128x64x8, 8x4
  2: 64x64x16, 4x4                                      3: 32x64x16, 4x4 (128 threads)
  4: 128x128x8, 8x8, no register cap (1 block/SM)
TF32 tensor-core configs (mma.sync m16n8k8): 10: 128x128x16 (8 warps), 11: 64x64x16 (4 warps),
  12: 128x128x32, 4 warps of 64x64, cp.async 3-stage pipeline (candidate: forced only, not yet run).
"auto" is what sgemm picks (plus split-K for small outputs with long K).

Usage: python bench/cuda/sgemm.py [--quick]     writes bench/results/cuda_sgemm.json
"""
import sys

import numpy as np

from _lab import G, Dev, HAVE_TORCH_CUDA, as_torch, bench_pair, table, torch, write_json

QUICK = "--quick" in sys.argv

# (name, M, N, K, trans_a, trans_b): the course CNN (batch 32, Fashion-MNIST): conv layers as
# im2col GEMMs, FC 9216->128, with their gradient products
SHAPES = [
    ("square 4096", 4096, 4096, 4096, False, False),
    ("square 2048", 2048, 2048, 2048, False, False),
    ("fc1 fwd x@W^T", 32, 128, 9216, False, True),
    ("fc1 dW dy^T@x", 128, 9216, 32, True, False),
    ("fc1 dx dy@W", 32, 9216, 128, False, False),
    ("conv2 fwd", 18432, 64, 288, False, True),
    ("conv2 dW", 64, 288, 18432, True, False),
    ("conv2 dcols", 18432, 288, 64, False, False),
    ("conv1 fwd", 21632, 32, 9, False, True),
    ("conv1 dW", 32, 9, 21632, True, False),
]


def operands(M, N, K, ta, tb, rng):
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    return A, B


def run_ours(dA, dB, dC, M, N, K, ta, tb):
    lda = M if ta else K
    ldb = K if tb else N
    return lambda: G.sgemm(1, ta, tb, M, N, K, 1.0, dA.ptr, lda, 0, dB.ptr, ldb, 0, 0.0, dC.ptr, N, 0, 0, 0, 0)


def correctness_sweep():
    """Every config x transposes x awkward sizes against float64 NumPy."""
    rng = np.random.default_rng(0)
    bad = []
    for cfg in [0, 1, 2, 3, 4, 10, 11, 12]:
        tf32 = cfg >= 10
        G.set_allow_tf32(tf32)
        G._sgemm_force_config(cfg)
        for M, N, K in [(1, 1, 1), (7, 5, 3), (127, 129, 65), (256, 64, 300), (33, 200, 1000)]:
            for ta in (False, True):
                for tb in (False, True):
                    A, B = operands(M, N, K, ta, tb, rng)
                    dA, dB, dC = Dev(A), Dev(B), Dev(shape=(M, N))
                    run_ours(dA, dB, dC, M, N, K, ta, tb)()
                    ref = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
                    err = np.max(np.abs(dC.get() - ref)) / (np.sqrt(K) + 1)
                    if err > (3e-3 if tf32 else 3e-5):
                        bad.append((cfg, M, N, K, ta, tb, float(err)))
    G._sgemm_force_config(-1)
    G.set_allow_tf32(False)
    print("correctness sweep:", "all ok" if not bad else f"FAILURES {bad}")
    return bad


def main():
    bad = correctness_sweep()
    rng = np.random.default_rng(1)
    rows = []
    shapes = SHAPES[:3] if QUICK else SHAPES
    for name, M, N, K, ta, tb in shapes:
        A, B = operands(M, N, K, ta, tb, rng)
        dA, dB, dC = Dev(A), Dev(B), Dev(shape=(M, N))
        flop = 2.0 * M * N * K
        ref = None
        if HAVE_TORCH_CUDA:
            tA, tB = as_torch(dA), as_torch(dB)
            tA = tA.t() if ta else tA
            tB = tB.t() if tb else tB
            tC = as_torch(dC)
            ref = lambda: torch.matmul(tA, tB, out=tC)  # noqa: E731
        variants = [("auto", -1, False)]
        if name.startswith("square"):
            variants += [(f"v{c}", c, False) for c in (0, 1, 2, 4)]
        else:  # every FP32 tile config on the course shapes: data for tuning choose() in gemm.cu
            variants += [(f"v{c}", c, False) for c in (0, 1, 2, 3)]
        variants += [("tf32 auto", -1, True)]
        if name.startswith("square"):
            variants += [("tf32 v10", 10, True), ("tf32 v12", 12, True)]
        if name == "square 4096":
            variants += [("tf32 v11", 11, True)]
        elif not name.startswith("square"):
            variants += [("tf32 v12", 12, True)]
        for vname, cfg, tf32 in variants:
            G.set_allow_tf32(tf32)
            G._sgemm_force_config(cfg)
            if HAVE_TORCH_CUDA:
                torch.backends.cuda.matmul.allow_tf32 = tf32
            ours = run_ours(dA, dB, dC, M, N, K, ta, tb)
            t_ours, t_ref = bench_pair(ours, ref)
            # check the last result against cuBLAS
            ours()
            # what actually ran: a forced config 12 falls back to 10 on unaligned rows (conv1: K or N = 9)
            chosen = G._sgemm_last_config()
            got = dC.get()
            if ref is not None:
                ref()
                expect = dC.get()
                rel = float(np.max(np.abs(got - expect)) / (np.max(np.abs(expect)) + 1e-30))
            else:
                rel = None
            row = {"shape": name, "M": M, "N": N, "K": K, "ta": ta, "tb": tb, "kernel": vname, "config": chosen,
                   "ms": round(t_ours * 1e3, 4), "gflops": round(flop / t_ours * 1e-9, 1)}
            if t_ref is not None:
                row.update({"ref": "cuBLAS tf32" if tf32 else "cuBLAS fp32", "ref_ms": round(t_ref * 1e3, 4),
                            "ref_gflops": round(flop / t_ref * 1e-9, 1), "ratio": round(t_ref / t_ours, 3),
                            "max_rel_diff": rel})
            rows.append(row)
            table([row], list(row.keys()))
    G._sgemm_force_config(-1)
    G.set_allow_tf32(False)
    if HAVE_TORCH_CUDA:
        torch.backends.cuda.matmul.allow_tf32 = False
    print()
    table(rows, ["shape", "kernel", "config", "ms", "gflops", "ref_gflops", "ratio", "max_rel_diff"])
    write_json("sgemm", rows, {"correctness_failures": bad,
                                "ratio": "reference time / our time (>1: we are faster)"})


if __name__ == "__main__":
    main()
