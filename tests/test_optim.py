"""kernelnet.optim against torch.optim: 20-step trajectories of a small model (each framework
computes its own gradients), param groups, state_dict round trips, LR schedulers."""
import copy
import math

import numpy as np
import pytest
import torch

import kernelnet as kn
import kernelnet.nn as nn
import kernelnet.optim as optim
from _nn_util import assert_close, to_kn

rng = np.random.default_rng(5)
X = rng.standard_normal((16, 5)).astype(np.float32)
Y = rng.standard_normal((16, 3)).astype(np.float32)


def _models():
    # a fixed initialisation: unseeded, one run in a few dozen drew weights whose RMSprop
    # trajectory has near-zero gradients, where g / sqrt(v) turns last-bit differences into 1e-5
    # in the weights (a CI run failed so, passing in every rerun)
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    km = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    km.load_state_dict({k: to_kn(v) for k, v in tm.state_dict().items()})
    return tm, km


def _step(model, opt, lib):
    opt.zero_grad()
    x, y = (torch.tensor(X), torch.tensor(Y)) if lib is torch else (kn.tensor(X), kn.tensor(Y))
    d = model(x) - y
    loss = (d * d).sum() / d.numel()
    loss.backward()
    opt.step()
    return float(loss.item())


def _groups(model, lib_groups):
    ps = list(model.parameters())
    if not lib_groups:
        return ps
    return [{"params": ps[:2]}, {"params": ps[2:], "lr": lib_groups}]


CASES = [
    ("SGD", dict(lr=0.05)), ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.2, maximize=False)),
    ("Adam", dict(lr=0.01)), ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(lr=0.01)), ("AdamW", dict(lr=0.01, amsgrad=True, betas=(0.8, 0.9))),
    ("RMSprop", dict(lr=0.005)), ("RMSprop", dict(lr=0.005, momentum=0.9, centered=True)),
    ("Adagrad", dict(lr=0.05, lr_decay=0.01)), ("Adadelta", dict(lr=1.0)),
    ("Adadelta", dict(lr=0.5, weight_decay=0.01)),
]


# two param groups (second with its own lr) for a few optimizers; one group for the rest
CASES = [(n, kw, None) for n, kw in CASES] + [("SGD", dict(lr=0.05, momentum=0.9), 0.002),
                                             ("Adam", dict(lr=0.01), 0.002), ("RMSprop", dict(lr=0.005), 0.002)]


