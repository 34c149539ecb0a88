"""One training run from names, as the ``kernelnet train`` / ``kernelnet eval`` commands do it:
data by name, model from the zoo, Trainer, then the run folder (history, plots, checkpoint,
command line)."""
import os
import shlex
import sys
import time

import numpy as np

from . import plots
from .checkpoint import CheckpointError, load_checkpoint, write_json, write_text
from .data_sources import load_data, limit as limit_ds
from .trainer import BEST_NAME, CHECKPOINT_NAME, Trainer, make_scheduler
from .zoo import build_model

# Per-dataset defaults: enough epochs to converge, small enough for a laptop CPU.
DEFAULT_EPOCHS = {"digits": 30}


def default_out_dir(dataset, model):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = os.path.splitext(os.path.basename(os.path.normpath(str(dataset))))[0]
    return os.path.join("kernelnet-runs", f"{stamp}-{tag}-{model}")


def _sample_images(ds, indices):
    return np.stack([np.asarray(ds[int(i)][0].numpy()) for i in indices]) if len(indices) else None


def write_plots(trainer, source, out, verbose=True):
    """Learning curves, confusion matrix, misclassified test images and (2-D data) decision boundary."""
    written = []
    test = trainer.results.get("test", {})
    title = f"{trainer.config.get('model', type(trainer.model).__name__)} on {source.name}"
    written.append(plots.learning_curves(trainer.history, os.path.join(out, "learning_curves.png"), title=title,
                                         baselines=test.get("baselines")))
    if "confusion_matrix" in test:
        written.append(plots.confusion_matrix(np.array(test["confusion_matrix"]),
                                              os.path.join(out, "confusion_matrix.png"), source.class_names))
    pred = getattr(trainer, "_predictions", None)
    if pred is not None and source.image_shape is not None:
        scores, targets = pred
        p = scores.argmax(1)
        wrong = np.flatnonzero(p != targets)[:25]
        imgs = _sample_images(trainer.test_set, wrong)
        if imgs is not None:
            written.append(plots.misclassified(imgs, targets[wrong], p[wrong], os.path.join(out, "misclassified.png"),
                                               source.class_names,
                                               title=f"misclassified test images (true -> predicted): "
                                                     f"{int((p != targets).sum())} of {len(targets)}"))
    if tuple(source.input_shape) == (2,):
        ds = trainer.train_set
        X = np.stack([np.asarray(ds[i][0].numpy()) for i in range(len(ds))])
        y = np.array([int(ds[i][1]) for i in range(len(ds))])
        import kernelnet as kn

        def predict(a):
            trainer.model.eval()
            with kn.no_grad():
                out_ = trainer.model(trainer._to_device(kn.from_numpy(np.ascontiguousarray(a, np.float32))))
            return out_.cpu().numpy()
        written.append(plots.decision_boundary(predict, X, y, os.path.join(out, "decision_boundary.png"),
                                               title=f"{title}: decision boundary (train set)"))
    return written


