"""Views and data movement: reshape/view, permute/transpose, expand, squeeze/unsqueeze, flatten,
indexing (basic indexing returns views; integer/boolean indexing gathers with native kernels),
cat/stack/split, gather/scatter. Views only change (shape, strides, offset)."""
import numbers

import numpy as np

from .. import _dtype as D
from ..autograd import Function, is_grad_enabled, tracks
from ..tensor import Tensor, _contig_strides, _prod
from ._util import shape_arg, normalize_dims


# ------------------------------------------------------------------ reshape / view
def _infer_shape(shape, numel, op):
    shape = list(shape)
    neg = [i for i, s in enumerate(shape) if s == -1]
    if len(neg) > 1:
        raise RuntimeError(f"{op}: only one dimension can be inferred")
    if neg:
        rest = _prod(s for s in shape if s != -1)
        if rest == 0 or numel % rest:
            raise RuntimeError(f"{op}: shape {tuple(shape)} is invalid for input of size {numel}")
        shape[neg[0]] = numel // rest
    if _prod(shape) != numel:
        raise RuntimeError(f"{op}: shape {tuple(shape)} is invalid for input of size {numel}")
    return tuple(shape)


def _view_strides(x, shape):
    """Strides that let x be viewed as `shape` without a copy, or None (PyTorch's rule)."""
    if x.is_contiguous() or x.numel() == 0:
        return _contig_strides(shape)
    # merge x's dims into contiguous chunks, then split each chunk into the new dims
    old = [(s, st) for s, st in zip(x._shape, x._stride) if s != 1]
    chunks = []
    for s, st in old:
        if chunks and chunks[-1][1] == st * s:
            chunks[-1] = (chunks[-1][0] * s, st)
        else:
            chunks.append((s, st))
    new_strides = [0] * len(shape)
    ci = 0
    i = len(shape) - 1
    # walk from the innermost dims outward
    chunks = list(reversed(chunks))
    remaining = chunks[0][0] if chunks else 1
    cur_stride = chunks[0][1] if chunks else 1
    for i in range(len(shape) - 1, -1, -1):
        s = shape[i]
        if s == 1:
            new_strides[i] = cur_stride * remaining if remaining else 1
            continue
        while remaining == 1 and ci + 1 < len(chunks):
            ci += 1
            remaining, cur_stride = chunks[ci]
        if remaining % s:
            return None
        new_strides[i] = cur_stride
        cur_stride *= s
        remaining //= s
    return tuple(new_strides)


class View(Function):
    ctx_holds_tensors = False

    @staticmethod
    def forward(ctx, x, shape, strides):
        ctx.shape = x._shape
        return x._view(shape, strides)

    @staticmethod
    def backward(ctx, g):
        return reshape(g, ctx.shape)


def view(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], (D.dtype, type)) or (len(shape) == 1 and isinstance(shape[0], str)):
        raise NotImplementedError("view(dtype) is not supported")
    shape = _infer_shape(shape_arg(shape), x.numel(), "view")
    st = _view_strides(x, shape)
    if st is None:
        raise RuntimeError(f"view size is not compatible with input tensor's size and stride (input "
                           f"shape {tuple(x.shape)}, strides {x._stride}); use .reshape(...) instead.")
    return View.apply(x, shape, st) if tracks(x) else x._view(shape, st)


def reshape(x, *shape):
    if shape == x._shape or (len(shape) == 1 and shape[0] == x._shape):
        return x  # already that shape (the ops' own reshapes mostly are): skip parsing and checks
    shape = _infer_shape(shape_arg(shape), x.numel(), "reshape")
    if shape == x._shape:
        return x
    st = _view_strides(x, shape)
    if st is None:
        from .copy import contiguous
        x = contiguous(x)
        st = _contig_strides(shape)
    return View.apply(x, shape, st) if tracks(x) else x._view(shape, st)


def flatten(x, start_dim=0, end_dim=-1):
    if x.dim() == 0:
        return reshape(x, 1)
    s = x._wrap_dim(start_dim)
    e = x._wrap_dim(end_dim)
    if s > e:
        raise ValueError("flatten: start_dim cannot come after end_dim")
    shape = x._shape[:s] + (_prod(x._shape[s:e + 1]),) + x._shape[e + 1:]
    return reshape(x, shape)


def unflatten(x, dim, sizes):
    d = x._wrap_dim(dim)
    sizes = _infer_shape(sizes, x._shape[d], "unflatten")
    return reshape(x, x._shape[:d] + tuple(sizes) + x._shape[d + 1:])


