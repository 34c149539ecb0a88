"""Creating tensors: from data, filled, ranges, random (Philox, reproducible on CPU and GPU)."""
import numbers

import numpy as np

from .. import _dtype as D
from .._device import to_device, CPU
from ..tensor import Tensor
from .. import graphs as _graphs
from ._util import shape_arg


def _finish(t, requires_grad):
    if requires_grad:
        t.requires_grad_(True)
    return t


def _size_kw(size, kw, fn, ignored=()):
    """f(2, 3), f((2, 3)) or f(size=(2, 3)), as PyTorch's factories take them; any other keyword is
    an error (a typo like dtpye= must not pass silently), except those in `ignored`."""
    kw_size = kw.pop("size", None)
    unknown = [k for k in kw if k not in ignored]
    if unknown:
        raise TypeError(f"{fn}() got an unexpected keyword argument '{unknown[0]}'")
    if kw_size is not None:
        if size:
            raise TypeError(f"{fn}(): size given both positionally and as size=")
        return (kw_size,)
    return size


def empty(*size, dtype=None, device=None, requires_grad=False, **kw):
    # pin_memory, memory_format, layout: accepted as PyTorch's, without effect
    size = _size_kw(size, kw, "empty", ignored=("pin_memory", "memory_format", "layout"))
    return _finish(Tensor._empty(shape_arg(size), D.to_dtype(dtype) or D.float32, to_device(device)), requires_grad)


_INT64_MIN, _INT64_END = -(1 << 63), 1 << 63


def fill_native(t, value):
    """Write value into every element of the contiguous tensor t, converted as PyTorch converts a
    fill value: bool by truth (0.5 and NaN are True), int64 exactly (a Python int past 2**53 would
    lose bits through the kernels' double) or truncated from a float, refusing what int64 cannot
    hold."""
    n = t.numel()
    if t.dtype is D.float32 and type(value) in (int, float):  # the common case first (zeros, ones)
        if n:
            t._backend.fill(D.float32.code, t.data_ptr(), n, float(value))
        return t
    if isinstance(value, Tensor):
        value = value.item()  # a 0-d tensor's number (fill_(tensor), as PyTorch accepts)
    if t.dtype is D.int64:
        _check_int64_range(np.asarray(value))  # tensor()'s rule: NaN, inf and past 2**63 refused
        if n:
            t._backend.fill_int64(t.data_ptr(), n, int(value))  # int(): exact, or truncating a float
    elif n:
        v = (1.0 if value else 0.0) if t.dtype is D.bool_ else float(value)
        t._backend.fill(t.dtype.code, t.data_ptr(), n, v)
    return t


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None:
        dtype = D.bool_ if isinstance(fill_value, bool) else (
            D.int64 if isinstance(fill_value, numbers.Integral) else D.float32)
    t = Tensor._empty(shape_arg((size,)) if not isinstance(size, int) else (size,), D.to_dtype(dtype), to_device(device))
    fill_native(t, fill_value)
    return _finish(t, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False, **kw):
    size = _size_kw(size, kw, "zeros")
    return full(shape_arg(size), 0, dtype=D.to_dtype(dtype) or D.float32, device=device, requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False, **kw):
    size = _size_kw(size, kw, "ones")
    return full(shape_arg(size), 1, dtype=D.to_dtype(dtype) or D.float32, device=device, requires_grad=requires_grad)


def _like(t, dtype, device):
    return (D.to_dtype(dtype) or t.dtype), (to_device(device) if device is not None else t.device)


