"""In-place ops that autograd records (`out += identity`, `x.relu_()`, `nn.ReLU(inplace=True)`,
`y[:, 0] = v`, `outs[t].copy_(h)` on tensors in the graph), with PyTorch's semantics.

PyTorch writes the new values into the tensor's memory and rebases its history: the tensor's
grad_fn becomes the in-place op's node, whose input is the tensor's previous value (cloned where
that node needs it). Here:

1. `old`, a second tensor object for the current value (same memory, same history), goes into the
   out-of-place op, which autograd records as usual (its node saves `old`, never the object the
   user holds);
2. the tensor takes the result's values and history (grad_fn):
   - no other live object sees its memory: it takes the result's memory (no copy) and a new
     version counter, one step ahead, shared with the result;
   - others see it (a detached alias kept by a forward hook, .data, a NumPy array; views; a graph
     being captured): the values are written into it, as in PyTorch, after `old` got a copy of
     its own if its node saved it, and the shared counter is bumped;
   - it is a view, or has live views: the base's history becomes a _WriteView node (PyTorch's
     CopySlices) and every live view is rebased onto it.

Either way an op recorded earlier that saved the tensor refuses to run backward (its counter
moved), as in PyTorch; nodes recorded earlier keep their edges to the previous history
(autograd.Node.inputs). Refused with a clear error: a leaf that requires grad, or a view of one
(PyTorch refuses both), a view of a non-contiguous base, and writes while an expanded view is alive.
"""
import sys

from .. import autograd
from .. import graphs as _graphs
from ..autograd import Function
from ..tensor import Tensor, _FOREVER
from .shape import BasicIndex


def records(t, args, kwargs):
    """Whether an in-place op on t with these arguments must be recorded by autograd."""
    if not autograd.is_grad_enabled():
        return False
    if t.requires_grad:
        return True
    return any(isinstance(a, Tensor) and a.requires_grad for a in args) or \
        any(isinstance(a, Tensor) and a.requires_grad for a in kwargs.values())


class _WriteView(Function):
    """The base after an in-place op on one of its views (PyTorch's CopySlices): the base's values
    with the view's region replaced by the op's result. The values are written into the base's
    memory by inplace_in_graph; this node only routes the gradient: the region's part to the
    result, the rest to the base's previous value."""

    @staticmethod
    def forward(ctx, old_base, new_view, shape, stride, offset):
        ctx.geometry = (shape, stride, offset)
        return Tensor._make(old_base._storage, old_base._shape, old_base._stride, old_base._offset,
                            old_base.dtype, old_base.device, old_base._base_ptr)

    @staticmethod
    def backward(ctx, g):
        from .copy import _contiguous_copy, assign
        shape, stride, offset = ctx.geometry
        g = _contiguous_copy(g)
        region = g._view(shape, stride, g._offset + offset)
        g_view = _contiguous_copy(region) if ctx.needs_input_grad[1] else None
        g_base = None
        if ctx.needs_input_grad[0]:
            assign(region, 0.0)
            g_base = g
        return g_base, g_view, None, None, None


class _ViewOfBase(BasicIndex):
    """A view's new history after its base was written (BasicIndex's gradient); the forward makes
    no registered view: its output only carries the node, which the live view takes over."""

    @staticmethod
    def forward(ctx, x, shape, stride, offset, gstride, goffset):
        ctx.x_shape = x._shape
        ctx.gview = (shape, gstride, goffset)
        return Tensor._make(x._storage, shape, stride, offset, x.dtype, x.device, x._base_ptr)


def _snapshot(t):
    """A second tensor object for t's memory and current history, with no counter: what t was
    before an in-place op (the op's input), which keeps that history when t is given a new one."""
    old = Tensor._make(t._storage, t._shape, t._stride, t._offset, t.dtype, t.device, t._base_ptr)
    old.requires_grad, old.grad_fn, old._output_nr = t.requires_grad, t.grad_fn, t._output_nr
    return old


def _family(t):
    """(base, live views of it other than t, value-only aliases) for t's memory: the views share
    t's autograd base (Tensor._view_base); detached tensors, .data, NumPy and DLPack see values
    only."""
    base = t._view_base()
    views, aliases = [], []
    for o in t._live_sharers():
        if isinstance(o, Tensor) and o._view_base() is base:
            views.append(o)
        else:
            aliases.append(o)
    return base, views, aliases


def _retained_by_node(t):
    """Whether retain_grad() on t registered it with its node (it then follows t's new history)."""
    fn = t.grad_fn
    ref = fn.retained.get(t._output_nr) if fn is not None and fn.retained else None
    if ref is not None and ref() is t:
        del fn.retained[t._output_nr]
        return True
    return False