class Permute(Function):
    ctx_holds_tensors = False

    @staticmethod
    def forward(ctx, x, perm):
        if ctx is not None:  # None: called directly for an untracked view (permute, transpose)
            ctx.perm = perm
        return x._view(tuple(x._shape[p] for p in perm), tuple(x._stride[p] for p in perm))

    @staticmethod
    def backward(ctx, g):
        inv = [0] * len(ctx.perm)
        for i, p in enumerate(ctx.perm):
            inv[p] = i
        return permute(g, *inv)


def permute(x, *dims):
    dims = shape_arg(dims)
    if len(dims) != x.dim():
        raise RuntimeError(f"permute: number of dims {len(dims)} does not match the tensor's {x.dim()} dims")
    perm = tuple(x._wrap_dim(d) for d in dims)
    if sorted(perm) != list(range(x.dim())):
        raise RuntimeError(f"permute: repeated dim in {dims}")
    return Permute.apply(x, perm) if tracks(x) else Permute.forward(None, x, perm)


def transpose(x, dim0, dim1):
    if x.dim() < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return x
    perm = list(range(x.dim()))
    a, b = x._wrap_dim(dim0), x._wrap_dim(dim1)
    perm[a], perm[b] = perm[b], perm[a]
    perm = tuple(perm)
    return Permute.apply(x, perm) if tracks(x) else Permute.forward(None, x, perm)


swapaxes = swapdims = transpose


def t(x):
    if x.dim() > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {x.dim()}D")
    return transpose(x, 0, 1) if x.dim() == 2 else x


class Expand(Function):
    ctx_holds_tensors = False

    @staticmethod
    def forward(ctx, x, shape):
        if ctx is not None:  # None: called directly for an untracked view (expand)
            ctx.shape = x._shape
        nd = len(shape)
        off = nd - x.dim()
        st = []
        for i in range(nd):
            j = i - off
            if j < 0:
                st.append(0)
            elif x._shape[j] == shape[i]:
                st.append(x._stride[j])
            elif x._shape[j] == 1:
                st.append(0)
            else:
                raise RuntimeError(f"expand: the expanded size of the tensor ({shape[i]}) must match "
                                   f"the existing size ({x._shape[j]}) at non-singleton dimension {i}. "
                                   f"Target sizes: {list(shape)}. Tensor sizes: {list(x._shape)}")
        return x._view(tuple(shape), tuple(st))

    @staticmethod
    def backward(ctx, g):
        from .elementwise import sum_to
        return sum_to(g, ctx.shape)


def expand(x, *sizes):
    sizes = list(shape_arg(sizes))
    if len(sizes) < x.dim():
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or "
                           f"equal to the number of dimensions in the tensor ({x.dim()})")
    off = len(sizes) - x.dim()
    for i, s in enumerate(sizes):
        if s == -1:
            if i < off:
                raise RuntimeError("expand: -1 not allowed in leading, non-existing dimension")
            sizes[i] = x._shape[i - off]
    sizes = tuple(sizes)
    if sizes == x._shape:
        return x
    return Expand.apply(x, sizes) if tracks(x) else Expand.forward(None, x, sizes)


def expand_as(x, other):
    return expand(x, other.shape)


def broadcast_to(x, shape):
    return expand(x, shape)


def squeeze(x, dim=None):
    if dim is None:
        shape = tuple(s for s in x._shape if s != 1)
    else:
        dims = normalize_dims(dim, x.dim(), "squeeze")
        shape = tuple(s for i, s in enumerate(x._shape) if not (i in dims and s == 1))
    return reshape(x, shape) if shape != x._shape else x


def unsqueeze(x, dim):
    d = x._wrap_dim(dim, x.dim() + 1)
    return reshape(x, x._shape[:d] + (1,) + x._shape[d:])


def movedim(x, source, destination):
    src = [x._wrap_dim(source)] if isinstance(source, int) else [x._wrap_dim(s) for s in source]
    dst = [x._wrap_dim(destination)] if isinstance(destination, int) else [x._wrap_dim(s) for s in destination]
    order = [i for i in range(x.dim()) if i not in src]
    perm = [None] * x.dim()
    for s, d in zip(src, dst):
        perm[d] = s
    it = iter(order)
    perm = [p if p is not None else next(it) for p in perm]
    return permute(x, *perm)


# ------------------------------------------------------------------ indexing
def _is_advanced(item):
    return isinstance(item, (Tensor, np.ndarray, list)) or (isinstance(item, (bool, np.bool_)))


