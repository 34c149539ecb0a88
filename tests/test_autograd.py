"""Backward of every differentiable core op against central finite differences (kernelnet in
float32) and against PyTorch CPU (float64) running the same program; autograd semantics."""
import numpy as np
import pytest

import kernelnet as kn
from _coreutil import arr, make, tonp, close, gradcheck, torch_check, torch, RNG

tF = None if torch is None else torch.nn.functional


def _clamp_arr(*shape):
    a = arr(*shape, kind="uniform", low=-1.0, high=1.0)
    # keep every element at least 0.05 away from the clamp bounds (-0.5, 0.6): no kinks within eps
    a = np.where(np.abs(a + 0.5) < 0.05, a + 0.1, a)
    return np.where(np.abs(a - 0.6) < 0.05, a - 0.1, a)


def _distinct(*shape):
    # values on a grid with gaps >= 0.1 (max/min ties and kinks stay clear of the FD step)
    n = int(np.prod(shape))
    return (RNG.permutation(n).reshape(shape) * 0.1 - n * 0.05 + 0.013).astype(np.float64)


# name: (fn, fn_torch or None (= same), [(shape, kind, layout)], torch_tol)
SAME = None
OPS = {
    # elementwise binary with broadcasting
    "add": (lambda a, b: a + b, SAME, [((3, 1, 4), "randn", "T"), ((2, 4), "randn", "contig")]),
    "sub": (lambda a, b: a - b, SAME, [((3, 4), "randn", "step"), ((4,), "randn", "contig")]),
    "rsub_scalar": (lambda a: 2.0 - a, SAME, [((3, 4), "randn", "T")]),
    "mul": (lambda a, b: a * b, SAME, [((2, 3, 1), "randn", "contig"), ((3, 4), "randn", "T")]),
    "div": (lambda a, b: a / b, SAME, [((3, 4), "randn", "contig"), ((3, 1), "away", "contig")]),
    "rdiv_scalar": (lambda a: 1.5 / a, SAME, [((5,), "away", "contig")]),
    "pow_tt": (lambda a, b: a ** b, SAME, [((3, 4), "pos", "contig"), ((4,), "randn", "contig")]),
    "pow_scalar": (lambda a: a ** 3, SAME, [((3, 4), "randn", "T")]),
    "pow_frac": (lambda a: a ** 0.7, SAME, [((7,), "pos", "contig")]),
    "rpow": (lambda a: 2.0 ** a, SAME, [((5,), "randn", "contig")]),
    "maximum": (kn.maximum, lambda a, b: torch.maximum(a, b), [((3, 4), "distinct", "contig"), ((3, 4), "distinct", "T")]),
    "minimum": (kn.minimum, lambda a, b: torch.minimum(a, b), [((3, 4), "distinct", "contig"), ((4,), "distinct", "contig")]),
    "where": (lambda a, b: kn.where(a > 0, a, b * 2), lambda a, b: torch.where(a > 0, a, b * 2),
              [((3, 4), "away", "contig"), ((4,), "randn", "contig")]),
    "lerp": (lambda a, b: kn.lerp(a, b, 0.3), lambda a, b: torch.lerp(a, b, 0.3), [((3, 4), "randn", "contig"), ((3, 4), "randn", "T")]),
    "0d_times_nd": (lambda a, b: a * b, SAME, [((), "randn", "contig"), ((2, 3), "randn", "contig")]),
    # unary math
    "exp": (lambda a: a.exp(), SAME, [((3, 4), "randn", "T")]),
    "log": (lambda a: a.log(), SAME, [((3, 4), "pos", "step")]),
    "tanh": (lambda a: a.tanh(), SAME, [((3, 4), "randn", "contig")]),
    "sigmoid": (lambda a: a.sigmoid(), SAME, [((3, 4), "randn", "T")]),
    "relu": (lambda a: a.relu(), SAME, [((3, 4), "away", "contig")]),
    "sqrt": (lambda a: a.sqrt(), SAME, [((3, 4), "pos", "contig")]),
    "rsqrt": (lambda a: a.rsqrt(), SAME, [((5,), "pos", "contig")]),
    "abs": (lambda a: a.abs(), SAME, [((3, 4), "away", "T")]),
    "neg": (lambda a: -a, SAME, [((3, 4), "randn", "contig")]),
    "sin": (lambda a: a.sin(), SAME, [((5,), "randn", "contig")]),
    "cos": (lambda a: a.cos(), SAME, [((5,), "randn", "contig")]),
    "reciprocal": (lambda a: a.reciprocal(), SAME, [((5,), "away", "contig")]),
    "square": (lambda a: a.square(), SAME, [((5,), "randn", "contig")]),
    "log1p": (lambda a: a.log1p(), SAME, [((5,), "pos", "contig")]),
    "expm1": (lambda a: a.expm1(), SAME, [((5,), "randn", "contig")]),
    "log2": (lambda a: a.log2(), SAME, [((5,), "pos", "contig")]),
    "log10": (lambda a: a.log10(), SAME, [((5,), "pos", "contig")]),
    "exp2": (lambda a: kn.exp2(a), lambda a: torch.exp2(a), [((5,), "randn", "contig")]),
    "clamp": (lambda a: a.clamp(-0.5, 0.6), SAME, [((3, 5), "clampsafe", "T")]),
    "clamp_min": (lambda a: a.clamp(min=-0.5), SAME, [((3, 5), "clampsafe", "contig")]),
    "clamp_tensor": (lambda a, b: a.clamp(min=b), lambda a, b: torch.clamp(a, min=b), [((3, 4), "distinct", "contig"), ((4,), "shifted", "contig")]),
    "silu": (kn.silu, lambda a: tF.silu(a), [((6,), "randn", "contig")]),
    "erf": (kn.erf, lambda a: torch.erf(a), [((6,), "randn", "contig")]),
    "gelu": (kn.gelu, lambda a: tF.gelu(a), [((6,), "randn", "contig")]),
    "gelu_tanh": (lambda a: kn.gelu(a, approximate="tanh"), lambda a: tF.gelu(a, approximate="tanh"), [((6,), "randn", "contig")]),
    "leaky_relu": (lambda a: kn.leaky_relu(a, 0.1), lambda a: tF.leaky_relu(a, 0.1), [((6,), "away", "contig")]),
    "elu": (kn.elu, lambda a: tF.elu(a), [((6,), "away", "contig")]),
    "softplus": (kn.softplus, lambda a: tF.softplus(a), [((6,), "randn", "contig")]),
    "floor_zero_grad": (lambda a: a.floor() + a, SAME, [((5,), "distinct", "contig")]),
    "sign_zero_grad": (lambda a: a.sign() * 3 + a, SAME, [((5,), "away", "contig")]),
    # reductions
    "sum_all": (lambda a: a.sum(), SAME, [((3, 4), "randn", "T")]),
    "sum_dim": (lambda a: a.sum(1), SAME, [((2, 3, 4), "randn", "contig")]),
    "sum_dims_keep": (lambda a: a.sum((0, 2), keepdim=True), SAME, [((2, 3, 4), "randn", "T")]),
    "sum_neg": (lambda a: a.sum(-1), SAME, [((3, 4), "randn", "step")]),
    "mean_all": (lambda a: a.mean(), SAME, [((3, 4), "randn", "contig")]),
    "mean_dims": (lambda a: a.mean((0, 2)), SAME, [((2, 3, 4), "randn", "contig")]),
    "mean_keep": (lambda a: a.mean(-1, keepdim=True), SAME, [((3, 4), "randn", "T")]),
    "max_all": (lambda a: a.max(), SAME, [((3, 4), "distinct", "contig")]),
    "max_dim": (lambda a: a.max(1)[0], SAME, [((3, 4), "distinct", "T")]),
    "min_dim_keep": (lambda a: a.min(0, keepdim=True).values, SAME, [((3, 4), "distinct", "contig")]),
    "amax_dims": (lambda a: a.amax((0, 2)), lambda a: torch.amax(a, (0, 2)), [((2, 3, 4), "distinct", "contig")]),
    "amin": (lambda a: a.amin(1), lambda a: torch.amin(a, 1), [((3, 4), "distinct", "contig")]),
    "var": (lambda a: a.var(), SAME, [((3, 4), "randn", "contig")]),
    "var_dim": (lambda a: a.var(1, keepdim=True), SAME, [((3, 4), "randn", "T")]),
    "var_biased": (lambda a: a.var(0, unbiased=False), SAME, [((3, 4), "randn", "contig")]),
    "std": (lambda a: a.std(1), SAME, [((3, 4), "randn", "contig")]),
    "prod_dim": (lambda a: a.prod(1), SAME, [((3, 4), "away", "contig")]),
    "prod_all": (lambda a: a.prod(), SAME, [((2, 3), "away", "T")]),
    "logsumexp": (lambda a: a.logsumexp(1), SAME, [((3, 4), "randn", "contig")]),
    "logsumexp_dims": (lambda a: kn.logsumexp(a, (0, 1)), lambda a: torch.logsumexp(a, (0, 1)), [((3, 4), "randn", "contig")]),
    "norm": (lambda a: a.norm(), SAME, [((3, 4), "randn", "contig")]),
    "norm_dim": (lambda a: a.norm(dim=1), SAME, [((3, 4), "randn", "contig")]),
    # matmul / linear
    "matmul_2d": (lambda a, b: a @ b, SAME, [((3, 4), "randn", "contig"), ((4, 5), "randn", "contig")]),
    "matmul_T": (lambda a, b: a @ b, SAME, [((3, 4), "randn", "T"), ((4, 2), "randn", "T")]),
    "matmul_batch_bcast": (lambda a, b: a @ b, SAME, [((2, 1, 3, 4), "randn", "contig"), ((3, 4, 2), "randn", "contig")]),
    "matmul_batch_2d": (lambda a, b: a @ b, SAME, [((2, 3, 4), "randn", "T"), ((4, 2), "randn", "contig")]),
    "matmul_vec_mat": (lambda a, b: a @ b, SAME, [((4,), "randn", "contig"), ((4, 3), "randn", "contig")]),
    "matmul_mat_vec": (lambda a, b: a @ b, SAME, [((3, 4), "randn", "contig"), ((4,), "randn", "contig")]),
    "matmul_vec_vec": (lambda a, b: a @ b, SAME, [((5,), "randn", "contig"), ((5,), "randn", "step")]),
    "matmul_batch_vec": (lambda a, b: a @ b, SAME, [((2, 3, 4), "randn", "contig"), ((4,), "randn", "contig")]),
    "linear": (kn.linear, lambda x, w, b: tF.linear(x, w, b), [((5, 4), "randn", "contig"), ((3, 4), "randn", "contig"), ((3,), "randn", "contig")]),
    "linear_3d_nobias": (lambda x, w: kn.linear(x, w), lambda x, w: tF.linear(x, w), [((2, 3, 4), "randn", "T"), ((3, 4), "randn", "T")]),
    # views
    "reshape": (lambda a: a.reshape(4, 3) * kn.arange(3, device=a.device), lambda a: a.reshape(4, 3) * torch.arange(3), [((3, 4), "randn", "T")]),
    "view": (lambda a: a.view(2, 6)[1], SAME, [((3, 4), "randn", "contig")]),
    "permute": (lambda a: a.permute(2, 0, 1)[0], SAME, [((2, 3, 4), "randn", "contig")]),
    "transpose": (lambda a: a.transpose(0, 1)[1:], SAME, [((3, 4), "randn", "contig")]),
    "expand": (lambda a: a.expand(3, 4) * kn.arange(4, device=a.device), lambda a: a.expand(3, 4) * torch.arange(4), [((3, 1), "randn", "contig")]),
    "expand_new_dims": (lambda a: a.expand(2, 3, 4), SAME, [((4,), "randn", "contig")]),
    "squeeze_unsqueeze": (lambda a: a.squeeze(1).unsqueeze(0).unsqueeze(-1), SAME, [((3, 1, 4), "randn", "contig")]),
    "flatten": (lambda a: a.flatten(1), SAME, [((2, 3, 4), "randn", "T")]),
    "slice_step": (lambda a: a[1::2, ::3], SAME, [((5, 7), "randn", "contig")]),
    "slice_none_ellipsis": (lambda a: a[None, ..., -1], SAME, [((2, 3, 4), "randn", "contig")]),
    "int_index": (lambda a: a[-1, 2], SAME, [((3, 4), "randn", "contig")]),
    "adv_pairs": (lambda a: a[kn.arange(3, device=a.device), kn.tensor([1, 3, 1], device=a.device)], lambda a: a[torch.arange(3), torch.tensor([1, 3, 1])], [((3, 4), "randn", "contig")]),
    "adv_dup_rows": (lambda a: a[kn.tensor([0, 2, 0, 0])], lambda a: a[torch.tensor([0, 2, 0, 0])], [((3, 4), "randn", "T")]),
    "adv_bool": (lambda a: a[a > 0], lambda a: a[a > 0], [((3, 4), "away", "contig")]),
    "adv_nonadjacent": (lambda a: a[kn.tensor([1, 0]), :, kn.tensor([2, 3])], lambda a: a[torch.tensor([1, 0]), :, torch.tensor([2, 3])], [((2, 3, 4), "randn", "contig")]),
    "contiguous": (lambda a: a.contiguous(), SAME, [((3, 4), "randn", "T")]),
    "clone": (lambda a: a.clone() * 2, SAME, [((3, 4), "randn", "step")]),
    "repeat": (lambda a: a.repeat(2, 3), SAME, [((2, 3), "randn", "contig")]),
    "flip": (lambda a: a.flip(1), lambda a: a.flip(1), [((3, 4), "randn", "contig")]),
    "narrow": (lambda a: a.narrow(1, 1, 2), SAME, [((3, 4), "randn", "contig")]),
    "cat": (lambda a, b: kn.cat([a, b, a], 1), lambda a, b: torch.cat([a, b, a], 1), [((2, 3), "randn", "contig"), ((2, 1), "randn", "contig")]),
    "stack": (lambda a, b: kn.stack([a, b], -1), lambda a, b: torch.stack([a, b], -1), [((2, 3), "randn", "T"), ((2, 3), "randn", "contig")]),
    "split": (lambda a: a.split(2, 1)[1] * 2 + a.split(2, 1)[2].sum(), SAME, [((3, 5), "randn", "contig")]),
    "chunk_unbind": (lambda a: a.chunk(2, 0)[1] + a.unbind(0)[0], SAME, [((4, 3), "randn", "contig")]),
    "gather": (lambda a: a.gather(1, kn.tensor([[0, 3, 3], [1, 1, 0], [2, 0, 1]], device=a.device)), lambda a: a.gather(1, torch.tensor([[0, 3, 3], [1, 1, 0], [2, 0, 1]])), [((3, 4), "randn", "contig")]),
    "scatter_add": (lambda a, s: a.scatter_add(0, kn.tensor([[0, 1, 0], [0, 0, 1]], device=a.device), s), lambda a, s: a.scatter_add(0, torch.tensor([[0, 1, 0], [0, 0, 1]]), s), [((2, 3), "randn", "contig"), ((2, 3), "randn", "contig")]),
    "index_select": (lambda a: a.index_select(1, kn.tensor([2, 0, 2], device=a.device)), lambda a: a.index_select(1, torch.tensor([2, 0, 2])), [((3, 4), "randn", "T")]),
    "masked_fill": (lambda a: a.masked_fill(a > 0, 0.5), SAME, [((3, 4), "away", "contig")]),
    "to_float": (lambda a: a.to(kn.float32) * 2, lambda a: a.to(torch.float64) * 2, [((3,), "randn", "contig")]),
    "composite_mlp": (lambda x, w1, w2: ((x @ w1).tanh() @ w2).relu().mean(0),
                      SAME, [((4, 3), "randn", "contig"), ((3, 5), "randn", "contig"), ((5, 2), "randn", "T")]),
}


