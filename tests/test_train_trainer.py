"""Trainer: learning, splits, best-model restore, early stopping, callbacks, clipping, and a
resumed run identical to an uninterrupted one."""
import io
import math
import os

import numpy as np
import pytest

import kernelnet as kn

nn = pytest.importorskip("kernelnet.nn")
pytest.importorskip("kernelnet.optim")
from kernelnet.train import (Callback, CheckpointError, EarlyStopping, LambdaCallback, Trainer,  # noqa: E402
                             build_model, clip_grad_norm_, fit, load_checkpoint)


def blobs(n=240, d=4, c=3, seed=0, spread=0.6):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, d)) * 2.5
    y = rng.integers(0, c, n)
    X = centers[y] + spread * rng.standard_normal((n, d))
    return X.astype(np.float32), y.astype(np.int64)


def make_model(d=4, c=3, seed=123):
    kn.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, c))


def quiet(**kw):
    kw.setdefault("verbose", False)
    kw.setdefault("stream", io.StringIO())
    return kw


def test_fit_learns_and_reports(tmp_path):
    X, y = blobs()
    tr = Trainer(make_model(), lr=1e-2, topk=(2,), **quiet(verbose=True))
    hist = tr.fit((X, y), epochs=8, batch_size=16, valid_fraction=0.2, test_fraction=0.2)
    assert [h["epoch"] for h in hist] == list(range(1, 9))
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_top2", "lr", "seconds"):
        assert key in hist[0]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert len(tr.train_set) + len(tr.valid_set) + len(tr.test_set) == len(X)
    assert len(tr.valid_set) == 48 and len(tr.test_set) == 48
    t = tr.results["test"]
    assert t["accuracy"] > 0.9, t
    assert t["top2"] >= t["accuracy"]
    cm = np.array(t["confusion_matrix"])
    assert cm.sum() == 48 and np.trace(cm) / 48 == pytest.approx(t["accuracy"])
    # the baselines are printed beside the model's score
    out = tr.stream.getvalue()
    assert "random guess" in out and "majority class" in out and "model (best epoch" in out
    assert "per-class accuracy: 0: " in out and len(t["per_class_accuracy"]) == 3
    assert t["baselines"]["random guess"]["accuracy"] == pytest.approx(1 / 3)


def test_evaluate_matches_manual_computation():
    X, y = blobs(n=50)
    tr = Trainer(make_model(), topk=(2,), **quiet())
    r = tr.evaluate((X, y), batch_size=7)
    m = tr.model
    m.eval()
    with kn.no_grad():
        out = m(kn.from_numpy(X))
        loss = float(nn.CrossEntropyLoss()(out, kn.from_numpy(y)).item())
    s = out.numpy()
    assert r["loss"] == pytest.approx(loss, rel=1e-5)
    assert r["accuracy"] == pytest.approx(float((s.argmax(1) == y).mean()))
    top2 = np.argsort(-s, 1)[:, :2]
    assert r["top2"] == pytest.approx(float((top2 == y[:, None]).any(1).mean()))


def test_given_sets_are_used_as_is():
    X, y = blobs(n=120)
    tr = Trainer(make_model(), **quiet())
    tr.fit((X[:60], y[:60]), valid=(X[60:90], y[60:90]), test=(X[90:], y[90:]), epochs=1)
    assert len(tr.train_set) == 60 and len(tr.valid_set) == 30 and len(tr.test_set) == 30


def test_best_model_is_restored(tmp_path):
    X, y = blobs(n=160, spread=2.5, seed=4)  # overlapping classes: the validation loss turns up
    seen = {}

    class Snap(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen[epoch] = {k: v.detach().clone().numpy() for k, v in trainer.model.state_dict().items()}

    tr = Trainer(make_model(), lr=5e-2, callbacks=[Snap()], checkpoint_dir=tmp_path, **quiet())
    hist = tr.fit((X, y), epochs=12, batch_size=8, valid_fraction=0.3)
    losses = [h["val_loss"] for h in hist]
    best = int(np.argmin(losses)) + 1
    assert tr.best_epoch == best
    assert [h["best"] for h in hist].count(True) >= 1
    final = {k: v.numpy() for k, v in tr.model.state_dict().items()}
    for k in final:
        np.testing.assert_array_equal(final[k], seen[best][k])
    # best.kn holds the same weights, loadable into a fresh model
    m2 = make_model(seed=9)
    m2.load_state_dict(kn.load(os.path.join(tmp_path, "best.kn")))
    for k, v in m2.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), seen[best][k])