def _zero_d_ints(idx):
    """0-d int64 tensors in an index are plain ints (PyTorch: basic indexing, a view; x[t] = v
    writes through it). Reads the value on the host."""
    if not any(isinstance(i, Tensor) and i.dim() == 0 and i.dtype is D.int64 for i in idx):
        return idx
    return tuple(int(i.item()) if isinstance(i, Tensor) and i.dim() == 0 and i.dtype is D.int64 else i
                 for i in idx)


def _expand_ellipsis(x, idx):
    idx = _zero_d_ints(idx)
    n_ell = sum(1 for i in idx if i is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consumed = 0
    for i in idx:
        if i is None or i is Ellipsis:
            continue
        if isinstance(i, Tensor) and i.dtype is D.bool_:
            consumed += max(i.dim(), 1)
        elif isinstance(i, np.ndarray) and i.dtype == np.bool_:
            consumed += max(i.ndim, 1)
        else:
            consumed += 1
    if consumed > x.dim():
        raise IndexError(f"too many indices for tensor of dimension {x.dim()}")
    if n_ell:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (x.dim() - consumed) + idx[k + 1:]
    return idx


class BasicIndex(Function):
    """x[ints, slices, None, ...]: a view; the backward writes g into the same view of a dense
    zero gradient (gstride/goffset: that view's strides/offset on a contiguous tensor of x's
    shape, computed by _basic_view)."""

    ctx_holds_tensors = False

    @staticmethod
    def forward(ctx, x, shape, stride, offset, gstride, goffset):
        ctx.x_shape = x._shape
        ctx.gview = (shape, gstride, goffset)
        return x._view(shape, stride, offset)

    @staticmethod
    def backward(ctx, g):
        from .creation import zeros
        from .copy import assign
        gx = zeros(*ctx.x_shape, device=g.device)
        shape, gstride, goffset = ctx.gview
        assign(gx._view(shape, gstride, gx._offset + goffset), g)
        return gx


def _basic_view(x, idx):
    """(shape, stride, offset, adv) for the basic part of idx; advanced items are kept as full
    dims and reported with the output dim they landed on."""
    shape, stride, offset = [], [], x._offset
    gstride, goffset = [], 0  # the same view of a contiguous tensor of x's shape (for backward)
    cstr = _contig_strides(x._shape)
    adv = []
    d = 0
    for item in idx:
        if item is None:
            shape.append(1)
            stride.append(0)
            gstride.append(0)
            continue
        if d >= x.dim():
            raise IndexError(f"too many indices for tensor of dimension {x.dim()}")
        size = x._shape[d]
        if isinstance(item, (Tensor, np.ndarray, list, bool, np.bool_)):
            adv.append((len(shape), item, d))
            shape.append(size)
            stride.append(x._stride[d])
            gstride.append(cstr[d])
            d += 1
        elif isinstance(item, slice):
            start, stop, step = item.indices(size)
            if step <= 0:
                raise ValueError("step must be greater than zero")
            n = len(range(start, stop, step))
            if n > 0:
                offset += start * x._stride[d]
                goffset += start * cstr[d]
            shape.append(n)
            stride.append(step * x._stride[d])
            gstride.append(step * cstr[d])
            d += 1
        elif isinstance(item, (numbers.Integral, np.integer)) or (isinstance(item, Tensor)):
            i = int(item)
            if not -size <= i < size:
                raise IndexError(f"index {i} is out of bounds for dimension {d} with size {size}")
            i %= size
            offset += i * x._stride[d]
            goffset += i * cstr[d]
            d += 1
        else:
            raise TypeError(f"invalid index of type {type(item).__name__}: use ints, slices, None, "
                            "Ellipsis, or integer/boolean tensors")
    for k in range(d, x.dim()):
        shape.append(x._shape[k])
        stride.append(x._stride[k])
        gstride.append(cstr[k])
    return tuple(shape), tuple(stride), offset, tuple(gstride), goffset, adv


def _to_index_tensor(item, device):
    from .creation import tensor
    if isinstance(item, Tensor):
        t = item
    else:
        arr = np.asarray(item)
        if arr.dtype == np.bool_:
            t = tensor(arr, dtype=D.bool_)
        elif arr.size == 0:
            t = tensor(arr.astype(np.int64), dtype=D.int64)
        elif arr.dtype.kind not in "iu":
            raise IndexError("tensors used as indices must be long, int or bool tensors")
        else:
            t = tensor(arr, dtype=D.int64)
    if t.dtype is D.float32:
        raise IndexError("tensors used as indices must be long, int or bool tensors")
    if t.device != device:
        t = t.to(device)
    return t


def nonzero(x, as_tuple=False):
    """Indices of nonzero elements (computed on the host: the output size depends on the data)."""
    from .creation import tensor
    arr = x._host_array()
    if arr.ndim == 0:  # PyTorch: a 0-d tensor has one (empty) index when it is nonzero
        nz = (np.zeros(int(arr != 0), np.int64),)
        if as_tuple:
            return tuple(tensor(n, device=x.device) for n in nz)
        return tensor(np.zeros((int(arr != 0), 0), np.int64), device=x.device)
    nz = np.nonzero(arr)
    if as_tuple:
        return tuple(tensor(n.astype(np.int64), device=x.device) for n in nz)
    return tensor(np.stack(nz, axis=1).astype(np.int64) if nz else np.zeros((0, 0), np.int64), device=x.device)


def argwhere(x):
    return nonzero(x)


class IndexSelect(Function):
    """out[o, j, i] = x[o, idx[j], i] for contiguous x viewed [outer, n, inner]."""

    @staticmethod
    def forward(ctx, x, idx, outer, n, inner):
        ctx.meta = (x._shape, outer, n, inner)
        ctx.save_for_backward(idx)
        out = Tensor._empty((outer, idx.numel(), inner), x.dtype, x.device)
        if out.numel():
            x._backend.index_select(x.dtype.code, out.data_ptr(), x.data_ptr(), outer, n, inner,
                                    idx.data_ptr(), idx.numel())
        return out

    @staticmethod
    def backward(ctx, g):
        from .creation import zeros
        from .copy import contiguous
        shape, outer, n, inner = ctx.meta
        (idx,) = ctx.saved_tensors
        g = contiguous(g)
        gx = zeros(*shape, device=g.device)
        if g.numel():
            g._backend.index_add(gx.data_ptr(), g.data_ptr(), outer, n, inner, idx.data_ptr(), idx.numel())
        return gx, None, None, None, None


def _wrap_check_index(idx, size, dim, negative=True):
    """idx range-checked against a dim of `size` (IndexError naming the bad index) and negative
    entries wrapped (+size), as indexing with x[idx] does. negative=False refuses negative entries,
    as PyTorch's gather, scatter_add, index_select and embedding do."""
    from .elementwise import lt, add, where
    from .reduce import reduce_kernel, R_MAX, R_MIN
    if idx.numel() == 0:
        return idx
    if idx.device.type == "cpu":  # NumPy's min/max on the shared memory: no kernels, no copies
        a = idx.numpy()
        lo, hi = int(a.min()), int(a.max())
    else:
        lo = reduce_kernel(R_MIN, idx.reshape(-1), [0], False).item()
        hi = reduce_kernel(R_MAX, idx.reshape(-1), [0], False).item()
    if lo < (-size if negative else 0) or hi >= size:
        bad = hi if hi >= size else lo
        raise IndexError(f"index {bad} is out of bounds for dimension {dim} with size {size}")
    if lo < 0:
        idx = where(lt(idx, 0), add(idx, size), idx)
    return idx


def _advanced(v, adv, x_dims):
    """Gather for the advanced items `adv` [(dim in v, item, dim in x)] of the view v."""
    from .copy import contiguous
    from .elementwise import mul, add
    from ._util import broadcast_shapes
    # boolean masks become one integer index per masked dim
    items = []
    for vd, item, xd in adv:
        t = _to_index_tensor(item, v.device)
        if t.dtype is D.bool_:
            if t.dim() == 0:
                raise IndexError("0-d boolean indices are not supported")
            mshape = v._shape[vd:vd + t.dim()]
            if tuple(t._shape) != tuple(mshape):
                raise IndexError(f"the shape of the mask {tuple(t.shape)} does not match the shape of "
                                 f"the indexed tensor {tuple(mshape)} starting at dimension {vd}")
            for k, nz in enumerate(nonzero(t, as_tuple=True)):
                items.append((vd + k, nz))
        else:
            items.append((vd, t))
    if len({d for d, _ in items}) != len(items):
        raise IndexError("each dimension can be indexed by at most one tensor")
    dims = [d for d, _ in items]
    bshape = broadcast_shapes(*[t._shape for _, t in items], op="index")
    adjacent = dims == list(range(dims[0], dims[0] + len(dims)))
    rest = [d for d in range(v.dim()) if d not in dims]
    if adjacent:
        perm = list(range(v.dim()))
        first = dims[0]
    else:
        perm = dims + rest
        first = 0
    vp = permute(v, *perm) if perm != list(range(v.dim())) else v
    vp = contiguous(vp)
    sizes = [v._shape[d] for d in dims]
    flat = None
    for (d, t), size in zip(items, sizes):
        t = _wrap_check_index(t, size, d).expand(*bshape)
        flat = t if flat is None else add(mul(flat, size), t)
    flat = contiguous(flat.reshape(-1))
    before = vp._shape[:first]
    after = vp._shape[first + len(dims):]
    P = _prod(sizes)
    merged = reshape(vp, (_prod(before), P, _prod(after)))
    out = IndexSelect.apply(merged, flat, _prod(before), P, _prod(after))
    return reshape(out, before + tuple(bshape) + after)


def getitem(x, idx):
    if not isinstance(idx, tuple):
        idx = (idx,)
    idx = _expand_ellipsis(x, idx)
    # a bool scalar index (x[True]) is numpy's "add a dim and keep/drop everything"
    shape, stride, offset, gstride, goffset, adv = _basic_view(x, idx)
    if x.requires_grad and is_grad_enabled():
        v = BasicIndex.apply(x, shape, stride, offset, gstride, goffset)
    else:
        v = x._view(shape, stride, offset)
    if not adv:
        return v
    return _advanced(v, adv, None)


def setitem(x, idx, value):
    """x[idx] = value. In the autograd graph (x or value requires grad) the write is recorded as
    SetItem through ops/inplace.py, as PyTorch records index_put_/copy_ into a view."""
    from . import inplace
    if inplace.records(x, (value,), {}):
        from .creation import tensor
        v = value if isinstance(value, Tensor) else tensor(value, dtype=x.dtype, device=x.device)
        if v.dtype is not x.dtype:
            v = v.to(x.dtype)
        inplace.inplace_in_graph(x, "setitem", lambda old: SetItem.apply(old, v, idx))
        return
    _write_items(x, idx, value)


def _write_items(x, idx, value):
    """x[idx] = value as a plain write (not recorded)."""
    from .copy import assign
    if not isinstance(idx, tuple):
        idx = (idx,)
    idx = _expand_ellipsis(x, idx)
    shape, stride, offset, _, _, adv = _basic_view(x, idx)
    if not adv:
        v = x._alias()._view(shape, stride, offset)  # (an alias: x's memory is not handed out)
        assign(v, value)
        x._bump_version()  # (the counter is shared with every view of x)
        return
    # integer/boolean assignment: the scatter happens on the host array (CPU: in place)
    from .creation import tensor
    val = value._host_array() if isinstance(value, Tensor) else value
    np_idx = tuple(i._host_array() if isinstance(i, Tensor) else i for i in idx)
    arr = x._host_array()  # CPU: x's memory; CUDA: a copy, written back below
    sub, rest = _ints_first(arr, np_idx)
    sub[rest] = val
    if x.device.type != "cpu":
        assign(x, tensor(arr, device=x.device))
    x._bump_version()


class SetItem(Function):
    """y = x with y[idx] = value: `x[idx] = value` on a tensor in the graph, recorded (ops/inplace.py
    then gives x the result). x's gradient is g with the written elements zeroed, value's is g[idx]
    summed back to value's shape (broadcasting)."""

    @staticmethod
    def forward(ctx, x, value, idx):
        from .copy import _contiguous_copy
        out = _contiguous_copy(x)
        _write_items(out, idx, value)
        ctx.idx, ctx.value_shape = idx, value._shape
        return out

    @staticmethod
    def backward(ctx, g):
        from .copy import _contiguous_copy
        from .elementwise import sum_to
        gx = gv = None
        if ctx.needs_input_grad[0]:
            gx = _contiguous_copy(g)
            _write_items(gx, ctx.idx, 0.0)
        if ctx.needs_input_grad[1]:
            gv = sum_to(getitem(g, ctx.idx), ctx.value_shape)
        return gx, gv, None


def _is_int(i):
    return isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))


