"""kernelnet._cpu.sgemm against float64 NumPy, on every SIMD path this CPU can run.

The native call is used directly (pointers as ints), so these tests pin the kernel contract:
row-major C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b], then bias (per column or per row), then
ReLU; transposes absorbed by the kernel; leading dimensions and batch strides in elements (0
broadcasts). Shapes are chosen to hit every code path of gemm.cpp: register-tile tails, several
K/M/N cache blocks, packed and in-place operands, the thread grid and the K split.
"""
import numpy as np
import pytest

from kernelnet import _cpu

BIAS_NONE, BIAS_COL, BIAS_ROW = 0, 1, 2
ACT_NONE, ACT_RELU = 0, 1
_ORDER = ["portable", "avx2", "avx512"]
PATHS = _ORDER[: _ORDER.index(_cpu.simd_detected()) + 1]


@pytest.fixture(params=PATHS)
def simd(request):
    old = _cpu.simd_active()
    _cpu.set_simd(request.param)
    yield request.param
    _cpu.set_simd(old)


@pytest.fixture(params=[1, 2])
def threads(request):
    old = _cpu.num_threads()
    _cpu.set_num_threads(request.param)
    yield request.param
    _cpu.set_num_threads(old)


def _ld(x):
    """Leading dimension (elements) of a 2-D or batched float32 view with unit column stride."""
    assert x.dtype == np.float32 and x.strides[-1] == 4
    return x.strides[-2] // 4


def stored(rng, rows, cols, pad=0, batch=None):
    """A rows x cols float32 view whose row stride is cols + pad (a submatrix of a wider array)."""
    shape = (rows, cols + pad) if batch is None else (batch, rows, cols + pad)
    full = rng.standard_normal(shape).astype(np.float32)
    return full[..., :cols]


def sgemm(A, B, C, ta=False, tb=False, alpha=1.0, beta=0.0, bias=None, bias_mode=BIAS_NONE,
          act=ACT_NONE):
    """Call the kernel on 2-D or 3-D (batched) views; batch strides come from the views."""
    batched = C.ndim == 3
    M, N = C.shape[-2:]
    K = A.shape[-2] if ta else A.shape[-1]
    batch = C.shape[0] if batched else 1
    sa = A.strides[0] // 4 if A.ndim == 3 else 0
    sb = B.strides[0] // 4 if B.ndim == 3 else 0
    sc = C.strides[0] // 4 if batched else 0
    bp = 0 if bias is None else bias.ctypes.data
    _cpu.sgemm(batch, ta, tb, M, N, K, alpha, A.ctypes.data, _ld(A), sa, B.ctypes.data, _ld(B), sb,
               beta, C.ctypes.data, _ld(C), sc, bp, bias_mode, act)


def reference(A, B, C0, ta, tb, alpha, beta, bias, bias_mode, act):
    a = A.astype(np.float64)
    b = B.astype(np.float64)
    a = np.swapaxes(a, -1, -2) if ta else a
    b = np.swapaxes(b, -1, -2) if tb else b
    prod = a @ b
    out = alpha * prod + (beta * C0.astype(np.float64) if beta != 0 else 0.0)
    if bias_mode == BIAS_COL:
        out = out + bias.astype(np.float64)
    elif bias_mode == BIAS_ROW:
        out = out + bias.astype(np.float64)[:, None]
    if act == ACT_RELU:
        out = np.maximum(out, 0.0)
    # Error bound for float32 summation of K products (plus the epilogue), elementwise.
    K = a.shape[-1]
    mag = abs(alpha) * (np.abs(a) @ np.abs(b)) + abs(beta) * np.abs(C0.astype(np.float64))
    tol = (K + 4) * 2.0 ** -23 * mag + 1e-6
    if bias_mode != BIAS_NONE:
        tol = tol + 2.0 ** -22 * np.max(np.abs(bias))
    return out, tol


