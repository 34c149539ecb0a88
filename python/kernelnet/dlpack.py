"""DLPack interop: tensors move to and from NumPy, PyTorch and CuPy without copies.

CPU tensors export through NumPy's DLPack implementation (a NumPy view of the same memory);
CUDA tensors through a capsule made in the CUDA module."""
import numpy as np

from . import _dtype as D
from .tensor import Tensor
from ._device import device as Device

_KDLCPU, _KDLCUDA = 1, 2


def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
    if self.requires_grad:
        raise RuntimeError("Can't export a tensor that requires grad through DLPack; call .detach() first")
    if self.device.type == "cpu":
        arr = self.numpy()
        try:
            return arr.__dlpack__(max_version=max_version) if max_version is not None else arr.__dlpack__()
        except TypeError:
            return arr.__dlpack__()
    from ._device import _load_cuda
    mod = _load_cuda()
    self._mark_shared()  # the consumer aliases the storage
    if stream not in (None, -1, 1, 2):
        mod.synchronize()  # our kernels run on one stream; make its work visible to the consumer's
    return mod.to_dlpack(self.data_ptr(), list(self._shape), list(self._stride), self.dtype.code,
                         self.device.index or 0, self)


def __dlpack_device__(self):
    if self.device.type == "cpu":
        return (_KDLCPU, 0)
    return (_KDLCUDA, self.device.index or 0)


Tensor.__dlpack__ = __dlpack__
Tensor.__dlpack_device__ = __dlpack_device__


def from_dlpack(obj):
    """A tensor sharing memory with any DLPack producer (NumPy, PyTorch, CuPy, ...)."""
    from .ops import from_numpy
    if isinstance(obj, Tensor):
        return obj
    dev_type = None
    if hasattr(obj, "__dlpack_device__"):
        dev_type, dev_id = obj.__dlpack_device__()
    if dev_type in (None, _KDLCPU):
        arr = np.from_dlpack(obj) if hasattr(obj, "__dlpack__") else np.from_dlpack(_Capsule(obj))
        if arr.dtype not in (np.float32, np.int64, np.bool_):
            raise TypeError(f"from_dlpack: unsupported dtype {arr.dtype} (kernelnet has float32, int64, bool)")
        return from_numpy(arr)
    if dev_type == _KDLCUDA:
        from ._device import _load_cuda
        from .tensor import _CudaStorage
        mod = _load_cuda()
        if mod is None:
            raise RuntimeError("from_dlpack: the producer is on a CUDA device but kernelnet's CUDA backend is not available")
        cap = obj.__dlpack__(stream=1) if hasattr(obj, "__dlpack__") else obj
        ptr, shape, strides, code, dev_index, owner = mod.from_dlpack(cap)
        dt = {0: D.float32, 1: D.int64, 2: D.bool_}[code]
        n = 1 + sum((s - 1) * st for s, st in zip(shape, strides)) if all(shape) else 0
        st = _CudaStorage(0, n, buf=None, ptr=ptr, owner=owner)
        t = Tensor._make(st, tuple(shape), tuple(strides), 0, dt, Device("cuda", dev_index), ptr)
        t._mark_shared()  # the producer still sees the memory
        return t
    raise TypeError(f"from_dlpack: unsupported device type {dev_type}")


class _Capsule:
    def __init__(self, cap):
        self.cap = cap

    def __dlpack__(self, **_):
        return self.cap

    def __dlpack_device__(self):
        return (_KDLCPU, 0)