def _inputs(specs, device):
    ins = []
    for shape, kind, layout in specs:
        if kind == "distinct":
            a = _distinct(*shape)
        elif kind == "shifted":  # a grid offset by half a step from "distinct": no ties with it
            a = _distinct(*shape) + 0.05
        elif kind == "clampsafe":
            a = _clamp_arr(*shape)
        else:
            a = arr(*shape, kind=kind)
        ins.append(make(a, device, layout, requires_grad=True))
    return ins


@pytest.mark.parametrize("name", list(OPS))
def test_grad_finite_differences(name, device):
    fn, _, specs = OPS[name]
    gradcheck(fn, _inputs(specs, device))


@pytest.mark.parametrize("name", list(OPS))
def test_grad_matches_torch(name, device):
    fn, fn_t, specs = OPS[name]
    torch_check(fn, _inputs(specs, device), fn_torch=fn_t)


def test_prod_grad_with_zeros():
    a = np.array([[0.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 2.0]])
    torch_check(lambda x: x.prod(1), [make(a, requires_grad=True)])
    torch_check(lambda x: x.prod(), [make(a[1:2], requires_grad=True)])
    torch_check(lambda x: x.prod(0, keepdim=True), [make(a, requires_grad=True)])


def test_max_ties_split_gradient_evenly():
    x = kn.tensor([1.0, 3.0, 3.0, 2.0], requires_grad=True)
    x.max().backward()
    close(x.grad, [0.0, 0.5, 0.5, 0.0])  # PyTorch's max() (full reduction) also splits evenly