def check(rng, M, N, K, ta=False, tb=False, alpha=1.0, beta=0.0, bias_mode=BIAS_NONE,
          act=ACT_NONE, pad=(0, 0, 0), batch=None, bcast=None):
    """bcast: None, 'a' or 'b' (that operand is one matrix shared by all batch items, stride 0)."""
    nb_a = None if bcast == "a" else batch
    nb_b = None if bcast == "b" else batch
    A = stored(rng, K, M, pad[0], nb_a) if ta else stored(rng, M, K, pad[0], nb_a)
    B = stored(rng, N, K, pad[1], nb_b) if tb else stored(rng, K, N, pad[1], nb_b)
    if batch is not None:  # a broadcast operand is passed with batch stride 0
        if bcast == "a":
            A = np.lib.stride_tricks.as_strided(A, (batch,) + A.shape, (0,) + A.strides)
        if bcast == "b":
            B = np.lib.stride_tricks.as_strided(B, (batch,) + B.shape, (0,) + B.strides)
    C = stored(rng, M, N, pad[2], batch)
    outside = C.base[..., N:].copy()  # the padding columns right of C: must stay untouched
    if beta == 0.0:
        C[...] = np.nan  # beta == 0 must not read C
    C0 = C.copy()
    bias = None
    if bias_mode != BIAS_NONE:
        bias = rng.standard_normal(N if bias_mode == BIAS_COL else M).astype(np.float32)
    sgemm(A, B, C, ta, tb, alpha, beta, bias, bias_mode, act)
    want, tol = reference(A, B, np.nan_to_num(C0) if beta == 0 else C0, ta, tb, alpha, beta,
                          bias, bias_mode, act)
    err = np.abs(C.astype(np.float64) - want)
    assert np.all(np.isfinite(C)), "non-finite output"
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert np.all(err <= tol), f"max excess at {worst}: err {err[worst]:.3g} > tol {tol[worst]:.3g}"
    np.testing.assert_array_equal(C.base[..., N:], outside)


# Shapes: (M, N, K). Tails of every register tile (MR 12/6/4, NR 32/16), in-place and packed
# operands (A is packed above 4 B panels of columns, B above 1 A panel of rows), several K blocks.
SHAPES = [
    (1, 1, 1),
    (17, 33, 65),
    (5, 64, 70),        # small M: B read in place; N a multiple of every NR
    (100, 40, 37),      # small N: A read in place
    (45, 300, 1030),    # packed A and B, K larger than any K block
    (13, 20, 5000),     # tiny C, long K: the K split across threads
    (7, 1, 300),        # a single column
    (1, 200, 31),       # a single row
]


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_shapes_and_transposes(simd, M, N, K, ta, tb):
    rng = np.random.default_rng(M * 1000 + N + K)
    check(rng, M, N, K, ta, tb, pad=(3, 5, 7))


# Products large enough to be split across threads (gemm.cpp runs below ~0.26 M multiply-adds on
# one thread): an M x N grid split, an N split, and the K split with its partial-sum pass.
THREADED = [(200, 150, 300), (24, 700, 40), (13, 20, 5000)]


@pytest.mark.parametrize("M,N,K", THREADED)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_threaded(simd, threads, M, N, K, ta, tb):
    rng = np.random.default_rng(M + N + K)
    check(rng, M, N, K, ta, tb, beta=0.5, bias_mode=BIAS_ROW, act=ACT_RELU, pad=(3, 5, 7))


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25), (1.0, -1.0)])
def test_alpha_beta(simd, alpha, beta):
    rng = np.random.default_rng(1)
    check(rng, 50, 70, 90, alpha=alpha, beta=beta, pad=(1, 2, 3))
    check(rng, 30, 40, 6000, False, True, alpha=alpha, beta=beta)  # K split


@pytest.mark.parametrize("bias_mode", [BIAS_NONE, BIAS_COL, BIAS_ROW])
@pytest.mark.parametrize("act", [ACT_NONE, ACT_RELU])
@pytest.mark.parametrize("M,N,K", [(19, 45, 77), (130, 150, 600), (13, 20, 5000)])
def test_epilogue(simd, threads, bias_mode, act, M, N, K):
    rng = np.random.default_rng(M + N + K + bias_mode * 7 + act)
    check(rng, M, N, K, beta=0.5, bias_mode=bias_mode, act=act, pad=(0, 0, 4))