def _set_history(t, requires_grad, grad_fn, output_nr):
    retained = _retained_by_node(t)
    t.requires_grad, t.grad_fn, t._output_nr = requires_grad, grad_fn, output_nr
    if retained and grad_fn is not None:
        t.retain_grad()


def inplace_in_graph(t, name, compute):
    """t <- compute(old) as a recorded in-place op (see the module doc); returns t."""
    if t.requires_grad and t.grad_fn is None:
        raise RuntimeError(f"{name}: a leaf Variable that requires grad is being used in an in-place operation.")
    base, views, aliases = _family(t)
    through_views = base is not t or bool(views)
    if through_views:
        _check_rebase(name, t, base, views)
    elif not aliases and _graphs._capture is not None and _graphs.active() is not None:
        # while a graph is captured, the recorded kernels keep the addresses they were given: a
        # tensor that outlives the call (a recurrent state, a module buffer) must be written where
        # it is, not moved to the result's memory
        aliases = [_FOREVER]
    old = _snapshot(t)
    # the write happens now: ops recorded from here on (this one included) saw its counter's state
    epoch = autograd._write_epoch[0] = autograd._write_epoch[0] + 1
    watch = autograd._saved_watch = [old, False]  # save_for_backward reports saving `old`
    try:
        new = compute(old)
    finally:
        autograd._saved_watch = None
    if not isinstance(new, Tensor):
        raise TypeError(f"{name}: expected a tensor result, got {type(new).__name__}")
    if new._shape != t._shape:
        raise RuntimeError(f"{name}: output with shape {list(t._shape)} doesn't match the broadcast shape "
                           f"{list(new._shape)}")
    if new.dtype is not t.dtype:
        raise RuntimeError(f"{name}: result type {new.dtype} can't be cast to the desired output type {t.dtype}")
    if new.device != t.device:
        raise RuntimeError(f"{name}: expected the result on {t.device}, got {new.device}")
    if through_views or aliases:
        # others see this memory: write the values into it, after `old` got a copy if an op saved
        # it (save_for_backward says so; a Function keeping it as a ctx attribute shows in the
        # reference count: more than this frame's, `watch`'s and getrefcount's argument's)
        if watch[1] or sys.getrefcount(old) > 3:
            from .copy import _contiguous_copy
            c = _contiguous_copy(old)
            old._storage, old._stride, old._offset, old._base_ptr = c._storage, c._stride, c._offset, c._base_ptr
        from .copy import assign
        assign(t._alias(), new)
        t._bump_version()
    else:
        if new._storage is old._storage or new._live_sharers():
            new = new.clone()  # an op that returned a view: the tensor needs memory of its own
        # take the result's memory; the old memory stays with `old` (and the nodes that saved it)
        # under the old counter, which nothing moves
        t._storage, t._stride, t._offset, t._base_ptr = new._storage, new._stride, new._offset, new._base_ptr
        t._vc = new._vc = [t._version + 1, epoch, None]  # one memory, one counter
    # the new history; retain_grad() follows each tensor to its new value, as in PyTorch
    if through_views:
        _rebase(t, base, views, new)
    else:
        _set_history(t, new.requires_grad, new.grad_fn, new._output_nr)
    return t


def _check_rebase(name, t, base, views):
    """Refuse what _rebase cannot express, before anything is written."""
    if base.requires_grad and base.grad_fn is None:
        raise RuntimeError(f"{name}: a view of a leaf Variable that requires grad is being used in an in-place "
                           "operation.")
    if not base.is_contiguous():
        raise RuntimeError(f"{name}: in-place operation in the autograd graph on a view of a non-contiguous "
                           "tensor (or on such a tensor while views of it are alive) is not supported; "
                           "call .contiguous() on it first")
    for v in views + [t]:
        if any(st == 0 and n > 1 for st, n in zip(v._stride, v._shape)):
            raise RuntimeError(f"{name}: in-place operation in the autograd graph while an expanded view of "
                               "the same memory is alive is not supported; clone() it first")


def _rebase(t, base, views, new):
    """After t's memory was written with `new` (t a view of base, or base with live views): the
    base's history becomes the write (through _WriteView unless t is the base), and every live view
    (t included) becomes a view of that new history, as PyTorch rebases views (CopySlices)."""
    if base is t:
        new_base = new
    else:
        new_base = _WriteView.apply(_snapshot(base), new, t._shape, t._stride, t._offset - base._offset)
    _set_history(base, new_base.requires_grad, new_base.grad_fn, new_base._output_nr)
    if not base.requires_grad:
        return
    # every live view, also those the write did not reach: their gradient must flow through the
    # base's new history (hooks, retain_grad and autograd.grad on the base see it there)
    for v in views + ([t] if t is not base else []):
        if v is base:
            continue
        rel = v._offset - base._offset
        step = _ViewOfBase.apply(base, v._shape, v._stride, v._offset, v._stride, rel)
        _set_history(v, True, step.grad_fn, 0)