# ------------------------------------------------------------------ semantics
def test_requires_grad_propagation():
    a = kn.ones(2, requires_grad=True)
    b = kn.ones(2)
    assert (a + b).requires_grad and (a + b).grad_fn is not None
    assert not (b * 2).requires_grad and (b * 2).grad_fn is None
    assert (a * b).sum().requires_grad
    assert a.is_leaf and not (a * 2).is_leaf
    assert not (a > 0).requires_grad  # comparisons are not differentiable
    assert not a.argmax().requires_grad
    with pytest.raises(RuntimeError, match="floating point"):
        kn.ones(2, dtype=kn.int64).requires_grad_()


def test_grad_accumulates_over_two_backwards():
    a = kn.tensor([1.0, 2.0], requires_grad=True)
    (a * 3).sum().backward()
    (a * a).sum().backward()
    close(a.grad, [3 + 2, 3 + 4])
    a.grad = None
    (a * 3).sum().backward()
    close(a.grad, [3, 3])


def test_grad_accumulation_in_place_like_torch():
    """From the second accumulation on, gradients are added into the same .grad buffer (PyTorch's
    AccumulateGrad does grad += new_grad): a reference to .grad sees the sum; values match five
    accumulations in float64."""
    a = kn.tensor([1.0, 2.0, -3.0], requires_grad=True)
    for _ in range(2):
        (a * a).sum().backward()
    buf = a.grad
    for _ in range(3):
        (a * a).sum().backward()
    assert a.grad is buf
    close(buf, 5 * 2 * np.array([1.0, 2.0, -3.0]))
    # zeroing in place keeps the buffer; accumulation continues into it
    a.grad.zero_()
    (a * 3).sum().backward()
    close(a.grad, [3, 3, 3])


