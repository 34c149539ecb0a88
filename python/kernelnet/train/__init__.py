"""kernelnet.train: the course's training workflow (split, train, validate, keep the best model,
compare with baselines, plot) as one call, and the command line behind ``kernelnet train``.

    from kernelnet.train import Trainer, fit, build_model
"""
from .trainer import Trainer, fit, as_dataset, split_dataset, make_optimizer, make_scheduler
from .callbacks import Callback, EarlyStopping, LambdaCallback
from .checkpoint import CheckpointError, save_checkpoint, load_checkpoint
from .clip import clip_grad_norm_
from .metrics import accuracy, topk_accuracy, confusion_matrix, per_class_accuracy, baselines
from .progress import ProgressBar
from .zoo import build_model, available_models, MODELS
from .data_sources import load_data, DataError, DataSource
from . import plots

__all__ = ["Trainer", "fit", "Callback", "EarlyStopping", "LambdaCallback", "CheckpointError", "save_checkpoint",
           "load_checkpoint", "clip_grad_norm_", "accuracy", "topk_accuracy", "confusion_matrix",
           "per_class_accuracy", "baselines", "ProgressBar", "build_model", "available_models", "MODELS",
           "load_data", "DataError", "DataSource", "plots", "as_dataset", "split_dataset", "make_optimizer",
           "make_scheduler"]
