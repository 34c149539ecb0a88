"""CUDA layer kernels (conv, pooling, cross-entropy/NLL, dropout) against the CPU kernels.

Every kernelnet._cuda layer kernel is called on the same random inputs as its kernelnet._cpu twin
(the CPU kernels are themselves tested against PyTorch in test_conv_pool_kernels.py); outputs the
kernel must write are pre-filled with NaN so a missed element fails. A 20-step training run built
from these kernels must give the same losses on both devices. Skipped without a GPU."""
import os

import numpy as np
import pytest

import kernelnet as kn
from kernelnet import _cpu
from kernelnet._device import _load_cuda

_cuda = _load_cuda()
_DEV = "cuda"
# KN_TEST_LAYERS_DRY_RUN=1 runs this file with the CPU module standing in for the CUDA one: it
# checks the test plumbing on a machine without a GPU (CPU vs CPU, so it proves nothing about CUDA).
if os.environ.get("KN_TEST_LAYERS_DRY_RUN") == "1":
    _cuda, _DEV = _cpu, "cpu"
_MISSING = [f for f in ("conv2d_forward", "max_pool2d_forward",
                        "cross_entropy_forward", "dropout_forward") if _cuda is not None and not hasattr(_cuda, f)]
pytestmark = pytest.mark.skipif(
    _cuda is None or bool(_MISSING) or (_DEV == "cuda" and not hasattr(_cuda, "Buffer")),
    reason="no CUDA GPU visible" if _cuda is None else f"CUDA module lacks {_MISSING}")

RNG = np.random.default_rng(4321)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


class Out:
    """An output buffer: pre-filled with NaN (or -7 for int64) unless `init` gives its contents."""

    def __init__(self, shape, dtype=np.float32, init=None):
        self.shape, self.dtype, self.init = tuple(shape), dtype, init

    def host(self):
        if self.init is not None:
            return np.array(self.init, dtype=self.dtype, copy=True).reshape(self.shape)
        return np.full(self.shape, np.nan if self.dtype == np.float32 else -7, dtype=self.dtype)


def call(name, *args):
    """Run kernel `name` on both backends. Arrays are inputs, Out are outputs, None is a null
    pointer, anything else a scalar. Returns ([cpu outputs], [cuda outputs])."""
    results = []
    for dev in ("cpu", _DEV + ":gpu"):
        keep, outs, conv = [], [], []
        for a in args:
            if a is None:
                conv.append(0)
            elif isinstance(a, (np.ndarray, Out)):
                arr = a.host() if isinstance(a, Out) else np.ascontiguousarray(a)
                if dev == "cpu":  # host arrays straight into the CPU kernel
                    keep.append(arr)
                    conv.append(arr.ctypes.data)
                    if isinstance(a, Out):
                        outs.append(lambda arr=arr: arr)
                else:
                    t = kn.tensor(arr, device=_DEV)
                    keep.append(t)
                    conv.append(t.data_ptr())
                    if isinstance(a, Out):
                        outs.append(lambda t=t: t.cpu().numpy())
            else:
                conv.append(a)
        mod = _cpu if dev == "cpu" else _cuda
        getattr(mod, name)(*conv)
        if dev != "cpu" and hasattr(_cuda, "synchronize"):
            _cuda.synchronize()
        results.append([f() for f in outs])
    return results


def close(got, ref, tol=2e-4):
    ref = np.asarray(ref, dtype=np.float64)
    assert not np.isnan(got).any() or np.isnan(ref).any(), "unwritten (NaN) elements in the CUDA output"
    scale = max(1.0, float(np.nanmax(np.abs(ref))) if ref.size else 1.0)
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale)


