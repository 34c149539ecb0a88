"""Layer kernels of kernelnet._cpu (conv, pooling, softmax/losses, dropout, Philox fills) called
directly on NumPy arrays and checked against PyTorch CPU in float64 (and an independent NumPy
Philox for the random streams). Does not use the Python Tensor layer."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from kernelnet import _cpu  # noqa: E402

RNG = np.random.default_rng(1234)


def ptr(a):
    assert a.flags.c_contiguous
    return a.ctypes.data


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def t64(a, grad=False):
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).requires_grad_(grad)


def close(got, ref, tol=1e-4):
    ref = np.asarray(ref, dtype=np.float64)
    scale = max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale)


_SIMD_ORDER = ["portable", "avx2", "avx512"]


@pytest.fixture(params=_SIMD_ORDER[: _SIMD_ORDER.index(_cpu.simd_detected()) + 1])
def simd(request):
    """Every SIMD path this CPU runs (the Philox kernels have a portable and an AVX-512 path)."""
    old = _cpu.simd_active()
    _cpu.set_simd(request.param)
    yield request.param
    _cpu.set_simd(old)


@pytest.fixture(params=[1, 2], ids=["threads1", "threads2"])
def threads(request):
    old = _cpu.num_threads()
    _cpu.set_num_threads(request.param)
    yield request.param
    _cpu.set_num_threads(old)


# ----------------------------------------------------------------------------------- convolution
# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
CONV_CASES = [
    (2, 3, 7, 9, 4, 3, 2, (1, 2), (1, 0), (1, 2), 1),
    (3, 4, 6, 5, 6, 1, 1, (1, 1), (0, 0), (1, 1), 2),  # 1x1 direct path, grouped
    (1, 6, 8, 8, 6, 3, 3, (2, 2), (1, 1), (1, 1), 3),  # batch 1: GEMM threads itself
    (5, 2, 5, 5, 3, 5, 5, (1, 1), (2, 2), (1, 1), 1),  # odd batch, kernel == input
    (2, 4, 9, 7, 4, 1, 1, (2, 3), (1, 0), (1, 1), 4),  # strided/padded 1x1 (im2col path), depthwise
    (4, 3, 11, 10, 5, 3, 3, (3, 2), (2, 1), (2, 3), 1),
    (2, 32, 34, 34, 8, 3, 3, (1, 1), (0, 0), (1, 1), 1),  # several im2col bands (col > 1 MiB)
    (3, 1, 28, 28, 32, 3, 3, (1, 1), (0, 0), (1, 1), 1),  # course CNN conv1
    (2, 4, 7, 7, 16, 2, 1, (2, 1), (1, 0), (1, 1), 2),  # grouped, CRS < Kg: transposed dW GEMM
    (2, 8, 6, 6, 32, 3, 3, (1, 1), (1, 1), (1, 1), 1),  # Kg >= 32, CRS > Kg: transposed dW GEMM
]


def run_conv(N, C, H, W, K, R, S, st, pd, dl, g, bias=True, act=0):
    x, w = randn(N, C, H, W), randn(K, C // g, R, S)
    b = randn(K) if bias else None
    P = _cpu.conv2d_output_size(H, R, st[0], pd[0], dl[0])
    Q = _cpu.conv2d_output_size(W, S, st[1], pd[1], dl[1])
    y = np.full((N, K, P, Q), np.nan, np.float32)
    _cpu.conv2d_forward(ptr(x), ptr(w), ptr(b) if bias else 0, ptr(y), N, C, H, W, K, R, S, *st, *pd,
                        *dl, g, act)
    return x, w, b, y


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_forward_backward(case, threads):
    N, C, H, W, K, R, S, st, pd, dl, g = case
    x, w, b, y = run_conv(*case)
    xt, wt, bt = t64(x, True), t64(w, True), t64(b, True)
    yt = F.conv2d(xt, wt, bt, st, pd, dl, g)
    assert y.shape == tuple(yt.shape)
    close(y, yt.detach().numpy())

    dy = randn(*y.shape)
    yt.backward(t64(dy))
    geo = (N, C, H, W, K, R, S, *st, *pd, *dl, g)
    dx = np.full_like(x, np.nan)
    _cpu.conv2d_backward_input(ptr(dy), ptr(w), ptr(dx), *geo)
    close(dx, xt.grad.numpy())
    dw = np.full_like(w, np.nan)
    _cpu.conv2d_backward_weight(ptr(x), ptr(dy), ptr(dw), *geo, False)
    close(dw, wt.grad.numpy())
    db = np.full_like(b, np.nan)
    _cpu.conv2d_backward_bias(ptr(dy), ptr(db), N, K, y.shape[2] * y.shape[3])
    close(db, bt.grad.numpy())


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("wanted", ["xwb", "x", "w", "b", "wb"])
def test_conv2d_backward_fused_pass(case, wanted, threads):
    """conv2d_backward computes any subset of the three gradients in one pass; unwanted pointers
    are 0 and their buffers untouched; results match torch (float64)."""
    N, C, H, W, K, R, S, st, pd, dl, g = case
    x, w, b, y = run_conv(*case)
    xt, wt, bt = t64(x, True), t64(w, True), t64(b, True)
    dy = randn(*y.shape)
    F.conv2d(xt, wt, bt, st, pd, dl, g).backward(t64(dy))
    geo = (N, C, H, W, K, R, S, *st, *pd, *dl, g)
    dx, dw, db = np.full_like(x, np.nan), np.full_like(w, np.nan), np.full_like(b, np.nan)
    _cpu.conv2d_backward(ptr(x), ptr(dy), ptr(w), ptr(dx) if "x" in wanted else 0,
                         ptr(dw) if "w" in wanted else 0, ptr(db) if "b" in wanted else 0, *geo)
    for name, got, ref in (("x", dx, xt.grad), ("w", dw, wt.grad), ("b", db, bt.grad)):
        if name in wanted:
            close(got, ref.numpy())
        else:
            assert np.isnan(got).all()


def test_conv2d_backward_fused_rejects_missing_operands():
    geo = (1, 1, 4, 4, 1, 3, 3, 1, 1, 0, 0, 1, 1, 1)
    buf = np.zeros(64, np.float32)
    with pytest.raises(ValueError, match="needs the weight"):
        _cpu.conv2d_backward(ptr(buf), ptr(buf), 0, ptr(buf), 0, 0, *geo)
    with pytest.raises(ValueError, match="needs the input"):
        _cpu.conv2d_backward(0, ptr(buf), ptr(buf), 0, ptr(buf), 0, *geo)


def test_conv2d_relu_no_bias_and_float32_agreement():
    case = (3, 5, 10, 8, 7, 3, 3, (1, 1), (1, 1), (1, 1), 1)
    x, w, _, y = run_conv(*case, bias=False, act=1)
    ref32 = torch.relu(F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None, 1, 1)).numpy()
    ref64 = torch.relu(F.conv2d(t64(x), t64(w), None, 1, 1)).numpy()
    close(y, ref64)
    # as accurate as PyTorch's own float32 result, within a small factor
    assert np.abs(y - ref64).max() <= 4 * np.abs(ref32 - ref64).max() + 1e-6
    assert (y >= 0).all()


def test_conv2d_backward_weight_accumulates():
    N, C, H, W, K = 4, 3, 6, 6, 2
    x, w, dy = randn(N, C, H, W), randn(K, C, 3, 3), randn(N, K, 4, 4)
    geo = (N, C, H, W, K, 3, 3, 1, 1, 0, 0, 1, 1, 1)
    dw1 = np.empty_like(w)
    _cpu.conv2d_backward_weight(ptr(x), ptr(dy), ptr(dw1), *geo, False)
    dw2 = np.ones_like(w)
    _cpu.conv2d_backward_weight(ptr(x), ptr(dy), ptr(dw2), *geo, True)
    close(dw2, dw1 + 1.0, 1e-5)


def test_conv2d_rejects_bad_geometry():
    x = np.zeros((1, 4, 5, 5), np.float32)
    w = np.zeros((6, 2, 3, 3), np.float32)
    y = np.zeros((1, 6, 3, 3), np.float32)
    with pytest.raises(ValueError, match="groups"):
        _cpu.conv2d_forward(ptr(x), ptr(w), 0, ptr(y), 1, 4, 5, 5, 6, 3, 3, 1, 1, 0, 0, 1, 1, 3, 0)
    with pytest.raises(ValueError, match="larger than padded input"):
        _cpu.conv2d_forward(ptr(x), ptr(w), 0, ptr(y), 1, 4, 5, 5, 6, 7, 7, 1, 1, 0, 0, 1, 1, 2, 0)
    # the same with stride 2 (the output size once rounded a negative span toward zero: P = 1)
    with pytest.raises(ValueError, match="larger than padded input"):
        _cpu.conv2d_forward(ptr(x), ptr(w), 0, ptr(y), 1, 4, 5, 5, 6, 7, 7, 2, 2, 0, 0, 1, 1, 2, 0)
    assert _cpu.conv2d_output_size(5, 7, 2, 0, 1) == 0
    with pytest.raises(ValueError, match="stride"):
        _cpu.conv2d_forward(ptr(x), ptr(w), 0, ptr(y), 1, 4, 5, 5, 6, 3, 3, 0, 1, 0, 0, 1, 1, 2, 0)


# --------------------------------------------------------------------------------------- pooling
# (N, C, H, W, kernel, stride, padding, dilation, ceil_mode)
MAXPOOL_CASES = [
    (2, 3, 24, 24, (2, 2), (2, 2), (0, 0), (1, 1), False),  # course CNN
    (1, 2, 7, 9, (3, 2), (2, 1), (1, 1), (1, 1), False),
    (3, 2, 7, 7, (3, 3), (2, 2), (1, 0), (1, 1), True),
    (2, 1, 10, 11, (2, 3), (3, 2), (1, 1), (2, 3), True),
    (1, 1, 5, 5, (5, 5), (1, 1), (2, 2), (1, 1), False),
]


@pytest.mark.parametrize("case", MAXPOOL_CASES)
def test_max_pool2d(case, threads):
    N, C, H, W, k, s, p, d, ceil = case
    x = randn(N, C, H, W)
    xt = t64(x, True)
    yt, it = F.max_pool2d(xt, k, s, p, d, ceil_mode=ceil, return_indices=True)
    P = _cpu.pool2d_output_size(H, k[0], s[0], p[0], d[0], ceil)
    Q = _cpu.pool2d_output_size(W, k[1], s[1], p[1], d[1], ceil)
    assert (N, C, P, Q) == tuple(yt.shape)
    y = np.full((N, C, P, Q), np.nan, np.float32)
    ind = np.full((N, C, P, Q), -7, np.int64)
    _cpu.max_pool2d_forward(ptr(x), ptr(y), ptr(ind), N, C, H, W, P, Q, *k, *s, *p, *d)
    np.testing.assert_array_equal(y, yt.detach().numpy().astype(np.float32))
    np.testing.assert_array_equal(ind, it.numpy())
    dy = randn(N, C, P, Q)
    yt.backward(t64(dy))
    dx = np.full_like(x, np.nan)
    _cpu.max_pool2d_backward(ptr(dy), ptr(ind), ptr(dx), N, C, H, W, P, Q)
    close(dx, xt.grad.numpy(), 1e-6)


def test_max_pool2d_nan_propagates_and_indices_optional():
    x = randn(1, 1, 4, 4)
    x[0, 0, 1, 0] = np.nan
    y = np.empty((1, 1, 2, 2), np.float32)
    _cpu.max_pool2d_forward(ptr(x), ptr(y), 0, 1, 1, 4, 4, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1)
    ref = F.max_pool2d(torch.from_numpy(x), 2).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert np.isnan(y[0, 0, 0, 0])
    np.testing.assert_array_equal(y[~np.isnan(y)], ref[~np.isnan(ref)])


def test_max_pool2d_ties_pick_first_index():
    x = np.round(randn(2, 3, 6, 6)).astype(np.float32) * 0  # all ties (zeros)
    x[0, 0, 1, 1] = 1.0
    y = np.empty((2, 3, 3, 3), np.float32)
    ind = np.empty(y.shape, np.int64)
    _cpu.max_pool2d_forward(ptr(x), ptr(y), ptr(ind), 2, 3, 6, 6, 3, 3, 2, 2, 2, 2, 0, 0, 1, 1)
    _, it = F.max_pool2d(torch.from_numpy(x), 2, return_indices=True)
    np.testing.assert_array_equal(ind, it.numpy())
    assert ind[0, 0, 0, 0] == 7 and ind[1, 2, 2, 2] == 4 * 6 + 4


# (N, C, H, W, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVGPOOL_CASES = [
    (2, 3, 8, 8, (2, 2), (2, 2), (0, 0), False, True, None),
    (1, 2, 7, 9, (3, 2), (2, 1), (1, 1), False, True, None),
    (2, 2, 7, 9, (3, 2), (2, 1), (1, 1), False, False, None),
    (3, 1, 7, 7, (3, 3), (2, 2), (1, 1), True, True, None),
    (3, 1, 7, 7, (3, 3), (2, 2), (1, 1), True, False, None),
    (1, 2, 6, 5, (2, 3), (2, 2), (1, 1), True, True, 5),
]


@pytest.mark.parametrize("case", AVGPOOL_CASES)
def test_avg_pool2d(case, threads):
    N, C, H, W, k, s, p, ceil, cip, dov = case
    x = randn(N, C, H, W)
    xt = t64(x, True)
    yt = F.avg_pool2d(xt, k, s, p, ceil_mode=ceil, count_include_pad=cip, divisor_override=dov)
    P = _cpu.pool2d_output_size(H, k[0], s[0], p[0], 1, ceil)
    Q = _cpu.pool2d_output_size(W, k[1], s[1], p[1], 1, ceil)
    assert (N, C, P, Q) == tuple(yt.shape)
    y = np.full((N, C, P, Q), np.nan, np.float32)
    args = (N, C, H, W, P, Q, *k, *s, *p, cip, dov or 0)
    _cpu.avg_pool2d_forward(ptr(x), ptr(y), *args)
    close(y, yt.detach().numpy(), 1e-5)
    dy = randn(N, C, P, Q)
    yt.backward(t64(dy))
    dx = np.full_like(x, np.nan)
    _cpu.avg_pool2d_backward(ptr(dy), ptr(dx), *args)
    close(dx, xt.grad.numpy(), 1e-5)


@pytest.mark.parametrize("hw,pq", [((7, 9), (3, 4)), ((5, 5), (5, 5)), ((6, 4), (4, 3)), ((8, 8), (1, 1)),
                                   ((3, 2), (5, 4))])
def test_adaptive_avg_pool2d(hw, pq, threads):
    N, C = 2, 3
    x = randn(N, C, *hw)
    xt = t64(x, True)
    yt = F.adaptive_avg_pool2d(xt, pq)
    y = np.full((N, C, *pq), np.nan, np.float32)
    _cpu.adaptive_avg_pool2d_forward(ptr(x), ptr(y), N, C, *hw, *pq)
    close(y, yt.detach().numpy(), 1e-5)
    dy = randn(N, C, *pq)
    yt.backward(t64(dy))
    dx = np.full_like(x, np.nan)
    _cpu.adaptive_avg_pool2d_backward(ptr(dy), ptr(dx), N, C, *hw, *pq)
    close(dx, xt.grad.numpy(), 1e-5)


def test_pool_rejects_bad_args():
    x = np.zeros((1, 1, 4, 4), np.float32)
    y = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="max_pool2d_forward"):
        _cpu.max_pool2d_forward(ptr(x), ptr(y), 0, 1, 1, 4, 4, 2, 2, 2, 2, 0, 2, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="avg_pool2d_forward"):
        _cpu.avg_pool2d_forward(ptr(x), ptr(y), 1, 1, 4, 4, 0, 2, 2, 2, 2, 2, 0, 0, True, 0)


# --------------------------------------------------------------------------- softmax and losses
@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 10), (33, 257), (4, 1000)])
def test_softmax_log_softmax(rows, cols, threads):
    x = randn(rows, cols) * 5
    x[0] += 300.0  # a row that overflows exp() without the max subtraction
    dy = randn(rows, cols)
    for log, fwd, bwd, tfn in [(False, _cpu.softmax_forward, _cpu.softmax_backward, F.softmax),
                               (True, _cpu.log_softmax_forward, _cpu.log_softmax_backward, F.log_softmax)]:
        xt = t64(x, True)
        yt = tfn(xt, dim=1)
        y = np.full_like(x, np.nan)
        fwd(ptr(x), ptr(y), rows, cols)
        close(y, yt.detach().numpy(), 1e-5)
        yt.backward(t64(dy))
        dx = np.full_like(x, np.nan)
        bwd(ptr(y), ptr(dy), ptr(dx), rows, cols)
        close(dx, xt.grad.numpy(), 1e-4)


CE_CASES = [  # (rows, cols, weighted, ignore_index (None: none present), label_smoothing)
    (16, 10, False, None, 0.0),
    (16, 10, True, None, 0.0),
    (31, 7, True, 3, 0.0),
    (31, 7, False, -100, 0.1),
    (9, 5, True, -100, 0.25),
    (1, 1, False, None, 0.0),
]


def ce_inputs(rows, cols, weighted, ignore):
    z = randn(rows, cols) * 3
    z[0] += 200.0
    t = RNG.integers(0, cols, rows).astype(np.int64)
    if ignore is not None and rows > 2:
        t[1] = ignore
        t[rows // 2] = ignore
    w = (RNG.random(cols) + 0.5).astype(np.float32) if weighted else None
    return z, t, w


@pytest.mark.parametrize("case", CE_CASES)
def test_cross_entropy(case, threads):
    rows, cols, weighted, ignore, eps = case
    z, t, w = ce_inputs(rows, cols, weighted, ignore)
    ii = -100 if ignore is None else ignore
    loss, lse, roww = (np.full(rows, np.nan, np.float32) for _ in range(3))
    _cpu.cross_entropy_forward(ptr(z), ptr(t), ptr(w) if weighted else 0, ptr(loss), ptr(lse),
                               ptr(roww), rows, cols, ii, eps)
    wt = t64(w) if weighted else None
    kw = dict(weight=wt, ignore_index=ii, label_smoothing=eps)
    zt = t64(z, True)
    ref_none = F.cross_entropy(zt, torch.from_numpy(t), reduction="none", **kw)
    close(loss, ref_none.detach().numpy(), 1e-5)
    close(lse, torch.logsumexp(t64(z), 1).numpy(), 1e-6)
    ref_mean = F.cross_entropy(t64(z), torch.from_numpy(t), reduction="mean", **kw)
    close(loss.sum(dtype=np.float64) / roww.sum(dtype=np.float64), ref_mean.numpy(), 1e-5)

    # backward, per-row grads ('none') and one scalar ('mean': grad / sum(row_weight))
    g = randn(rows)
    ref_none.backward(t64(g))
    dz = np.full_like(z, np.nan)
    _cpu.cross_entropy_backward(ptr(z), ptr(t), ptr(w) if weighted else 0, ptr(lse), ptr(g), 1,
                                ptr(dz), rows, cols, ii, eps)
    close(dz, zt.grad.numpy(), 1e-5)
    zt2 = t64(z, True)
    F.cross_entropy(zt2, torch.from_numpy(t), reduction="mean", **kw).backward()
    gs = np.array([1.0 / roww.sum(dtype=np.float64)], np.float32)
    _cpu.cross_entropy_backward(ptr(z), ptr(t), ptr(w) if weighted else 0, 0, ptr(gs), 0,
                                ptr(dz), rows, cols, ii, eps)  # lse = 0: recomputed
    close(dz, zt2.grad.numpy(), 1e-5)


@pytest.mark.parametrize("case", CE_CASES[:3])
def test_nll_loss(case):
    rows, cols, weighted, ignore, _ = case
    z, t, w = ce_inputs(rows, cols, weighted, ignore)
    lp = torch.log_softmax(torch.from_numpy(z), 1).numpy()
    ii = -100 if ignore is None else ignore
    loss, roww = np.empty(rows, np.float32), np.empty(rows, np.float32)
    _cpu.nll_loss_forward(ptr(lp), ptr(t), ptr(w) if weighted else 0, ptr(loss), ptr(roww), rows,
                          cols, ii)
    lpt = t64(lp, True)
    ref = F.nll_loss(lpt, torch.from_numpy(t), weight=t64(w) if weighted else None, ignore_index=ii,
                     reduction="none")
    close(loss, ref.detach().numpy(), 1e-6)
    g = randn(rows)
    ref.backward(t64(g))
    d = np.full_like(lp, np.nan)
    _cpu.nll_loss_backward(ptr(t), ptr(w) if weighted else 0, ptr(g), 1, ptr(d), rows, cols, ii)
    close(d, lpt.grad.numpy(), 1e-6)


def test_losses_reject_bad_targets():
    z = randn(4, 3)
    t = np.array([0, 1, 3, 2], np.int64)
    loss = np.empty(4, np.float32)
    with pytest.raises(ValueError, match="target 3 at position 2"):
        _cpu.cross_entropy_forward(ptr(z), ptr(t), 0, ptr(loss), 0, 0, 4, 3, -100, 0.0)
    t[2] = -1
    with pytest.raises(ValueError, match="out of range"):
        _cpu.nll_loss_forward(ptr(z), ptr(t), 0, ptr(loss), 0, 4, 3, -100)
    t[2] = -100  # ignored: fine
    _cpu.nll_loss_forward(ptr(z), ptr(t), 0, ptr(loss), 0, 4, 3, -100)
    assert loss[2] == 0


# ------------------------------------------------------------------------ Philox and dropout
M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK32 = np.uint64(0xFFFFFFFF)


def philox_np(counter, key0, key1, c1=None, c2=0, c3=0):
    """Independent NumPy Philox4x32-10 (Random123 reference algorithm), vectorised over counters.
    The kernels use counter words (lo(counter), hi(counter), 0, 0) and key (lo(seed), hi(seed))."""
    ctr = np.asarray(counter, np.uint64)
    x0 = ctr & MASK32
    x1 = (ctr >> np.uint64(32)) if c1 is None else np.full_like(ctr, c1)
    x2, x3 = np.full_like(ctr, c2), np.full_like(ctr, c3)
    k0, k1 = np.uint64(key0), np.uint64(key1)
    for _ in range(10):
        p0, p1 = x0 * np.uint64(M0), x2 * np.uint64(M1)
        hi0, lo0, hi1, lo1 = p0 >> np.uint64(32), p0 & MASK32, p1 >> np.uint64(32), p1 & MASK32
        x0, x1, x2, x3 = hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0
        k0, k1 = (k0 + np.uint64(W0)) & MASK32, (k1 + np.uint64(W1)) & MASK32
    return np.stack([x0, x1, x2, x3], -1).astype(np.uint32)


def test_philox_reference_known_answers():
    # Random123 kat_vectors for philox4x32_10
    np.testing.assert_array_equal(philox_np([0], 0, 0)[0],
                                  [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8])
    np.testing.assert_array_equal(
        philox_np([0x85A308D3 << 32 | 0x243F6A88], 0xA4093822, 0x299F31D0, c2=0x13198A2E,
                  c3=0x03707344)[0], [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1])


def uniform_np(n, seed, offset):
    i = np.arange(n, dtype=np.uint64)
    words = philox_np(np.uint64(offset) + (i >> np.uint64(2)), seed & 0xFFFFFFFF, seed >> 32)
    w = words[np.arange(n), (i & np.uint64(3)).astype(np.int64)]
    return (w >> 8).astype(np.float32) * np.float32(1.0 / 16777216.0)


def test_philox_uniform_matches_reference_and_is_prefix_stable(threads, simd):
    seed, offset = (7 << 32) | 12345, 99
    n = 50_001
    u = np.empty(n, np.float32)
    _cpu.philox_uniform(ptr(u), n, seed, offset, 0.0, 1.0)
    np.testing.assert_array_equal(u, uniform_np(n, seed, offset))
    short = np.empty(13, np.float32)
    _cpu.philox_uniform(ptr(short), 13, seed, offset, 0.0, 1.0)
    np.testing.assert_array_equal(short, u[:13])  # element i independent of n
    v = np.empty(n, np.float32)
    _cpu.philox_uniform(ptr(v), n, seed, offset, -2.0, 3.0)
    close(v, -2.0 + 5.0 * u.astype(np.float64), 1e-6)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * (1 / np.sqrt(12 * n))
    assert abs(u.var() - 1 / 12) < 0.003
    other = np.empty(n, np.float32)
    _cpu.philox_uniform(ptr(other), n, seed, offset + 1, 0.0, 1.0)  # next block: shifted stream
    np.testing.assert_array_equal(other[:-4], u[4:])
    _cpu.philox_uniform(ptr(other), n, seed + 1, offset, 0.0, 1.0)
    assert np.mean(other == u) < 0.01


def test_philox_normal(threads, simd):
    seed, offset, n = 42, 5, 200_001
    z = np.empty(n, np.float32)
    _cpu.philox_normal(ptr(z), n, seed, offset, 0.0, 1.0)
    i = np.arange(n, dtype=np.uint64)
    words = philox_np(np.uint64(offset) + (i >> np.uint64(1)), seed, 0).astype(np.float64)
    j = (i & np.uint64(1)).astype(np.int64) * 2
    u1 = (np.floor(words[np.arange(n), j] / 256) + 1) / 16777216.0
    u2 = np.floor(words[np.arange(n), j + 1] / 256) / 16777216.0
    ref = np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)
    # polynomial log/cos (cpu/box_muller.h) against float64 libm: ~1e-6 absolute at most
    np.testing.assert_allclose(z, ref, rtol=1e-5, atol=3e-6)
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.std() - 1) < 0.01
    assert abs(np.mean(z ** 3)) < 0.03 and abs(np.mean(z ** 4) - 3) < 0.1
    pre = np.empty(7, np.float32)
    _cpu.philox_normal(ptr(pre), 7, seed, offset, 0.0, 1.0)
    np.testing.assert_array_equal(pre, z[:7])
    s = np.empty(n, np.float32)
    _cpu.philox_normal(ptr(s), n, seed, offset, 3.0, 0.5)
    close(s, 3.0 + 0.5 * z.astype(np.float64), 1e-6)


def test_philox_normal_is_the_same_on_every_simd_path():
    """box_muller_run is one source compiled per SIMD path (vectorised differently, contraction
    off): the bits must agree, or a seed would give different data on different CPUs."""
    old = _cpu.simd_active()
    draws = []
    try:
        for path in _SIMD_ORDER[: _SIMD_ORDER.index(_cpu.simd_detected()) + 1]:
            _cpu.set_simd(path)
            z = np.empty(70_001, np.float32)
            _cpu.philox_normal(ptr(z), z.size, 1234, 77, 0.5, 2.0)
            draws.append(z)
    finally:
        _cpu.set_simd(old)
    for z in draws[1:]:
        np.testing.assert_array_equal(z, draws[0])


def test_philox_bernoulli_mask(simd):
    n, seed, offset = 10_007, 3, 11
    m = np.empty(n, np.float32)
    _cpu.philox_bernoulli_mask(ptr(m), n, seed, offset, 0.3, 2.0)
    np.testing.assert_array_equal(m, np.where(uniform_np(n, seed, offset) < 0.3, 2.0, 0.0))


@pytest.mark.parametrize("start", [0, 1, 3, 61, 64, 130])
def test_philox_uniform_across_a_counter_carry(simd, start):
    """Blocks whose low counter word wraps to 0 inside one 16-block SIMD batch (the carry into
    the high word), read from unaligned starts so head, batch and tail paths all run."""
    seed, offset, n = (5 << 32) | 77, (1 << 32) - 7, 300
    full = uniform_np(start + n, seed, offset)
    big = np.empty(start + n, np.float32)
    _cpu.philox_uniform(ptr(big), start + n, seed, offset, 0.0, 1.0)
    np.testing.assert_array_equal(big, full)
    part = np.empty(n, np.float32)  # the same stream read from `start`: offset + start/4 blocks
    if start % 4 == 0:
        _cpu.philox_uniform(ptr(part), n, seed, offset + start // 4, 0.0, 1.0)
        np.testing.assert_array_equal(part, full[start:])


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_dropout(p, threads, simd):
    n, seed, offset = 100_003, 2024, 17
    x = randn(n)
    y, mask = np.full_like(x, np.nan), np.full_like(x, np.nan)
    _cpu.dropout_forward(ptr(x), ptr(y), ptr(mask), n, p, seed, offset)
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    assert set(np.unique(mask)) <= {0.0, np.float32(scale)}
    np.testing.assert_array_equal(y, x * mask)
    if p == 0.0:
        np.testing.assert_array_equal(y, x)
    elif p < 1.0:
        kept = np.mean(mask != 0)
        assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
        ref = np.where(uniform_np(n, seed, offset) < np.float32(1.0 - p), np.float32(scale), 0.0)
        np.testing.assert_array_equal(mask, ref)  # the contract: kept iff u_i < 1 - p
    else:
        assert not y.any()
    # same (seed, offset) -> same result; a different offset -> a different mask
    y2, m2 = np.empty_like(x), np.empty_like(x)
    _cpu.dropout_forward(ptr(x), ptr(y2), ptr(m2), n, p, seed, offset)
    np.testing.assert_array_equal(y2, y)
    if 0 < p < 1:
        _cpu.dropout_forward(ptr(x), ptr(y2), ptr(m2), n, p, seed, offset + n)
        assert np.mean(m2 != mask) > 0.5 * 2 * p * (1 - p)
    # backward multiplies by the saved mask
    dy = randn(n)
    dx = np.full_like(x, np.nan)
    _cpu.dropout_backward(ptr(dy), ptr(mask), ptr(dx), n)
    np.testing.assert_array_equal(dx, dy * mask)


def test_dropout_rejects_bad_p():
    x = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="dropout_forward"):
        _cpu.dropout_forward(ptr(x), ptr(x), 0, 4, 1.5, 0, 0)
