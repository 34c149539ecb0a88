"""Classification metrics on NumPy arrays (scores [N, C], integer targets [N]).

They run once per epoch on gathered predictions, so NumPy is plenty fast and keeps them exact
and independent of the kernels being trained (tests compare them with scikit-learn).
"""
import math

import numpy as np


def _as_np(x):
    if hasattr(x, "detach"):
        x = x.detach()
    if hasattr(x, "cpu") and not isinstance(x, np.ndarray):
        x = x.cpu()
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    return np.asarray(x)


def accuracy(scores, targets):
    """Fraction of rows whose arg-max equals the target (scores [N, C]) or of equal labels
    (scores already [N] predicted labels)."""
    scores, targets = _as_np(scores), _as_np(targets).reshape(-1)
    pred = scores.argmax(1) if scores.ndim == 2 else scores.reshape(-1)
    if pred.shape[0] != targets.shape[0]:
        raise ValueError(f"accuracy: {pred.shape[0]} predictions but {targets.shape[0]} targets")
    return float((pred == targets).mean()) if targets.size else float("nan")


def topk_correct(scores, targets, k):
    """Number of rows whose target is among the k highest scores (ties broken by index)."""
    scores, targets = _as_np(scores), _as_np(targets).reshape(-1)
    if scores.ndim != 2:
        raise ValueError(f"topk_accuracy: scores must be [N, C], got shape {scores.shape}")
    k = min(int(k), scores.shape[1])
    # stable argsort of -scores: equal scores keep index order, as torch.topk does on CPU
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return int((top == targets[:, None]).any(1).sum())


def topk_accuracy(scores, targets, k=5):
    targets = _as_np(targets).reshape(-1)
    return topk_correct(scores, targets, k) / targets.size if targets.size else float("nan")


def confusion_matrix(pred, targets, num_classes):
    """cm[i, j] = number of samples of true class i predicted as class j."""
    pred, targets = _as_np(pred).reshape(-1).astype(np.int64), _as_np(targets).reshape(-1).astype(np.int64)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (targets, pred), 1)
    return cm


def per_class_accuracy(cm):
    """Recall of each class (diagonal / row sum); NaN for a class absent from the targets."""
    cm = np.asarray(cm)
    rows = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.diag(cm) / np.maximum(rows, 1), np.nan)


def baselines(train_targets, eval_targets, num_classes):
    """The course's "always compare with a simple baseline", on the evaluation targets:

    - random guess: uniform over the classes; expected accuracy 1/C, cross-entropy log C.
    - majority class: always answer the most frequent training class; its loss is that of the
      best constant predictor, the training class frequencies (smoothed so no log(0)).
    """
    tr = _as_np(train_targets).reshape(-1).astype(np.int64)
    ev = _as_np(eval_targets).reshape(-1).astype(np.int64)
    counts = np.bincount(tr, minlength=num_classes).astype(np.float64)
    majority = int(counts.argmax())
    prior = (counts + 1.0) / (counts.sum() + num_classes)
    return {
        "random guess": {"loss": math.log(num_classes), "accuracy": 1.0 / num_classes},
        "majority class": {"loss": float(-np.log(prior[ev]).mean()) if ev.size else float("nan"),
                           "accuracy": float((ev == majority).mean()) if ev.size else float("nan"),
                           "class": majority},
    }
