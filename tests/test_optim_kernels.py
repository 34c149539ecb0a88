"""Fused optimizer kernels (csrc/cpu/optim.cpp) driven directly with numpy buffers, against
torch.optim's single-tensor updates over 20 steps. Odd sizes (1, 7, 1000+3) and several tensors
per call exercise the flat, threaded split across tensors."""
import numpy as np
import pytest
import torch

from kernelnet import _cpu

SHAPES = [(1,), (7,), (3, 5), (1003,), (40, 33)]
STEPS = 20


def _setup(seed):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(STEPS)]
    return params, grads


def _torch_run(opt_cls, kw, params, grads):
    tp = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = opt_cls(tp, **kw)
    for g in grads:
        for p, gi in zip(tp, g):
            p.grad = torch.tensor(gi)
        opt.step()
    return [p.detach().numpy() for p in tp]


def _ptr(a):
    assert a.flags.c_contiguous and a.dtype == np.float32
    return a.ctypes.data


def _zeros(params):
    return [np.zeros_like(p) for p in params]


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True),
                                dict(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.01),
                                dict(lr=0.1, momentum=0.9, maximize=True, weight_decay=0.1)])
def test_sgd_kernel(kw):
    params, grads = _setup(1)
    ref = _torch_run(torch.optim.SGD, kw, params, grads)
    ps = [p.copy() for p in params]
    bufs = _zeros(ps)
    mom = kw.get("momentum", 0.0)
    for step, g in enumerate(grads):
        _cpu.sgd_step([_ptr(p) for p in ps], [_ptr(x) for x in g], [_ptr(b) for b in bufs] if mom else [],
                      [step == 0] * len(ps) if mom else [], [p.size for p in ps], kw["lr"], mom,
                      kw.get("dampening", 0.0), kw.get("weight_decay", 0.0), kw.get("nesterov", False),
                      kw.get("maximize", False))
    for a, b in zip(ps, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("wd,maximize", [(0.0, False), (0.05, False), (0.05, True)])
def test_adam_kernel(decoupled, amsgrad, wd, maximize):
    params, grads = _setup(2)
    kw = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd, amsgrad=amsgrad, maximize=maximize)
    ref = _torch_run(torch.optim.AdamW if decoupled else torch.optim.Adam, kw, params, grads)
    ps = [p.copy() for p in params]
    m, v, vm = _zeros(ps), _zeros(ps), _zeros(ps)
    for step, g in enumerate(grads, 1):
        _cpu.adam_step([_ptr(p) for p in ps], [_ptr(x) for x in g], [_ptr(x) for x in m], [_ptr(x) for x in v],
                       [_ptr(x) for x in vm] if amsgrad else [], [p.size for p in ps], [float(step)] * len(ps),
                       0.01, 0.9, 0.99, 1e-8, wd, decoupled, amsgrad, maximize)
    for a, b in zip(ps, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(lr=0.01), dict(lr=0.01, centered=True), dict(lr=0.01, momentum=0.9),
                                dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1, maximize=True)])
def test_rmsprop_kernel(kw):
    params, grads = _setup(3)
    ref = _torch_run(torch.optim.RMSprop, kw, params, grads)
    ps = [p.copy() for p in params]
    sq, ga, mb = _zeros(ps), _zeros(ps), _zeros(ps)
    centered, mom = kw.get("centered", False), kw.get("momentum", 0.0)
    for g in grads:
        _cpu.rmsprop_step([_ptr(p) for p in ps], [_ptr(x) for x in g], [_ptr(x) for x in sq],
                          [_ptr(x) for x in ga] if centered else [], [_ptr(x) for x in mb] if mom else [],
                          [p.size for p in ps], kw["lr"], 0.99, 1e-8, kw.get("weight_decay", 0.0), mom, centered,
                          kw.get("maximize", False))
    for a, b in zip(ps, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.1, lr_decay=0.01, weight_decay=0.1),
                                dict(lr=0.1, initial_accumulator_value=0.5, maximize=True)])
def test_adagrad_kernel(kw):
    params, grads = _setup(4)
    ref = _torch_run(torch.optim.Adagrad, kw, params, grads)
    ps = [p.copy() for p in params]
    sums = [np.full_like(p, kw.get("initial_accumulator_value", 0.0)) for p in ps]
    for step, g in enumerate(grads, 1):
        _cpu.adagrad_step([_ptr(p) for p in ps], [_ptr(x) for x in g], [_ptr(x) for x in sums], [p.size for p in ps],
                          [float(step)] * len(ps), kw["lr"], kw.get("lr_decay", 0.0), kw.get("weight_decay", 0.0),
                          1e-10, kw.get("maximize", False))
    for a, b in zip(ps, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(lr=1.0), dict(lr=0.5, rho=0.8, weight_decay=0.1, maximize=True)])
def test_adadelta_kernel(kw):
    params, grads = _setup(5)
    ref = _torch_run(torch.optim.Adadelta, kw, params, grads)
    ps = [p.copy() for p in params]
    sq, acc = _zeros(ps), _zeros(ps)
    for g in grads:
        _cpu.adadelta_step([_ptr(p) for p in ps], [_ptr(x) for x in g], [_ptr(x) for x in sq], [_ptr(x) for x in acc],
                           [p.size for p in ps], kw["lr"], kw.get("rho", 0.9), 1e-6, kw.get("weight_decay", 0.0),
                           kw.get("maximize", False))
    for a, b in zip(ps, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_kernel_argument_errors():
    a = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="adam_step: grads has 0 pointers"):
        _cpu.adam_step([_ptr(a)], [], [_ptr(a)], [_ptr(a)], [], [3], [1.0], 0.1, 0.9, 0.99, 1e-8, 0.0, False, False,
                       False)
    with pytest.raises(ValueError, match="amsgrad needs"):
        _cpu.adam_step([_ptr(a)], [_ptr(a)], [_ptr(a)], [_ptr(a)], [], [3], [1.0], 0.1, 0.9, 0.99, 1e-8, 0.0, False,
                       True, False)
    with pytest.raises(ValueError, match="momentum != 0 needs"):
        _cpu.sgd_step([_ptr(a)], [_ptr(a)], [], [], [3], 0.1, 0.9, 0.0, 0.0, False, False)


def test_large_group_threaded_split():
    """Many tensors whose boundaries fall inside thread chunks: every element updated exactly once."""
    rng = np.random.default_rng(0)
    sizes = [int(s) for s in rng.integers(1, 5000, size=60)] + [0, 40000]
    ps = [np.zeros(s, np.float32) for s in sizes]
    gs = [np.ones(s, np.float32) for s in sizes]
    _cpu.sgd_step([_ptr(p) for p in ps], [_ptr(g) for g in gs], [], [], sizes, 0.5, 0.0, 0.0, 0.0, False, False)
    for p in ps:
        assert np.all(p == -0.5)