def test_grad_accumulation_never_writes_into_a_users_tensor():
    """A first gradient can share storage with a tensor the caller holds (the `gradient=` given to
    backward of a leaf, the .grad of a retained intermediate): accumulating more gradients must
    leave those tensors as they were."""
    a = kn.tensor([1.0, 2.0], requires_grad=True)
    user_g = kn.tensor([0.5, 0.25])
    for _ in range(4):
        a.backward(user_g)
    close(user_g, [0.5, 0.25])
    close(a.grad, [2.0, 1.0])

    w = kn.tensor([1.0, -1.0], requires_grad=True)
    kept = []
    for _ in range(4):
        y = w + 0.0  # Add's backward hands the incoming gradient on unchanged
        y.retain_grad()
        (y * kn.tensor([2.0, 3.0])).sum().backward()
        kept.append(y.grad)
    for g in kept:
        close(g, [2.0, 3.0])
    close(w.grad, [8.0, 12.0])


def test_no_grad_and_decorator():
    a = kn.ones(2, requires_grad=True)
    with kn.no_grad():
        b = a * 2
        assert not kn.is_grad_enabled()
    assert kn.is_grad_enabled()
    assert not b.requires_grad and b.grad_fn is None

    @kn.no_grad()
    def f(x):
        return x * 2

    assert not f(a).requires_grad
    with kn.no_grad():
        with kn.enable_grad():
            assert (a * 2).requires_grad
    with kn.set_grad_enabled(False):
        assert not (a * 2).requires_grad


