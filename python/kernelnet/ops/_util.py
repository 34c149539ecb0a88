"""Helpers shared by the op files: argument checks with clear errors, broadcasting, dimension
coalescing for the native strided kernels."""
import numbers
from builtins import all as builtins_all

import numpy as np

from .. import _dtype as D
from ..tensor import Tensor


def check_same_device(op, *tensors):
    devs = [t.device for t in tensors if isinstance(t, Tensor)]
    for d in devs[1:]:
        if d != devs[0]:
            raise RuntimeError(f"{op}: expected all tensors to be on the same device, but found at "
                               f"least two devices, {devs[0]} and {d}")
    return devs[0] if devs else None


def broadcast_shapes(*shapes, op="broadcast"):
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(nd):
        size = 1
        for s in shapes:
            j = i - (nd - len(s))
            if j < 0:
                continue
            d = s[j]
            if d == 1:
                continue
            if size != 1 and d != size:
                raise ValueError(f"{op}: shapes {' and '.join(str(tuple(x)) for x in shapes)} cannot be "
                                 f"broadcast together (size {size} vs {d} at dimension {i - nd})")
            size = d
        out.append(size)
    return tuple(out)


def broadcast_strides(t, shape):
    """Strides (elements) that make t look like `shape` (0 on broadcast dims)."""
    nd = len(shape)
    off = nd - t.dim()
    st = [0] * nd
    for i in range(t.dim()):
        if t._shape[i] != 1:
            st[off + i] = t._stride[i]
    return st


def coalesce(shape, *stride_lists):
    """Merge adjacent dims that are contiguous with each other in every operand (and drop size-1
    dims), so the kernels iterate over as few, long rows as possible."""
    dims = [(s, [sl[i] for sl in stride_lists]) for i, s in enumerate(shape) if s != 1]
    if not dims:
        return [], [[] for _ in stride_lists]
    out = [dims[0]]
    for s, sts in dims[1:]:
        ps, psts = out[-1]
        if all(pst == st * s for pst, st in zip(psts, sts)):
            out[-1] = (ps * s, sts)
        else:
            out.append((s, sts))
    shape_c = [s for s, _ in out]
    strides_c = [[sts[k] for _, sts in out] for k in range(len(stride_lists))]
    return shape_c, strides_c


def scalar_dtype(x):
    if isinstance(x, (bool, np.bool_)):
        return D.bool_
    if isinstance(x, numbers.Integral):
        return D.int64
    return D.float32


def result_dtype(a, b):
    """PyTorch's promotion: a Python scalar does not raise a tensor's dtype within its category."""
    ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
    if ta and tb:
        # a 0-d tensor behaves like a scalar only across categories
        if a.dim() == 0 and b.dim() > 0:
            return _cat_promote(b.dtype, a.dtype)
        if b.dim() == 0 and a.dim() > 0:
            return _cat_promote(a.dtype, b.dtype)
        return D.promote(a.dtype, b.dtype)
    if ta:
        return _cat_promote(a.dtype, scalar_dtype(b))
    if tb:
        return _cat_promote(b.dtype, scalar_dtype(a))
    return D.promote(scalar_dtype(a), scalar_dtype(b))


def _cat_promote(tensor_dtype, other):
    order = {D.bool_: 0, D.int64: 1, D.float32: 2}
    return other if order[other] > order[tensor_dtype] else tensor_dtype


def normalize_dims(dim, ndim, op):
    if dim is None:
        return list(range(ndim))
    if isinstance(dim, (int, np.integer)):
        dim = [dim]
    if not isinstance(dim, (list, tuple)) or not builtins_all(isinstance(d, (int, np.integer)) for d in dim):
        raise TypeError(f"{op}: dim must be an int or a tuple of ints, got {dim!r}")
    out = []
    for d in dim:
        if ndim == 0 and d in (0, -1):
            continue
        if not -ndim <= d < ndim:
            raise IndexError(f"{op}: dimension {d} out of range for a tensor of {ndim} dimensions")
        d = d % ndim
        if d in out:
            raise ValueError(f"{op}: dimension {d} appears more than once")
        out.append(d)
    return sorted(out)


def shape_arg(args):
    """Accept f(2, 3), f((2, 3)), f([2, 3]) and f(Size)."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = args[0]
    if type(args) is tuple and all([type(a) is int for a in args]):
        return args  # already a tuple of ints (the common case, and every second call from full())
    if any(isinstance(a, float) for a in args):  # int(2.5) would truncate: PyTorch refuses it
        raise TypeError(f"shape must be ints, got {args!r}")
    try:
        return tuple(int(a) for a in args)
    except TypeError:
        raise TypeError(f"shape must be ints, got {args!r}") from None
