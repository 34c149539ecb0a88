"""The Tensor: a strided view (shape, strides, offset) of a storage on a device.

CPU storage is a 1-d NumPy array (so `.numpy()` and `from_numpy` share memory, and DLPack comes
from NumPy's implementation), large ones backed by the host caching allocator in `kernelnet._cpu`;
CUDA storage is a block from the caching allocator in `kernelnet._cuda`. View ops (reshape,
permute, slicing, expand) only change the metadata; math runs in the native kernels (see ops/),
chosen by device.
"""
import weakref

import numpy as np

from . import _dtype as D
from ._device import _cpu, backend, to_device, CPU, device as Device
from . import autograd
from .autograd import _write_epoch

# Every CPU buffer comes from the native allocator (csrc/cpu/host_memory.cpp): blocks of 64 KiB and
# more from its cache, smaller ones from malloc, whose free lists fault no pages anyway.
_host_alloc = _cpu.host_alloc

# Set by kernelnet.graphs while a capture runs (each acts only in the capturing thread): one keeps
# the storages of CPU tensors made meanwhile (a CPU replay writes into them again, so they must
# outlive the capture), one refuses reading values on the host (a replay would not re-run the
# Python code that used them).
_capture_retain = None
_host_read_guard = None


def _contig_strides(shape):
    n = len(shape)
    # the common ranks spelled out: this runs for every tensor made, and the loop cost ~1.4 us
    if n == 2:
        return (shape[1] or 1, 1)
    if n == 1:
        return (1,)
    if n == 3:
        s2 = shape[2] or 1
        return (s2 * (shape[1] or 1), s2, 1)
    if n == 4:  # NCHW activations
        s3 = shape[3] or 1
        s2 = s3 * (shape[2] or 1)
        return (s2 * (shape[1] or 1), s2, s3, 1)
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(strides))


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


class _CudaStorage:
    """Device memory for a tensor (a caching-allocator block) plus its size in elements."""
    __slots__ = ("buf", "ptr", "size", "owner")

    def __init__(self, nbytes, size, buf=None, ptr=None, owner=None):
        if buf is None and ptr is None:
            # backend() raises a clear RuntimeError when CUDA is not built or no GPU is visible
            buf = backend(Device("cuda")).Buffer(max(int(nbytes), 1))
        self.buf = buf
        self.ptr = buf.ptr if ptr is None else ptr
        self.size = size
        self.owner = owner  # keeps an imported (DLPack) producer alive


_ref = weakref.ref


class _HookHandle:
    """What register_hook returns (PyTorch's RemovableHandle): remove() detaches the hook."""

    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _always_shared():
    return _always_shared


_FOREVER = _always_shared  # a "weak reference" that never dies: an alias kernelnet cannot follow


def _add_sharer(vc, base, t):
    """Note in counter box vc that t sees base's memory (base too, on its first view)."""
    refs = vc[2]
    if refs is None:
        vc[2] = [_ref(base), _ref(t)]
        return
    refs.append(_ref(t))
    n = len(refs)
    if n >= 64 and not n & (n - 1):
        # a long-lived tensor viewed every step (w.t() in each backward): drop the dead, at each
        # power of two only, so that many live views cost amortised O(1) per view, not a rescan
        vc[2] = [r for r in refs if r() is not None]