# ----------------------------------------------------------------------------------- convolution
# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
CONV_CASES = [
    (2, 3, 7, 9, 4, 3, 2, (1, 2), (1, 0), (1, 2), 1),
    (3, 4, 6, 5, 6, 1, 1, (1, 1), (0, 0), (1, 1), 2),
    (1, 6, 8, 8, 6, 3, 3, (2, 2), (1, 1), (1, 1), 3),
    (5, 2, 5, 5, 3, 5, 5, (1, 1), (2, 2), (1, 1), 1),
    (2, 4, 9, 7, 4, 1, 1, (2, 3), (1, 0), (1, 1), 4),
    (4, 3, 11, 10, 5, 3, 3, (3, 2), (2, 1), (2, 3), 1),
    (2, 40, 13, 11, 70, 3, 3, (1, 1), (1, 1), (1, 1), 1),   # M > 64: several row tiles
    (3, 1, 28, 28, 32, 3, 3, (1, 1), (0, 0), (1, 1), 1),    # course CNN conv1 (M <= 32 tiles)
    (4, 32, 26, 26, 64, 3, 3, (1, 1), (0, 0), (1, 1), 1),   # course CNN conv2
    (1, 2, 1, 1, 3, 1, 1, (1, 1), (0, 0), (1, 1), 1),       # 1x1 image
    (2, 8, 6, 6, 8, 3, 3, (1, 1), (1, 1), (1, 1), 8),       # depthwise
]


