"""Plots write real PNG images with content (not blank canvases)."""
import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from kernelnet.train import plots  # noqa: E402


def _png(path):
    import matplotlib.image as mpimg
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    # a drawn figure has many colours; a blank or failed one has one or two
    assert len(np.unique(img.reshape(-1, img.shape[2])[:, :3].round(2), axis=0)) > 20
    return img


def _history(n=6):
    return [{"epoch": i + 1, "train_loss": 2.0 / (i + 1), "train_accuracy": 0.5 + 0.05 * i,
             "val_loss": 2.0 / (i + 1) + (0.1 * (i - 3) ** 2), "val_accuracy": 0.45 + 0.04 * i} for i in range(n)]


def test_learning_curves(tmp_path):
    p = plots.learning_curves(_history(), tmp_path / "lc.png", title="t",
                              baselines={"random guess": {"accuracy": 0.1}})
    _png(p)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file
    assert os.stat(p).st_mode & 0o044 == 0o044 or os.umask(os.umask(0)) & 0o044  # readable by others


def test_learning_curves_without_validation(tmp_path):
    h = [{k: v for k, v in row.items() if not k.startswith("val")} for row in _history(3)]
    _png(plots.learning_curves(h, tmp_path / "lc.png"))


def test_confusion_matrix(tmp_path):
    cm = np.array([[5, 1, 0], [0, 7, 2], [1, 0, 9]])
    _png(plots.confusion_matrix(cm, tmp_path / "cm.png", ["a", "b", "c"]))


def test_misclassified(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.random((12, 1, 8, 8))
    t = np.arange(12) % 3
    p = (t + (np.arange(12) % 2)) % 3
    _png(plots.misclassified(imgs, t, p, tmp_path / "m.png", ["x", "y", "z"]))
    _png(plots.misclassified(imgs, t, t, tmp_path / "none.png"))  # nothing wrong: still a valid figure


def test_decision_boundary(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((80, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    calls = []

    def predict(a):
        calls.append(a.shape)
        return np.stack([-(a[:, 0] + a[:, 1]), a[:, 0] + a[:, 1]], 1)  # scores: perfect linear classifier
    _png(plots.decision_boundary(predict, X, y, tmp_path / "db.png"))
    assert calls[0] == (200 * 200, 2)
    with pytest.raises(ValueError, match="2-D"):
        plots.decision_boundary(predict, rng.standard_normal((5, 3)), y[:5], tmp_path / "x.png")