def _ints_first(arr, np_idx):
    """(a view of arr, the rest of the index): plain integers applied first, as views. PyTorch
    treats them as basic indexing; NumPy counts them as advanced indices, so with an array index
    after a slice (x[0, :, [0, 1]]) it moves the broadcast dims to the front and a write lands
    transposed against what the same x[...] reads."""
    if not any(_is_int(i) for i in np_idx) or not any(isinstance(i, (np.ndarray, list)) for i in np_idx):
        return arr, np_idx
    first = tuple(i if _is_int(i) else slice(None) for i in np_idx if i is not None)
    return arr[first], tuple(i for i in np_idx if not _is_int(i))


def index_select(x, dim, index):
    d = x._wrap_dim(dim)
    if isinstance(index, Tensor) and index.dtype is D.int64 and x.dim():
        if index.dim() > 1:
            raise IndexError(f"index_select(): Index is supposed to be a vector, got shape {tuple(index.shape)}")
        # a 0-d index keeps the dimension (PyTorch); the index is checked once (on a GPU a check
        # reads the index's range on the host) and gathered directly, not through x[..., index]
        index = _to_index_tensor(index.reshape(-1), x.device)
        _wrap_check_index(index, x._shape[d], d, negative=False)
        from .copy import contiguous
        before, n, after = _prod(x._shape[:d]), x._shape[d], _prod(x._shape[d + 1:])
        out = IndexSelect.apply(reshape(contiguous(x), (before, n, after)), contiguous(index), before, n, after)
        return reshape(out, x._shape[:d] + (index.numel(),) + x._shape[d + 1:])
    return getitem(x, tuple([slice(None)] * d + [index]))


