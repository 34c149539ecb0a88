"""The layer ops' Python wrappers (kernelnet.ops.conv/pool/loss/dropout): forward and backward
through kernelnet's autograd against torch.nn.functional, argument handling and errors."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import kernelnet as kn  # noqa: E402
from kernelnet.ops.conv import conv2d  # noqa: E402
from kernelnet.ops.dropout import dropout  # noqa: E402
from kernelnet.ops.loss import cross_entropy, log_softmax, nll_loss, softmax  # noqa: E402
from kernelnet.ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d  # noqa: E402

RNG = np.random.default_rng(7)
# torch warns that its own even-kernel padding="same" copies the input; not our concern here
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def pair(a, device, grad=True):
    """(kernelnet tensor, torch float64 tensor) holding the same values."""
    return (kn.tensor(a, device=device, requires_grad=grad),
            torch.from_numpy(np.asarray(a, np.float64)).requires_grad_(grad))


def np_of(t):
    return t.detach().cpu().numpy() if hasattr(t, "cpu") else t.detach().numpy()


def close(k, t, tol=1e-4):
    ref = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    got = np_of(k)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale)


def check_fwd_bwd(kfn, tfn, arrays, device, grad_mask=None, tol=1e-4):
    """Run kfn / tfn on the same inputs, compare outputs, then backprop one random cotangent."""
    grad_mask = grad_mask or [True] * len(arrays)
    ks, ts = zip(*[pair(a, device, g) for a, g in zip(arrays, grad_mask)])
    ky, ty = kfn(*ks), tfn(*ts)
    close(ky, ty, tol)
    gy = randn(*ty.shape) if ty.dim() else np.float32(RNG.standard_normal())
    ky.backward(kn.tensor(gy, device=device))
    ty.backward(torch.from_numpy(np.asarray(gy, np.float64)))
    for k, t, g in zip(ks, ts, grad_mask):
        if g:
            close(k.grad, t.grad, tol)


# --------------------------------------------------------------------------------------- conv2d
@pytest.mark.parametrize("xs,ws,kw", [
    ((2, 3, 9, 8), (4, 3, 3, 3), dict()),
    ((2, 4, 9, 8), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)),
    ((1, 3, 7, 7), (5, 3, 1, 1), dict()),
    ((3, 2, 8, 7), (4, 2, 3, 3), dict(padding="same")),
    ((2, 2, 8, 7), (4, 2, 4, 2), dict(padding="same", dilation=(1, 2))),  # even kernel: asymmetric
    ((2, 2, 6, 6), (3, 2, 3, 3), dict(padding="valid", stride=2)),
    ((3, 5, 5), (2, 3, 3, 3), dict(padding=1, groups=1)),  # unbatched, fixed below
])
def test_conv2d(xs, ws, kw, device):
    if len(xs) == 3:
        ws = (2, xs[0], 3, 3)
    for bias in (True, False):
        arrays = [randn(*xs), randn(*ws)] + ([randn(ws[0])] if bias else [])
        check_fwd_bwd(lambda *a: conv2d(*a[:2], a[2] if bias else None, **kw),
                      lambda *a: F.conv2d(*a[:2], a[2] if bias else None, **kw), arrays, device)


def test_conv2d_non_contiguous_input_and_weight_grad_only(device):
    x = randn(2, 3, 8, 6)
    xk = kn.tensor(x, device=device).transpose(2, 3)  # a non-contiguous view
    wk, wt = pair(randn(4, 3, 3, 3), device)
    yk = conv2d(xk, wk, stride=2)
    yt = F.conv2d(torch.from_numpy(x.astype(np.float64)).transpose(2, 3), wt, stride=2)
    close(yk, yt)
    yk.sum().backward()
    yt.sum().backward()
    close(wk.grad, wt.grad)
    assert xk.grad is None


def test_conv2d_errors():
    x = kn.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"conv2d.*\(2, 3, 8, 8\).*3 channels.*expects 4"):
        conv2d(x, kn.zeros(5, 4, 3, 3))
    with pytest.raises(ValueError, match="conv2d: expected a 3-D"):
        conv2d(kn.zeros(8, 8), kn.zeros(5, 3, 3, 3))
    with pytest.raises(ValueError, match="conv2d: input must be kernelnet.float32, got kernelnet.int64"):
        conv2d(kn.zeros(2, 3, 8, 8, dtype=kn.int64), kn.zeros(5, 3, 3, 3))
    with pytest.raises(ValueError, match="groups=2"):
        conv2d(x, kn.zeros(5, 3, 3, 3), groups=2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv2d(x, kn.zeros(5, 3, 9, 9))
    with pytest.raises(ValueError, match="bias shape"):
        conv2d(x, kn.zeros(5, 3, 3, 3), kn.zeros(4))
    with pytest.raises(ValueError, match="'same'.*strided"):
        conv2d(x, kn.zeros(5, 3, 3, 3), padding="same", stride=2)


# -------------------------------------------------------------------------------------- pooling
@pytest.mark.parametrize("shape,args", [
    ((2, 3, 24, 24), dict(kernel_size=2)),
    ((2, 2, 9, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 10, 11), dict(kernel_size=(2, 3), stride=(3, 2), padding=1, dilation=(2, 1))),
    ((3, 7, 7), dict(kernel_size=3, stride=1)),  # unbatched
])
def test_max_pool2d(shape, args, device):
    check_fwd_bwd(lambda x: max_pool2d(x, **args), lambda x: F.max_pool2d(x, **args), [randn(*shape)], device)
    x = randn(*shape)
    _, ik = max_pool2d(kn.tensor(x, device=device), return_indices=True, **args)
    _, it = F.max_pool2d(torch.from_numpy(x), return_indices=True, **args)
    np.testing.assert_array_equal(np_of(ik), it.numpy())
    assert ik.dtype == kn.int64


@pytest.mark.parametrize("shape,args", [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((2, 2, 9, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((2, 2, 9, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ((1, 2, 6, 5), dict(kernel_size=(2, 3), stride=2, padding=1, divisor_override=4)),
])
def test_avg_pool2d(shape, args, device):
    check_fwd_bwd(lambda x: avg_pool2d(x, **args), lambda x: F.avg_pool2d(x, **args), [randn(*shape)], device)


@pytest.mark.parametrize("shape,out", [((2, 3, 7, 9), (3, 4)), ((2, 3, 6, 6), 1), ((3, 5, 4), (2, None))])
def test_adaptive_avg_pool2d(shape, out, device):
    check_fwd_bwd(lambda x: adaptive_avg_pool2d(x, out), lambda x: F.adaptive_avg_pool2d(x, out),
                  [randn(*shape)], device)


def test_pool_errors():
    with pytest.raises(ValueError, match="max_pool2d: expected a 3-D"):
        max_pool2d(kn.zeros(4, 4), 2)
    with pytest.raises(ValueError, match="half of kernel size"):
        max_pool2d(kn.zeros(1, 1, 8, 8), 2, padding=2)
    with pytest.raises(ValueError, match="half of kernel size"):  # PyTorch: dilation does not widen the limit
        max_pool2d(kn.zeros(1, 1, 8, 8), 3, padding=2, dilation=2)
    with pytest.raises(ValueError, match="wrapping around more than once"):
        kn.nn.functional.pad(kn.zeros(1, 2, 4), (3, 5), mode="circular")
    assert kn.nn.functional.pad(kn.arange(4.0).reshape(1, 1, 4), (4, 4), mode="circular").tolist() == \
        [[[0.0, 1.0, 2.0, 3.0] * 3]]
    with pytest.raises(ValueError, match="too small"):
        avg_pool2d(kn.zeros(1, 1, 2, 2), 3)
    with pytest.raises(ValueError, match="float32"):
        avg_pool2d(kn.zeros(1, 1, 4, 4, dtype=kn.int64), 2)


# ------------------------------------------------------------------------------ softmax, losses
@pytest.mark.parametrize("shape,dim", [((5, 10), 1), ((5, 10), 0), ((2, 3, 4), 1), ((2, 3, 4), -1), ((7,), 0), ((), 0)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax(shape, dim, log, device):
    kf, tf = (log_softmax, F.log_softmax) if log else (softmax, F.softmax)
    x = randn(*shape) * 4
    check_fwd_bwd(lambda a: kf(a, dim), lambda a: tf(a, dim), [x], device)


def ce_case(shape, C, ignore=None):
    x = randn(*shape) * 2
    tshape = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    t = RNG.integers(0, C, tshape).astype(np.int64)
    if ignore is not None and t.size > 2:
        t.reshape(-1)[1] = ignore
    return x, t


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 2, 3), (5,)])
@pytest.mark.parametrize("kw", [dict(), dict(reduction="sum"), dict(reduction="none"),
                                dict(weighted=True), dict(weighted=True, ignore_index=2),
                                dict(label_smoothing=0.2, weighted=True, ignore_index=-100),
                                dict(label_smoothing=0.1, reduction="none")])
def test_cross_entropy_and_nll(shape, kw, device):
    kw = dict(kw)
    C = shape[1] if len(shape) > 1 else shape[0]
    weighted = kw.pop("weighted", False)
    x, t = ce_case(shape, C, kw.get("ignore_index"))
    w = (RNG.random(C) + 0.5).astype(np.float32)
    kt, tt = kn.tensor(t, device=device), torch.from_numpy(t)

    def k_ce(a):
        return cross_entropy(a, kt, weight=kn.tensor(w, device=device) if weighted else None, **kw)

    def t_ce(a):
        return F.cross_entropy(a, tt, weight=torch.from_numpy(w.astype(np.float64)) if weighted else None, **kw)

    check_fwd_bwd(k_ce, t_ce, [x], device)
    if "label_smoothing" in kw:
        return
    lp = torch.log_softmax(torch.from_numpy(x), 1 if len(shape) > 1 else 0).numpy()
    check_fwd_bwd(lambda a: nll_loss(a, kt, weight=kn.tensor(w, device=device) if weighted else None, **kw),
                  lambda a: F.nll_loss(a, tt, weight=torch.from_numpy(w.astype(np.float64)) if weighted else None, **kw),
                  [lp], device)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_class_probabilities(reduction, device):
    x = randn(6, 4, 3)
    p = torch.softmax(torch.from_numpy(randn(6, 4, 3)), 1).numpy()
    w = (RNG.random(4) + 0.5).astype(np.float32)
    check_fwd_bwd(
        lambda a: cross_entropy(a, kn.tensor(p, device=device), weight=kn.tensor(w, device=device),
                                reduction=reduction, label_smoothing=0.1),
        lambda a: F.cross_entropy(a, torch.from_numpy(p.astype(np.float64)), weight=torch.from_numpy(w.astype(np.float64)),
                                  reduction=reduction, label_smoothing=0.1), [x], device)


def test_loss_errors():
    x = kn.zeros(4, 3)
    with pytest.raises(ValueError, match=r"cross_entropy: input \(4, 3\) needs a target of shape \(4,\)"):
        cross_entropy(x, kn.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="out of range"):
        cross_entropy(x, kn.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        cross_entropy(x, kn.tensor([0, 1, 2, 0]), weight=kn.ones(4))
    with pytest.raises(ValueError, match="reduction"):
        nll_loss(x, kn.tensor([0, 1, 2, 0]), reduction="avg")
    with pytest.raises(ValueError, match="int64 class indices"):
        nll_loss(x, kn.tensor([True, False, True, True]))


# -------------------------------------------------------------------------------------- dropout
def test_dropout(device):
    x = kn.tensor(randn(64, 129), device=device, requires_grad=True)
    kn.manual_seed(3)
    y1 = dropout(x, 0.3)
    kn.manual_seed(3)
    y2 = dropout(x, 0.3)
    np.testing.assert_array_equal(np_of(y1), np_of(y2))  # same seed, same mask
    y3 = dropout(x, 0.3)
    assert (np_of(y3) != np_of(y1)).any()  # the generator advanced
    xv, yv = np_of(x), np_of(y1)
    kept = yv != 0
    assert abs(kept.mean() - 0.7) < 0.03
    np.testing.assert_allclose(yv[kept], xv[kept] / 0.7, rtol=1e-6)
    g = randn(64, 129)
    y1.backward(kn.tensor(g, device=device))
    np.testing.assert_allclose(np_of(x.grad), np.where(kept, g / 0.7, 0), rtol=1e-6)
    assert dropout(x, 0.5, training=False) is x
    assert not np_of(dropout(x, 1.0)).any()
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(x, 1.5)


def test_tiny_cnn_step_matches_torch():
    """conv -> relu -> max_pool -> dropout(eval) -> flatten -> cross_entropy, gradients of all
    parameters against torch."""
    x, w1, b1 = randn(4, 1, 12, 12), randn(6, 1, 3, 3) * 0.3, randn(6) * 0.1
    t = RNG.integers(0, 10, 4).astype(np.int64)
    wf = randn(10, 6 * 5 * 5) * 0.1
    K = [kn.tensor(a, requires_grad=True) for a in (w1, b1, wf)]
    T = [torch.from_numpy(a.astype(np.float64)).requires_grad_() for a in (w1, b1, wf)]

    def net(lib, P, xx, tt):
        c2, mp, do, ce = (conv2d, max_pool2d, dropout, cross_entropy) if lib == "kn" else (
            F.conv2d, F.max_pool2d, F.dropout, F.cross_entropy)
        h = mp(c2(xx, P[0], P[1]).relu(), 2)
        h = do(h, 0.5, training=False)
        return ce(h.reshape(4, -1) @ P[2].T if lib == "kn" else h.reshape(4, -1) @ P[2].T, tt)

    lk = net("kn", K, kn.tensor(x), kn.tensor(t))
    lt = net("torch", T, torch.from_numpy(x.astype(np.float64)), torch.from_numpy(t))
    close(lk, lt)
    lk.backward()
    lt.backward()
    for k, tt in zip(K, T):
        close(k.grad, tt.grad)
