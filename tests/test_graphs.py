"""kernelnet.graphed: a replayed capture must equal the eager calls it stands for (losses, gradients,
parameters after optimizer steps, dropout masks, BatchNorm running statistics), and everything a
replay could not repeat must raise while capturing. On the CPU a replay re-runs the recorded native
kernels on the same memory, so the results are bit-identical to eager; on CUDA (device fixture)
the graph holds the same kernels (conv weight gradients add with atomics: a small tolerance)."""
import copy

import numpy as np
import pytest

import kernelnet as kn
import kernelnet.nn as nn
import kernelnet.nn.functional as F
import kernelnet.optim as optim
from kernelnet.graphs import GraphCaptureError, capturing


class SmallCNN(nn.Module):
    """The course CNN's layer kinds, small: conv, ReLU, max-pool, BatchNorm, dropout, linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, 1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.25)
        self.fc1 = nn.Linear(4 * 5 * 5, 16)
        self.drop2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        x = self.drop(x)
        x = self.drop2(F.relu(self.fc1(kn.flatten(x, 1))))
        return self.fc2(x)


class TinyLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(5, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def _batches(model_name, n, device, seed=0):
    rng = np.random.default_rng(seed)
    shape = (6, 1, 12, 12) if model_name == "cnn" else (6, 7, 5)
    return [(kn.tensor(rng.standard_normal(shape).astype(np.float32), device=device),
             kn.tensor(rng.integers(0, 3, 6), device=device)) for _ in range(n)]


def _setup(model_name, device):
    kn.manual_seed(3)
    model = (SmallCNN() if model_name == "cnn" else TinyLSTM()).to(device)
    return model, optim.Adam(model.parameters(), lr=1e-2)


def _close(a, b, device, what):
    a, b = a.detach().cpu().numpy(), b.detach().cpu().numpy()
    if device == "cpu":
        np.testing.assert_array_equal(a, b, err_msg=what)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=what)


@pytest.mark.parametrize("model_name", ["cnn", "lstm"])
def test_replay_equals_eager(device, model_name):
    """Eager: two calls without a step (the warm-up and the capture run of graphed), then
    forward/backward + Adam step per batch. Graphed: the same through replays."""
    batches = _batches(model_name, 6, device)
    crit = nn.CrossEntropyLoss()

    model, opt = _setup(model_name, device)
    model_g = copy.deepcopy(model)
    opt_g = optim.Adam(model_g.parameters(), lr=1e-2)

    def step(m, o):
        def f(x, y):
            o.zero_grad()
            loss = crit(m(x), y)
            loss.backward()
            return loss
        return f

    kn.manual_seed(11)
    f = step(model, opt)
    f(*batches[0])
    f(*batches[0])
    eager = []
    for x, y in batches[1:]:
        eager.append(f(x, y).item())
        opt.step()

    kn.manual_seed(11)
    g = kn.graphed(step(model_g, opt_g), *batches[0], warmup=1)
    assert not capturing()
    replayed = []
    for x, y in batches[1:]:
        loss = g(x, y)
        replayed.append(loss.item())
        opt_g.step()

    if device == "cpu":
        assert replayed == eager
    else:
        np.testing.assert_allclose(replayed, eager, rtol=1e-5)
    for (name, p), pg in zip(model.named_parameters(), model_g.parameters()):
        _close(p, pg, device, name)
        _close(p.grad, pg.grad, device, name + ".grad")
    for (name, b), bg in zip(model.named_buffers(), model_g.buffers()):
        _close(b, bg, device, name)  # BatchNorm running statistics, num_batches_tracked


def test_dropout_masks_change_between_replays_as_in_eager(device):
    x = kn.ones(64, device=device)

    def f(x):
        return F.dropout(x, 0.5) * 1.0

    kn.manual_seed(5)
    eager = [f(x).cpu().numpy().copy() for _ in range(5)]
    kn.manual_seed(5)
    g = kn.graphed(f, x, warmup=1)  # warm-up + capture: the first two draws
    replays = [g(x).cpu().numpy().copy() for _ in range(2)]
    np.testing.assert_array_equal(replays[0], eager[2])
    np.testing.assert_array_equal(replays[1], eager[3])
    assert not np.array_equal(replays[0], replays[1])
    # the generator moved on as in eager mode: the next eager draw is the fifth
    np.testing.assert_array_equal(f(x).cpu().numpy(), eager[4])


def test_gradients_come_back_after_zero_grad_and_outputs_are_reused(device):
    lin = nn.Linear(4, 2).to(device)

    def f(x):
        lin.zero_grad()
        out = (lin(x) ** 2).sum()
        out.backward()
        return out

    x0 = kn.randn(3, 4, device=device)
    g = kn.graphed(f, x0, warmup=0)
    x1 = kn.randn(3, 4, device=device)
    out1 = g(x1)
    w_grad = lin.weight.grad.cpu().numpy().copy()
    lin.zero_grad()  # sets .grad to None: the next replay puts the captured tensors back
    assert lin.weight.grad is None
    out2 = g(x1)
    assert out2 is out1
    np.testing.assert_array_equal(lin.weight.grad.cpu().numpy(), w_grad)
    # against an eager computation
    lin.zero_grad()
    ref = f(x1)
    np.testing.assert_allclose(out2.item(), ref.item(), rtol=1e-6)
    np.testing.assert_allclose(lin.weight.grad.cpu().numpy(), w_grad, rtol=1e-6)


def test_shared_weight_accumulates_within_one_capture(device):
    w = kn.randn(3, 3, device=device, requires_grad=True)

    def f(x):
        w.grad = None
        y = (x @ w @ w).sum()  # w used twice: two gradients added inside the capture
        y.backward()
        return y

    x = kn.randn(2, 3, device=device)
    g = kn.graphed(f, x)
    x2 = kn.randn(2, 3, device=device)
    g(x2)
    gw = w.grad.cpu().numpy().copy()
    f(x2)
    np.testing.assert_allclose(gw, w.grad.cpu().numpy(), rtol=1e-6)


def _raises_while_capturing(fn, *args, match):
    with pytest.raises(GraphCaptureError, match=match):
        kn.graphed(fn, *args, warmup=0)
    assert not capturing()
    # the library works normally afterwards
    assert float((kn.ones(2) + 1).sum().item()) == 4.0


def test_what_cannot_be_replayed_raises(device):
    x = kn.randn(3, 4, device=device)
    lin = nn.Linear(4, 2).to(device)
    opt = optim.SGD(lin.parameters(), lr=0.1)
    _raises_while_capturing(lambda x: x.sum().item(), x, match="reading a tensor's value")
    _raises_while_capturing(lambda x: bool((x > 0).any()), x, match="reading a tensor's value")

    _raises_while_capturing(lambda x: x + kn.randn(3, 4, device=device), x, match="random numbers")
    lin(x).sum().backward()  # .grad exists before the capture and the function does not clear it
    _raises_while_capturing(lambda x: lin(x).sum().backward(), x, match="existed before the capture")
    bn = nn.BatchNorm1d(4, momentum=None).to(device)  # cumulative average: reads a count on the host
    _raises_while_capturing(lambda x: bn(x), x, match="reading a tensor's value")


def test_replay_checks_its_arguments(device):
    g = kn.graphed(lambda x, k: x * k, kn.ones(2, 3, device=device), 2.0)
    out = g(kn.full((2, 3), 3.0, device=device), 2.0)
    np.testing.assert_array_equal(out.cpu().numpy(), np.full((2, 3), 6.0, np.float32))
    with pytest.raises(ValueError, match="shape"):
        g(kn.ones(3, 3, device=device), 2.0)
    with pytest.raises(ValueError, match="frozen"):
        g(kn.ones(2, 3, device=device), 5.0)
    with pytest.raises(TypeError, match="arguments"):
        g(kn.ones(2, 3, device=device))
    with pytest.raises(ValueError, match="sample tensors"):
        kn.graphed(lambda: None)


def test_cpu_replay_runs_only_the_kernels():
    """The recording holds native calls only: a replay of a 2-layer MLP step makes a fixed, small
    number of them (the point: no autograd or dispatch work in Python)."""
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

    def f(x, y):
        mlp.zero_grad()
        loss = F.mse_loss(mlp(x), y)
        loss.backward()
        return loss

    g = kn.graphed(f, kn.randn(4, 8), kn.randn(4, 2))
    assert 5 <= g.num_kernels <= 40


def test_other_threads_run_eagerly_while_one_captures():
    """A DataLoader's prefetching thread keeps working during a capture in the main thread: its ops
    run eagerly (not recorded), and reading values or drawing random numbers there is allowed."""
    import threading
    results = {}

    def worker():
        t = kn.arange(6).float()
        results["sum"] = float(t.sum().item())
        results["rand"] = kn.rand(3).shape

    def f(x):
        th = threading.Thread(target=worker)
        th.start()
        th.join()
        return x * 2.0

    g = kn.graphed(f, kn.ones(4), warmup=0)
    assert results == {"sum": 15.0, "rand": (3,)}
    results.clear()
    np.testing.assert_array_equal(g(kn.full((4,), 3.0)).numpy(), np.full(4, 6.0, np.float32))
    assert results == {}  # the replay runs only the captured kernels
    assert g.num_kernels == kn.graphed(lambda x: x * 2.0, kn.ones(4), warmup=0).num_kernels  # none of the thread's


# ---- regressions from the review of graphed (each reproduced a silent mismatch or a crash)
def test_rnn_lengths_survive_the_capture():
    import gc
    kn.manual_seed(0)
    rnn = nn.LSTM(3, 4)
    rnn2 = copy.deepcopy(rnn)
    L = [5, 3, 2, 4]

    def make(m):
        def f(x):
            m.zero_grad()
            out, _ = m(x, lengths=L)
            loss = (out * out).sum()
            loss.backward()
            return loss
        return f
    g = kn.graphed(make(rnn), kn.randn(5, 4, 3))
    gc.collect()
    junk = [np.full(4, 1, np.int64) for _ in range(50)]  # noqa: F841  (takes numpy's freed small blocks)
    x1 = kn.randn(5, 4, 3)
    assert g(x1).item() == make(rnn2)(x1).item()


def test_storage_dropped_during_capture_is_kept():
    state = {"h": kn.full((64, 1024), 1.0)}

    def f(x):
        y = x * state["h"]
        state["h"] = y.detach()
        return y.sum()
    g = kn.graphed(f, kn.full((64, 1024), 2.0), warmup=0)
    junk = [kn.full((64, 1024), 1e6) for _ in range(4)]  # noqa: F841
    assert g(kn.full((64, 1024), 2.0)).item() == 131072.0


def test_other_threads_are_not_captured():
    import threading
    buf = kn.zeros(4)
    started, done, errors = threading.Event(), threading.Event(), []

    def worker():
        started.wait()
        buf.add_(1.0)
        try:
            buf.numpy()
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        done.set()

    def f(x):
        started.set()
        done.wait()
        return x * 2
    t = threading.Thread(target=worker)
    t.start()
    g = kn.graphed(f, kn.ones(2), warmup=0)
    t.join()
    g(kn.ones(2))
    assert errors == [] and buf.numpy().tolist() == [1.0] * 4


def test_nested_graphed_call_refused():
    g1 = kn.graphed(lambda x: x * 2, kn.ones(3))
    with pytest.raises(GraphCaptureError):
        kn.graphed(lambda x: g1(x) + 1, kn.ones(3))


def test_grads_follow_the_end_of_the_capture():
    w = kn.randn(3, requires_grad=True)

    def f(x):
        (gw,) = kn.autograd.grad((w * x).sum(), w)
        return gw * 1.0
    g = kn.graphed(f, kn.ones(3))
    w.grad = kn.full((3,), 7.0)
    g(kn.ones(3))
    assert w.grad.numpy().tolist() == [7.0] * 3          # autograd.grad leaves .grad alone

    m = nn.Linear(3, 1)

    def f5(x):
        m.zero_grad()
        (m(x).sum() * 100).backward()
        for p in m.parameters():
            p.grad = p.grad.clamp(-1, 1)
        m.bias.grad = None
    g5 = kn.graphed(f5, kn.ones(1, 3))
    g5(kn.ones(1, 3))
    assert m.weight.grad.numpy().max() == 1.0 and m.bias.grad is None


def test_constant_updated_in_place_starts_fresh_each_replay():
    def f(x):
        acc = kn.tensor(0.0)
        acc += x.sum()
        return acc
    g = kn.graphed(f, kn.ones(3))
    assert [g(kn.ones(3)).item() for _ in range(3)] == [3.0] * 3


@pytest.mark.parametrize("zero_at_end", [False, True])
def test_whole_step_with_optimizer_and_scheduler_equals_eager(device, zero_at_end):
    """optimizer.step() and scheduler.step() inside the captured function run as islands: eagerly,
    between the captured stretches, at capture time and at every replay. Losses, weights, Adam's
    state and the scheduled learning rate follow the eager loop exactly (CPU: bit for bit)."""
    batches = _batches("cnn", 6, device)
    crit = nn.CrossEntropyLoss()
    model, opt = _setup("cnn", device)
    model_g = copy.deepcopy(model)
    opt_g = optim.Adam(model_g.parameters(), lr=1e-2)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    sched_g = optim.lr_scheduler.StepLR(opt_g, step_size=2, gamma=0.5)

    def make(m, o, s):
        def step(x, y):
            o.zero_grad()
            loss = crit(m(x), y)
            loss.backward()
            o.step()
            s.step()
            if zero_at_end:
                o.zero_grad()
            return loss
        return step

    kn.manual_seed(11)
    f = make(model, opt, sched)
    eager = [f(x, y).item() for x, y in batches]
    kn.manual_seed(11)
    g = kn.graphed(make(model_g, opt_g, sched_g), *batches[0], warmup=0)  # the capture is batch 0's step
    assert g.num_islands == 2
    replayed = [g._outputs.item()] + [g(x, y).item() for x, y in batches[1:]]  # the capture's own loss first
    if device == "cpu":
        assert replayed == eager
    else:
        np.testing.assert_allclose(replayed, eager, rtol=1e-5)
    assert opt_g.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for (name, p), pg in zip(model.named_parameters(), model_g.parameters()):
        _close(p, pg, device, name)
        assert (pg.grad is None) == zero_at_end == (p.grad is None)
    for st, st_g in zip(opt.state.values(), opt_g.state.values()):
        _close(st["exp_avg_sq"], st_g["exp_avg_sq"], device, "exp_avg_sq")


def test_zero_grad_set_to_none_false_inside_is_accepted():
    lin = nn.Linear(3, 1)
    opt = optim.SGD(lin.parameters(), lr=0.1)
    lin(kn.ones(2, 3)).sum().backward()

    def f(x):
        opt.zero_grad(set_to_none=False)
        lin(x).sum().backward()
    g = kn.graphed(f, kn.ones(2, 3))
    g(kn.full((2, 3), 2.0))
    np.testing.assert_array_equal(lin.weight.grad.numpy(), np.full((1, 3), 4.0, np.float32))


def test_input_gradients_reach_the_caller():
    lin = nn.Linear(3, 1)

    def f(x):
        lin.zero_grad()
        lin(x).sum().backward()
    g = kn.graphed(f, kn.ones(1, 3, requires_grad=True))
    x1 = kn.randn(1, 3, requires_grad=True)
    g(x1)
    np.testing.assert_array_equal(x1.grad.numpy(), lin.weight.detach().numpy())


def test_data_rebinding_refused():
    lin = nn.Linear(3, 1)

    def f(x):
        lin.zero_grad()
        lin(x).sum().backward()
        with kn.no_grad():
            lin.weight.data = lin.weight.data - 0.1 * lin.weight.grad
    with pytest.raises(GraphCaptureError):
        kn.graphed(f, kn.ones(2, 3))


def test_caught_refusal_still_fails_the_capture():
    def f(x):
        try:
            v = x.sum().item()
        except Exception:  # noqa: BLE001
            v = 0.0
        return x * 2 + v
    with pytest.raises(GraphCaptureError, match="caught"):
        kn.graphed(f, kn.ones(3))


def test_outputs_are_detached_and_numpy_args_compare():
    lin = nn.Linear(3, 1)
    g = kn.graphed(lambda x: (lin(x) ** 2).sum(), kn.ones(2, 3))
    out = g(kn.ones(2, 3))
    assert out.grad_fn is None and not out.requires_grad
    g2 = kn.graphed(lambda x, w: x * float(w[0]), kn.ones(2), np.array([2.0, 3.0]))
    g2(kn.ones(2), np.array([2.0, 3.0]))
    with pytest.raises(ValueError, match="frozen"):
        g2(kn.ones(2), np.array([5.0, 3.0]))