def conv_dims(N, C, H, W, K, R, S, st, pd, dl):
    P = _cpu.conv2d_output_size(H, R, st[0], pd[0], dl[0])
    Q = _cpu.conv2d_output_size(W, S, st[1], pd[1], dl[1])
    return P, Q


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("bias,act", [(True, 1), (False, 0)])
def test_conv2d_forward(case, bias, act):
    N, C, H, W, K, R, S, st, pd, dl, g = case
    P, Q = conv_dims(N, C, H, W, K, R, S, st, pd, dl)
    x, w = randn(N, C, H, W), randn(K, C // g, R, S)
    b = randn(K) if bias else None
    (ref,), (got,) = call("conv2d_forward", x, w, b, Out((N, K, P, Q)), N, C, H, W, K, R, S,
                          st[0], st[1], pd[0], pd[1], dl[0], dl[1], g, act)
    close(got, ref)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_backward(case):
    N, C, H, W, K, R, S, st, pd, dl, g = case
    P, Q = conv_dims(N, C, H, W, K, R, S, st, pd, dl)
    x, w, dy = randn(N, C, H, W), randn(K, C // g, R, S), randn(N, K, P, Q)
    geo = (N, C, H, W, K, R, S, st[0], st[1], pd[0], pd[1], dl[0], dl[1], g)
    (ref,), (got,) = call("conv2d_backward_input", dy, w, Out(x.shape), *geo)
    close(got, ref)
    (ref,), (got,) = call("conv2d_backward_weight", x, dy, Out(w.shape), *geo, False)
    close(got, ref)
    prev = randn(*w.shape)
    (ref,), (got,) = call("conv2d_backward_weight", x, dy, Out(w.shape, init=prev), *geo, True)
    close(got, ref)
    (ref,), (got,) = call("conv2d_backward_bias", dy, Out((K,)), N, K, P * Q)
    close(got, ref)


def test_conv2d_random_shapes():
    rng = np.random.default_rng(7)
    for _ in range(12):
        g = int(rng.choice([1, 1, 2, 3]))
        C, K = g * int(rng.integers(1, 5)), g * int(rng.integers(1, 40))
        R, S = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        st = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pd = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        dl = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        N, H, W = int(rng.integers(1, 4)), int(rng.integers(4, 12)), int(rng.integers(4, 12))
        P, Q = conv_dims(N, C, H, W, K, R, S, st, pd, dl)
        if P < 1 or Q < 1:
            continue
        x, w, dy = randn(N, C, H, W), randn(K, C // g, R, S), randn(N, K, P, Q)
        geo = (N, C, H, W, K, R, S, st[0], st[1], pd[0], pd[1], dl[0], dl[1], g)
        (r,), (c,) = call("conv2d_forward", x, w, randn(K), Out((N, K, P, Q)), *geo, 0)
        close(c, r)
        (r,), (c,) = call("conv2d_backward_input", dy, w, Out(x.shape), *geo)
        close(c, r)
        (r,), (c,) = call("conv2d_backward_weight", x, dy, Out(w.shape), *geo, False)
        close(c, r)


def test_conv2d_batch0_and_errors():
    w = randn(4, 3, 3, 3)
    (r,), (c,) = call("conv2d_backward_weight", randn(0, 3, 5, 5), randn(0, 4, 3, 3), Out(w.shape),
                      0, 3, 5, 5, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, False)
    assert (c == 0).all() and (r == 0).all()
    with pytest.raises(ValueError, match="groups"):
        _cuda.conv2d_forward(1, 1, 0, 1, 1, 3, 5, 5, 4, 3, 3, 1, 1, 0, 0, 1, 1, 2, 0)
    with pytest.raises(ValueError, match="larger than padded input"):
        _cuda.conv2d_forward(1, 1, 0, 1, 1, 3, 2, 2, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, 0)
    with pytest.raises(ValueError, match="larger than padded input"):  # stride 2: floor, not truncation
        _cuda.conv2d_forward(1, 1, 0, 1, 1, 3, 2, 2, 4, 3, 3, 2, 2, 0, 0, 1, 1, 1, 0)


# ----------------------------------------------------------------------------------- pooling
POOL_CASES = [  # (N, C, H, W, k, stride, pad, dil, ceil)
    (2, 3, 24, 24, (2, 2), (2, 2), (0, 0), (1, 1), False),  # course CNN
    (1, 2, 7, 9, (3, 2), (2, 1), (1, 1), (1, 1), True),
    (3, 1, 10, 8, (3, 3), (1, 2), (1, 0), (2, 1), False),
    (2, 4, 5, 5, (2, 2), (3, 3), (1, 1), (1, 1), True),
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0), (1, 1), False),
]


def pool_dims(H, W, k, st, pd, dl, ceil):
    return (_cpu.pool2d_output_size(H, k[0], st[0], pd[0], dl[0], ceil),
            _cpu.pool2d_output_size(W, k[1], st[1], pd[1], dl[1], ceil))


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool(case):
    N, C, H, W, k, st, pd, dl, ceil = case
    P, Q = pool_dims(H, W, k, st, pd, dl, ceil)
    x = randn(N, C, H, W)
    if x.size > 3:
        x.reshape(-1)[3] = np.nan  # NaN wins, on both devices
    args = (N, C, H, W, P, Q, k[0], k[1], st[0], st[1], pd[0], pd[1], dl[0], dl[1])
    (ry, ri), (cy, ci) = call("max_pool2d_forward", x, Out((N, C, P, Q)), Out((N, C, P, Q), np.int64), *args)
    np.testing.assert_array_equal(ci, ri)
    np.testing.assert_array_equal(cy, ry)
    dy = randn(N, C, P, Q)
    (r,), (c,) = call("max_pool2d_backward", dy, ri, Out(x.shape), N, C, H, W, P, Q)
    close(c, r, 1e-6)


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("include_pad,divo", [(True, 0), (False, 0), (True, 3)])
def test_avg_pool(case, include_pad, divo):
    N, C, H, W, k, st, pd, dl, ceil = case
    if pd[0] * 2 > k[0] or pd[1] * 2 > k[1]:
        pd = (0, 0)
    P, Q = pool_dims(H, W, k, st, pd, (1, 1), ceil)
    x, dy = randn(N, C, H, W), randn(N, C, P, Q)
    args = (N, C, H, W, P, Q, k[0], k[1], st[0], st[1], pd[0], pd[1], include_pad, divo)
    (r,), (c,) = call("avg_pool2d_forward", x, Out((N, C, P, Q)), *args)
    close(c, r, 1e-5)
    (r,), (c,) = call("avg_pool2d_backward", dy, Out(x.shape), *args)
    close(c, r, 1e-5)


@pytest.mark.parametrize("HW,PQ", [((7, 9), (3, 4)), ((12, 12), (1, 1)), ((5, 5), (5, 5)), ((4, 6), (6, 4))])
def test_adaptive_avg_pool(HW, PQ):
    N, C = 2, 3
    x, dy = randn(N, C, *HW), randn(N, C, *PQ)
    (r,), (c,) = call("adaptive_avg_pool2d_forward", x, Out((N, C) + PQ), N, C, *HW, *PQ)
    close(c, r, 1e-5)
    (r,), (c,) = call("adaptive_avg_pool2d_backward", dy, Out(x.shape), N, C, *HW, *PQ)
    close(c, r, 1e-5)


# ----------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 10), (33, 37), (5, 1000)])
@pytest.mark.parametrize("weighted,eps,ignore", [(False, 0.0, -100), (True, 0.0, 2), (True, 0.1, -100), (False, 0.2, 0)])
def test_cross_entropy(rows, cols, weighted, eps, ignore):
    z = randn(rows, cols) * 3
    t = RNG.integers(0, cols, rows).astype(np.int64)
    w = (RNG.random(cols).astype(np.float32) + 0.5) if weighted else None
    (rl, rlse, rw), (cl, clse, cw) = call("cross_entropy_forward", z, t, w, Out((rows,)), Out((rows,)),
                                          Out((rows,)), rows, cols, ignore, eps)
    close(cl, rl, 1e-5)
    close(clse, rlse, 1e-5)
    close(cw, rw, 0)
    for gstride, g in ((1, randn(rows)), (0, np.array([0.37], np.float32))):
        (r,), (c,) = call("cross_entropy_backward", z, t, w, rlse, g, gstride, Out((rows, cols)),
                          rows, cols, ignore, eps)
        close(c, r, 1e-5)
        # without the saved lse the kernel recomputes it
        (r,), (c,) = call("cross_entropy_backward", z, t, w, None, g, gstride, Out((rows, cols)),
                          rows, cols, ignore, eps)
        close(c, r, 1e-5)


def test_cross_entropy_bad_target_is_nan_not_a_crash():
    z, t = randn(3, 4), np.array([0, 9, 1], np.int64)
    if _DEV != "cuda":
        pytest.skip("CUDA-only behaviour (the CPU raises ValueError instead)")
    tg = kn.tensor(t, device="cuda")
    zg, loss = kn.tensor(z, device="cuda"), kn.empty(3, device="cuda")
    _cuda.cross_entropy_forward(zg.data_ptr(), tg.data_ptr(), 0, loss.data_ptr(), 0, 0, 3, 4, -100, 0.0)
    out = loss.cpu().numpy()
    assert np.isnan(out[1]) and np.isfinite(out[[0, 2]]).all()


@pytest.mark.parametrize("rows,cols", [(1, 1), (9, 10), (40, 300)])
@pytest.mark.parametrize("weighted,ignore", [(False, -100), (True, 1)])
def test_nll_loss(rows, cols, weighted, ignore):
    lp = randn(rows, cols)
    t = RNG.integers(0, cols, rows).astype(np.int64)
    w = (RNG.random(cols).astype(np.float32) + 0.5) if weighted else None
    (rl, rw), (cl, cw) = call("nll_loss_forward", lp, t, w, Out((rows,)), Out((rows,)), rows, cols, ignore)
    close(cl, rl, 0)
    close(cw, rw, 0)
    for gstride, g in ((1, randn(rows)), (0, np.array([1.5], np.float32))):
        (r,), (c,) = call("nll_loss_backward", t, w, g, gstride, Out((rows, cols)), rows, cols, ignore)
        close(c, r, 0)


# ----------------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("n", [1, 3, 4, 5, 1023, 70001])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_dropout_bit_identical(n, p):
    x = randn(n)
    seed, offset = 0x1234_5678_9ABC, 77
    (ry, rm), (cy, cm) = call("dropout_forward", x, Out((n,)), Out((n,)), n, p, seed, offset)
    np.testing.assert_array_equal(cm, rm)  # the same Philox stream, bit for bit
    np.testing.assert_array_equal(cy, ry)
    dy = randn(n)
    (r,), (c,) = call("dropout_backward", dy, rm, Out((n,)), n)
    np.testing.assert_array_equal(c, r)


def test_dropout_without_mask():
    n = 1001
    x = randn(n)
    (ry,), (cy,) = call("dropout_forward", x, Out((n,)), None, n, 0.3, 5, 0)
    np.testing.assert_array_equal(cy, ry)


# ----------------------------------------------------------------------------------- training
def _train(dev, steps=20):
    """A tiny CNN trained with plain SGD, every layer a kernelnet layer kernel:
    conv(1->6, 3x3) + bias + ReLU (fused) -> maxpool 2x2 -> conv(6->10, 5x5, covers the plane:
    a linear layer) -> cross-entropy (mean). The SGD update runs on the host so that only the
    layer kernels differ between the two runs."""
    mod = _cpu if dev == "cpu" else _cuda
    dev = "cpu" if dev == "cpu" else _DEV
    rng = np.random.default_rng(0)
    N, H = 16, 12
    X = rng.standard_normal((N, 1, H, H)).astype(np.float32)  # one batch, seen every step
    T = rng.integers(0, 10, N).astype(np.int64)
    w1 = (rng.standard_normal((6, 1, 3, 3)) * 0.3).astype(np.float32)
    b1 = np.zeros(6, np.float32)
    w2 = (rng.standard_normal((10, 6, 5, 5)) * 0.1).astype(np.float32)
    b2 = np.zeros(10, np.float32)
    P1 = H - 2   # 10
    P2 = P1 // 2  # 5

    def dev_arr(a):
        return kn.tensor(np.ascontiguousarray(a), device=dev)

    def empty(*shape, dtype=None):
        return kn.empty(*shape, dtype=dtype or kn.float32, device=dev)

    losses = []
    for it in range(steps):
        x, t = dev_arr(X), dev_arr(T)
        W1, B1, W2, B2 = dev_arr(w1), dev_arr(b1), dev_arr(w2), dev_arr(b2)
        a1 = empty(N, 6, P1, P1)
        mod.conv2d_forward(x.data_ptr(), W1.data_ptr(), B1.data_ptr(), a1.data_ptr(),
                           N, 1, H, H, 6, 3, 3, 1, 1, 0, 0, 1, 1, 1, 1)
        p1, idx = empty(N, 6, P2, P2), empty(N, 6, P2, P2, dtype=kn.int64)
        mod.max_pool2d_forward(a1.data_ptr(), p1.data_ptr(), idx.data_ptr(),
                               N, 6, P1, P1, P2, P2, 2, 2, 2, 2, 0, 0, 1, 1)
        z = empty(N, 10, 1, 1)
        mod.conv2d_forward(p1.data_ptr(), W2.data_ptr(), B2.data_ptr(), z.data_ptr(),
                           N, 6, P2, P2, 10, 5, 5, 1, 1, 0, 0, 1, 1, 1, 0)
        loss, lse, roww = empty(N), empty(N), empty(N)
        mod.cross_entropy_forward(z.data_ptr(), t.data_ptr(), 0, loss.data_ptr(), lse.data_ptr(),
                                  roww.data_ptr(), N, 10, -100, 0.0)
        losses.append(float(loss.cpu().numpy().sum() / N))
        g = dev_arr(np.array([1.0 / N], np.float32))
        dz = empty(N, 10, 1, 1)
        mod.cross_entropy_backward(z.data_ptr(), t.data_ptr(), 0, lse.data_ptr(), g.data_ptr(), 0,
                                   dz.data_ptr(), N, 10, -100, 0.0)
        dW2, dB2, dp1 = empty(10, 6, 5, 5), empty(10), empty(N, 6, P2, P2)
        geo2 = (N, 6, P2, P2, 10, 5, 5, 1, 1, 0, 0, 1, 1, 1)
        mod.conv2d_backward_weight(p1.data_ptr(), dz.data_ptr(), dW2.data_ptr(), *geo2, False)
        mod.conv2d_backward_bias(dz.data_ptr(), dB2.data_ptr(), N, 10, 1)
        mod.conv2d_backward_input(dz.data_ptr(), W2.data_ptr(), dp1.data_ptr(), *geo2)
        da1 = empty(N, 6, P1, P1)
        mod.max_pool2d_backward(dp1.data_ptr(), idx.data_ptr(), da1.data_ptr(), N, 6, P1, P1, P2, P2)
        # ReLU backward on the host (the fused ReLU's derivative: a1 > 0)
        da1_h = da1.cpu().numpy() * (a1.cpu().numpy() > 0)
        da1r = dev_arr(da1_h.astype(np.float32))
        dW1, dB1 = empty(6, 1, 3, 3), empty(6)
        mod.conv2d_backward_weight(x.data_ptr(), da1r.data_ptr(), dW1.data_ptr(),
                                   N, 1, H, H, 6, 3, 3, 1, 1, 0, 0, 1, 1, 1, False)
        mod.conv2d_backward_bias(da1r.data_ptr(), dB1.data_ptr(), N, 6, P1 * P1)
        lr = 0.1
        w1 -= lr * dW1.cpu().numpy()
        b1 -= lr * dB1.cpu().numpy()
        w2 -= lr * dW2.cpu().numpy()
        b2 -= lr * dB2.cpu().numpy()
    return np.array(losses)


def test_training_20_steps_matches_cpu():
    cpu, gpu = _train("cpu"), _train("gpu")
    assert np.isfinite(cpu).all() and cpu[-1] < 0.8 * cpu[0]  # it learns the batch
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------------- optimizers
# (kernel, state lists, kwargs): each fused step on both devices over 3 steps from the same state.
OPTIM_CASES = [
    ("sgd_step", 0, dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False)),
    ("sgd_step", 1, dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2, nesterov=True, maximize=False)),
    ("adam_step", 2, dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False, maximize=False)),
    ("adam_step", 3, dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1, decoupled=True, amsgrad=True, maximize=True)),
    ("rmsprop_step", 3, dict(lr=1e-2, alpha=0.9, eps=1e-8, weight_decay=1e-3, momentum=0.5, centered=True, maximize=False)),
    ("adagrad_step", 1, dict(lr=0.1, lr_decay=0.01, weight_decay=0.0, eps=1e-10, maximize=False)),
    ("adadelta_step", 2, dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False)),
]


