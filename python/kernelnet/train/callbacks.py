"""Training callbacks: hooks called by the Trainer at fixed points of the loop.

A callback may stop training (``trainer.stop_training = True``) and may carry state; that
state goes into the resumable checkpoint through ``state_dict``/``load_state_dict`` so a resumed
run makes the same decisions (e.g. early stopping's patience counter) as an uninterrupted one.
"""
import math


class Callback:
    def on_fit_start(self, trainer):
        pass

    def on_epoch_start(self, trainer, epoch):
        pass

    def on_batch_end(self, trainer, batch, logs):
        pass

    def on_epoch_end(self, trainer, epoch, logs):
        pass

    def on_fit_end(self, trainer):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class LambdaCallback(Callback):
    """Callback from plain functions: ``LambdaCallback(on_epoch_end=lambda tr, ep, logs: ...)``."""

    def __init__(self, on_fit_start=None, on_epoch_start=None, on_batch_end=None, on_epoch_end=None,
                 on_fit_end=None):
        self._f = dict(on_fit_start=on_fit_start, on_epoch_start=on_epoch_start, on_batch_end=on_batch_end,
                       on_epoch_end=on_epoch_end, on_fit_end=on_fit_end)

    def on_fit_start(self, trainer):
        if self._f["on_fit_start"]:
            self._f["on_fit_start"](trainer)

    def on_epoch_start(self, trainer, epoch):
        if self._f["on_epoch_start"]:
            self._f["on_epoch_start"](trainer, epoch)

    def on_batch_end(self, trainer, batch, logs):
        if self._f["on_batch_end"]:
            self._f["on_batch_end"](trainer, batch, logs)

    def on_epoch_end(self, trainer, epoch, logs):
        if self._f["on_epoch_end"]:
            self._f["on_epoch_end"](trainer, epoch, logs)

    def on_fit_end(self, trainer):
        if self._f["on_fit_end"]:
            self._f["on_fit_end"](trainer)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    The course's rule "the best model is the one with the lowest validation loss": the Trainer
    restores that model at the end whether or not training stopped early."""

    def __init__(self, patience=5, monitor="val_loss", mode="min", min_delta=0.0):
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        self.patience = int(patience)
        self.monitor = monitor
        self.mode = mode
        self.min_delta = float(min_delta)
        self.best = math.inf if mode == "min" else -math.inf
        self.wait = 0
        self.stopped_epoch = None

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, trainer, epoch, logs):
        value = logs.get(self.monitor)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        if self._improved(value):
            self.best = value
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop_training = True
            trainer.log(f"early stopping: {self.monitor} has not improved for {self.patience} epochs "
                        f"(best {self.best:.4f})")

    def state_dict(self):
        return {"best": float(self.best), "wait": self.wait,
                "stopped_epoch": -1 if self.stopped_epoch is None else int(self.stopped_epoch)}

    def load_state_dict(self, state):
        self.best = float(state["best"])
        self.wait = int(state["wait"])
        self.stopped_epoch = None if state.get("stopped_epoch", -1) < 0 else int(state["stopped_epoch"])