def test_detach_shares_memory_and_cuts_graph():
    a = kn.tensor([1.0, 2.0], requires_grad=True)
    d = (a * 2).detach()
    assert not d.requires_grad and d.grad_fn is None
    ad = a.detach()
    ad[0] = 7.0
    assert a.tolist()[0] == 7.0  # same storage, like torch
    y = (a * a.detach()).sum()
    y.backward()
    close(a.grad, [7.0, 2.0])  # the detached factor is a constant


def test_retain_graph():
    a = kn.tensor([1.0, 2.0], requires_grad=True)
    y = (a * a).sum()
    y.backward(retain_graph=True)
    y.backward()
    close(a.grad, [4.0, 8.0])
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward()
    z = (a.exp() * 2).sum()
    z.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        z.backward()


def test_retain_grad_on_non_leaf():
    a = kn.tensor([1.0, -2.0, 3.0], requires_grad=True)
    h = a * 2
    h.retain_grad()
    u = h.relu()
    u.retain_grad()
    (u * kn.tensor([1.0, 2.0, 3.0])).sum().backward()
    close(u.grad, [1.0, 2.0, 3.0])
    close(h.grad, [1.0, 0.0, 3.0])
    close(a.grad, [2.0, 0.0, 6.0])
    m = a * 3
    (m.sum()).backward()
    assert m.grad is None  # not retained


def test_inplace_on_leaf_raises():
    a = kn.ones(3, requires_grad=True)
    for op in [lambda: a.add_(1), lambda: a.mul_(2), lambda: a.zero_(), lambda: a.fill_(1.0),
               lambda: a.__setitem__(0, 5.0), lambda: a.copy_(kn.zeros(3))]:
        with pytest.raises(RuntimeError, match="leaf"):
            op()
    with kn.no_grad():  # allowed without grad (optimizer updates)
        a.add_(1)
        a[0] = 5.0
    close(a.detach(), [5.0, 2.0, 2.0])