@pytest.fixture
def torch_one_thread():
    """The reference trajectory from one torch thread: with two, MKL may sum a product in a
    different order from run to run, and centred RMSprop with momentum amplifies such last-bit
    differences over 20 steps (this test failed ~1 run in 25 with no change on either side)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("name,kw,group_lr", CASES)
def test_trajectory_matches_torch(name, kw, group_lr, torch_one_thread):
    tm, km = _models()
    topt = getattr(torch.optim, name)(_groups(tm, group_lr), **kw)
    kopt = getattr(optim, name)(_groups(km, group_lr), **kw)
    for _ in range(20):
        lt = _step(tm, topt, torch)
        lk = _step(km, kopt, kn)
        assert math.isclose(lt, lk, rel_tol=1e-4, abs_tol=1e-6)
    for (n, pk), pt in zip(km.named_parameters(), tm.parameters()):
        assert_close(pk, pt, rtol=1e-4, atol=1e-5, what=f"{name} {n}")


def test_state_dict_round_trip_continues_identically(tmp_path):
    _, km = _models()
    opt = optim.Adam(km.parameters(), lr=0.01, amsgrad=True)
    for _ in range(3):
        _step(km, opt, kn)
    sd_model = copy.deepcopy(km.state_dict())
    sd_opt = opt.state_dict()
    assert set(sd_opt) == {"state", "param_groups"}
    assert sd_opt["param_groups"][0]["params"] == [0, 1, 2, 3]
    assert set(sd_opt["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    kn.save({"model": km.state_dict(), "opt": sd_opt}, tmp_path / "ck.kn")
    ref = [_step(km, opt, kn) for _ in range(3)]
    _, km2 = _models()
    ck = kn.load(tmp_path / "ck.kn")
    km2.load_state_dict(ck["model"])
    opt2 = optim.Adam(km2.parameters(), lr=0.5)
    opt2.load_state_dict(ck["opt"])
    assert opt2.param_groups[0]["lr"] == 0.01
    got = [_step(km2, opt2, kn) for _ in range(3)]
    assert got == ref
    del sd_model


def test_load_state_dict_mismatch_errors():
    _, km = _models()
    opt = optim.SGD(km.parameters(), lr=0.1, momentum=0.9)
    other = optim.SGD(list(km.parameters())[:2], lr=0.1)
    with pytest.raises(ValueError, match="doesn't match the size"):
        opt.load_state_dict(other.state_dict())


def test_param_groups_add_and_zero_grad():
    _, km = _models()
    ps = list(km.parameters())
    opt = optim.SGD(ps[:2], lr=0.1)
    opt.add_param_group({"params": ps[2:], "lr": 0.01, "momentum": 0.9})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert opt.param_groups[1]["dampening"] == 0
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": ps[:1]})
    _step(km, opt, kn)
    opt.zero_grad()
    assert all(p.grad is None for p in ps)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.Adam(ps, lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(ps, lr=0.1, nesterov=True)


@pytest.mark.parametrize("name,kw", [("SGD", dict(momentum=0.9)), ("RMSprop", dict(momentum=0.9)), ("Adam", {}),
                                     ("AdamW", {}), ("Adagrad", {}), ("Adadelta", {})])
def test_non_contiguous_parameters_step_like_torch(name, kw):
    """nn.Parameter(w.T) is a strided view: the fused kernels update a contiguous copy that is
    written back (they refused it before), and the parameter keeps its strides."""
    base = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    coef = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    pk, pt = nn.Parameter(kn.tensor(base).T), torch.nn.Parameter(torch.tensor(base).T)
    ok, ot = getattr(optim, name)([pk], lr=0.1, **kw), getattr(torch.optim, name)([pt], lr=0.1, **kw)
    for _ in range(3):
        for p, o, L in ((pk, ok, kn), (pt, ot, torch)):
            o.zero_grad()
            (p * L.tensor(coef) * p).sum().backward()
            o.step()
    assert pk.stride() == (1, 4)
    assert_close(pk, pt.detach())


def test_params_without_grad_are_skipped():
    a = nn.Parameter(kn.ones(3))
    b = nn.Parameter(kn.ones(3))
    opt = optim.Adam([a, b], lr=0.1)
    (a * 2).sum().backward()
    opt.step()
    assert np.all(b.detach().numpy() == 1) and np.all(a.detach().numpy() < 1)
    assert b not in opt.state and a in opt.state


def _sched_pair(name, kw, opt_name="SGD", opt_kw=None, steps=25, metrics=None):
    opt_kw = opt_kw or dict(lr=0.1, momentum=0.9)
    tp = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    kp = [nn.Parameter(kn.zeros(2)), nn.Parameter(kn.zeros(2))]
    topt = getattr(torch.optim, opt_name)([{"params": tp[:1]}, {"params": tp[1:], "lr": 0.05}], **opt_kw)
    kopt = getattr(optim, opt_name)([{"params": kp[:1]}, {"params": kp[1:], "lr": 0.05}], **opt_kw)
    ts = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    ks = getattr(optim.lr_scheduler, name)(kopt, **kw)
    for i in range(steps):
        topt.step()
        kopt.step()
        if metrics is not None:
            ts.step(metrics[i])
            ks.step(metrics[i])
        else:
            ts.step()
            ks.step()
        for gt, gk in zip(topt.param_groups, kopt.param_groups):
            assert math.isclose(gt["lr"], gk["lr"], rel_tol=1e-12, abs_tol=1e-15), (i, gt["lr"], gk["lr"])
            for key in ("momentum", "betas"):
                if key in gt:
                    assert gt[key] == pytest.approx(gk[key], rel=1e-12)
        assert ks.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
    return ts, ks


@pytest.mark.parametrize("name,kw", [
    ("StepLR", dict(step_size=4, gamma=0.5)), ("MultiStepLR", dict(milestones=[3, 7, 7, 12], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)), ("CosineAnnealingLR", dict(T_max=10, eta_min=0.001)),
    ("LambdaLR", dict(lr_lambda=lambda e: 1.0 / (1 + e))),
    ("OneCycleLR", dict(max_lr=[0.5, 0.2], total_steps=30)),
    ("OneCycleLR", dict(max_lr=0.3, epochs=3, steps_per_epoch=10, anneal_strategy="linear", three_phase=True)),
])
def test_schedulers_match_torch(name, kw):
    _sched_pair(name, kw)


def test_onecycle_with_adam_cycles_beta1():
    _sched_pair("OneCycleLR", dict(max_lr=0.01, total_steps=20), opt_name="Adam", opt_kw=dict(lr=0.001), steps=20)


def test_reduce_lr_on_plateau_matches_torch():
    metrics = [1.0, 0.9, 0.95, 0.95, 0.96, 0.97, 0.8, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.5, 0.6, 0.7, 0.8, 0.9,
               0.95, 0.99]
    _sched_pair("ReduceLROnPlateau", dict(patience=2, factor=0.5, cooldown=1, min_lr=[0.0, 0.01]), steps=20,
                metrics=metrics)
    _sched_pair("ReduceLROnPlateau", dict(mode="max", threshold_mode="abs", patience=1), steps=20,
                metrics=[-m for m in metrics])


def test_scheduler_state_dict_round_trip():
    ts, ks = _sched_pair("StepLR", dict(step_size=3, gamma=0.5), steps=5)
    sd = ks.state_dict()
    assert sd["last_epoch"] == 5 and "optimizer" not in sd
    p = nn.Parameter(kn.zeros(1))
    opt = optim.SGD([p, nn.Parameter(kn.zeros(1))], lr=0.1)
    s2 = optim.lr_scheduler.StepLR(opt, step_size=100)
    s2.load_state_dict(sd)
    assert s2.step_size == 3 and s2.last_epoch == 5


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
                                     ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
                                     ("AdamW", dict(lr=0.01)), ("RMSprop", dict(lr=0.005, momentum=0.9, centered=True)),
                                     ("Adagrad", dict(lr=0.05, lr_decay=0.01)), ("Adadelta", dict(lr=1.0))])
def test_reference_path_matches_torch(name, kw, monkeypatch):
    """The tensor-op fallback (used where a backend has no fused kernel) follows torch too."""
    monkeypatch.setenv("KERNELNET_OPTIM", "reference")
    tm, km = _models()
    topt = getattr(torch.optim, name)(tm.parameters(), **kw)
    kopt = getattr(optim, name)(km.parameters(), **kw)
    for _ in range(20):
        _step(tm, topt, torch)
        _step(km, kopt, kn)
    for pk, pt in zip(km.parameters(), tm.parameters()):
        assert_close(pk, pt, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_state_on_another_device_raises_not_crashes():
    """Adam stepped on the CPU, then the model moved to the GPU: its moments stay on the CPU (as in
    PyTorch). The next step must raise, naming the devices, instead of handing host pointers to a
    CUDA kernel; moving the state with load_state_dict makes it work again."""
    if not kn.cuda.is_available():
        pytest.skip("no CUDA GPU visible")
    m = nn.Linear(4, 3)
    opt = optim.Adam(m.parameters(), lr=1e-2)
    m(kn.randn(2, 4)).sum().backward()
    opt.step()
    m.to("cuda")
    m(kn.randn(2, 4, device="cuda")).sum().backward()
    with pytest.raises(RuntimeError, match="expected all tensors on cuda"):
        opt.step()
    opt.load_state_dict(opt.state_dict())
    opt.step()
    assert m.weight.device.type == "cuda"