def empty_like(t, dtype=None, device=None, requires_grad=False):
    dt, dev = _like(t, dtype, device)
    return empty(t.shape, dtype=dt, device=dev, requires_grad=requires_grad)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    dt, dev = _like(t, dtype, device)
    return full(tuple(t.shape), 0, dtype=dt, device=dev, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    dt, dev = _like(t, dtype, device)
    return full(tuple(t.shape), 1, dtype=dt, device=dev, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    dt, dev = _like(t, dtype, device)
    return full(tuple(t.shape), fill_value, dtype=dt, device=dev, requires_grad=requires_grad)


def from_numpy(arr):
    """Share memory with a NumPy array (float32, int64, bool). Other dtypes are converted with a
    copy (kernelnet computes in float32: float64 input becomes float32)."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(arr).__name__}")
    dt = D.from_numpy_dtype(arr.dtype)
    if arr.dtype != dt.np:
        arr = arr.astype(dt.np)
    isz = dt.itemsize
    if arr.size == 0 or any(s < 0 or s % isz for s in arr.strides):
        arr = np.ascontiguousarray(arr)
    if arr.size == 0:
        return Tensor._empty(arr.shape, dt, CPU)
    strides = tuple(s // isz for s in arr.strides)
    extent = 1 + sum((n - 1) * s for n, s in zip(arr.shape, strides))
    storage = np.lib.stride_tricks.as_strided(arr, shape=(extent,), strides=(isz,))
    t = Tensor._make(storage, arr.shape, strides, 0, dt, CPU, storage.ctypes.data)
    t._mark_shared()  # arr aliases the storage
    return t


def _to_numpy_data(data, dtype):
    if isinstance(data, Tensor):
        return data.detach().cpu().numpy()
    if hasattr(data, "__dlpack__") and not isinstance(data, np.ndarray) and type(data).__module__.startswith("torch"):
        data = data.detach().cpu().numpy()
    arr = np.asarray(data)
    if arr.dtype == object:
        # a list of tensors / mixed scalars
        arr = np.array([np.asarray(x.tolist() if isinstance(x, Tensor) else x) for x in data])
    return arr


def _check_int64_range(arr):
    """Refuse what has no int64 (PyTorch raises; NumPy's cast wraps 2**63 and turns NaN into
    -2**63, silently)."""
    if arr.dtype == object:
        vals = [int(v) for v in arr.reshape(-1)]
        bad = next((v for v in vals if not _INT64_MIN <= v < _INT64_END), None)
    elif arr.dtype.kind == "u":
        over = arr.reshape(-1) > np.uint64(_INT64_END - 1)
        bad = int(arr.reshape(-1)[over][0]) if over.any() else None
    elif arr.dtype.kind == "f":
        ok = np.isfinite(arr) & (arr >= -2.0 ** 63) & (arr < 2.0 ** 63)
        bad = None if ok.all() else arr.reshape(-1)[~ok.reshape(-1)][0]
    else:
        return
    if bad is not None:
        raise RuntimeError(f"value cannot be converted to type int64 without overflow: {bad}")


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of `data` (lists, scalars, NumPy arrays, tensors)."""
    arr = _to_numpy_data(data, dtype)
    dt = D.to_dtype(dtype) or D.from_numpy_dtype(arr.dtype)
    if dt is D.int64 and arr.size and arr.dtype != np.int64:
        _check_int64_range(arr)
    # not np.ascontiguousarray: it turns 0-d input into shape (1,), so tensor(3.0) was 1-d
    arr = np.asarray(arr, dtype=dt.np, order="C")
    dev = to_device(device)
    t = Tensor._empty(arr.shape, dt, CPU)
    if arr.size:
        t._storage[:arr.size] = arr.reshape(-1)
        if _graphs._capture is not None and dev.type == "cpu" and _graphs.active() is not None:
            # written by Python, not by a kernel: a replay would start from what the last replay
            # left there (acc = tensor(0.); acc += x). Copy it with a recorded kernel instead.
            from .copy import _contiguous_copy
            t = _contiguous_copy(t)
    if dev.type != "cpu":
        t = t.to(dev)
    return _finish(t, requires_grad)


def as_tensor(data, dtype=None, device=None):
    if isinstance(data, Tensor):
        out = data
        if dtype is not None:
            out = out.to(D.to_dtype(dtype))
        if device is not None:
            out = out.to(to_device(device))
        return out
    if isinstance(data, np.ndarray) and (dtype is None or D.to_dtype(dtype).np == data.dtype) and (device is None or to_device(device).type == "cpu"):
        return from_numpy(data)
    return tensor(data, dtype=dtype, device=device)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    vals = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    if dtype is None:
        dtype = D.int64 if all(isinstance(v, numbers.Integral) for v in vals) else D.float32
    dtype = D.to_dtype(dtype)
    if vals[2] == 0 or (dtype is D.int64 and int(vals[2]) == 0):
        raise ValueError("arange: step must be nonzero")
    if (vals[1] - vals[0]) * vals[2] < 0:
        raise RuntimeError(f"arange: upper bound and larger bound inconsistent with step sign (start {vals[0]}, "
                           f"end {vals[1]}, step {vals[2]})")
    arr = np.arange(vals[0], vals[1], vals[2], dtype=np.float64 if dtype is D.float32 else np.int64)
    return tensor(arr, dtype=dtype, device=device, requires_grad=requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    return tensor(np.linspace(start, end, int(steps)), dtype=dtype or D.float32, device=device, requires_grad=requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return tensor(np.eye(n, m), dtype=dtype or D.float32, device=device, requires_grad=requires_grad)


# ------------------------------------------------------------------ random
class Generator:
    """A Philox stream: (seed, offset). Each draw of n numbers uses offsets [offset, offset+n), so
    the same seed gives the same numbers on CPU and GPU and regardless of thread count."""

    def __init__(self, device="cpu"):
        self.device = to_device(device)
        self._seed = 67280421310721
        self._offset = 0

    def manual_seed(self, seed):
        self._seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self._offset = 0
        return self

    def seed(self):
        import random as _r
        return self.manual_seed(_r.getrandbits(63))._seed

    def initial_seed(self):
        return self._seed

    def get_state(self):
        return tensor([self._seed & 0x7FFFFFFFFFFFFFFF, self._seed >> 63, self._offset], dtype=D.int64)

    def set_state(self, state):
        s = [int(v) for v in (state.tolist() if isinstance(state, Tensor) else state)]
        self._seed = s[0] | (s[1] << 63)
        self._offset = s[2]

    def _advance(self, n):
        if _graphs._capture is not None and _graphs.active() is not None:
            _graphs._refuse("drawing random numbers other than dropout masks")
        off = self._offset
        # whole Philox blocks: keep successive draws from sharing a counter
        self._offset += (int(n) + 3) // 4 * 4 if n > 0 else 0
        return self._seed, off


default_generator = Generator()


def manual_seed(seed):
    """Seed kernelnet's default generator (and NumPy's global one is left alone)."""
    default_generator.manual_seed(seed)
    return default_generator


def seed():
    return default_generator.seed()


def initial_seed():
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(state):
    default_generator.set_state(state)


def _gen(generator):
    return default_generator if generator is None else generator


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False, **kw):
    size = _size_kw(size, kw, "rand")
    t = uniform_(empty(*size, dtype=dtype, device=device), 0.0, 1.0, generator=generator)
    return _finish(t, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False, **kw):
    size = _size_kw(size, kw, "randn")
    t = normal_(empty(*size, dtype=dtype, device=device), 0.0, 1.0, generator=generator)
    return _finish(t, requires_grad)


def rand_like(t, dtype=None, device=None):
    return rand(*t.shape, dtype=dtype or t.dtype, device=device or t.device)


def randn_like(t, dtype=None, device=None):
    return randn(*t.shape, dtype=dtype or t.dtype, device=device or t.device)


def uniform_(t, a=0.0, b=1.0, generator=None):
    """Fill t in place with U[a, b) (nn.init and Tensor.uniform_ use it)."""
    _fill_random(t, "philox_uniform", a, b, generator)
    return t


def normal_(t, mean=0.0, std=1.0, generator=None):
    _fill_random(t, "philox_normal", mean, std, generator)
    return t


def _fill_random(t, kernel, p0, p1, generator):
    if t.dtype is not D.float32:
        raise TypeError(f"{kernel.split('_')[1]}_: random fill needs a float32 tensor, got {t.dtype}")
    seed, off = _gen(generator)._advance(t.numel())
    if t.is_contiguous():
        getattr(t._backend, kernel)(t.data_ptr(), t.numel(), seed, off, float(p0), float(p1))
    else:
        tmp = empty(*t.shape, device=t.device)
        getattr(tmp._backend, kernel)(tmp.data_ptr(), tmp.numel(), seed, off, float(p0), float(p1))
        t._assign(tmp)


def normal(mean, std, size=None, generator=None, device=None):
    if size is not None:
        return normal_(empty(*size, device=device), float(mean), float(std), generator)
    from . import elementwise as E
    shape = mean.shape if isinstance(mean, Tensor) else std.shape
    z = normal_(empty(*shape, device=(mean if isinstance(mean, Tensor) else std).device), 0.0, 1.0, generator)
    return E.add(E.mul(z, std), mean)


def bernoulli_mask(shape, p_keep, scale, device=CPU, generator=None):
    """float32 mask: `scale` with probability p_keep, else 0 (dropout)."""
    t = empty(*shape, device=device)
    seed, off = _gen(generator)._advance(t.numel())
    t._backend.philox_bernoulli_mask(t.data_ptr(), t.numel(), seed, off, float(p_keep), float(scale))
    return t


def randint(low, high=None, size=None, generator=None, dtype=None, device=None):
    if size is None and isinstance(high, (tuple, list)) or (size is None and high is not None and
                                                             hasattr(high, "__len__")):
        low, high, size = 0, low, high  # randint(high, size), as PyTorch
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    if not low < high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    u = rand(*shape_arg((size,)) if not isinstance(size, int) else (size,), generator=generator)
    vals = np.floor(u.numpy().astype(np.float64) * (high - low)).astype(np.int64) + low
    return tensor(np.minimum(vals, high - 1), dtype=dtype or D.int64, device=device)


def randperm(n, generator=None, dtype=None, device=None):
    # argsort of Philox uniforms: a permutation determined by the generator's stream
    u = rand(int(n), generator=generator).numpy()
    return tensor(np.argsort(u, kind="stable"), dtype=dtype or D.int64, device=device)