def test_backward_non_scalar_needs_gradient():
    a = kn.ones(2, 3, requires_grad=True)
    y = a * 2
    with pytest.raises(RuntimeError, match="scalar outputs"):
        y.backward()
    y.backward(kn.full((2, 3), 0.5))
    close(a.grad, np.full((2, 3), 1.0))
    with pytest.raises(RuntimeError, match="shape"):
        (a * 2).backward(kn.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        kn.ones(2).sum().backward()


def test_diamond_graph():
    x = kn.tensor([0.5, -1.0], requires_grad=True)
    h = x.tanh()
    y = (h * h + h.exp() * h).sum()
    y.backward()
    tx = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    th = tx.tanh()
    (th * th + th.exp() * th).sum().backward()
    close(x.grad, tx.grad, tol=1e-5)
    # a value used many times
    z = kn.tensor(2.0, requires_grad=True)
    w = z
    for _ in range(5):
        w = w * z
    w.backward()
    close(z.grad, 6 * 2.0 ** 5)


def test_broadcast_grads_are_summed():
    a = kn.ones(3, 1, requires_grad=True)
    b = kn.ones(4, requires_grad=True)
    c = kn.tensor(2.0, requires_grad=True)
    ((a + b) * c).sum().backward()
    close(a.grad, np.full((3, 1), 8.0))
    close(b.grad, np.full(4, 6.0))
    close(c.grad, 24.0)


def test_leaf_grads_not_aliased():
    a = kn.ones(3, requires_grad=True)
    b = kn.ones(3, requires_grad=True)
    (a + b).sum().backward()  # both leaves receive the same incoming gradient tensor
    a.grad.mul_(10)
    close(a.grad, [10.0] * 3)
    close(b.grad, [1.0] * 3)
    a.grad.zero_()
    close(b.grad, [1.0] * 3)
    # one leaf used directly as the root gradient source
    c = kn.ones(2, requires_grad=True)
    d = c.reshape(2)
    d.sum().backward()
    c.grad.add_(1)
    close(c.grad, [2.0, 2.0])


def test_grad_of_unused_output_and_non_float_outputs():
    x = kn.tensor([[1.0, 5.0], [3.0, 2.0]], requires_grad=True)
    v, i = x.max(1)
    assert i.dtype is kn.int64 and not i.requires_grad
    v.sum().backward()
    close(x.grad, [[0, 1], [1, 0]])


def test_autograd_grad_function():
    x = kn.tensor([1.0, 2.0], requires_grad=True)
    (g,) = kn.autograd.grad((x * x).sum(), x)
    close(g, [2.0, 4.0])
    assert x.grad is None


def test_register_hook_on_leaf():
    x = kn.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(g.tolist()) or g * 2)
    (x * 3).sum().backward()
    assert seen == [[3.0, 3.0]]
    close(x.grad, [6.0, 6.0])