def _check_bool_mask(op, mask):
    if not isinstance(mask, Tensor) or mask.dtype is not D.bool_:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise RuntimeError(f"{op}: expected a bool tensor for mask, got {got} (an integer tensor would be "
                           "read as indices or truth values)")


def masked_select(x, mask):
    _check_bool_mask("masked_select", mask)
    from ._util import broadcast_shapes
    shape = broadcast_shapes(x._shape, mask._shape, op="masked_select")
    return getitem(expand(x, shape), expand(mask, shape))


def masked_fill(x, mask, value):
    """x where mask is False, value where it is True; the result keeps x's dtype (PyTorch: a float
    value into an int64 tensor is truncated, 0.5 into a bool one is True). value is a number or a
    0-d tensor (differentiable)."""
    from .elementwise import where
    from .creation import full
    _check_bool_mask("masked_fill", mask)
    if isinstance(value, Tensor):
        if value.dim() != 0:
            raise RuntimeError(f"masked_fill only supports a 0-dimensional value tensor, but got tensor "
                               f"with {value.dim()} dimension(s)")
        if value.dtype is not x.dtype:
            value = value.to(x.dtype)
    else:
        value = full((), value, dtype=x.dtype, device=x.device)
    return where(mask, value, x)


class Gather(Function):
    @staticmethod
    def forward(ctx, x, dim, index):
        from .copy import contiguous
        xc, ic = contiguous(x), contiguous(index)
        outer = _prod(x._shape[:dim])
        inner = _prod(x._shape[dim + 1:])
        if tuple(index._shape[:dim]) != tuple(x._shape[:dim]) or tuple(index._shape[dim + 1:]) != tuple(x._shape[dim + 1:]):
            raise NotImplementedError(f"gather: index shape {tuple(index.shape)} must match input "
                                      f"shape {tuple(x.shape)} outside dim {dim}")
        out = Tensor._empty(index._shape, x.dtype, x.device)
        if out.numel():
            x._backend.gather(x.dtype.code, out.data_ptr(), xc.data_ptr(), ic.data_ptr(), outer,
                              x._shape[dim], inner, index._shape[dim])
        ctx.meta = (x._shape, dim, outer, inner)
        ctx.save_for_backward(ic)
        return out

    @staticmethod
    def backward(ctx, g):
        from .creation import zeros
        from .copy import contiguous
        shape, dim, outer, inner = ctx.meta
        (ic,) = ctx.saved_tensors
        g = contiguous(g)
        gx = zeros(*shape, device=g.device)
        if g.numel():
            g._backend.scatter_add(gx.data_ptr(), g.data_ptr(), ic.data_ptr(), outer, shape[dim], inner, ic._shape[dim])
        return gx, None, None