class Tensor:
    __slots__ = ("_storage", "_shape", "_stride", "_offset", "dtype", "device", "requires_grad",
                 "grad", "grad_fn", "_output_nr", "_base_ptr", "_hooks", "_vc", "_vbase", "__weakref__", "_is_param",
                 "__dict__")

    # True on a .grad buffer that autograd allocated for a sum of gradients: later gradients are
    # added into it in place (autograd._accumulate); set in the instance's __dict__ when true
    _accum_buffer = False
    # np.float32(2) * x: NumPy defers to our __rmul__ instead of converting x into an array (which
    # returned an ndarray and dropped autograd); PyTorch sets the same
    __array_priority__ = 1000

    # -------------------------------------------------------------- construction
    def __init__(self, *args, **kwargs):
        # Tensor(data) behaves like kernelnet.tensor(data) (torch.Tensor(list) is float32 too)
        from . import ops
        if len(args) == 1 and not isinstance(args[0], int):
            t = ops.tensor(args[0], dtype=kwargs.get("dtype", D.float32))
        else:
            t = ops.empty(*args, **kwargs)
        self._init_from(t)

    def _init_from(self, t):
        for k in ("_storage", "_shape", "_stride", "_offset", "dtype", "device", "_base_ptr"):
            object.__setattr__(self, k, getattr(t, k))
        self.requires_grad = False
        self.grad = None
        self.grad_fn = None
        self._output_nr = 0
        self._hooks = None
        self._vc = None
        self._vbase = None

    @classmethod
    def _make(cls, storage, shape, stride, offset, dtype, device, base_ptr):
        t = object.__new__(cls)
        t._storage = storage
        t._shape = tuple(shape)
        t._stride = tuple(stride)
        t._offset = offset
        t.dtype = dtype
        t.device = device
        t._base_ptr = base_ptr
        t.requires_grad = False
        t.grad = None
        t.grad_fn = None
        t._output_nr = 0
        t._hooks = None
        t._vc = None
        t._vbase = None
        return t

    @classmethod
    def _empty(cls, shape, dtype=D.float32, device=CPU):
        if type(shape) is not tuple:
            shape = tuple(shape)
        n = 1
        for s in shape:
            if type(s) is not int or s < 0:  # numpy ints, negatives: the checked path
                shape = tuple(map(int, shape))
                n = 1
                for s in shape:
                    if s < 0:
                        raise ValueError(f"negative dimension in shape {shape}")
                    n *= s
                break
            n *= s
        if device.type == "cpu":
            # From the native allocator (csrc/cpu/host_memory.cpp), 64-byte aligned: large blocks
            # are cached (reused blocks fault no pages, which a fresh 20 MB activation otherwise
            # does), small ones come from malloc. It also hands back the address: asking numpy
            # for it (arr.ctypes.data) cost ~2 us, a third of a small op's Python time.
            raw, addr = _host_alloc(n * dtype.itemsize, dtype.np)
            # _make's body inline (every kernel output comes through here)
            t = object.__new__(cls)
            t._storage = raw
            t._shape = shape
            t._stride = _contig_strides(shape)
            t._offset = 0
            t.dtype = dtype
            t.device = device
            t._base_ptr = addr
            t.requires_grad = False
            t.grad = None
            t.grad_fn = None
            t._output_nr = 0
            t._hooks = None
            t._vc = None
            t._vbase = None
        else:
            st = _CudaStorage(n * dtype.itemsize, n)
            t = cls._make(st, shape, _contig_strides(shape), 0, dtype, device, st.ptr)
        if _capture_retain is not None:
            _capture_retain(t._storage, True)
        return t

    def _view(self, shape, stride, offset=None):
        """A tensor sharing storage with self (no autograd bookkeeping) and its version counter."""
        t = Tensor._make(self._storage, shape, stride, self._offset if offset is None else offset,
                         self.dtype, self.device, self._base_ptr)
        vc = self._vc
        if vc is None:  # the first view: both are sharers (_add_sharer's common case, inline)
            self._vc = t._vc = [0, 0, [_ref(self), _ref(t)]]
        else:
            _add_sharer(vc, self, t)
            t._vc = vc
        # the tensor whose views these are (PyTorch's view ._base, held as strongly): an in-place op
        # on one of them in the graph rewrites the base's history and every live view's
        # (ops/inplace.py)
        t._vbase = self._vbase if self._vbase is not None else self
        return t

    def _view_base(self):
        """The base this tensor is a view of (itself if it is none)."""
        vb = self._vbase
        return self if vb is None else vb

    # -------------------------------------------------------------- version counter
    # PyTorch's version counter: every in-place write bumps it, shared by a tensor and all views of
    # its storage made through _view (detach() included; .data gets its own, so writes through
    # .data go unseen, as there). The box is [version, autograd._write_epoch at the last write,
    # sharers]: backward refuses a saved tensor written after its forward
    # (autograd.check_saved_versions); sharers (weak references to the tensors that see the memory,
    # or _FOREVER for a NumPy or DLPack alias) tell an in-place op in the graph (ops/inplace.py)
    # whether it may give the tensor the result's memory or must write the shared one and rebase
    # the live views. A tensor with no views and no writes yet holds None: a list per tensor would
    # cost every op.
    def _counter(self):
        """This tensor's counter box, made on first need."""
        vc = self._vc
        if vc is None:
            vc = self._vc = [0, 0, None]
        return vc

    @property
    def _version(self):
        vc = self._vc
        return vc[0] if vc is not None else 0

    def _bump_version(self):
        e = _write_epoch[0] + 1
        _write_epoch[0] = e
        vc = self._vc
        if vc is None:
            self._vc = [1, e, None]
        else:
            vc[0] += 1
            vc[1] = e

    def _mark_shared(self):
        """Something that cannot be tracked (a NumPy array, a DLPack consumer or producer, a storage
        handed to another tensor by .data =) sees this tensor's memory from now on."""
        vc = self._counter()
        if vc[2] is None:
            vc[2] = [_ref(self), _FOREVER]  # (self first: the memory's first owner, see _add_sharer)
        elif _FOREVER not in vc[2]:  # once: numpy() in a logging loop must not grow the list
            vc[2].append(_FOREVER)

    def _live_sharers(self):
        """The live objects other than this tensor that see its memory (tensors, or _FOREVER for
        an alias kernelnet cannot follow)."""
        vc = self._vc
        if vc is None or not vc[2]:
            return []
        out = []
        for r in vc[2]:
            o = r()
            if o is not None and o is not self:
                out.append(o)
        return out

    # -------------------------------------------------------------- metadata
    @property
    def shape(self):
        return Size(self._shape)

    def size(self, dim=None):
        if dim is None:
            return Size(self._shape)
        return self._shape[self._wrap_dim(dim)]

    def stride(self, dim=None):
        if dim is None:
            return self._stride
        return self._stride[self._wrap_dim(dim)]

    def storage_offset(self):
        return self._offset

    def dim(self):
        return len(self._shape)

    ndim = property(dim)

    def numel(self):
        return _prod(self._shape)

    nelement = numel

    def element_size(self):
        return self.dtype.itemsize

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def T(self):
        return self.permute(*reversed(range(self.dim())))

    @property
    def mT(self):
        return self.transpose(-2, -1)

    @property
    def data(self):
        v = Tensor._make(self._storage, self._shape, self._stride, self._offset, self.dtype, self.device,
                         self._base_ptr)
        v._vc = [0, 0, None]  # a counter of its own
        _add_sharer(self._counter(), self, v)
        _add_sharer(v._vc, v, self)  # writes through .data are not seen by autograd (PyTorch)
        return v

    @data.setter
    def data(self, value):
        if _host_read_guard is not None:
            from . import graphs
            if graphs.active() is not None:
                graphs._refuse("rebinding a tensor's storage (t.data = ...; update it in place instead)")
        if tuple(value.shape) != self._shape or value.dtype is not self.dtype:
            # PyTorch allows a shape change through .data; so do we (storage swap)
            pass
        v = value.detach()
        self._mark_shared()  # value (and its views) see this storage now
        self._storage, self._shape, self._stride = v._storage, v._shape, v._stride
        self._offset, self.dtype, self.device, self._base_ptr = v._offset, v.dtype, v.device, v._base_ptr

    def _wrap_dim(self, dim, ndim=None):
        n = self.dim() if ndim is None else ndim
        if not isinstance(dim, (int, np.integer)):
            raise TypeError(f"dimension must be an int, got {type(dim).__name__}")
        lo, hi = (-n, n - 1) if n > 0 else (-1, 0)
        if dim < lo or dim > hi:
            raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})")
        return int(dim) % max(n, 1)

    def is_contiguous(self):
        if self._stride == _contig_strides(self._shape):  # the common case, without the loop below
            return True
        if 0 in self._shape:  # an empty tensor is contiguous whatever its strides (PyTorch too)
            return True
        expected = 1
        for s, st in zip(reversed(self._shape), reversed(self._stride)):
            if s != 1 and st != expected:
                return False
            expected *= s
        return True

    def data_ptr(self):
        if _capture_retain is not None:  # a recorded kernel may get this address: keep the memory
            _capture_retain(self._storage, False)
        return self._base_ptr + self._offset * self.dtype.itemsize

    @property
    def _backend(self):
        return backend(self.device)

    # -------------------------------------------------------------- conversion
    def numpy(self, force=False):
        if _host_read_guard is not None:
            _host_read_guard(self)
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        if self.device.type != "cpu":
            if not force:
                raise TypeError(f"can't convert {self.device} device type tensor to numpy. "
                                "Use Tensor.cpu() to copy the tensor to host memory first.")
            return self.cpu().numpy(force=True)
        self._mark_shared()  # the array aliases the storage
        return self._host_array()

    def _host_array(self):
        """The values as a NumPy array for kernelnet's own use (repr, tolist, pickling, host-side
        indexing): CPU memory aliased without marking it shared (the array does not leave the
        caller; numpy() marks it), a copy for a CUDA tensor."""
        if _host_read_guard is not None:
            _host_read_guard(self)
        if self.device.type != "cpu":
            return self._alias().cpu()._host_array()
        isz = self.dtype.itemsize
        base = self._storage[self._offset:] if self.numel() > 0 else self._storage[:0]
        return np.lib.stride_tricks.as_strided(base, shape=self._shape,
                                               strides=tuple(s * isz for s in self._stride))

    def _alias(self):
        """A second tensor object for this memory and version counter that is not counted as a
        sharer: for kernelnet's own use (a transient read or write; a Function keeping an output
        it returns, to read in backward, which must not follow the user's object when an in-place
        op gives that object new memory)."""
        t = Tensor._make(self._storage, self._shape, self._stride, self._offset, self.dtype, self.device,
                         self._base_ptr)
        t._vc = self._counter()
        return t

    def __array__(self, dtype=None, copy=None):
        a = self.detach().cpu().numpy()
        return a.astype(dtype) if dtype is not None else a

    def tolist(self):
        return self._host_array().tolist()

    def item(self):
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to Scalar")
        if _host_read_guard is not None:
            _host_read_guard(self)
        if self.device.type == "cpu":  # fast path: read the one element straight from storage
            return self._storage[self._offset].item()
        return self._host_array().reshape(()).item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __index__(self):
        if self.dtype is D.float32 or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __len__(self):
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __iter__(self):
        if not self._shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._shape[0]))

    def __hash__(self):
        return id(self)

    def __reduce__(self):
        # pickling (scikit-learn clones, multiprocessing): data as numpy, on its device
        return (_rebuild, (self._host_array().copy(), str(self.device), self.requires_grad))

    def __deepcopy__(self, memo):
        t = self.detach().clone()
        t.requires_grad = self.requires_grad
        if type(self) is not Tensor:
            t = type(self)._wrap(t) if hasattr(type(self), "_wrap") else t
        memo[id(self)] = t
        return t

    # -------------------------------------------------------------- autograd
    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        autograd.backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph, inputs=inputs)

    def detach(self):
        t = self._view(self._shape, self._stride)
        t._vbase = None  # not a view for autograd: a base of its own (its writes are values only)
        return t

    def detach_(self):
        # a view detached in place leaves its base's family: a later write through the base or
        # another view must not give it a history again (PyTorch refuses detach_() on views; the
        # usual h_n.detach_() of an RNN loop works here either way)
        self._vbase = None
        self.grad_fn = None
        self.requires_grad = False
        return self

    def requires_grad_(self, requires_grad=True):
        if requires_grad and not self.dtype.is_floating_point:
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        if self.grad_fn is not None and not requires_grad:
            raise RuntimeError("you can only change requires_grad flags of leaf variables.")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self):
        if self.grad_fn is None:
            return
        if self.grad_fn.retained is None:
            self.grad_fn.retained = {}
        self.grad_fn.retained[self._output_nr] = _ref(self)

    def register_hook(self, hook):
        """Call hook(grad) with the gradient w.r.t. this tensor during backward; a returned tensor
        replaces it. A leaf's hook sees the gradient summed over all paths, once; a non-leaf's is
        attached to the node that made the tensor (so an in-place op afterwards leaves it on the
        previous value, as in PyTorch). Returns a handle whose remove() detaches it."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            node = self.grad_fn
            if node.hooks is None:
                node.hooks = {}
            hooks = node.hooks.setdefault(self._output_nr, [])
        else:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    # -------------------------------------------------------------- repr
    def __repr__(self):
        from ._format import format_tensor
        return format_tensor(self)

    __str__ = __repr__

    def __format__(self, spec):
        if self.dim() == 0:
            return format(self.item(), spec)
        return repr(self)


class Size(tuple):
    """torch.Size: a tuple that prints as kernelnet.Size([...])."""

    def __repr__(self):
        return f"kernelnet.Size({list(self)})"

    def numel(self):
        return _prod(self)


def _rebuild(arr, dev, requires_grad):
    from . import ops
    t = ops.tensor(arr, device=dev)
    t.requires_grad = requires_grad
    return t
