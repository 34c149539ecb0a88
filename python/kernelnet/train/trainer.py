"""The course's training workflow in one object: split the data, train, watch validation, keep the
best model, compare with baselines.

    from kernelnet.train import Trainer
    trainer = Trainer(model, optimizer="adam", lr=1e-3, patience=5, checkpoint_dir="runs/a")
    trainer.fit(train_set, epochs=20, batch_size=32, valid_fraction=0.15, test_fraction=0.15)
    trainer.results["test"]["accuracy"]

Determinism and resuming: the split, the shuffling and dropout each draw from their own kernelnet
generator, seeded from ``seed``. Their states are saved in the checkpoint after every epoch
together with the model, optimizer, scheduler, callbacks and history, so ``fit(..., resume=True)``
continues exactly where the interrupted run was: same batches, same dropout masks, same losses.
"""
import math
import os
import sys
import time

import numpy as np

from .callbacks import Callback, EarlyStopping
from .checkpoint import (CheckpointError, load_checkpoint, rng_state, save_checkpoint, save_state,
                         set_rng_state)
from .clip import clip_grad_norm_
from .metrics import baselines, confusion_matrix, per_class_accuracy, topk_correct
from .progress import ProgressBar, format_rate

CHECKPOINT_NAME = "checkpoint.ckpt"
BEST_NAME = "best.kn"


def _kn():
    import kernelnet
    return kernelnet


# ------------------------------------------------------------------ data helpers
def _to_tensor(a, integer=False):
    kn = _kn()
    if isinstance(a, kn.Tensor):
        return a
    a = np.asarray(a)
    if integer or a.dtype.kind in "iub":
        return kn.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
    return kn.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def as_dataset(data):
    """A Dataset from a Dataset, or from an (X, y) pair of arrays/tensors."""
    if data is None:
        return None
    kn = _kn()
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(hasattr(d, "shape") for d in data):
        X, y = data
        return kn.utils.data.TensorDataset(_to_tensor(X), _to_tensor(y))
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise TypeError(f"Trainer: expected a Dataset or an (X, y) pair, got {type(data).__name__}")
    return data


def dataset_targets(ds):
    """All targets of a dataset as a NumPy array, without loading the inputs where possible."""
    kn = _kn()
    D = kn.utils.data
    if isinstance(ds, D.Subset):
        inner = dataset_targets(ds.dataset)
        return inner[np.asarray(ds.indices, dtype=np.int64)]
    if isinstance(ds, D.TensorDataset):
        return ds.tensors[-1].cpu().numpy().copy()
    if hasattr(ds, "_labels"):
        return np.asarray(ds._labels)
    if hasattr(ds, "targets"):
        t = ds.targets
        return t.cpu().numpy().copy() if hasattr(t, "cpu") else np.asarray(t)
    ys = [np.asarray(ds[i][1].numpy() if hasattr(ds[i][1], "numpy") else ds[i][1]) for i in range(len(ds))]
    return np.stack(ys)


def split_dataset(ds, fractions, generator):
    """random_split by fractions (the last part takes the rounding remainder)."""
    kn = _kn()
    n = len(ds)
    sizes = [int(math.floor(f * n)) for f in fractions]
    sizes[0] = n - sum(sizes[1:])
    if min(sizes) < 0 or sizes[0] == 0:
        raise ValueError(f"split: fractions {fractions} leave no training samples out of {n}")
    return kn.utils.data.random_split(ds, sizes, generator=generator)


def _is_plateau(scheduler):
    return type(scheduler).__name__ == "ReduceLROnPlateau"


def make_optimizer(name, params, lr, weight_decay=0.0, momentum=0.9):
    kn = _kn()
    name = name.lower()
    if name == "sgd":
        return kn.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return kn.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return kn.optim.AdamW(params, lr=lr, weight_decay=weight_decay or 1e-2)
    raise ValueError(f"unknown optimizer {name!r} (choose sgd, adam or adamw)")