def gather(x, dim, index):
    d = x._wrap_dim(dim)
    if not isinstance(index, Tensor) or index.dtype is not D.int64:
        raise RuntimeError(f"gather(): Expected dtype int64 for index, got {index.dtype}")
    if index.dim() != x.dim():
        raise RuntimeError(f"gather(): Index tensor must have the same number of dimensions as input tensor ({index.dim()} vs {x.dim()})")
    from ._util import check_same_device
    check_same_device("gather", x, index)  # a CPU index pointer handed to a CUDA kernel would crash
    index = _wrap_check_index(index, x._shape[d], d, negative=False)
    if any(i != d and index._shape[i] != x._shape[i] for i in range(x.dim())):
        # PyTorch allows an index smaller than x outside dim: only x's leading part there is read
        if any(i != d and index._shape[i] > x._shape[i] for i in range(x.dim())):
            raise RuntimeError(f"gather(): Size does not match at a dimension other than {d}: index "
                               f"{tuple(index.shape)}, input {tuple(x.shape)}")
        x = getitem(x, tuple(slice(None) if i == d else slice(0, index._shape[i]) for i in range(x.dim())))
    return Gather.apply(x, d, index)


class ScatterAdd(Function):
    @staticmethod
    def forward(ctx, x, dim, index, src):
        from .copy import contiguous, clone
        out = contiguous(clone(x))
        ic, sc = contiguous(index), contiguous(src)
        outer = _prod(x._shape[:dim])
        inner = _prod(x._shape[dim + 1:])
        if tuple(index._shape) != tuple(src._shape):
            raise NotImplementedError("scatter_add: index and src must have the same shape")
        if sc.numel():
            x._backend.scatter_add(out.data_ptr(), sc.data_ptr(), ic.data_ptr(), outer, x._shape[dim], inner, index._shape[dim])
        ctx.dim = dim
        ctx.save_for_backward(ic)
        return out

    @staticmethod
    def backward(ctx, g):
        (ic,) = ctx.saved_tensors
        return g, None, None, gather(g, ctx.dim, ic)


