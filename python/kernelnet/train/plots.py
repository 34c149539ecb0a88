"""Figures of the course, saved as PNG: learning curves, confusion matrix, misclassified images,
decision boundary of a 2-D classifier.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global backend
change), and writes each file atomically.
"""
import io
import math

import numpy as np

from .checkpoint import _atomic_write


def _figure(w, h):
    try:
        from matplotlib.figure import Figure
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError as ex:  # matplotlib is an optional dependency: pip install kernelnet[plot]
        raise ImportError("kernelnet.train.plots needs matplotlib (pip install matplotlib)") from ex
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    data = buf.getvalue()
    _atomic_write(path, lambda fh: fh.write(data))
    return path


def learning_curves(history, path, title=None, baselines=None):
    """Train and validation loss (left) and accuracy (right) per epoch; the best epoch (lowest
    validation loss) is marked on both. ``baselines``: {name: {"accuracy": a}} drawn as lines."""
    ep = [h["epoch"] for h in history]
    fig = _figure(11, 4.2)
    ax_l, ax_a = fig.subplots(1, 2)
    has_val = any("val_loss" in h for h in history)
    key = "val_loss" if has_val else "train_loss"
    best_i = int(np.nanargmin([h.get(key, np.nan) for h in history])) if history else None
    ax_l.plot(ep, [h["train_loss"] for h in history], "o-", ms=3, label="train")
    if has_val:
        ax_l.plot(ep, [h.get("val_loss", np.nan) for h in history], "o-", ms=3, label="validation")
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("loss")
    ax_l.set_title("loss")
    acc_train = [100 * h.get("train_accuracy", np.nan) for h in history]
    ax_a.plot(ep, acc_train, "o-", ms=3, label="train")
    if has_val:
        ax_a.plot(ep, [100 * h.get("val_accuracy", np.nan) for h in history], "o-", ms=3, label="validation")
    for (name, b), style in zip((baselines or {}).items(), (":", "-.", "--")):
        ax_a.axhline(100 * b["accuracy"], ls=style, lw=1, color="gray",
                     label=f"{name} baseline (test) {100 * b['accuracy']:.1f}%")
    ax_a.set_xlabel("epoch")
    ax_a.set_ylabel("accuracy (%)")
    ax_a.set_title("accuracy")
    if best_i is not None:
        be = ep[best_i]
        for ax, ys in ((ax_l, [h.get(key) for h in history]),
                       (ax_a, [100 * h.get("val_accuracy" if has_val else "train_accuracy", np.nan) for h in history])):
            ax.axvline(be, color="red", ls="--", lw=1, label=f"best epoch {be} (lowest {key.replace('_', ' ')})")
            ax.plot([be], [ys[best_i]], "r*", ms=12)
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if len(ep) <= 20:
            ax.set_xticks(ep)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def confusion_matrix(cm, path, class_names=None, title="confusion matrix (test set)"):
    """Counts with true class on rows, predicted class on columns; the colour is the row fraction."""
    cm = np.asarray(cm)
    C = cm.shape[0]
    names = list(class_names) if class_names else [str(i) for i in range(C)]
    fig = _figure(max(5, 0.6 * C + 2.5), max(4.5, 0.55 * C + 2))
    ax = fig.subplots()
    frac = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    for i in range(C):
        for j in range(C):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(C))
    ax.set_yticks(range(C))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title}: accuracy {100 * acc:.2f}%")
    return _save(fig, path)


def misclassified(images, targets, preds, path, class_names=None, max_images=25, title=None):
    """A grid of misclassified images titled 'true -> predicted'. images: [N, H, W] or [N, C, H, W]."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    targets, preds = np.asarray(targets), np.asarray(preds)
    wrong = np.flatnonzero(targets != preds)[:max_images]
    names = list(class_names) if class_names else None
    n = max(len(wrong), 1)
    cols = min(n, 5 if n <= 25 else 8)
    rows = math.ceil(n / cols)
    fig = _figure(2.0 * cols, 2.2 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, wrong):
        ax.imshow(images[i], cmap="gray")
        t = names[targets[i]] if names else str(targets[i])
        p = names[preds[i]] if names else str(preds[i])
        ax.set_title(f"{t}\n-> {p}", fontsize=8, color="firebrick")
    if len(wrong) == 0:
        axes[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    fig.suptitle(title or f"misclassified test images (true -> predicted), {int((targets != preds).sum())} "
                 f"of {len(targets)}")
    return _save(fig, path)


def _labels(out):
    out = np.asarray(out)
    return out.argmax(1) if out.ndim == 2 else out.reshape(-1)


def decision_boundary(predict, X, y, path, title="decision boundary", resolution=200, class_names=None):
    """Regions of a 2-D classifier with the data on top (the course's perceptron/MLP figures).
    ``predict``: a function from an [M, 2] float32 array to class labels [M] (or scores [M, C])."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision_boundary: needs 2-D inputs [N, 2], got shape {X.shape}")
    pad = 0.1 * (X.max(0) - X.min(0) + 1e-9)
    lo, hi = X.min(0) - pad, X.max(0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.c_[gx.ravel(), gy.ravel()].astype(np.float32)
    z = _labels(predict(grid)).reshape(gx.shape)
    C = int(max(z.max(), y.max())) + 1
    fig = _figure(6, 5)
    ax = fig.subplots()
    cmap = "tab10" if C <= 10 else "tab20"
    ax.contourf(gx, gy, z, levels=np.arange(-0.5, C), cmap=cmap, alpha=0.3, vmin=-0.5, vmax=(9.5 if C <= 10 else 19.5))
    ax.contour(gx, gy, z, levels=np.arange(0.5, C - 1), colors="k", linewidths=0.8)
    sc = ax.scatter(X[:, 0], X[:, 1], c=y, cmap=cmap, vmin=-0.5, vmax=(9.5 if C <= 10 else 19.5), s=14,
                    edgecolors="k", linewidths=0.3)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    acc = float((_labels(predict(X.astype(np.float32))) == y).mean()) if len(X) else float("nan")
    ax.set_title(f"{title} (accuracy on these points {100 * acc:.1f}%)")
    if class_names:
        handles = sc.legend_elements()[0]
        ax.legend(handles, class_names[:len(handles)], fontsize=8, loc="best")
    return _save(fig, path)
