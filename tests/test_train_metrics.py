"""kernelnet.train.metrics against scikit-learn and hand-computed values."""
import math

import numpy as np
import pytest

from kernelnet.train import metrics as M
from kernelnet.train.progress import ProgressBar


def _data(n=97, c=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c)).astype(np.float32), rng.integers(0, c, n)


def test_accuracy_matches_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    s, y = _data()
    assert M.accuracy(s, y) == pytest.approx(skm.accuracy_score(y, s.argmax(1)))
    assert M.accuracy(s.argmax(1), y) == pytest.approx(skm.accuracy_score(y, s.argmax(1)))
    with pytest.raises(ValueError):
        M.accuracy(s[:5], y)


@pytest.mark.parametrize("k", [1, 2, 5, 7, 9])
def test_topk_matches_sklearn(k):
    skm = pytest.importorskip("sklearn.metrics")
    s, y = _data(c=7)
    ref = skm.top_k_accuracy_score(y, s, k=min(k, 6), labels=np.arange(7)) if k < 7 else 1.0
    if k <= 6:
        assert M.topk_accuracy(s, y, k) == pytest.approx(ref)
    else:
        assert M.topk_accuracy(s, y, k) == 1.0
    assert M.topk_accuracy(s, y, 1) == pytest.approx(M.accuracy(s, y))


def test_confusion_and_per_class():
    skm = pytest.importorskip("sklearn.metrics")
    s, y = _data(n=200, c=5, seed=3)
    p = s.argmax(1)
    cm = M.confusion_matrix(p, y, 5)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, p, labels=range(5)))
    np.testing.assert_allclose(M.per_class_accuracy(cm), skm.recall_score(y, p, average=None, labels=range(5)))
    # a class absent from the targets has no accuracy (NaN), not 0
    cm2 = M.confusion_matrix(np.array([0, 1]), np.array([0, 0]), 3)
    pc = M.per_class_accuracy(cm2)
    assert pc[0] == 0.5 and math.isnan(pc[1]) and math.isnan(pc[2])


def test_baselines():
    train = np.array([0, 0, 0, 1, 2, 2])
    test = np.array([0, 1, 1, 2])
    b = M.baselines(train, test, 3)
    assert b["random guess"]["accuracy"] == pytest.approx(1 / 3)
    assert b["random guess"]["loss"] == pytest.approx(math.log(3))
    assert b["majority class"]["class"] == 0
    assert b["majority class"]["accuracy"] == pytest.approx(0.25)
    prior = np.array([4, 2, 3]) / 9.0  # add-one smoothed training frequencies
    assert b["majority class"]["loss"] == pytest.approx(-np.log(prior[test]).mean())


class _Stream:
    def __init__(self, tty):
        self.buf, self.tty = [], tty

    def write(self, s):
        self.buf.append(s)

    def flush(self):
        pass

    def isatty(self):
        return self.tty


def test_progress_plain_when_not_a_tty():
    st = _Stream(False)
    bar = ProgressBar(50, prefix="epoch 1/3", stream=st)
    for _ in range(50):
        bar.update(32, 0.5)
    bar.close("epoch 1/3 done")
    out = "".join(st.buf)
    assert "\r" not in out and "\033" not in out
    assert out == "epoch 1/3 done\n"
    assert bar.samples == 1600 and bar.mean_loss == pytest.approx(0.5)


def test_progress_redraws_in_a_tty():
    st = _Stream(True)
    bar = ProgressBar(3, prefix="epoch 2/3", stream=st, min_interval=0.0)
    for loss in (1.0, 2.0, 3.0):
        bar.update(10, loss)
    bar.close("summary")
    out = "".join(st.buf)
    assert out.count("\r") >= 3
    assert "3/3" in out and "loss 2.0000" in out and "samples/s" in out
    assert out.endswith("summary\n")
