"""nn.functional losses and helpers against torch.nn.functional: values and input gradients."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import kernelnet as kn
import kernelnet.nn as nn
import kernelnet.nn.functional as F
from _nn_util import assert_close

rng = np.random.default_rng(99)


def _pair(x_np):
    return torch.tensor(x_np, requires_grad=True), kn.tensor(x_np, requires_grad=True)


def _run(tfn, kfn, x_np, *targets, rtol=1e-5, atol=1e-6):
    xt, xk = _pair(x_np)
    lt = tfn(xt, *[torch.tensor(t) for t in targets])
    lk = kfn(xk, *[kn.from_numpy(np.array(t, copy=True)) for t in targets])
    assert tuple(lk.shape) == tuple(lt.shape)
    assert_close(lk, lt, rtol, atol, "loss")
    g = rng.standard_normal(tuple(lt.shape)).astype(np.float32)
    lt.backward(torch.tensor(g))
    lk.backward(kn.tensor(g) if g.ndim else kn.from_numpy(np.array(g)))
    assert_close(xk.grad, xt.grad, rtol * 10, atol * 10, "grad")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.1}, {"ignore_index": 2}, {"weight": True},
                                {"weight": True, "ignore_index": 0, "label_smoothing": 0.2}])
def test_cross_entropy(reduction, kw):
    x = rng.standard_normal((7, 5)).astype(np.float32)
    t = np.array([0, 2, 4, 1, 2, 3, 0], dtype=np.int64)
    w = rng.random(5).astype(np.float32) + 0.5
    tkw = dict(kw, reduction=reduction)
    kkw = dict(kw, reduction=reduction)
    if kw.get("weight"):
        tkw["weight"], kkw["weight"] = torch.tensor(w), kn.tensor(w)
    _run(lambda a, b: TF.cross_entropy(a, b, **tkw), lambda a, b: F.cross_entropy(a, b, **kkw), x, t)
    # the module form
    mod = nn.CrossEntropyLoss(**kkw)
    assert_close(mod(kn.tensor(x), kn.tensor(t)), TF.cross_entropy(torch.tensor(x), torch.tensor(t), **tkw))


def test_cross_entropy_spatial_and_unbatched_and_probabilities():
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    t = rng.integers(0, 4, (2, 3, 5)).astype(np.int64)
    for red in ("mean", "none"):
        _run(lambda a, b: TF.cross_entropy(a, b, reduction=red), lambda a, b: F.cross_entropy(a, b, reduction=red), x, t)
    _run(TF.cross_entropy, F.cross_entropy, rng.standard_normal(6).astype(np.float32), np.array(3))
    p = rng.random((3, 6)).astype(np.float32)
    p /= p.sum(1, keepdims=True)
    _run(lambda a, b: TF.cross_entropy(a, b, label_smoothing=0.1),
         lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1), rng.standard_normal((3, 6)).astype(np.float32), p)


def test_cross_entropy_errors():
    with pytest.raises(ValueError, match="target of shape"):
        F.cross_entropy(kn.zeros(3, 4), kn.zeros(4, dtype=kn.int64))
    with pytest.raises((IndexError, ValueError), match="out of"):
        F.cross_entropy(kn.zeros(2, 4), kn.tensor([1, 4]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(kn.zeros(2, 4), kn.tensor([1, 2]), reduction="avg")
    probs = kn.full((2, 4), 0.25)
    with pytest.raises(RuntimeError, match="ignore_index"):  # as PyTorch: no class index to ignore
        F.cross_entropy(kn.zeros(2, 4), probs, ignore_index=2)
    assert F.cross_entropy(kn.zeros(2, 4), probs, ignore_index=-1).item() == pytest.approx(np.log(4))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss(reduction):
    x = TF.log_softmax(torch.randn(6, 4), 1).numpy()
    t = np.array([3, 0, 1, 1, 2, -100], dtype=np.int64)
    w = np.array([1.0, 2.0, 0.5, 1.5], dtype=np.float32)
    _run(lambda a, b: TF.nll_loss(a, b, weight=torch.tensor(w), reduction=reduction),
         lambda a, b: F.nll_loss(a, b, weight=kn.tensor(w), reduction=reduction), x, t)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_and_binary_losses(reduction):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = rng.standard_normal((4, 3)).astype(np.float32)
    _run(lambda a, b: TF.mse_loss(a, b, reduction=reduction), lambda a, b: F.mse_loss(a, b, reduction=reduction), x, y)
    _run(lambda a, b: TF.l1_loss(a, b, reduction=reduction), lambda a, b: F.l1_loss(a, b, reduction=reduction), x, y)
    p = rng.random((4, 3)).astype(np.float32) * 0.98 + 0.01
    t = (rng.random((4, 3)) > 0.5).astype(np.float32)
    w = rng.random((4, 3)).astype(np.float32)
    _run(lambda a, b: TF.binary_cross_entropy(a, b, reduction=reduction),
         lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction), p, t)
    _run(lambda a, b: TF.binary_cross_entropy(a, b, weight=torch.tensor(w), reduction=reduction),
         lambda a, b: F.binary_cross_entropy(a, b, weight=kn.tensor(w), reduction=reduction), p, t)
    logits = (rng.standard_normal((4, 3)) * 5).astype(np.float32)
    pw = np.array([0.5, 1.0, 3.0], dtype=np.float32)
    _run(lambda a, b: TF.binary_cross_entropy_with_logits(a, b, reduction=reduction),
         lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), logits, t)
    _run(lambda a, b: TF.binary_cross_entropy_with_logits(a, b, pos_weight=torch.tensor(pw), reduction=reduction),
         lambda a, b: F.binary_cross_entropy_with_logits(a, b, pos_weight=kn.tensor(pw), reduction=reduction),
         logits, t)


def test_binary_cross_entropy_at_saturated_probabilities():
    """x exactly 0 or 1 (a sigmoid saturates to 1.0 in float32 past ~17): PyTorch's gradient
    (x - t) / max(x (1 - x), 1e-12) is finite; the chain rule through log and its clamp is NaN."""
    p = np.array([0.0, 1.0, 0.5, 1.0, 0.0], np.float32)
    t = np.array([0.0, 1.0, 1.0, 0.0, 0.7], np.float32)
    for reduction in ("mean", "none"):
        _run(lambda a, b: TF.binary_cross_entropy(a, b, reduction=reduction),
             lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction), p, t)
    # the target's gradient (soft labels that are learned) as PyTorch's: log(1 - x) - log(x) (inf at 0, 1)
    xt, tt = torch.tensor(p), torch.tensor(t, requires_grad=True)
    xk, tk = kn.tensor(p), kn.tensor(t, requires_grad=True)
    TF.binary_cross_entropy(xt, tt).backward()
    F.binary_cross_entropy(xk, tk).backward()
    assert_close(tk.grad, tt.grad)
    w = kn.tensor([[1.0]], requires_grad=True)
    F.binary_cross_entropy(kn.sigmoid(kn.tensor([[30.0], [0.1]]) @ w), kn.tensor([[1.0], [1.0]])).backward()
    assert np.isfinite(w.grad.numpy()).all()


def test_loss_argument_errors():
    x, i = kn.tensor([0.3, 0.7]), kn.tensor([0, 1])
    for f in (F.binary_cross_entropy, F.binary_cross_entropy_with_logits):
        with pytest.raises(RuntimeError, match="float32"):
            f(x, i)  # integer labels: PyTorch refuses them too
    with pytest.raises(ValueError, match="reduction"):
        F.smooth_l1_loss(x, x, reduction="bogus")
    with pytest.raises(RuntimeError, match="negative"):
        F.smooth_l1_loss(x, x, beta=-1.0)


def test_loss_modules_match_functional():
    x, y = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal((3, 2)).astype(np.float32)
    for km, tm in [(nn.MSELoss(), torch.nn.MSELoss()), (nn.L1Loss(reduction="sum"), torch.nn.L1Loss(reduction="sum")),
                   (nn.BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss())]:
        tgt = (y > 0).astype(np.float32) if isinstance(km, nn.BCEWithLogitsLoss) else y
        assert_close(km(kn.tensor(x), kn.tensor(tgt)), tm(torch.tensor(x), torch.tensor(tgt)))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(kn.tensor([1.5]), kn.tensor([1.0]))


@pytest.mark.parametrize("pad,mode", [((1, 2), "constant"), ((1, 0, 2, 1), "constant"), ((2, 1, 1, 2), "reflect"),
                                      ((1, 2, 0, 3), "replicate"), ((1, 1, 2, 0), "circular"), ((-1, 2), "constant")])
def test_pad(pad, mode):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    _run(lambda a: TF.pad(a, pad, mode=mode), lambda a: F.pad(a, pad, mode=mode), x)
    if mode == "constant":
        _run(lambda a: TF.pad(a, pad, value=2.5), lambda a: F.pad(a, pad, value=2.5), x)


def test_softmax_dims_and_one_hot():
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    for d in (0, 1, 2, -1):
        _run(lambda a: TF.softmax(a, d), lambda a: F.softmax(a, d), x)
        _run(lambda a: TF.log_softmax(a, d), lambda a: F.log_softmax(a, d), x)
    t = np.array([0, 3, 1])
    assert np.array_equal(F.one_hot(kn.tensor(t), 5).numpy(), TF.one_hot(torch.tensor(t), 5).numpy())
    for name in ("relu", "gelu", "tanh", "sigmoid", "silu", "elu", "leaky_relu"):
        _run(getattr(TF, name), getattr(F, name), x)
