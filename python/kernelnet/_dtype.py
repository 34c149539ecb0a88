"""The three dtypes kernelnet has: float32 for data, int64 for labels and indices, bool for masks."""
import numpy as np


class dtype:
    __slots__ = ("name", "code", "np", "itemsize", "is_floating_point")

    def __init__(self, name, code, np_dtype, is_float):
        self.name = name
        self.code = code  # the dtype code the native kernels take (csrc/common/kn.h)
        self.np = np.dtype(np_dtype)
        self.itemsize = self.np.itemsize
        self.is_floating_point = is_float

    def __repr__(self):
        return f"kernelnet.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


float32 = dtype("float32", 0, np.float32, True)
int64 = dtype("int64", 1, np.int64, False)
bool_ = dtype("bool", 2, np.bool_, False)

_ALL = {"float32": float32, "int64": int64, "bool": bool_}
_ALIASES = {"float": float32, "float32": float32, "long": int64, "int64": int64, "int": int64,
            "bool": bool_}


def _by_name(name):
    return _ALL[name]


def to_dtype(obj):
    """Accept kernelnet dtypes, numpy dtypes, Python types, torch dtypes and their names."""
    if obj is None or isinstance(obj, dtype):
        return obj
    if obj is float:
        return float32
    if obj is int:
        return int64
    if obj is bool:
        return bool_
    if isinstance(obj, str):
        key = obj.replace("torch.", "").replace("kernelnet.", "")
        if key in _ALIASES:
            return _ALIASES[key]
    else:
        name = str(obj).replace("torch.", "")
        if name in _ALIASES:
            return _ALIASES[name]
        try:
            return from_numpy_dtype(np.dtype(obj))
        except TypeError:
            pass
    raise TypeError(f"unsupported dtype {obj!r}: kernelnet has float32, int64 and bool")


def from_numpy_dtype(npd, convert=True):
    """The kernelnet dtype a numpy array of dtype `npd` becomes (float64 -> float32 and smaller
    integers -> int64 when `convert`)."""
    npd = np.dtype(npd)
    if npd == np.float32:
        return float32
    if npd == np.int64:
        return int64
    if npd == np.bool_:
        return bool_
    if convert:
        if npd.kind == "f":
            return float32
        if npd.kind in "iu":
            return int64
    raise TypeError(f"unsupported numpy dtype {npd}: kernelnet has float32, int64 and bool")


def promote(a, b):
    """Result dtype of a binary op between two tensor dtypes (PyTorch's category rule)."""
    if a is b:
        return a
    if float32 in (a, b):
        return float32
    if int64 in (a, b):
        return int64
    return bool_
