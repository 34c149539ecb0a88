"""batch_norm / layer_norm on the native kernels (csrc/cpu/norm.cpp, csrc/cuda/norm.cu): outputs,
running statistics and every gradient against PyTorch in float64, central finite differences, a
float64 NumPy reference where float32 cancellation would show, and the errors bad arguments raise."""
import numpy as np
import pytest

import kernelnet as kn
import kernelnet.nn.functional as F
from _coreutil import RNG, arr, close, gradcheck, make, tonp

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _pair(a, device, requires_grad=False):
    """The same float32 values as a kernelnet tensor and a float64 torch leaf."""
    k = make(a, device=device, requires_grad=requires_grad)
    t = torch.from_numpy(np.array(a, dtype=np.float64))
    if requires_grad:
        t.requires_grad_(True)
    return k, t


def _grads_match(kn_leaves, torch_leaves, tol):
    for k, t in zip(kn_leaves, torch_leaves):
        if t is None or not t.requires_grad:
            continue
        assert k.grad is not None
        close(k.grad, t.grad, tol=tol)


@pytest.mark.parametrize("shape", [(6, 4), (5, 3, 7), (4, 3, 5, 6), (2, 1, 3, 3), (300, 70), (16, 8, 33, 33)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_batch_norm_matches_torch(device, shape, training, affine):
    C = shape[1]
    x, tx = _pair(arr(*shape) * 2.0 + 0.5, device, requires_grad=True)
    w, tw = _pair(arr(C, kind="pos"), device, requires_grad=True) if affine != "none" else (None, None)
    b, tb = _pair(arr(C), device, requires_grad=True) if affine == "both" else (None, None)
    rm0, rv0 = arr(C), arr(C, kind="pos")
    rm, trm = _pair(rm0, device)
    rv, trv = _pair(rv0, device)
    y = F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.3, eps=1e-3)
    ty = TF.batch_norm(tx, trm, trv, tw, tb, training=training, momentum=0.3, eps=1e-3)
    close(y, ty, tol=2e-5)
    close(rm, trm, tol=1e-6)
    close(rv, trv, tol=1e-6)
    g = arr(*shape)
    (y * make(g, device=device)).sum().backward()
    (ty * torch.from_numpy(g)).sum().backward()
    _grads_match([x, w, b], [tx, tw, tb], tol=5e-5)


@pytest.mark.parametrize("need", [(True, False, False), (False, True, True), (False, False, True)])
def test_batch_norm_computes_only_the_wanted_gradients(device, need):
    """Frozen input / weight / bias: the kernel skips what is not wanted, the rest still match."""
    shape, C = (8, 5, 3, 3), 5
    x, tx = _pair(arr(*shape), device, requires_grad=need[0])
    w, tw = _pair(arr(C, kind="pos"), device, requires_grad=need[1])
    b, tb = _pair(arr(C), device, requires_grad=need[2])
    y = F.batch_norm(x, None, None, w, b, training=True)
    ty = TF.batch_norm(tx, None, None, tw, tb, training=True)
    (y * y).sum().backward()  # not sum(y): its input gradient is zero in training mode
    (ty * ty).sum().backward()
    for k, t, n in zip((x, w, b), (tx, tw, tb), need):
        assert (k.grad is not None) == n
        if n:
            close(k.grad, t.grad, tol=5e-5)


def test_batch_norm_module_train_eval_and_momentum_none(device):
    """nn.BatchNorm2d end to end: three training steps (cumulative average, momentum=None), then
    eval on the running statistics, against torch."""
    km = kn.nn.BatchNorm2d(4, momentum=None).to(device)
    tm = torch.nn.BatchNorm2d(4, momentum=None).double()
    for step in range(3):
        a = arr(5, 4, 6, 6) * (step + 1) + step
        close(km(make(a, device=device)), tm(torch.from_numpy(a)), tol=2e-5)
    close(km.running_mean, tm.running_mean, tol=1e-5)
    close(km.running_var, tm.running_var, tol=1e-5)
    km.eval()
    tm.eval()
    a = arr(3, 4, 5, 5)
    close(km(make(a, device=device)), tm(torch.from_numpy(a)), tol=2e-5)


def test_batch_norm_keeps_digits_of_a_large_mean(device):
    """A channel at 1e4 with spread 1e-2: summing in double, centred, keeps ~3 digits of each
    normalised value in float32 (E[x^2] - E[x]^2 in float32 would return noise or NaN)."""
    a = (1e4 + 1e-2 * RNG.standard_normal((64, 2, 10))).astype(np.float32).astype(np.float64)
    y = F.batch_norm(make(a, device=device), None, None, training=True, eps=0.0)
    m = a.mean(axis=(0, 2), keepdims=True)
    ref = (a - m) / np.sqrt(((a - m) ** 2).mean(axis=(0, 2), keepdims=True))
    # each float32 input carries ~1e-3 absolute (0.1 of the spread) of rounding at 1e4
    np.testing.assert_allclose(tonp(y), ref, atol=0.1)
    assert np.isfinite(tonp(y)).all()


def test_batch_norm_gradcheck(device):
    x = make(arr(3, 2, 2, 2), device=device, requires_grad=True)
    w = make(arr(2, kind="pos"), device=device, requires_grad=True)
    b = make(arr(2), device=device, requires_grad=True)
    gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, w, b], eps=1e-2, tol=3e-2)