def test_early_stopping_stops_after_patience():
    X, y = blobs(n=120, spread=3.0, seed=5)
    tr = Trainer(make_model(), lr=0.1, patience=2, **quiet())
    hist = tr.fit((X, y), epochs=40, batch_size=8, valid_fraction=0.3)
    losses = [h["val_loss"] for h in hist]
    best = int(np.argmin(losses))
    assert len(hist) < 40
    assert len(hist) == best + 1 + 2  # stopped exactly `patience` epochs after the best one
    es = [cb for cb in tr.callbacks if isinstance(cb, EarlyStopping)][0]
    assert es.stopped_epoch == len(hist)


def test_callbacks_are_called_in_order():
    X, y = blobs(n=40)
    events = []
    cb = LambdaCallback(on_fit_start=lambda t: events.append("fit"),
                        on_epoch_start=lambda t, e: events.append(f"start{e}"),
                        on_batch_end=lambda t, b, logs: events.append("b"),
                        on_epoch_end=lambda t, e, logs: events.append(f"end{e}"),
                        on_fit_end=lambda t: events.append("done"))
    Trainer(make_model(), callbacks=[cb], **quiet()).fit((X, y), epochs=2, batch_size=16, valid_fraction=0.2)
    assert events == ["fit", "start0", "b", "b", "end1", "start1", "b", "b", "end2", "done"]
    with pytest.raises(TypeError):
        Trainer(make_model(), callbacks=[object()], **quiet())


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,), (1,)]]
    for max_norm, norm_type in [(0.5, 2.0), (100.0, 2.0), (0.3, 1.0), (0.2, math.inf)]:
        kp, tp = [], []
        for a in arrays:
            p = kn.zeros(*a.shape, requires_grad=True)
            p.grad = kn.from_numpy(a.copy())
            kp.append(p)
            q = torch.zeros(a.shape, requires_grad=True)
            q.grad = torch.from_numpy(a.copy())
            tp.append(q)
        total = clip_grad_norm_(kp, max_norm, norm_type)
        ref = torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type)
        assert total == pytest.approx(float(ref), rel=1e-5)
        for p, q in zip(kp, tp):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_grad_clip_limits_the_update():
    X, y = blobs(n=32)
    norms = []

    class Norm(Callback):
        def on_batch_end(self, trainer, batch, logs):
            g = [p.grad.numpy() for p in trainer.model.parameters() if p.grad is not None]
            norms.append(math.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for a in g)))

    Trainer(make_model(), optimizer="sgd", lr=0.1, grad_clip=0.01, callbacks=[Norm()], **quiet()).fit(
        (X * 100, y), epochs=1, batch_size=8, valid_fraction=0)
    assert norms and max(norms) <= 0.01 * (1 + 1e-4)


