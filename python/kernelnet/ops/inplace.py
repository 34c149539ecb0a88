"""In-place ops that autograd records (`out += identity`, `x.relu_()`, `nn.ReLU(inplace=True)` on a
tensor in the graph), with PyTorch's semantics.

PyTorch writes the new values into the tensor's memory and rebases its history: the tensor's
grad_fn becomes the in-place op's node, whose input is the tensor's previous value. We get the
same observable result without writing over anything a backward still needs:

1. `old`, a second tensor object for the current value (same storage, same history), goes into the
   out-of-place op, which autograd records as usual (its node saves `old`, never the tensor the
   user holds);
2. the tensor takes the result's storage and history (grad_fn) and shares its version counter with
   the result; its version is bumped, so an earlier op that saved it (its old values) refuses to
   run backward, as does the op itself if it saved its result and the tensor is written again
   (sigmoid_ then add_), as in PyTorch.

Nodes recorded before keep their edges to the previous history (autograd.Node.edges). Taking the
result's storage instead of copying into the old one is only equivalent while nobody else sees
the old storage: a view, a tensor views were taken from, .data, a NumPy array or a DLPack
consumer. Those are refused (PyTorch's view rebasing, CopySlices, is not implemented), as is an
in-place op on a leaf that requires grad (PyTorch refuses it too).
"""
from .. import autograd
from ..tensor import Tensor


def records(t, args, kwargs):
    """Whether an in-place op on t with these arguments must be recorded by autograd."""
    if not autograd.is_grad_enabled():
        return False
    if t.requires_grad:
        return True
    return any(isinstance(a, Tensor) and a.requires_grad for a in args) or \
        any(isinstance(a, Tensor) and a.requires_grad for a in kwargs.values())


def inplace_in_graph(t, name, compute):
    """t <- compute(old) as a recorded in-place op (see the module doc); returns t."""
    if t.requires_grad and t.grad_fn is None:
        raise RuntimeError(f"{name}: a leaf Variable that requires grad is being used in an in-place operation.")
    if t._shared_with_another():
        raise RuntimeError(
            f"{name}: in-place operation on a tensor that shares its memory with another tensor (a view of "
            "it, or the tensor it is a view of; also .data, numpy() or DLPack exports) while autograd records "
            "it is not supported: kernelnet cannot rewrite the other tensor's history as PyTorch does. Use "
            "the out-of-place version (x = x + y instead of x += y)")
    old = Tensor._make(t._storage, t._shape, t._stride, t._offset, t.dtype, t.device, t._base_ptr)
    old.requires_grad, old.grad_fn, old._output_nr = t.requires_grad, t.grad_fn, t._output_nr
    # the write happens now: earlier ops that saved t (its old values) will refuse their backward.
    # Bumped before the op runs so that the op's own saved result, which shares t's counter from
    # here on, counts as written only by later writes to t (PyTorch: sigmoid_ saves its result, and
    # a later y += 1 makes its backward raise)
    t._bump_version()
    new = compute(old)
    if not isinstance(new, Tensor):
        raise TypeError(f"{name}: expected a tensor result, got {type(new).__name__}")
    if new._shape != t._shape:
        raise RuntimeError(f"{name}: output with shape {list(t._shape)} doesn't match the broadcast shape "
                           f"{list(new._shape)}")
    if new.dtype is not t.dtype:
        raise RuntimeError(f"{name}: result type {new.dtype} can't be cast to the desired output type {t.dtype}")
    if new.device != t.device:
        raise RuntimeError(f"{name}: expected the result on {t.device}, got {new.device}")
    if new._storage is old._storage or new._shared_with_another():
        new = new.clone()  # an op that returned a view: the tensor needs memory of its own
    # the tensor takes the result's memory and history; `old` keeps the previous values for the
    # nodes that saved them
    retained = t.grad_fn is not None and t.grad_fn.retained and t.grad_fn.retained.get(t._output_nr) is t
    if retained:  # retain_grad() follows the tensor to its new value, as in PyTorch
        del t.grad_fn.retained[t._output_nr]
    t._storage, t._stride, t._offset, t._base_ptr = new._storage, new._stride, new._offset, new._base_ptr
    new._vc = t._vc  # one memory, one counter
    t.requires_grad, t.grad_fn, t._output_nr = new.requires_grad, new.grad_fn, new._output_nr
    if retained and t.grad_fn is not None:
        t.retain_grad()
    return t