def _optim_run(dev, name, nstate, kw, sizes, steps=3):
    rng = np.random.default_rng(11)
    mod = _cpu if dev == "cpu" else _cuda
    devname = "cpu" if dev == "cpu" else _DEV
    T = lambda a: kn.tensor(a, device=devname)  # noqa: E731
    params = [T(rng.standard_normal(n).astype(np.float32)) for n in sizes]
    state = [[T(np.abs(rng.standard_normal(n)).astype(np.float32) * 0.1) for n in sizes] for _ in range(nstate)]
    for step in range(1, steps + 1):
        grads = [T(rng.standard_normal(n).astype(np.float32)) for n in sizes]
        P = [p.data_ptr() for p in params]
        G = [g.data_ptr() for g in grads]
        S = [[s.data_ptr() for s in lst] for lst in state]
        if name == "sgd_step":
            mom = S[0] if nstate else []
            # per-tensor init flags and step counts differ (a tensor's scalars must follow it past the
            # skipped empty tensor and into the second launch)
            mod.sgd_step(P, G, mom, [step == 1 + i % 2 for i in range(len(sizes))] if nstate else [], sizes, **kw)
        elif name == "adam_step":
            mod.adam_step(P, G, S[0], S[1], S[2] if kw["amsgrad"] else [], sizes,
                          [float(step + i % 3) for i in range(len(sizes))], **kw)
        elif name == "rmsprop_step":
            mod.rmsprop_step(P, G, S[0], S[1] if kw["centered"] else [], S[2] if kw["momentum"] > 0 else [], sizes, **kw)
        elif name == "adagrad_step":
            mod.adagrad_step(P, G, S[0], sizes, [float(step + i % 3) for i in range(len(sizes))], **kw)
        else:
            mod.adadelta_step(P, G, S[0], S[1], sizes, **kw)
    return [p.cpu().numpy() for p in params] + [s.cpu().numpy() for lst in state for s in lst]