@pytest.mark.parametrize("opt,sched", [("adam", None), ("sgd", "step"), ("adamw", "plateau")])
def test_resume_gives_identical_results(tmp_path, opt, sched):
    """4 epochs straight == 2 epochs, a fresh process-like restart, then 2 more from the checkpoint."""
    from kernelnet.train import make_scheduler
    X, y = blobs(n=200, seed=7)
    data = (X, y)

    def trainer(ckdir, model_seed):
        t = Trainer(make_model(seed=model_seed), optimizer=opt, lr=0.05 if opt == "sgd" else 1e-2, patience=3,
                    checkpoint_dir=ckdir, seed=11, **quiet())
        if sched:
            t.scheduler = make_scheduler(sched, t.optimizer, 4)
        return t

    straight = trainer(tmp_path / "a", 123)
    h_straight = straight.fit(data, epochs=4, batch_size=16, valid_fraction=0.2, test_fraction=0.1)

    first = trainer(tmp_path / "b", 123)
    first.fit(data, epochs=2, batch_size=16, valid_fraction=0.2, test_fraction=0.1)
    kn.manual_seed(999)  # the global generator moves on (as in a new process): the checkpoint must restore it
    second = trainer(tmp_path / "b", 555)  # different initial weights: all must come from the checkpoint
    h_resumed = second.fit(data, epochs=4, batch_size=16, valid_fraction=0.2, test_fraction=0.1, resume=True)

    keys = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "best"]
    assert len(h_resumed) == 4
    for a, b in zip(h_straight, h_resumed):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}  # exactly equal, not approximately
    for (k, v), (k2, v2) in zip(straight.model.state_dict().items(), second.model.state_dict().items()):
        np.testing.assert_array_equal(v.numpy(), v2.numpy())
    assert straight.results["test"]["loss"] == second.results["test"]["loss"]
    state = load_checkpoint(tmp_path / "b" / "checkpoint.ckpt")
    assert state["epoch"] == 4 and len(state["history"]) == 4


def test_checkpoint_errors(tmp_path):
    X, y = blobs(n=40)
    tr = Trainer(make_model(), checkpoint_dir=tmp_path, **quiet())
    tr.fit((X, y), epochs=1, batch_size=16, valid_fraction=0.2)
    path = tmp_path / "checkpoint.ckpt"
    assert path.exists() and not list(tmp_path.glob(".*.tmp"))
    # a checkpoint of another architecture does not load silently
    other = Trainer(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)), **quiet())
    with pytest.raises(CheckpointError):
        other.resume(str(path))
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.ckpt")
    kn.save({"a": kn.zeros(2)}, str(tmp_path / "plain.kn"))
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_checkpoint(tmp_path / "plain.kn")


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from kernelnet.train import checkpoint as C
    X, y = blobs(n=40)
    tr = Trainer(make_model(), checkpoint_dir=tmp_path, **quiet())
    tr.fit((X, y), epochs=1, batch_size=16, valid_fraction=0.2)
    before = (tmp_path / "checkpoint.ckpt").read_bytes()

    def boom(obj, fh):
        fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(kn, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        tr.save_checkpoint()
    assert (tmp_path / "checkpoint.ckpt").read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    assert C.load_checkpoint(tmp_path / "checkpoint.ckpt")["epoch"] == 1


def test_fit_function_and_bad_arguments():
    X, y = blobs(n=40)
    tr = fit(make_model(), (X, y), epochs=1, batch_size=10, valid_fraction=0.25, **quiet())
    assert isinstance(tr, Trainer) and len(tr.history) == 1
    with pytest.raises(ValueError, match="unknown optimizer"):
        Trainer(make_model(), optimizer="lbfgs", **quiet())
    with pytest.raises(TypeError):
        Trainer(make_model(), **quiet()).fit(42, epochs=1)
    with pytest.raises(ValueError, match="no training samples"):
        Trainer(make_model(), **quiet()).fit((X, y), epochs=1, valid_fraction=0.6, test_fraction=0.4)


@pytest.mark.parametrize("name,shape,params", [
    ("perceptron", (1, 8, 8), 64 * 10 + 10),
    ("mlp", (1, 8, 8), (64 * 64 + 64) + (64 * 32 + 32) + (32 * 16 + 16) + (16 * 10 + 10)),
    ("cnn", (1, 28, 28), (32 * 9 + 32) + (64 * 32 * 9 + 64) + (9216 * 128 + 128) + (128 * 10 + 10)),
    ("cnn", (1, 8, 8), (32 * 9 + 32) + (64 * 32 * 9 + 64) + (256 * 128 + 128) + (128 * 10 + 10)),
])
def test_zoo_models(name, shape, params):
    m = build_model(name, shape, 10)
    assert sum(p.numel() for p in m.parameters()) == params
    m.eval()
    with kn.no_grad():
        try:
            out = m(kn.randn(3, *shape))
        except NotImplementedError as ex:  # conv2d/max_pool2d wrappers not merged yet
            if name != "cnn":
                raise
            pytest.skip(str(ex))
    assert tuple(out.shape) == (3, 10)


def test_zoo_errors():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="image inputs"):
        build_model("cnn", (64,), 10)
    with pytest.raises(ValueError, match="lstm"):  # recurrent models read images row by row
        build_model("lstm", (10,), 10)