def test_custom_function():
    class Cube(kn.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x * x

    x = kn.tensor([1.0, -2.0], requires_grad=True)
    Cube.apply(x).sum().backward()
    close(x.grad, [3.0, 12.0])


def test_clamp_with_tensor_bounds_at_ties_matches_torch():
    a = np.array([0.0, 1.0, 2.0, 3.0])
    lo = np.array([1.0, 1.0, 1.0, 1.0])
    hi = np.array([2.0, 2.0, 2.0, 2.0])
    torch_check(lambda x, l, h: x.clamp(l, h), [make(a, requires_grad=True), make(lo, requires_grad=True),
                                              make(hi, requires_grad=True)])


def test_mean_backward_over_dims():
    # regression: Mean.backward called the module's own max() instead of the builtin
    x = kn.ones(2, 3, requires_grad=True)
    x.mean().backward()
    close(x.grad, np.full((2, 3), 1 / 6))


def test_max_with_dim_grad_goes_to_returned_index():
    # PyTorch: max(dim)/min(dim) route the gradient to the index they return (first of ties);
    # full reductions max()/amax() split it evenly
    for k_fn, t_fn in [(lambda q: q.max(0)[0], lambda q: q.max(0)[0]),
                       (lambda q: q.min(1, keepdim=True).values, lambda q: q.min(1, keepdim=True).values),
                       (lambda q: q.amax(0), lambda q: q.amax(0))]:
        torch_check(k_fn, [make(np.array([[3.0, 1.0], [3.0, 1.0], [1.0, 0.5]]), requires_grad=True)], fn_torch=t_fn)


def test_std_and_norm_grad_at_zero_spread():
    torch_check(lambda q: q.std(), [make(np.ones(3), requires_grad=True)])
    torch_check(lambda q: q.std(0), [make(np.ones((3, 2)), requires_grad=True)])
    torch_check(lambda q: q.norm(), [make(np.zeros(3), requires_grad=True)])
    torch_check(lambda q: q.norm(dim=1), [make(np.array([[0.0, 0.0], [3.0, 4.0]]), requires_grad=True)])


def test_logsumexp_grad_with_inf():
    torch_check(lambda q: q.logsumexp(1), [make(np.array([[-np.inf, 0.0], [1.0, 2.0]]), requires_grad=True)])


def test_autograd_grad_leaves_other_leaves_grad_alone():
    x = kn.tensor([1.0, 2.0], requires_grad=True)
    w = kn.tensor([5.0, 6.0], requires_grad=True)
    (x * w).sum().backward()
    (x * w).sum().backward()
    held = w.grad
    (gx,) = kn.autograd.grad((x * w).sum(), x)
    assert gx.tolist() == [5.0, 6.0]
    assert w.grad is held and held.tolist() == [2.0, 4.0]
    (x * w).sum().backward(inputs=[x])  # backward(inputs=...) likewise
    assert held.tolist() == [2.0, 4.0] and x.grad.tolist() == [15.0, 18.0]


def test_first_grad_never_shares_a_tensor_the_user_holds():
    x = kn.tensor([1.0, 2.0], requires_grad=True)
    g = kn.tensor([1.0, 1.0])
    x.backward(g)
    x.grad.zero_()
    assert g.tolist() == [1.0, 1.0]
    x = kn.tensor([1.0, 2.0], requires_grad=True)
    y = x + 0.0
    y.retain_grad()
    y.sum().backward()
    x.grad.mul_(0.0)
    assert y.grad.tolist() == [1.0, 1.0]


def test_grads_are_dense_so_in_place_edits_touch_one_element():
    """sum's backward is an expand (every element one address): stored as .grad as it was,
    x.grad[0] = 5 or x.grad.add_(t) wrote every element. PyTorch's grads are dense; so are ours."""
    x = kn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x + 1).sum().backward()
    assert x.grad.stride() == (1,)
    x.grad.add_(kn.tensor([10.0, 20.0, 30.0]))
    assert x.grad.tolist() == [11.0, 21.0, 31.0]
    y = kn.ones(3, requires_grad=True)
    y.mean().backward()
    y.grad[0] = 5.0
    assert np.allclose(y.grad.numpy(), [5.0, 1 / 3, 1 / 3])
    (y * 3).sum().backward()  # accumulates onto the edited buffer, elementwise
    assert np.allclose(y.grad.numpy(), [8.0, 3 + 1 / 3, 3 + 1 / 3])
    z = kn.ones(2, 3, requires_grad=True)
    w = z * 1
    w.retain_grad()
    w.sum().backward()
    w.grad[0, 0] = 9.0
    assert w.grad.tolist() == [[9.0, 1.0, 1.0], [1.0, 1.0, 1.0]] and z.grad.tolist() == [[1.0] * 3] * 2


def test_backward_again_without_retain_graph_only_where_nothing_was_saved():
    # PyTorch frees saved tensors after backward; a graph whose nodes saved nothing runs again
    for L in ([kn, torch] if torch is not None else [kn]):
        x = L.ones(3, requires_grad=True)
        y = (x + 1).sum()
        y.backward()
        y.backward()
        assert x.grad.tolist() == [2.0, 2.0, 2.0]
        w = L.ones(3, requires_grad=True)
        z = (x * w).sum()  # Mul saved x and w
        z.backward()
        with pytest.raises(RuntimeError, match="second time"):
            z.backward()


def test_addcmul_addcdiv_and_their_inplace_forms_match_torch():
    a, b, c = (RNG.standard_normal(5) for _ in range(3))
    c = np.abs(c) + 0.5
    torch_check(lambda x, y, z: x.addcmul(y, z, value=-0.7), [make(a, requires_grad=True),
                make(b, requires_grad=True), make(c, requires_grad=True)])
    torch_check(lambda x, y, z: x.addcdiv(y, z, value=2.0), [make(a, requires_grad=True),
                make(b, requires_grad=True), make(c, requires_grad=True)])
    p = kn.tensor(a.astype(np.float32))
    p.addcmul_(kn.tensor(b.astype(np.float32)), kn.tensor(c.astype(np.float32)), value=0.5)
    close(p, a + 0.5 * b * c)