@pytest.mark.parametrize("name,nstate,kw", OPTIM_CASES, ids=[c[0] + str(i) for i, c in enumerate(OPTIM_CASES)])
def test_fused_optimizers(name, nstate, kw):
    # 45 tensors: more than one launch's worth (40); sizes with odd tails, a 0, one over a chunk
    sizes = [1, 3, 0, 4097, 10000] + [7 + i for i in range(40)]
    cpu, gpu = _optim_run("cpu", name, nstate, kw, sizes), _optim_run("gpu", name, nstate, kw, sizes)
    for c, g in zip(cpu, gpu):
        np.testing.assert_allclose(g, c, rtol=2e-5, atol=2e-6)


# ----------------------------------------------------------------------------------- the API
def _api_train(dev, steps=20):
    """The course CNN's layer mix through kernelnet.nn + optim.SGD, 20 steps on one batch:
    conv+ReLU, conv, max-pool, avg-pool, dropout, linear, cross-entropy. Same init, same seed."""
    import kernelnet.nn as nn
    kn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.AvgPool2d(2, ceil_mode=True), nn.Dropout(0.25), nn.Flatten(),
                          nn.Linear(16 * 3 * 3, 10))
    model = model.to(dev)
    # SGD, not Adam: Adam's g / sqrt(v) turns rounding-level gradient differences on near-zero
    # entries into full-size steps, which would test Adam's sensitivity instead of the kernels
    opt = kn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(5)
    x = kn.tensor(rng.standard_normal((24, 1, 14, 14)).astype(np.float32), device=dev)
    y = kn.tensor(rng.integers(0, 10, 24).astype(np.int64), device=dev)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    kn.manual_seed(1)  # the dropout stream: the same (seed, offset) on both devices
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


