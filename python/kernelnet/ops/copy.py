"""Copies between layouts, dtypes and devices: contiguous, clone, to(), and in-place assignment."""
import numpy as np

from .. import _dtype as D
from .._device import to_device, backend
from ..autograd import Function
from ..tensor import Tensor, _CudaStorage
from ._util import coalesce


def _contiguous_copy(t):
    out = Tensor._empty(t._shape, t.dtype, t.device)
    if t.numel():
        shape, (st,) = coalesce(t._shape, t._stride)
        t._backend.copy_strided(t.dtype.code, out.data_ptr(), t.data_ptr(), shape, st)
    return out


class Contiguous(Function):
    ctx_holds_tensors = False

    @staticmethod
    def forward(ctx, x):
        return _contiguous_copy(x)

    @staticmethod
    def backward(ctx, g):
        return g


def contiguous(t):
    if t.is_contiguous():
        return t
    return Contiguous.apply(t)


class Clone(Function):
    ctx_holds_tensors = False

    @staticmethod
    def forward(ctx, x):
        return _contiguous_copy(x)

    @staticmethod
    def backward(ctx, g):
        return g


def clone(t, memory_format=None):
    return Clone.apply(t)


def _cast(t, dtype):
    src = t if t.is_contiguous() else _contiguous_copy(t)
    out = Tensor._empty(t._shape, dtype, t.device)
    if t.numel():
        t._backend.cast(t.dtype.code, dtype.code, out.data_ptr(), src.data_ptr(), t.numel())
    return out


def _to_device(t, dev):
    src = t if t.is_contiguous() else _contiguous_copy(t)
    nbytes = t.numel() * t.dtype.itemsize
    if t.device.type != dev.type:
        from .. import graphs as _graphs
        if _graphs._capture is not None and _graphs.active() is not None:
            _graphs._refuse(f"copying a tensor from {t.device} to {dev} (a CUDA graph cannot replay it)")
    out = Tensor._empty(t._shape, t.dtype, dev)
    if nbytes == 0:
        return out
    if t.device.type == "cpu" and dev.type == "cuda":
        out._backend.memcpy_htod(out.data_ptr(), src.data_ptr(), nbytes)
    elif t.device.type == "cuda" and dev.type == "cpu":
        t._backend.memcpy_dtoh(out.data_ptr(), src.data_ptr(), nbytes)
    else:
        t._backend.memcpy_dtod(out.data_ptr(), src.data_ptr(), nbytes)
    return out


class To(Function):
    ctx_holds_tensors = False

    @staticmethod
    def forward(ctx, x, dtype, dev):
        ctx.src = (x.dtype, x.device)
        y = x
        if dev != x.device:
            y = _to_device(y, dev)
        if dtype is not y.dtype:
            y = _cast(y, dtype)
        return y

    @staticmethod
    def backward(ctx, g):
        dtype, dev = ctx.src
        if not dtype.is_floating_point:
            return None
        return to(g, dev)


def to(t, *args, dtype=None, device=None, non_blocking=False, copy=False, **_):
    """t.to(device), t.to(dtype), t.to(device, dtype), t.to(other_tensor)."""
    for a in args:
        if isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
        elif isinstance(a, D.dtype) or a in (float, int, bool) or (isinstance(a, str) and a.replace("torch.", "") in D._ALIASES) or "dtype" in type(a).__name__:
            try:
                dtype = D.to_dtype(a)
            except TypeError:
                device = a
        else:
            device = a
    dtype = D.to_dtype(dtype) or t.dtype
    dev = to_device(device) if device is not None else t.device
    if dtype is t.dtype and dev == t.device:
        return clone(t) if copy else t
    return To.apply(t, dtype, dev)


def assign(dst, src):
    """dst[...] = src, in place (broadcasting src, casting its dtype, moving its device)."""
    from ._util import broadcast_strides
    from .creation import tensor
    if not isinstance(src, Tensor):
        from .. import graphs as _graphs
        if dst.device.type != "cpu" and np.ndim(src) == 0 and _graphs._capture is not None \
                and _graphs.active() is not None:
            from .creation import full
            src = full((), src, dtype=dst.dtype, device=dst.device)  # a captured fill, no host copy
        else:
            src = tensor(src, dtype=dst.dtype, device=dst.device)
    if src.device != dst.device:
        if src.dim() == 0 or src.device.type == "cpu" and src.numel() == 1:
            src = src.to(dst.device)
        else:
            raise RuntimeError(f"copy_: expected src on {dst.device}, got {src.device}")
    if src.dtype is not dst.dtype:
        src = _cast(src, dst.dtype)
    from ._util import broadcast_shapes
    shape = broadcast_shapes(dst._shape, src._shape, op="copy_")
    if shape != dst._shape:
        raise ValueError(f"copy_: cannot broadcast source of shape {tuple(src.shape)} to destination of shape {tuple(dst.shape)}")
    if dst.numel() == 0:
        return dst
    if _overlaps(dst, src):
        src = _contiguous_copy(src)
    sh, (ds, ss) = coalesce(dst._shape, list(dst._stride), broadcast_strides(src, dst._shape))
    dst._backend.assign_strided(dst.dtype.code, dst.data_ptr(), ds, src.data_ptr(), ss, sh)
    return dst


def _overlaps(a, b):
    return a._storage is b._storage and a._base_ptr == b._base_ptr and not (
        a._offset == b._offset and a._stride == b._stride and a._shape == b._shape)
