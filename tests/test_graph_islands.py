"""kernelnet.graphed islands (optimizer/scheduler steps, gradient clipping, island()): what an island
sees and returns at a replay must be what the eager call would see and return. Each test pins a
mismatch a review reproduced (stale gradients after zero_grad, a closure's frozen loss, the RNG
priming refused as a captured copy on CUDA, BatchNorm updated twice by a failed Trainer capture)."""
import copy
import io

import numpy as np
import pytest

import kernelnet as kn
import kernelnet.nn as nn
import kernelnet.nn.functional as F
import kernelnet.optim as optim
from kernelnet import graphs


class _MLP(nn.Module):
    def __init__(self, drop=0.0):
        super().__init__()
        self.fc1, self.fc2, self.p = nn.Linear(5, 8), nn.Linear(8, 3), drop

    def forward(self, x):
        h = F.relu(self.fc1(x))
        return self.fc2(F.dropout(h, self.p, training=self.training) if self.p else h)


def _batches(n, device, seed=0):
    rng = np.random.default_rng(seed)
    return [(kn.tensor(rng.standard_normal((4, 5)).astype(np.float32), device=device),
             kn.tensor(rng.integers(0, 3, 4), device=device)) for _ in range(n)]


def _close(a, b, device, what=""):
    a, b = np.asarray(a), np.asarray(b)
    if device == "cpu":
        np.testing.assert_array_equal(a, b, err_msg=what)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=what)


def _eager_vs_graphed(device, body, make_opt, n=4, drop=0.0):
    """body(model, opt, x, y) -> tensor. Returns (eager outputs, graphed outputs, models, opts)."""
    kn.manual_seed(3)
    m = _MLP(drop).to(device)
    mg = copy.deepcopy(m)
    o, og = make_opt(m), make_opt(mg)
    bs = _batches(n, device)
    kn.manual_seed(11)
    eager = [body(m, o, x, y).detach().cpu().numpy().copy() for x, y in bs]
    kn.manual_seed(11)
    g = kn.graphed(lambda x, y: body(mg, og, x, y), *bs[0], warmup=0)
    replayed = [g._outputs.cpu().numpy().copy()] + [g(x, y).cpu().numpy().copy() for x, y in bs[1:]]
    return eager, replayed, (m, mg), (o, og)


def _check_models(models, device):
    m, mg = models
    for (name, p), pg in zip(m.named_parameters(), mg.parameters()):
        _close(p.detach().cpu().numpy(), pg.detach().cpu().numpy(), device, name)


def test_island_after_zero_grad_sees_no_gradients(device):
    """zero_grad() between two islands: the second one sees .grad None at every replay, as eagerly
    (it saw the gradients re-attached by the first island, and stepped them again)."""
    def body(m, o, x, y):
        o.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        o.step()
        o.zero_grad()
        o.step()  # no gradients: no update
        return loss
    eager, replayed, models, _ = _eager_vs_graphed(device, body, lambda m: optim.Adam(m.parameters(), lr=1e-2))
    for a, b in zip(eager, replayed):
        _close(a, b, device)
    _check_models(models, device)

    seen = []
    lin = nn.Linear(3, 2).to(device)
    opt = optim.SGD(lin.parameters(), lr=0.1)

    def f(x):
        opt.zero_grad()
        lin(x).sum().backward()
        opt.step()
        opt.zero_grad()
        graphs.island(lambda: seen.append(lin.weight.grad is None))
        return x
    g = kn.graphed(f, kn.ones(4, 3, device=device), warmup=0)
    g(kn.ones(4, 3, device=device))
    g(kn.ones(4, 3, device=device))
    assert seen == [True, True, True]


@pytest.mark.parametrize("drop", [0.0, 0.5])
def test_step_with_closure_returns_this_replays_loss(device, drop):
    def body(m, o, x, y):
        def closure():
            o.zero_grad()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            return loss
        return o.step(closure)
    eager, replayed, models, _ = _eager_vs_graphed(device, body, lambda m: optim.Adam(m.parameters(), lr=1e-2),
                                                    drop=drop)
    assert len({float(v) for v in eager}) > 1
    for a, b in zip(eager, replayed):
        _close(a, b, device)
    _check_models(models, device)


def test_island_result_read_by_later_captured_kernels(device):
    def f(x):
        y = x * 2
        r = graphs.island(lambda: y.sum() + 0)  # a new tensor at each run
        return r * 1
    g = kn.graphed(f, kn.ones(3, device=device), warmup=0)
    assert g._outputs.item() == 6.0
    assert g(kn.ones(3, device=device) * 5).item() == 30.0


def test_clip_grad_norm_inside_capture_equals_eager(device):
    """clip_grad_norm_ reads the norm on the host: inside a capture it runs as an island (it raised)."""
    norms = []

    def body(m, o, x, y):
        o.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        norms.append(nn.utils.clip_grad_norm_(m.parameters(), 0.1))  # a generator: re-read each replay
        o.step()
        return loss
    eager, replayed, models, _ = _eager_vs_graphed(device, body, lambda m: optim.Adam(m.parameters(), lr=1e-2))
    for a, b in zip(eager, replayed):
        _close(a, b, device)
    _check_models(models, device)


def test_rng_priming_between_stretches_is_not_captured(monkeypatch):
    """CUDA: island() writes the generator's position (a host-to-device copy) between two stretches
    while the capture is installed; the copy must run paused, or _to_device refuses it as captured.
    Simulated on the CPU: the capture's CUDA flag (recorder None) and a spy on the staging tensor."""
    from kernelnet.ops import creation
    cap = graphs._Capture(kn.device("cpu"))
    cap.recorder = None
    cap.rng_gen = creation._gen(None)
    active_during_staging = []
    real = creation.tensor

    def spy(*a, **k):
        active_during_staging.append(graphs.active())
        return real(*a, **k)
    monkeypatch.setattr(creation, "tensor", spy)
    monkeypatch.setattr(graphs, "_capture", cap)
    cap.prime_rng()
    assert active_during_staging == [None]
    assert cap.refused is None and not cap.paused


def test_trainer_failed_capture_does_not_update_batchnorm_twice():
    from kernelnet.train import Trainer

    class HostReadBN(nn.Module):
        def __init__(self):
            super().__init__()
            kn.manual_seed(1)
            self.bn, self.lin = nn.BatchNorm1d(4), nn.Linear(4, 3)

        def forward(self, x):
            h = self.bn(x)
            return self.lin(h) * (1.0 if float(h.sum()) > -1e9 else 0.0)  # not capturable, after BN

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    stats = []
    for graphed in (False, True):
        kn.manual_seed(7)
        tr = Trainer(HostReadBN(), graphed=graphed, seed=5, verbose=False, stream=io.StringIO())
        tr.fit((X, y), epochs=1, batch_size=16, valid_fraction=0.25)
        stats.append((tr.model.bn.running_mean.numpy().copy(), int(tr.model.bn.num_batches_tracked.item())))
    assert tr._step_graph is False
    assert stats[0][1] == stats[1][1]
    np.testing.assert_array_equal(stats[0][0], stats[1][0])