def scatter_add(x, dim, index, src):
    d = x._wrap_dim(dim)
    # the native kernel is float32 and reads index/src as [outer, n_idx, inner] with x's outer and
    # inner sizes: anything else would read or write out of bounds, so reject it here
    if not isinstance(index, Tensor) or index.dtype is not D.int64:
        raise RuntimeError(f"scatter_add(): Expected dtype int64 for index, got "
                           f"{getattr(index, 'dtype', type(index).__name__)}")
    if not isinstance(src, Tensor):
        raise TypeError(f"scatter_add(): src must be a Tensor, got {type(src).__name__}")
    if x.dtype is not D.float32 or src.dtype is not D.float32:
        raise RuntimeError(f"scatter_add(): only float32 is supported, got self {x.dtype} and src {src.dtype}")
    from ._util import check_same_device
    check_same_device("scatter_add", x, index, src)
    if tuple(index._shape) != tuple(src._shape):
        raise RuntimeError(f"scatter_add(): index shape {tuple(index.shape)} must equal src shape "
                           f"{tuple(src.shape)}")
    if index.dim() != x.dim() or any(a != b for i, (a, b) in enumerate(zip(index._shape, x._shape)) if i != d):
        raise RuntimeError(f"scatter_add(): index shape {tuple(index.shape)} must match self shape "
                           f"{tuple(x.shape)} in every dimension except dim {d}")
    index = _wrap_check_index(index, x._shape[d], d, negative=False)
    return ScatterAdd.apply(x, d, index, src)


# ------------------------------------------------------------------ joining / splitting
class Cat(Function):
    ctx_holds_tensors = False

    @staticmethod
    def forward(ctx, dim, *xs):
        from .copy import assign
        shape = list(xs[0]._shape)
        shape[dim] = sum(x._shape[dim] for x in xs)
        out = Tensor._empty(tuple(shape), xs[0].dtype, xs[0].device)
        pos = 0
        sizes = []
        for x in xs:
            n = x._shape[dim]
            sizes.append(n)
            if n:
                sl = (slice(None),) * dim + (slice(pos, pos + n),)
                assign(getitem(out, sl), x)
            pos += n
        ctx.dim, ctx.sizes = dim, sizes
        return out

    @staticmethod
    def backward(ctx, g):
        grads, pos = [], 0
        for n in ctx.sizes:
            grads.append(getitem(g, (slice(None),) * ctx.dim + (slice(pos, pos + n),)))
            pos += n
        return (None, *grads)


def cat(tensors, dim=0):
    tensors = [t for t in tensors]
    if not tensors:
        raise ValueError("cat(): expected a non-empty list of Tensors")
    from ._util import check_same_device
    check_same_device("cat", *tensors)
    # legacy rule: 1-d empty tensors are skipped
    for i, t in enumerate(tensors):
        if t.dim() == 0:
            raise RuntimeError(f"cat(): zero-dimensional tensor (at position {i}) cannot be concatenated")
    nonempty = [t for t in tensors if not (t.dim() == 1 and t.numel() == 0)] or tensors[:1]
    ref = nonempty[0]
    d = ref._wrap_dim(dim)
    dt = ref.dtype
    for t in tensors:  # the skipped empty tensors still take part in the promotion (PyTorch)
        dt = D.promote(dt, t.dtype)
    for t in nonempty:
        if t.dim() != ref.dim() or any(a != b for i, (a, b) in enumerate(zip(t._shape, ref._shape)) if i != d):
            raise ValueError(f"cat(): sizes of tensors must match except in dimension {d}; got "
                             f"{[tuple(x.shape) for x in nonempty]}")
    nonempty = [t.to(dt) for t in nonempty]
    return Cat.apply(d, *nonempty)


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack(): expected a non-empty list of Tensors")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack(): expects each tensor to be equal size, but got {sorted(shapes)}")
    d = tensors[0]._wrap_dim(dim, tensors[0].dim() + 1)
    return cat([unsqueeze(t, d) for t in tensors], d)