def make_scheduler(name, optimizer, epochs):
    kn = _kn()
    S = kn.optim.lr_scheduler
    if name in (None, "none"):
        return None
    if name == "step":
        return S.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    if name == "cosine":
        return S.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if name == "plateau":
        return S.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    raise ValueError(f"unknown scheduler {name!r} (choose none, step, cosine or plateau)")


class Trainer:
    """Train a classifier the way the course does it.

    model        a kernelnet.nn.Module returning class scores [N, C]
    loss_fn      default nn.CrossEntropyLoss()
    optimizer    'sgd' | 'adam' | 'adamw', an optimizer instance, or a callable(params) -> optimizer
    scheduler    an LR scheduler, or a callable(optimizer) -> scheduler; stepped once per epoch
                 (ReduceLROnPlateau gets the validation loss)
    device       'auto' (CUDA when available, else CPU), 'cpu' or 'cuda'
    topk         extra top-k accuracies to report, e.g. (5,)
    patience     early stopping on the validation loss after this many epochs without improvement
    grad_clip    clip the global gradient norm to this value
    graphed      replay each full-size training batch's forward + backward from a capture
                 (kernelnet.graphed: on a GPU one CUDA graph launch, on the CPU without the Python
                 layer), made at the second batch after an eager first one; the loss, gradients and
                 updates are those of the eager loop. Batches of another shape (the last, short one)
                 and models that cannot be captured run eagerly.
    checkpoint_dir  where the resumable checkpoint (after every epoch) and best.kn go
    seed         seeds the split, the shuffling and kernelnet's default generator (dropout)
    """

    def __init__(self, model, loss_fn=None, optimizer="adam", lr=1e-3, weight_decay=0.0, scheduler=None,
                 device="auto", topk=(), callbacks=(), patience=None, grad_clip=None, checkpoint_dir=None,
                 seed=0, verbose=True, stream=None, progress=True, num_classes=None, class_names=None,
                 config=None, graphed=False):
        kn = _kn()
        self.device = kn.device(device)
        self.model = model.to(self.device)
        self.loss_fn = loss_fn if loss_fn is not None else kn.nn.CrossEntropyLoss()
        params = [p for p in self.model.parameters() if p.requires_grad]
        if isinstance(optimizer, str):
            self.optimizer = make_optimizer(optimizer, params, lr, weight_decay)
        elif callable(optimizer) and not hasattr(optimizer, "step"):
            self.optimizer = optimizer(params)
        else:
            self.optimizer = optimizer
        if scheduler is not None and callable(scheduler) and not hasattr(scheduler, "step"):
            scheduler = scheduler(self.optimizer)
        self.scheduler = scheduler
        self.topk = tuple(int(k) for k in topk)
        self.callbacks = list(callbacks)
        if patience is not None:
            self.callbacks.append(EarlyStopping(patience=patience))
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"Trainer: callbacks must be kernelnet.train.Callback objects, got {type(cb).__name__}")
        self.grad_clip = grad_clip
        self.graphed = bool(graphed)
        self._step_graph = None  # graphed=True: None, "warm" after the first batch, then the Graphed (or False)
        self.checkpoint_dir = checkpoint_dir
        self.seed = seed
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stdout
        self.progress = progress
        self.num_classes = num_classes
        self.class_names = class_names
        self.config = dict(config or {})
        self.history = []
        self.results = {}
        self.best_epoch = None
        self.best_loss = math.inf
        self.best_state = None
        self.stop_training = False
        self.epoch = 0
        self.loader_generator = kn.Generator()
        self.split_generator = kn.Generator()
        self.eval_generator = kn.Generator()
        self.train_set = self.valid_set = self.test_set = None

    # -------------------------------------------------------------- output
    def log(self, msg):
        if self.verbose:
            self.stream.write(msg + "\n")
            self.stream.flush()

    # -------------------------------------------------------------- data
    def _loader(self, ds, batch_size, shuffle):
        kn = _kn()
        return kn.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle,
                                        generator=self.loader_generator if shuffle else self.eval_generator)

    def _to_device(self, t):
        if str(self.device) == "cpu" or not hasattr(t, "to"):
            return t
        return t.to(self.device)

    def prepare_data(self, train, valid=None, test=None, valid_fraction=0.1, test_fraction=0.0):
        """Train/valid/test sets: the given ones, the rest split off ``train`` at random (seeded)."""
        train, valid, test = as_dataset(train), as_dataset(valid), as_dataset(test)
        fractions, names = [], []
        if valid is None and valid_fraction:
            fractions.append(float(valid_fraction)); names.append("valid")
        if test is None and test_fraction:
            fractions.append(float(test_fraction)); names.append("test")
        if fractions:
            if self.seed is not None:
                self.split_generator.manual_seed(self.seed)
            parts = split_dataset(train, [1.0 - sum(fractions)] + fractions, self.split_generator)
            train = parts[0]
            got = dict(zip(names, parts[1:]))
            valid = got.get("valid", valid)
            test = got.get("test", test)
        self.train_set, self.valid_set, self.test_set = train, valid, test
        return train, valid, test

    # -------------------------------------------------------------- evaluation
    def evaluate(self, data, batch_size=256, outputs=False):
        """Loss, accuracy and top-k on a dataset (model in eval mode, no gradients).
        With ``outputs=True`` also the scores [N, C] and targets [N] as NumPy arrays."""
        kn = _kn()
        ds = as_dataset(data)
        self.eval_generator.manual_seed(0)  # evaluation never depends on what ran before it
        was_training = self.model.training
        self.model.eval()
        loss_sum, n, correct = 0.0, 0, 0
        topk = {k: 0 for k in self.topk}
        all_scores, all_targets = [], []
        try:
            with kn.no_grad():
                for xb, yb in self._loader(ds, batch_size, shuffle=False):
                    y_np = yb.cpu().numpy()
                    out = self.model(self._to_device(xb))
                    loss = self.loss_fn(out, self._to_device(yb))
                    bs = int(y_np.shape[0])
                    loss_sum += float(loss.item()) * bs
                    n += bs
                    scores = out.detach().cpu().numpy()
                    if y_np.dtype.kind in "iu" and scores.ndim == 2:
                        correct += int((scores.argmax(1) == y_np).sum())
                        for k in topk:
                            topk[k] += topk_correct(scores, y_np, k)
                    if outputs:
                        all_scores.append(scores.copy())
                        all_targets.append(y_np.copy())
        finally:
            self.model.train(was_training)
        res = {"loss": loss_sum / n if n else float("nan"), "accuracy": correct / n if n else float("nan"),
               "samples": n}
        for k, c in topk.items():
            res[f"top{k}"] = c / n if n else float("nan")
        if outputs:
            res["scores"] = np.concatenate(all_scores) if all_scores else np.zeros((0, 0), np.float32)
            res["targets"] = np.concatenate(all_targets) if all_targets else np.zeros((0,), np.int64)
        return res

    def predict(self, data, batch_size=256):
        """Class scores [N, C] as a NumPy array."""
        return self.evaluate(data, batch_size=batch_size, outputs=True)["scores"]

    # -------------------------------------------------------------- checkpoints
    def _checkpoint_path(self):
        return os.path.join(self.checkpoint_dir, CHECKPOINT_NAME) if self.checkpoint_dir else None

    def state_dict(self):
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": rng_state({"loader": self.loader_generator}),
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "history": self.history,
            "best": {"epoch": -1 if self.best_epoch is None else self.best_epoch, "loss": float(self.best_loss)},
            "best_model": self.best_state,
            "stopped": bool(self.stop_training),  # early-stopped: a resume must not train further
            "config": self.config,
        }

    def load_state_dict(self, state):
        self._step_graph = None  # captured against the old state: capture again at the next batch
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, ValueError, RuntimeError) as ex:
            raise CheckpointError(f"checkpoint does not match this model/optimizer: {str(ex).splitlines()[0]}") from ex
        set_rng_state(state["rng"], {"loader": self.loader_generator})
        cbs = state.get("callbacks") or []
        for cb, s in zip(self.callbacks, cbs):
            cb.load_state_dict(s)
        self.history = [dict(h) for h in state["history"]]
        self.epoch = int(state["epoch"])
        best = state["best"]
        self.best_epoch = None if best["epoch"] < 0 else int(best["epoch"])
        self.best_loss = float(best["loss"])
        self.best_state = state.get("best_model")
        self._resumed_stopped = bool(state.get("stopped", False))

    def save_checkpoint(self, path=None):
        path = path or self._checkpoint_path()
        save_checkpoint(path, self.state_dict())
        return path

    def resume(self, path):
        """Load a checkpoint written by this Trainer (a file or its folder)."""
        if os.path.isdir(path):
            path = os.path.join(path, CHECKPOINT_NAME)
        self.load_state_dict(load_checkpoint(path, map_location=str(self.device)))
        self.log(f"resumed from {path} after epoch {self.epoch}")

    def _snapshot(self):
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    # -------------------------------------------------------------- training
    def _train_epoch(self, loader, epoch, epochs):
        kn = _kn()
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        bar = ProgressBar(len(loader), prefix=f"epoch {epoch + 1}/{epochs}", stream=self.stream,
                          enabled=self.verbose and self.progress)
        loss_sum, n, correct = 0.0, 0, 0
        for i, (xb, yb) in enumerate(loader):
            y_np = yb.cpu().numpy() if hasattr(yb, "cpu") else np.asarray(yb)
            xb, yb = self._to_device(xb), self._to_device(yb)
            out, loss = self._forward_backward(xb, yb)
            if self.grad_clip:
                clip_grad_norm_(params, self.grad_clip)
            self.optimizer.step()
            lv = float(loss.item())
            if not math.isfinite(lv):
                bar.close()
                raise FloatingPointError(f"training diverged: loss is {lv} at epoch {epoch + 1}, batch {i + 1} "
                                         "(lower the learning rate or clip gradients)")
            bs = int(y_np.shape[0])
            loss_sum += lv * bs
            n += bs
            if y_np.dtype.kind in "iu" and out.dim() == 2:
                with kn.no_grad():
                    correct += int((out.detach().argmax(1).cpu().numpy() == y_np).sum())
            bar.update(bs, lv)
            for cb in self.callbacks:
                cb.on_batch_end(self, i, {"loss": lv, "batch_size": bs})
        return bar, {"train_loss": loss_sum / n if n else float("nan"),
                     "train_accuracy": correct / n if n else float("nan"), "samples": n}

    def _forward_backward(self, xb, yb):
        """zero_grad, forward, loss, backward: eagerly, or by replaying the captured step (graphed)."""
        def fwd_bwd(x, y):
            self.optimizer.zero_grad()
            out = self.model(x)
            loss = self.loss_fn(out, y)
            loss.backward()
            return out, loss
        g = self._step_graph
        if self.graphed and g is None:  # the first batch runs eagerly: every kernel has run once
            self._step_graph = "warm"   # (loaded, sized) before the capture at the next full batch
            self._warm_shapes = (xb._shape, yb._shape)
            return fwd_bwd(xb, yb)
        if g == "warm":
            if (xb._shape, yb._shape) != self._warm_shapes:
                return fwd_bwd(xb, yb)
            kn = _kn()
            # a failed capture may have run part of the step for real (on the CPU the recording run
            # executes the kernels): BatchNorm's running statistics must not see this batch twice
            with kn.no_grad():
                buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
            try:  # no warm-up call: the capture run is this batch's real step, so training equals eager
                self._step_graph = kn.graphed(fwd_bwd, xb, yb, warmup=0)
                return self._step_graph.outputs
            except RuntimeError as e:  # GraphCaptureError, or a CUDA error the capture met
                self._step_graph = False
                self.log(f"graphed: running eagerly, the step cannot be captured ({e})")
                with kn.no_grad():
                    for b, saved in buffers:
                        b.copy_(saved)
                return fwd_bwd(xb, yb)
        if g and g != "warm" and xb._shape == g._static[0]._shape and yb._shape == g._static[1]._shape:
            return g(xb, yb)
        return fwd_bwd(xb, yb)

    def fit(self, train, valid=None, test=None, epochs=10, batch_size=32, valid_fraction=0.1, test_fraction=0.0,
            resume=None, eval_batch_size=256):
        """Train for ``epochs`` epochs (counted from the start, so a resumed run stops at the same
        epoch as an uninterrupted one). Returns the history: one dict per epoch."""
        kn = _kn()
        if epochs < 0:
            raise ValueError(f"fit: epochs must be >= 0, got {epochs}")
        train, valid, test = self.prepare_data(train, valid, test, valid_fraction, test_fraction)
        if self.num_classes is None:
            y = dataset_targets(train)
            self.num_classes = int(y.max()) + 1 if y.size and y.dtype.kind in "iu" else None
        if self.seed is not None:
            kn.manual_seed(self.seed)
            self.loader_generator.manual_seed(self.seed + 1)
        self.history, self.epoch, self.best_epoch, self.best_loss, self.best_state = [], 0, None, math.inf, None
        if resume:
            path = resume if isinstance(resume, (str, os.PathLike)) else self._checkpoint_path()
            if path is None:
                raise ValueError("fit(resume=True) needs checkpoint_dir (or pass the checkpoint path)")
            self.resume(path)
        if self.checkpoint_dir:
            os.makedirs(self.checkpoint_dir, exist_ok=True)
        loader = self._loader(train, batch_size, shuffle=True)
        monitor = "val_loss" if valid is not None else "train_loss"
        self.stop_training = bool(resume) and getattr(self, "_resumed_stopped", False)
        self.log(f"training {self.config.get('model', type(self.model).__name__)} on {self.device}: {len(train)} train"
                 + (f" / {len(valid)} valid" if valid is not None else "")
                 + (f" / {len(test)} test" if test is not None else "") + f" samples, batch {batch_size}")
        for cb in self.callbacks:
            cb.on_fit_start(self)
        for epoch in range(self.epoch, epochs):
            if self.stop_training:
                break
            for cb in self.callbacks:
                cb.on_epoch_start(self, epoch)
            t0 = time.perf_counter()
            bar, logs = self._train_epoch(loader, epoch, epochs)
            train_s = time.perf_counter() - t0
            if valid is not None:
                v = self.evaluate(valid, eval_batch_size)
                logs["val_loss"], logs["val_accuracy"] = v["loss"], v["accuracy"]
                for k in self.topk:
                    logs[f"val_top{k}"] = v[f"top{k}"]
            logs["lr"] = float(self.optimizer.param_groups[0]["lr"])
            if self.scheduler is not None:
                if _is_plateau(self.scheduler):
                    self.scheduler.step(logs[monitor])
                else:
                    self.scheduler.step()
            logs = {"epoch": epoch + 1, **logs, "seconds": round(time.perf_counter() - t0, 3),
                    "samples_per_s": round(logs["samples"] / train_s, 1) if train_s > 0 else None}
            improved = logs[monitor] < self.best_loss
            if improved:
                self.best_loss, self.best_epoch = logs[monitor], epoch + 1
                self.best_state = self._snapshot()
                if self.checkpoint_dir:
                    save_state(self.best_state, os.path.join(self.checkpoint_dir, BEST_NAME))
            logs["best"] = improved
            self.history.append(logs)
            self.epoch = epoch + 1
            bar.close(self._epoch_line(logs, epochs))
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch + 1, logs)
            if self.checkpoint_dir:
                self.save_checkpoint()
        for cb in self.callbacks:
            cb.on_fit_end(self)
        if self.best_state is not None and self.best_epoch != self.epoch:
            self.model.load_state_dict(self.best_state)
            self.log(f"restored the best model: epoch {self.best_epoch} ({monitor.replace('_', ' ')} "
                     f"{self.best_loss:.4f})")
        self.results = {"best_epoch": self.best_epoch, "best_" + monitor: self.best_loss, "epochs_run": self.epoch}
        if test is not None:
            self.results["test"] = self.test(test, eval_batch_size)
        return self.history

    def _epoch_line(self, logs, epochs):
        w = len(str(epochs))
        s = f"epoch {logs['epoch']:>{w}}/{epochs}  train loss {logs['train_loss']:.4f}"
        if not math.isnan(logs.get("train_accuracy", float("nan"))):
            s += f" acc {100 * logs['train_accuracy']:5.2f}%"
        if "val_loss" in logs:
            s += f"  valid loss {logs['val_loss']:.4f}"
            if not math.isnan(logs["val_accuracy"]):
                s += f" acc {100 * logs['val_accuracy']:5.2f}%"
        s += f"  {logs['seconds']:.1f}s"
        if logs.get("samples_per_s"):
            s += f"  {format_rate(logs['samples_per_s'])}"
        if logs.get("best"):
            s += "  *"
        return s

    # -------------------------------------------------------------- test and baselines
    def test(self, data, batch_size=256, train_targets=None):
        """Evaluate on the test set and compare with the baselines (printed as a table)."""
        ds = as_dataset(data)
        r = self.evaluate(ds, batch_size, outputs=True)
        scores, targets = r.pop("scores"), r.pop("targets")
        C = self.num_classes or (scores.shape[1] if scores.ndim == 2 else None)
        if C and scores.ndim == 2 and targets.dtype.kind in "iu":
            pred = scores.argmax(1)
            cm = confusion_matrix(pred, targets, C)
            r["confusion_matrix"] = cm.tolist()
            r["per_class_accuracy"] = per_class_accuracy(cm).tolist()
            if train_targets is None and self.train_set is not None:
                train_targets = dataset_targets(self.train_set)
            if train_targets is None:
                train_targets = targets
            r["baselines"] = baselines(train_targets, targets, C)
            self._predictions = (scores, targets)
            self.log(self.baseline_table(r))
        return r

    def baseline_table(self, r, title="test set"):
        rows = [(name, b["loss"], b["accuracy"]) for name, b in r["baselines"].items()]
        label = f"model (best epoch {self.best_epoch})" if self.best_epoch else "model"
        rows.append((label, r["loss"], r["accuracy"]))
        w = max(len(x[0]) for x in rows) + 2
        lines = [f"{title} ({r['samples']} samples)".ljust(w + 2) + f"{'loss':>8}  {'accuracy':>9}"]
        for name, loss, acc in rows:
            lines.append("  " + name.ljust(w) + f"{loss:8.4f}  {100 * acc:8.2f}%")
        for k in self.topk:
            lines.append(f"  top-{k} accuracy: {100 * r[f'top{k}']:.2f}%")
        pc = r.get("per_class_accuracy")
        if pc and len(pc) <= 20:
            names = self.class_names if self.class_names and len(self.class_names) == len(pc) else None
            cells = [f"{names[i] if names else i}: {'-' if a != a else f'{100 * a:.1f}%'}" for i, a in enumerate(pc)]
            lines.append("  per-class accuracy: " + ", ".join(cells))
        return "\n".join(lines)


def fit(model, train, valid=None, test=None, epochs=10, batch_size=32, valid_fraction=0.1, test_fraction=0.0,
        resume=None, **trainer_kwargs):
    """``Trainer(model, **trainer_kwargs).fit(...)``; returns the Trainer (history, results, model)."""
    tr = Trainer(model, **trainer_kwargs)
    tr.fit(train, valid=valid, test=test, epochs=epochs, batch_size=batch_size, valid_fraction=valid_fraction,
           test_fraction=test_fraction, resume=resume)
    return tr