def test_div_with_a_rounding_mode_has_a_zero_gradient():
    # PyTorch: div(rounding_mode=...) differentiates to zero; floor_divide() itself raises
    for mode in ("floor", "trunc"):
        x = kn.tensor([3.0, -5.0], requires_grad=True)
        y = x * 1
        y.div_(2, rounding_mode=mode)
        y.sum().backward()
        assert x.grad.tolist() == [0.0, 0.0]
    x = kn.tensor([3.0, -5.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="floor_divide"):
        kn.floor_divide(x, 2).sum().backward()


def test_leaf_hook_sees_the_summed_gradient_once():
    # PyTorch runs a leaf's hooks once per backward, on the gradient summed over every path
    for L in ([kn, torch] if torch is not None else [kn]):
        seen = []
        x = L.ones(3, requires_grad=True)
        x.register_hook(lambda g: seen.append(g.tolist()))
        (x * 1 + x * 2).sum().backward()
        assert seen == [[3.0, 3.0, 3.0]] and x.grad.tolist() == [3.0, 3.0, 3.0]


def test_hooks_on_non_leaf_tensors_match_torch():
    def program(L):
        seen = []
        x = L.tensor([1.0, -2.0, 3.0], requires_grad=True)
        y = x * 2
        h = y.register_hook(lambda g: seen.append(g.tolist()) or g * 10)  # scales what flows back
        y.retain_grad()
        z = (y * y).sum()
        z.backward(retain_graph=True)
        h.remove()
        x.grad = None
        z.backward()
        return seen, x.grad.tolist(), y.grad.tolist()
    ours = program(kn)
    assert ours[0] == [[4.0, -8.0, 12.0]]  # once: removed before the second backward
    if torch is not None:
        assert ours == program(torch)
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        kn.ones(2).register_hook(lambda g: g)


def test_gradients_with_respect_to_intermediate_tensors():
    def program(L):
        x = L.tensor([1.0, 2.0], requires_grad=True)
        h = x * 3
        y = (h * h).sum()
        y.backward(inputs=[h], retain_graph=True)
        h_grad, x_grad = h.grad.tolist(), x.grad
        (gh,) = L.autograd.grad(y, h, retain_graph=True)
        gx, gh2 = L.autograd.grad(y, [x, h])
        return h_grad, x_grad, gh.tolist(), gx.tolist(), gh2.tolist()
    ours = program(kn)
    assert ours == ([6.0, 12.0], None, [6.0, 12.0], [18.0, 36.0], [6.0, 12.0])
    if torch is not None:
        assert ours == program(torch)


def test_leaf_that_stops_requiring_grad_after_the_forward_gets_no_gradient():
    for L in ([kn, torch] if torch is not None else [kn]):
        w = L.ones(3, requires_grad=True)
        y = (w * L.tensor([1.0, 2.0, 3.0])).sum()
        w.requires_grad_(False)
        y.backward()
        assert w.grad is None


def test_grad_kept_by_a_hook_is_not_the_grad_buffer():
    # a hook that keeps its gradient must not see later in-place updates of .grad (clipping)
    for L in ([kn, torch] if torch is not None else [kn]):
        x = L.ones(2, requires_grad=True)
        saved = []
        x.register_hook(lambda g: saved.append(g))
        (x * 3).sum().backward()
        x.grad.mul_(0.5)
        assert saved[0].tolist() == [3.0, 3.0] and x.grad.tolist() == [1.5, 1.5]


def test_later_gradients_are_added_into_the_first_grad_object():
    for L in ([kn, torch] if torch is not None else [kn]):
        a = L.tensor([1.0, 2.0], requires_grad=True)
        (a * 3).sum().backward()
        kept = a.grad
        (a * 3).sum().backward()
        assert kept is a.grad and kept.tolist() == [6.0, 6.0]


def test_gradient_kept_by_a_non_leaf_hook_is_not_a_grad_buffer():
    for L in ([kn, torch] if torch is not None else [kn]):
        x = L.ones(2, requires_grad=True)
        y = x.clone()
        saved = []
        y.register_hook(lambda g: saved.append(g))  # the same gradient flows on to x
        (y * 3).sum().backward()
        (y * 3).sum().backward()  # (nothing saved by clone: runs again) accumulates into x.grad
        assert saved[0].tolist() == [3.0, 3.0] and x.grad.tolist() == [6.0, 6.0]


def test_summed_gradient_kept_by_a_leaf_hook_is_not_the_grad_buffer():
    # a leaf reached by two paths: the hook sees the sum, and may keep it
    for L in ([kn, torch] if torch is not None else [kn]):
        x = L.ones(2, requires_grad=True)
        saved = []
        x.register_hook(lambda g: saved.append(g))
        (x * 1 + x * 2).sum().backward()
        (x * 3).sum().backward()
        assert saved[0].tolist() == [3.0, 3.0] and x.grad.tolist() == [6.0, 6.0]