def hstack(tensors):
    return cat(tensors, 1 if tensors[0].dim() > 1 else 0)


def vstack(tensors):
    return cat([t if t.dim() > 1 else unsqueeze(t, 0) for t in tensors], 0)


def split(x, split_size_or_sections, dim=0):
    d = x._wrap_dim(dim)
    n = x._shape[d]
    if isinstance(split_size_or_sections, int):
        s = split_size_or_sections
        if s < 0 or (s == 0 and n != 0):
            raise RuntimeError(f"split: split_size must be positive (got {s}) for a dimension of size {n}")
        if s == 0:
            return (x,)
        sizes = [min(s, n - i) for i in range(0, n, s)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not sum to {n}")
    out, pos = [], 0
    for s in sizes:
        out.append(getitem(x, (slice(None),) * d + (slice(pos, pos + s),)))
        pos += s
    return tuple(out)


def chunk(x, chunks, dim=0):
    d = x._wrap_dim(dim)
    if chunks < 1:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    n = x._shape[d]
    if n == 0:  # PyTorch: `chunks` empty pieces
        return tuple(x for _ in range(chunks))
    return split(x, -(-n // chunks), d)


def unbind(x, dim=0):
    d = x._wrap_dim(dim)
    return tuple(getitem(x, (slice(None),) * d + (i,)) for i in range(x._shape[d]))


def narrow(x, dim, start, length):
    """x's elements [start, start + length) along dim, a view; a negative start counts from the end
    and a range past the end raises (PyTorch; a plain slice would wrap or truncate silently)."""
    d = x._wrap_dim(dim)
    if isinstance(start, Tensor):
        start = int(start.item())
    n = x._shape[d] if x.dim() else 1
    if not -n <= start <= n:
        raise IndexError(f"narrow(): start ({start}) out of range for dimension {d} of size {n}")
    start = start + n if start < 0 else start
    if length < 0 or start + length > n:
        raise RuntimeError(f"narrow(): start ({start}) + length ({length}) exceeds dimension size ({n})"
                           if length >= 0 else f"narrow(): length must be non-negative, got {length}")
    return getitem(x, (slice(None),) * d + (slice(start, start + length),))


def repeat(x, *sizes):
    sizes = shape_arg(sizes)
    if len(sizes) < x.dim():
        raise RuntimeError("repeat: number of repeat dims can not be smaller than number of tensor dims")
    x = reshape(x, (1,) * (len(sizes) - x.dim()) + x._shape)
    # expand an interleaved view, then merge: [a,b] -> [r0,a,r1,b] -> [r0*a, r1*b]
    inter = []
    for r, s in zip(sizes, x._shape):
        inter += [1, s]
    xe = reshape(x, tuple(inter))
    tgt = []
    for r, s in zip(sizes, x._shape):
        tgt += [r, s]
    return reshape(expand(xe, tuple(tgt)), tuple(r * s for r, s in zip(sizes, x._shape)))


def flip(x, dims):
    dims = normalize_dims(dims, x.dim(), "flip")
    idx = [slice(None)] * x.dim()
    from .creation import arange
    out = x
    for d in dims:
        sl = [slice(None)] * x.dim()
        sl[d] = arange(x._shape[d] - 1, -1, -1, device=x.device)
        out = getitem(out, tuple(sl))
    return out


def one_hot(tensor, num_classes=-1):
    from .creation import zeros
    from .elementwise import eq
    from .creation import arange
    if tensor.dtype is not D.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type int64")
    if tensor.numel():
        lo, hi = int(tensor.min().item()), int(tensor.max().item())
        if lo < 0:
            raise RuntimeError(f"one_hot: class values must be non-negative, got {lo}")
        if num_classes < 0:
            num_classes = hi + 1
        elif hi >= num_classes:
            raise RuntimeError(f"one_hot: class values must be smaller than num_classes={num_classes}, got {hi}")
    elif num_classes < 0:
        num_classes = 0
    return eq(unsqueeze(tensor, -1), arange(num_classes, device=tensor.device)).to(D.int64)
