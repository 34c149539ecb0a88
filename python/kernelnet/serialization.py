"""kernelnet.save / kernelnet.load: state dicts (and optimizer state) in a file that never runs code.

Format: a NumPy .npz archive (zip). Member ``__kernelnet__`` holds a JSON description of the saved
object tree (dicts with str/int/float/bool/None keys, lists, tuples, numbers, strings, None) whose
tensor leaves refer to members ``t0``, ``t1``, ... (raw arrays). Loading uses
``numpy.load(allow_pickle=False)``, so no object is ever unpickled; zip CRCs catch corrupted data.
Files are written atomically: temp file in the same folder, fsync, os.replace.
"""
import json
import os
import zipfile

import numpy as np

from ._atomic import atomic_write

import kernelnet as _kn

_MAGIC = "kernelnet.save"
_VERSION = 1
_META = "__kernelnet__"


class SerializationError(RuntimeError):
    pass


def _encode(obj, arrays, seen, path):
    if isinstance(obj, _kn.Tensor):
        key = id(obj)
        if key not in seen:  # a tensor stored twice (tied weights) is saved once and shared on load
            t = obj.detach()
            arr = np.array(t.cpu().numpy(), order="C", copy=True)  # (ascontiguousarray makes 0-d 1-d)
            seen[key] = len(arrays)
            arrays.append((arr, str(obj.device), bool(obj.requires_grad), obj))
        return {"T": "tensor", "i": seen[key]}
    if obj is None:
        return {"T": "none"}
    if isinstance(obj, bool):
        return {"T": "bool", "v": obj}
    if isinstance(obj, int):
        return {"T": "int", "v": int(obj)}
    if isinstance(obj, float):
        return {"T": "float", "v": repr(float(obj))}
    if isinstance(obj, str):
        return {"T": "str", "v": obj}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return _encode(obj.item(), arrays, seen, path)
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"kernelnet.save: dict key {k!r} at {path} has type {type(k).__name__}; "
                                "only str, int, float, bool and None keys can be saved")
            items.append([_encode(k, arrays, seen, path), _encode(v, arrays, seen, f"{path}[{k!r}]")])
        return {"T": "dict", "items": items}
    if isinstance(obj, (list, tuple)):
        return {"T": "list" if isinstance(obj, list) else "tuple",
                "items": [_encode(v, arrays, seen, f"{path}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, np.ndarray):
        raise TypeError(f"kernelnet.save: numpy array at {path}; convert it with kernelnet.from_numpy first")
    raise TypeError(f"kernelnet.save: cannot save object of type {type(obj).__name__} at {path} (supported: "
                    "tensors, dicts, lists, tuples, numbers, strings, None; files never hold code)")


def save(obj, f):
    """Save ``obj`` (a tensor, state dict, optimizer state dict, or nested dicts/lists of those)."""
    arrays, seen = [], {}
    tree = _encode(obj, arrays, seen, "obj")
    meta = {"magic": _MAGIC, "version": _VERSION, "tree": tree,
            "tensors": [{"device": dev, "requires_grad": rg, "dtype": str(a.dtype), "shape": list(a.shape)}
                        for a, dev, rg, _ in arrays]}
    members = {_META: np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    for i, (a, _, _, _) in enumerate(arrays):
        members[f"t{i}"] = a
    if hasattr(f, "write"):
        np.savez(f, **members)
        return
    atomic_write(f, lambda fh: np.savez(fh, **members))


def _decode(node, tensors, where):
    if not isinstance(node, dict) or "T" not in node:
        raise SerializationError(f"kernelnet.load: {where}: malformed object description")
    t = node["T"]
    if t == "tensor":
        i = node.get("i")
        if not isinstance(i, int) or not (0 <= i < len(tensors)):
            raise SerializationError(f"kernelnet.load: {where}: tensor index {i!r} out of range")
        return tensors[i]
    if t == "none":
        return None
    if t == "bool":
        return bool(node["v"])
    if t == "int":
        return int(node["v"])
    if t == "float":
        return float(node["v"])
    if t == "str":
        return str(node["v"])
    if t == "dict":
        return {_decode(k, tensors, where): _decode(v, tensors, where) for k, v in node["items"]}
    if t == "list":
        return [_decode(v, tensors, where) for v in node["items"]]
    if t == "tuple":
        return tuple(_decode(v, tensors, where) for v in node["items"])
    raise SerializationError(f"kernelnet.load: {where}: unknown entry type {t!r}")


def _resolve_device(saved, map_location):
    if map_location is None:
        return saved
    if callable(map_location):
        return map_location(saved)
    if isinstance(map_location, dict):
        return map_location.get(saved, saved)
    return str(map_location)


def load(f, map_location=None, weights_only=True):
    """Load what ``kernelnet.save`` wrote. ``map_location`` ("cpu", "cuda", a dict or a callable)
    moves tensors as in PyTorch; without it they return to the device they were saved from."""
    name = getattr(f, "name", None) if hasattr(f, "read") else os.fspath(f)
    where = repr(name) if name is not None else "<file object>"
    try:
        if not hasattr(f, "read") and not os.path.exists(f):
            raise FileNotFoundError(f"kernelnet.load: no such file: {where}")
        with np.load(f, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile) or _META not in z.files:
                raise SerializationError(f"kernelnet.load: {where} is not a file written by kernelnet.save "
                                         "(no kernelnet header)")
            meta = json.loads(bytes(z[_META]).decode("utf-8"))
            if meta.get("magic") != _MAGIC:
                raise SerializationError(f"kernelnet.load: {where} is not a file written by kernelnet.save")
            if meta.get("version", 0) > _VERSION:
                raise SerializationError(f"kernelnet.load: {where} has format version {meta.get('version')}; "
                                         f"this kernelnet reads up to version {_VERSION}")
            infos = meta["tensors"]
            tensors = []
            for i, info in enumerate(infos):
                key = f"t{i}"
                if key not in z.files:
                    raise SerializationError(f"kernelnet.load: {where} is missing tensor {key}")
                arr = z[key]
                if list(arr.shape) != list(info["shape"]) or str(arr.dtype) != info["dtype"]:
                    raise SerializationError(f"kernelnet.load: {where}: tensor {key} has shape {arr.shape} "
                                             f"dtype {arr.dtype}, header says {info['shape']} {info['dtype']}")
                t = _kn.from_numpy(np.array(arr, copy=True))
                dev = _resolve_device(info["device"], map_location)
                if dev is not None and str(dev) != "cpu":
                    t = t.to(dev)
                if info.get("requires_grad"):
                    t.requires_grad_(True)
                tensors.append(t)
            return _decode(meta["tree"], tensors, where)
    except (SerializationError, FileNotFoundError):
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, KeyError, OSError,
            json.JSONDecodeError, UnicodeDecodeError, TypeError) as ex:
        raise SerializationError(f"kernelnet.load: {where} is corrupted or truncated, or is not a kernelnet "
                                 f"file ({type(ex).__name__}: {ex})") from ex