def test_fit_on_each_device(device, tmp_path):
    """The same run on CPU and (when a GPU is usable) CUDA: batches moved to the model's device,
    metrics gathered back, checkpoint written and resumable."""
    X, y = blobs(n=96, seed=2)
    tr = Trainer(make_model(), device=device, lr=1e-2, checkpoint_dir=tmp_path, **quiet())
    hist = tr.fit((X, y), epochs=3, batch_size=16, valid_fraction=0.25, test_fraction=0.25)
    assert str(tr.device).startswith(device)
    assert all(str(p.device).startswith(device) for p in tr.model.parameters())
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert tr.results["test"]["samples"] == 24
    again = Trainer(make_model(seed=1), device=device, lr=1e-2, checkpoint_dir=tmp_path, **quiet())
    h2 = again.fit((X, y), epochs=3, batch_size=16, valid_fraction=0.25, test_fraction=0.25, resume=True)
    assert [h["val_loss"] for h in h2] == [h["val_loss"] for h in hist]


def test_resume_after_early_stop_trains_no_further(tmp_path):
    X, y = blobs(n=120, spread=3.0, seed=5)
    tr = Trainer(make_model(), lr=0.1, patience=2, checkpoint_dir=tmp_path, **quiet())
    hist = tr.fit((X, y), epochs=40, batch_size=8, valid_fraction=0.3)
    assert len(hist) < 40
    again = Trainer(make_model(seed=3), lr=0.1, patience=2, checkpoint_dir=tmp_path, **quiet())
    h2 = again.fit((X, y), epochs=40, batch_size=8, valid_fraction=0.3, resume=True)
    assert len(h2) == len(hist)
    for (k, v), (_, v2) in zip(tr.model.state_dict().items(), again.model.state_dict().items()):
        np.testing.assert_array_equal(v.numpy(), v2.numpy())  # the best model, restored in both


@pytest.mark.parametrize("grad_clip", [None, 0.5])
def test_graphed_training_equals_eager(grad_clip):
    """Trainer(graphed=True) replays the full batches' forward + backward from one capture (with
    dropout, Adam, the short last batch run eagerly, gradient clipping after the replay): the
    history, weights and test results are those of the eager loop, bit for bit on the CPU."""
    X, y = blobs(n=250)  # 225 training samples at batch 32: a short last batch
    runs = []
    for graphed in (False, True):
        kn.manual_seed(7)
        tr = Trainer(make_model(), lr=1e-2, grad_clip=grad_clip, graphed=graphed, seed=5, **quiet())
        tr.fit((X, y), epochs=3, batch_size=32, valid_fraction=0.1)
        runs.append((tr.history, [p.detach().numpy().copy() for p in tr.model.parameters()], tr))
    (h0, w0, _), (h1, w1, tr) = runs
    assert tr._step_graph, "the graphed trainer did not capture its step"
    for a, b in zip(h0, h1):
        for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert a[k] == b[k], (k, a[k], b[k])
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)


def test_graphed_falls_back_when_the_step_cannot_be_captured():
    class HostRead(nn.Module):  # reads a value on the host in forward: not capturable
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(x) * (1.0 if float(x.sum()) > -1e9 else 0.0)

    X, y = blobs(n=64)
    log = io.StringIO()
    tr = Trainer(HostRead(), graphed=True, verbose=True, progress=False, stream=log)
    tr.fit((X, y), epochs=1, batch_size=16, valid_fraction=0.25)
    assert tr._step_graph is False
    assert "running eagerly" in log.getvalue()