def train_run(dataset="digits", model="mlp", epochs=None, batch_size=32, lr=1e-3, optimizer="adam", device="auto",
              seed=0, out=None, patience=None, scheduler=None, grad_clip=None, limit=None, valid_fraction=0.1,
              test_fraction=None, weight_decay=0.0, resume=False, make_plots=True, command=None, verbose=True,
              progress=True, stream=None, graphed=False):
    """Train a zoo model on a named dataset and write the run folder. Returns (trainer, out)."""
    stream = stream or sys.stdout
    source = load_data(dataset)
    train = limit_ds(source.train, limit)
    if epochs is None:
        epochs = DEFAULT_EPOCHS.get(source.name, 10)
    if test_fraction is None:
        test_fraction = source.test_fraction if source.test is None else 0.0
    out = out or default_out_dir(dataset, model)
    os.makedirs(out, exist_ok=True)
    import kernelnet as kn
    if seed is not None:
        kn.manual_seed(seed)  # the model's initial weights
    net = build_model(model, source.input_shape, source.num_classes)
    spec = os.path.abspath(dataset) if os.path.exists(str(dataset)) and str(dataset) not in ("digits", "mnist", "fashion-mnist") else dataset
    config = {"dataset": spec, "model": model, "input_shape": list(source.input_shape),
              "num_classes": source.num_classes, "class_names": source.class_names, "epochs": epochs,
              "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "scheduler": scheduler or "none",
              "weight_decay": weight_decay, "seed": seed, "limit": limit, "valid_fraction": valid_fraction,
              "test_fraction": test_fraction, "patience": patience, "grad_clip": grad_clip, "device": device,
              "graphed": bool(graphed)}
    trainer = Trainer(net, optimizer=optimizer, lr=lr, weight_decay=weight_decay, device=device,
                      topk=(5,) if source.num_classes > 5 else (), patience=patience, grad_clip=grad_clip,
                      checkpoint_dir=out, seed=seed, verbose=verbose, progress=progress, stream=stream,
                      num_classes=source.num_classes, class_names=source.class_names, config=config,
                      graphed=graphed)
    if scheduler:
        trainer.scheduler = make_scheduler(scheduler, trainer.optimizer, epochs)
    config["device_used"] = str(trainer.device)
    if command is not None:  # appended: a resumed run keeps the command that started it
        cmd_path = os.path.join(out, "command.txt")
        before = open(cmd_path).read() if resume and os.path.exists(cmd_path) else ""
        write_text(cmd_path, before + command + "\n")
    write_json(os.path.join(out, "config.json"), config)
    # history.json after every epoch too, so a long or interrupted run can be watched and plotted
    from .callbacks import LambdaCallback
    trainer.callbacks.append(LambdaCallback(on_epoch_end=lambda tr, ep, logs: write_json(
        os.path.join(out, "history.json"), {"config": config, "command": command, "history": tr.history,
                                            "best_epoch": tr.best_epoch, "complete": False})))
    trainer.fit(train, test=source.test, epochs=epochs, batch_size=batch_size, valid_fraction=valid_fraction,
                test_fraction=test_fraction, resume=os.path.join(out, CHECKPOINT_NAME) if resume else None)
    test = dict(trainer.results.get("test", {}))
    summary = {"config": config, "command": command, "history": trainer.history,
               "best_epoch": trainer.best_epoch, "results": {k: v for k, v in trainer.results.items() if k != "test"},
               "test": test, "complete": True}
    write_json(os.path.join(out, "history.json"), summary)
    files = ["history.json", CHECKPOINT_NAME, BEST_NAME] + (["command.txt"] if command else [])
    if make_plots:
        try:
            files += [os.path.basename(p) for p in write_plots(trainer, source, out)]
        except ImportError as ex:
            trainer.log(f"plots skipped: {ex}")
    trainer.log(f"wrote {out}/: " + ", ".join(files))
    return trainer, out


def eval_run(checkpoint, dataset=None, device="auto", batch_size=256, verbose=True, stream=None):
    """Evaluate a checkpoint's best model on the test set of its run (same split, same seed)."""
    path = checkpoint
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    state = load_checkpoint(path)
    cfg = state.get("config") or {}
    if "model" not in cfg or "input_shape" not in cfg:
        raise CheckpointError(f"cannot evaluate {path!r}: it has no model description (not written by "
                              "`kernelnet train`); load it with Trainer.resume instead")
    source = load_data(dataset or cfg["dataset"])
    net = build_model(cfg["model"], cfg["input_shape"], cfg["num_classes"])
    trainer = Trainer(net, optimizer=cfg.get("optimizer", "adam"), lr=cfg.get("lr", 1e-3), device=device,
                      topk=(5,) if cfg["num_classes"] > 5 else (), seed=cfg.get("seed", 0), verbose=verbose,
                      stream=stream, num_classes=cfg["num_classes"], class_names=cfg.get("class_names"), config=cfg)
    weights = state.get("best_model") or state["model"]
    try:
        trainer.model.load_state_dict(weights)
    except (KeyError, ValueError, RuntimeError) as ex:
        raise CheckpointError(f"cannot evaluate {path!r}: weights do not match model {cfg['model']!r}: "
                              f"{str(ex).splitlines()[0]}") from ex
    best = state.get("best", {}).get("epoch", -1)
    trainer.best_epoch = best if best and best > 0 else None
    train = limit_ds(source.train, cfg.get("limit"))
    _, _, test = trainer.prepare_data(train, None, source.test, cfg.get("valid_fraction", 0.1),
                                      cfg.get("test_fraction", 0.0))
    if test is None:
        raise CheckpointError(f"cannot evaluate {path!r}: its run had no test set")
    trainer.log(f"{cfg['model']} from {path} (epoch {state.get('epoch')}, best epoch {trainer.best_epoch}) "
                f"on {source.name} test set, device {trainer.device}")
    return trainer.test(test, batch_size)


def command_line(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    return shlex.join(["kernelnet"] + list(argv))
