"""Atomic files and resumable training checkpoints.

A checkpoint is one ``kernelnet.save`` file (an .npz archive that never holds code) with the
model, optimizer and scheduler state dicts, the random generators' states, the callbacks' state,
the per-epoch history, the best epoch so far and the epoch count. Every file is written to a
temporary name in the same folder, flushed and then renamed over the old one (os.replace), so
an interrupted write leaves the previous checkpoint intact, never a truncated one.
"""
import json
import math
import os

from kernelnet._atomic import atomic_write

FORMAT = "kernelnet.train.checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not match what it is loaded into."""


_atomic_write = atomic_write  # plots.py imports this name


def _json_safe(obj):
    """NaN/inf are not JSON: write them as null so any JSON reader accepts the file."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _json_safe(obj.tolist())
    if hasattr(obj, "item"):
        return obj.item()
    return obj


def write_json(path, obj):
    data = json.dumps(_json_safe(obj), indent=1, allow_nan=False).encode("utf-8")
    _atomic_write(path, lambda fh: fh.write(data))


def write_text(path, text):
    _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def save_state(obj, path):
    """kernelnet.save(obj) to path, atomically."""
    import kernelnet as kn
    _atomic_write(path, lambda fh: kn.save(obj, fh))


def load_state(path, map_location=None, what="checkpoint"):
    """kernelnet.load with one clear error (CheckpointError) for a missing, truncated or foreign file."""
    import kernelnet as kn
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"cannot read {what} {path!r}: no such file")
    if os.path.isdir(path):
        raise CheckpointError(f"cannot read {what} {path!r}: it is a folder")
    try:
        return kn.load(path, map_location=map_location)
    except Exception as ex:  # SerializationError, OSError, ...: one message naming the file
        msg = str(ex).splitlines()[0] if str(ex) else type(ex).__name__
        raise CheckpointError(f"cannot read {what} {path!r}: {msg}") from ex


def save_checkpoint(path, state):
    state = dict(state)
    state["format"] = FORMAT
    state["version"] = VERSION
    save_state(state, path)


def load_checkpoint(path, map_location=None):
    state = load_state(path, map_location=map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"cannot read checkpoint {os.fspath(path)!r}: it is a kernelnet file but not a "
                              "training checkpoint (written by kernelnet.save, not by the Trainer)")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"cannot read checkpoint {os.fspath(path)!r}: format version "
                              f"{state.get('version')} is newer than this kernelnet reads ({VERSION})")
    return state


# ------------------------------------------------------------------ random generators
def rng_state(generators):
    """{name: state tensor} for kernelnet's default generator and the given named generators."""
    import kernelnet as kn
    out = {"default": kn.get_rng_state()}
    for name, g in generators.items():
        out[name] = g.get_state()
    return out


def set_rng_state(state, generators):
    import kernelnet as kn
    kn.set_rng_state(state["default"])
    for name, g in generators.items():
        if name in state:
            g.set_state(state[name])