@pytest.mark.parametrize("bias_mode", [BIAS_NONE, BIAS_COL, BIAS_ROW])
@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_k_zero(simd, bias_mode, beta):
    """K = 0: C = beta * C + epilogue (A and B are never read)."""
    rng = np.random.default_rng(3)
    M, N = 9, 37
    C = rng.standard_normal((M, N)).astype(np.float32)
    C0 = C.copy()
    bias = rng.standard_normal(N if bias_mode == BIAS_COL else M).astype(np.float32)
    A = np.zeros((M, 1), np.float32)
    B = np.zeros((1, N), np.float32)
    _cpu.sgemm(1, False, False, M, N, 0, 1.0, A.ctypes.data, 1, 0, B.ctypes.data, N, 0, beta,
               C.ctypes.data, N, 0, bias.ctypes.data if bias_mode else 0, bias_mode, ACT_RELU)
    want = beta * C0.astype(np.float64)
    if bias_mode == BIAS_COL:
        want = want + bias
    if bias_mode == BIAS_ROW:
        want = want + bias[:, None]
    np.testing.assert_allclose(C, np.maximum(want, 0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("batch,bcast", [(1, None), (3, None), (4, "a"), (5, "b"), (8, None)])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_batch(simd, threads, batch, bcast, ta, tb):
    rng = np.random.default_rng(batch)
    check(rng, 23, 41, 57, ta, tb, beta=0.5, bias_mode=BIAS_COL, act=ACT_RELU, pad=(1, 2, 3),
          batch=batch, bcast=bcast)
    check(rng, 70, 60, 200, ta, tb, batch=batch, bcast=bcast)  # big enough to thread


def test_cache_blocks(simd, threads):
    """Several M and N cache blocks (MC <= 384, NC <= 4096 on every path)."""
    rng = np.random.default_rng(5)
    check(rng, 401, 4133, 19, bias_mode=BIAS_ROW, act=ACT_RELU)
    check(rng, 3, 4200, 300, True, True)


def test_dl_shapes(threads):
    """Shapes of the course CNN at a small batch (conv im2col, FC forward/backward)."""
    rng = np.random.default_rng(7)
    check(rng, 2 * 24 * 24, 64, 288, bias_mode=BIAS_COL, act=ACT_RELU)  # conv2 forward
    check(rng, 64, 288, 2 * 24 * 24, ta=True)                           # conv2 weight gradient
    check(rng, 2 * 26 * 26, 32, 9, bias_mode=BIAS_COL)                  # conv1 forward
    check(rng, 4, 128, 9216, tb=True, bias_mode=BIAS_COL)               # FC1 forward (x @ W^T)
    check(rng, 128, 9216, 4, ta=True)                                   # FC1 weight gradient
    check(rng, 4, 9216, 128)                                            # FC1 input gradient


def test_bad_arguments():
    A = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="sgemm: lda"):
        _cpu.sgemm(1, False, False, 4, 4, 4, 1.0, A.ctypes.data, 3, 0, A.ctypes.data, 4, 0, 0.0,
                   A.ctypes.data, 4, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="sgemm: ldc"):
        _cpu.sgemm(1, False, False, 4, 4, 4, 1.0, A.ctypes.data, 4, 0, A.ctypes.data, 4, 0, 0.0,
                   A.ctypes.data, 2, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="needs a bias pointer"):
        _cpu.sgemm(1, False, False, 4, 4, 4, 1.0, A.ctypes.data, 4, 0, A.ctypes.data, 4, 0, 0.0,
                   A.ctypes.data, 4, 0, 0, BIAS_COL, 0)
    with pytest.raises(ValueError, match="negative size"):
        _cpu.sgemm(1, False, False, -1, 4, 4, 1.0, 0, 4, 0, 0, 4, 0, 0.0, 0, 4, 0, 0, 0, 0)