@pytest.mark.parametrize("shape,norm", [((4, 10), (10,)), ((2, 3, 5), (3, 5)), ((1, 7), (7,)), ((3, 2, 4), (2, 4)),
                                        ((512, 96), (96,)), ((2, 5, 1000), (1000,))])
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
def test_layer_norm_matches_torch(device, shape, norm, affine):
    x, tx = _pair(arr(*shape) * 3.0 - 1.0, device, requires_grad=True)
    w, tw = _pair(arr(*norm, kind="pos"), device, requires_grad=True) if affine in ("both", "weight") else (None, None)
    b, tb = _pair(arr(*norm), device, requires_grad=True) if affine in ("both", "bias") else (None, None)
    y = F.layer_norm(x, norm, w, b, eps=1e-4)
    ty = TF.layer_norm(tx, norm, tw, tb, eps=1e-4)
    close(y, ty, tol=2e-5)
    g = arr(*shape)
    (y * make(g, device=device)).sum().backward()
    (ty * torch.from_numpy(g)).sum().backward()
    _grads_match([x, w, b], [tx, tw, tb], tol=5e-5)
    if w is not None:
        assert tuple(w.grad.shape) == tuple(norm)
    if b is not None:
        assert tuple(b.grad.shape) == tuple(norm)


def test_layer_norm_gradcheck_and_noncontiguous_input(device):
    x = make(arr(3, 4), device=device, layout="T", requires_grad=True)  # a transposed view
    w = make(arr(4, kind="pos"), device=device, requires_grad=True)
    b = make(arr(4), device=device, requires_grad=True)
    gradcheck(lambda x, w, b: F.layer_norm(x, (4,), w, b), [x, w, b], eps=1e-2, tol=3e-2)


def test_layer_norm_module_matches_torch(device):
    km = kn.nn.LayerNorm((3, 8)).to(device)
    tm = torch.nn.LayerNorm((3, 8)).double()
    with torch.no_grad():
        tm.weight.uniform_(0.5, 1.5)
        tm.bias.uniform_(-0.5, 0.5)
    km.load_state_dict({k: kn.tensor(v.float().numpy()) for k, v in tm.state_dict().items()})
    a = arr(5, 3, 8)
    close(km(make(a, device=device)), tm(torch.from_numpy(a)), tol=2e-5)


def test_norm_errors_name_the_problem(device):
    x = make(arr(4, 3, 2), device=device)
    with pytest.raises(RuntimeError, match=r"weight of shape \[3\]"):
        F.batch_norm(x, None, None, make(arr(4), device=device), training=True)
    with pytest.raises(ValueError, match="running_mean and running_var are needed"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="float32"):
        F.batch_norm(kn.zeros((4, 3), dtype=kn.int64, device=device), None, None, training=True)
    with pytest.raises(RuntimeError, match="running_var should have 3 elements"):
        F.batch_norm(x, make(arr(3), device=device), make(arr(5), device=device), training=True)
    strided = make(arr(3), device=device, layout="step")
    with pytest.raises(ValueError, match="must be contiguous"):
        F.batch_norm(x, strided, make(arr(3), device=device), training=True)
    with pytest.raises(RuntimeError, match="expected input with shape"):
        F.layer_norm(x, (3,))
    with pytest.raises(RuntimeError, match=r"weight of shape \[2\]"):
        F.layer_norm(x, (2,), make(arr(3), device=device))
    with pytest.raises(ValueError, match="momentum must be in"):
        x._backend.batch_norm_forward(x.data_ptr(), x.data_ptr(), 0, 0, x.data_ptr(), x.data_ptr(), 0, 0,
                                      4, 3, 2, True, 2.0, 1e-5)


