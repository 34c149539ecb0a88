"""The ``kernelnet`` command (also ``python -m kernelnet``).

    kernelnet train [--dataset digits|fashion-mnist|mnist|PATH] [--model mlp|cnn|perceptron] ...
    kernelnet eval CHECKPOINT
    kernelnet info

Errors the user can fix (unknown dataset, unreadable checkpoint, bad flag) print one line to
stderr and exit non-zero, without a traceback.
"""
import argparse
import os
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _positive_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def _fraction(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {s!r}") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {s!r}")
    return v


def build_parser():
    from .train.zoo import available_models
    p = _Parser(prog="kernelnet", description="kernelnet: train and evaluate the course's models.")
    sub = p.add_subparsers(dest="command", metavar="{train,eval,info}", parser_class=_Parser)
    t = sub.add_parser("train", help="train a model (no arguments: the course MLP on digits, ~10 s)",
                       description="Train a zoo model; writes history.json, plots, checkpoint and the command "
                                   "line to --out.")
    t.add_argument("--dataset", default="digits",
                   help="digits (scikit-learn, no download), fashion-mnist, mnist, or PATH to an .npz "
                        "(arrays X, y[, X_test, y_test]) or a folder of IDX files (default: digits)")
    t.add_argument("--model", default="mlp", choices=available_models(), help="zoo model (default: mlp 64-32-16)")
    t.add_argument("--epochs", type=_positive_int, default=None, help="default: 30 on digits, 10 otherwise")
    t.add_argument("--batch-size", type=_positive_int, default=32)
    t.add_argument("--lr", type=_positive_float, default=1e-3)
    t.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam")
    t.add_argument("--scheduler", choices=["none", "step", "cosine", "plateau"], default="none")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="run folder (default: ./kernelnet-runs/<time>-<dataset>-<model>)")
    t.add_argument("--patience", type=_positive_int, default=None,
                   help="early stopping after this many epochs without a lower validation loss")
    t.add_argument("--grad-clip", type=_positive_float, default=None, help="clip the global gradient norm")
    t.add_argument("--graphed", action="store_true",
                   help="replay each training batch's forward+backward from one capture (kernelnet.graphed): "
                        "same results, less per-step overhead")
    t.add_argument("--valid-fraction", type=_fraction, default=0.1,
                   help="fraction of the training data held out for validation (default 0.1)")
    t.add_argument("--test-fraction", type=_fraction, default=None,
                   help="fraction held out as test set when the dataset has none (default 0.15)")
    t.add_argument("--limit", type=_positive_int, default=None, help="train on the first N samples only")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--no-plots", action="store_true")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    e = sub.add_parser("eval", help="evaluate a checkpoint on its test set",
                       description="Evaluate the best model of a `kernelnet train` run on its test set, "
                                   "beside the baselines.")
    e.add_argument("checkpoint", help="checkpoint.ckpt or the run folder")
    e.add_argument("--dataset", default=None, help="override the run's dataset")
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    e.add_argument("--batch-size", type=_positive_int, default=256)
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    sub.add_parser("info", help="what kernelnet runs on (backends, SIMD path, threads, GPU)")
    return p


def _fail(msg, code=1):
    sys.stderr.write(f"kernelnet: error: {msg}\n")
    return code


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "info":
        import kernelnet
        kernelnet.info()
        return 0
    from .train.checkpoint import CheckpointError
    from .train.data_sources import DataError
    try:
        if args.command == "train":
            from .train.run import command_line, train_run
            if args.resume and not args.out:
                return _fail("--resume needs --out DIR (the run folder to continue)", 2)
            train_run(dataset=args.dataset, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, optimizer=args.optimizer, device=args.device, seed=args.seed, out=args.out,
                      patience=args.patience, scheduler=None if args.scheduler == "none" else args.scheduler,
                      grad_clip=args.grad_clip, limit=args.limit, valid_fraction=args.valid_fraction,
                      test_fraction=args.test_fraction, weight_decay=args.weight_decay, resume=args.resume,
                      make_plots=not args.no_plots, command=command_line(argv), progress=not args.quiet,
                      graphed=args.graphed)
            return 0
        if args.command == "eval":
            from .train.run import eval_run
            r = eval_run(args.checkpoint, dataset=args.dataset, device=args.device, batch_size=args.batch_size,
                         verbose=not args.json)
            if args.json:
                import json
                from .train.checkpoint import _json_safe
                print(json.dumps(_json_safe(r), indent=1))
            return 0
    except (DataError, CheckpointError, FileNotFoundError, NotImplementedError, FloatingPointError) as ex:
        return _fail(str(ex).splitlines()[0] if str(ex) else type(ex).__name__)
    except ValueError as ex:  # bad combinations the parser cannot see (e.g. cnn on tabular data)
        return _fail(str(ex).splitlines()[0])
    except RuntimeError as ex:
        if "CUDA" in str(ex) or "cuda" in str(ex):
            return _fail(str(ex).splitlines()[0])
        raise
    except KeyboardInterrupt:
        return _fail("interrupted (the last completed epoch is in the run's checkpoint; continue with --resume)", 130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