def test_api_training_20_steps_matches_cpu():
    pytest.importorskip("kernelnet.nn")
    cpu, gpu = _api_train("cpu"), _api_train(_DEV)
    assert np.isfinite(cpu).all() and cpu[-1] < cpu[0]
    np.testing.assert_allclose(gpu, cpu, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("cfg", [1, 2, 3])
def test_conv2d_every_tile_config(cfg):
    """Each implicit-GEMM tile configuration, pinned, on shapes with tails in every dimension."""
    if not hasattr(_cuda, "_conv_force_config"):
        pytest.skip("CUDA-only knob")
    cases = [(3, 5, 11, 9, 70, 3, 3, (1, 2), (1, 0), (1, 1), 1), (2, 6, 9, 10, 9, 2, 3, (2, 1), (0, 2), (2, 1), 3)]
    try:
        _cuda._conv_force_config(cfg)
        for N, C, H, W, K, R, S, st, pd, dl, g in cases:
            P, Q = conv_dims(N, C, H, W, K, R, S, st, pd, dl)
            x, w, dy = randn(N, C, H, W), randn(K, C // g, R, S), randn(N, K, P, Q)
            geo = (N, C, H, W, K, R, S, st[0], st[1], pd[0], pd[1], dl[0], dl[1], g)
            (r,), (c,) = call("conv2d_forward", x, w, randn(K), Out((N, K, P, Q)), *geo, 1)
            close(c, r)
            (r,), (c,) = call("conv2d_backward_input", dy, w, Out(x.shape), *geo)
            close(c, r)
            (r,), (c,) = call("conv2d_backward_weight", x, dy, Out(w.shape), *geo, False)
            close(c, r)
    finally:
        _cuda._conv_force_config(0)


def test_host_memory_targets_raise_not_crash():
    """Targets/indices left on the CPU: a ValueError naming the op, not a fault that kills the
    CUDA context."""
    if _DEV != "cuda":
        pytest.skip("CUDA-only check")
    z, loss = kn.tensor(randn(3, 4), device="cuda"), kn.empty(3, device="cuda")
    t_host = np.array([0, 1, 2], np.int64)
    with pytest.raises(ValueError, match="cross_entropy_forward: target is host"):
        _cuda.cross_entropy_forward(z.data_ptr(), t_host.ctypes.data, 0, loss.data_ptr(), 0, 0, 3, 4, -100, 0.0)
    ind_host = np.zeros((1, 1, 1, 1), np.int64)
    dy, dx = kn.tensor(randn(1, 1, 1, 1), device="cuda"), kn.empty(1, 1, 2, 2, device="cuda")
    with pytest.raises(ValueError, match="max_pool2d_backward: indices is host"):
        _cuda.max_pool2d_backward(dy.data_ptr(), ind_host.ctypes.data, dx.data_ptr(), 1, 1, 2, 2, 1, 1)