# ---- edge cases found by review: constant rows, NaN, empty batches, momentum in eval, threads
@pytest.mark.parametrize("value", [0.1, -7.77, 10000.3, 123456.7])
@pytest.mark.parametrize("n", [7, 100, 1000])
def test_norm_of_a_constant_row_is_its_bias(device, value, n):
    """A constant row/channel has mean = its value and variance 0: y = bias exactly (float lane sums
    of the raw values put the mean an ulp off, and 10000.3 came out as +-0.295 instead of 0)."""
    a = np.full((3, n), value, dtype=np.float32)
    b = make(arr(n), device=device)
    np.testing.assert_array_equal(tonp(F.layer_norm(make(a, device=device), (n,), None, b)), np.broadcast_to(tonp(b), a.shape))
    for x in (make(a.T.copy(), device=device), make(a.reshape(1, 3, n), device=device)):  # [N, C] and [N, C, L]
        y = F.batch_norm(x, None, None, None, make(arr(3), device=device), training=True)
        assert np.all(np.ptp(tonp(y), axis=(0, 2) if y.dim() == 3 else 0) == 0)


def test_batch_norm_nan_reaches_running_var(device):
    a = arr(8, 2, 3)
    a[1, 0, 0] = np.nan
    rm, rv = make(np.zeros(2), device=device), make(np.ones(2), device=device)
    F.batch_norm(make(a, device=device), rm, rv, training=True)
    assert np.isnan(tonp(rm)[0]) and np.isnan(tonp(rv)[0]) and np.isfinite(tonp(rv)[1])


@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 4), (2, 3, 0)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_empty_batch(device, shape, training):
    km = kn.nn.BatchNorm1d(3).to(device)
    km.train(training)
    x = make(np.zeros(shape), device=device, requires_grad=True)
    y = km(x)
    assert tuple(y.shape) == shape
    (y * 2.0).sum().backward()
    close(km.weight.grad, np.zeros(3))
    close(km.running_mean, np.zeros(3))
    close(km.running_var, np.ones(3))


def test_layer_norm_no_rows_backward(device):
    km = kn.nn.LayerNorm(4).to(device)
    x = make(np.zeros((0, 4)), device=device, requires_grad=True)
    (km(x) * 2.0).sum().backward()
    close(km.weight.grad, np.zeros(4))
    close(km.bias.grad, np.zeros(4))


def test_batch_norm_momentum_ignored_in_eval_and_stats_paired(device):
    x = make(arr(4, 3), device=device)
    rm, rv = make(arr(3), device=device), make(arr(3, kind="pos"), device=device)
    F.batch_norm(x, rm, rv, training=False, momentum=5.0)  # PyTorch ignores momentum in eval
    with pytest.raises(ValueError, match="both be None or neither"):
        F.batch_norm(x, rm, None, training=True)


def test_norm_thread_count_agrees(device):
    a = arr(512, 256) + 3.0
    g = make(arr(512, 256), device=device)
    out = []
    old = kn.get_num_threads()
    for nt in (1, 2):
        kn.set_num_threads(nt)
        x = make(a, device=device, requires_grad=True)
        y = F.batch_norm(x, None, None, training=True)
        (y * g).sum().backward()
        x2 = make(a, device=device, requires_grad=True)
        y2 = F.layer_norm(x2, (256,))
        (y2 * g).sum().backward()
        out.append([tonp(t) for t in (y, x.grad, y2, x2.grad)])
    kn.set_num_threads(old)
    for p, q in zip(*out):
        close(p, q, tol=1e-6)
