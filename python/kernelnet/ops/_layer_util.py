"""Argument handling shared by the layer ops (conv, pool, loss, dropout): type/dtype/device checks
that raise errors naming the op, int-or-pair arguments, contiguous inputs for the native kernels."""
import numbers

from ..tensor import Tensor


def check_tensor(op, name, t, dtype=None, device=None):
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    if dtype is not None and t.dtype is not dtype:
        raise ValueError(f"{op}: {name} must be {dtype}, got {t.dtype} (shape {tuple(t.shape)})")
    if device is not None and t.device != device:
        raise ValueError(f"{op}: {name} is on {t.device} but the input is on {device}")


def pair(op, name, v):
    """An int or a 1/2-sequence of ints -> (int, int)."""
    if isinstance(v, numbers.Integral):
        return (int(v), int(v))
    try:
        v = tuple(int(e) for e in v)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}") from None
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    return v


def as_contiguous(t):
    """t itself if dense row-major, else a contiguous copy (autograd-aware)."""
    if t.is_contiguous():
        return t
    from .copy import contiguous
    return contiguous(t)
