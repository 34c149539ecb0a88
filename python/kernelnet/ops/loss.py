"""softmax / log_softmax and the classification losses built on them (cross_entropy, nll_loss), with
PyTorch's signatures, on the native kernels of csrc/cpu/softmax_loss.cpp (and the CUDA twin).

The kernels work on a contiguous [rows, classes] matrix; any other layout is moved there first
(class axis last) with autograd-aware views, so gradients flow back through the move. The fused
cross-entropy never forms log(softmax) from a rounded softmax: it uses log-sum-exp per row and
saves it for backward."""
from .. import _dtype as D
from ..autograd import Function
from ..tensor import Tensor
from ._layer_util import as_contiguous, check_tensor

_REDUCTIONS = ("none", "mean", "sum")
# Signatures: cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing) and
# nll_loss(input, target, weight, ignore_index, reduction) positionally (nn.functional calls them
# so); PyTorch's deprecated size_average/reduce are keyword-only here.


# ------------------------------------------------------------------------------------- softmax
class _Softmax(Function):
    """Softmax (or log-softmax) over the last axis of a contiguous tensor."""

    @staticmethod
    def forward(ctx, x, log):
        cols = x._shape[-1] if x.dim() else 1
        rows = x.numel() // max(cols, 1)
        y = Tensor._empty(x._shape, D.float32, x.device)
        if y.numel():
            fn = x._backend.log_softmax_forward if log else x._backend.softmax_forward
            fn(x.data_ptr(), y.data_ptr(), rows, cols)
        ctx.save_for_backward(y)
        ctx.log, ctx.rows, ctx.cols = log, rows, cols
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        dx = Tensor._empty(y._shape, D.float32, y.device)
        if dx.numel():
            g = as_contiguous(g)
            fn = y._backend.log_softmax_backward if ctx.log else y._backend.softmax_backward
            fn(y.data_ptr(), g.data_ptr(), dx.data_ptr(), ctx.rows, ctx.cols)
        return dx


def _softmax_dim(ndim):
    # PyTorch's legacy choice when dim is omitted
    return 0 if ndim in (0, 1, 3) else 1


def _softmax_along(op, input, dim, log, dtype):
    check_tensor(op, "input", input)
    if dtype is not None and dtype is not D.float32:
        raise ValueError(f"{op}: only float32 is supported, got dtype={dtype}")
    if input.dtype is not D.float32:
        raise ValueError(f"{op}: expected a float32 input, got {input.dtype} (shape {tuple(input.shape)})")
    nd = input.dim()
    if dim is None:
        dim = _softmax_dim(nd)
    if nd == 0:
        if dim not in (0, -1):
            raise IndexError(f"{op}: dimension {dim} out of range for a 0-d tensor")
        return _Softmax.apply(input.reshape(1), log).reshape(())
    if not -nd <= dim < nd:
        raise IndexError(f"{op}: dimension {dim} out of range for a tensor of {nd} dimensions "
                         f"(shape {tuple(input.shape)})")
    dim %= nd
    if dim == nd - 1:
        return _Softmax.apply(as_contiguous(input), log)
    moved = as_contiguous(input.movedim(dim, -1))
    return _Softmax.apply(moved, log).movedim(-1, dim)


def softmax(input, dim=None, dtype=None):
    return _softmax_along("softmax", input, dim, False, dtype)


def log_softmax(input, dim=None, dtype=None):
    return _softmax_along("log_softmax", input, dim, True, dtype)


# ---------------------------------------------------------------------------- class-index losses
def _to_rows(op, input, target, class_probs=False):
    """input [N, C, d...] / [C] and target [N, d...] / [] -> (logits [rows, C] contiguous,
    target [rows] contiguous, target shape, C)."""
    check_tensor(op, "input", input)
    check_tensor(op, "target", target, device=input.device)
    if input.dtype is not D.float32:
        raise ValueError(f"{op}: expected a float32 input, got {input.dtype} (shape {tuple(input.shape)})")
    if input.dim() == 0:
        raise ValueError(f"{op}: input must have at least 1 dimension (classes), got a 0-d tensor")
    if input.dim() == 1:  # unbatched: [C] with target []
        x, C, tshape_expect = input.unsqueeze(0), input._shape[0], ()
    else:
        C = input._shape[1]
        x = input.movedim(1, -1) if input.dim() > 2 else input
        tshape_expect = (input._shape[0],) + tuple(input._shape[2:])
    if class_probs:
        return as_contiguous(x.reshape(-1, C)), None, tshape_expect, C
    if target.dtype is not D.int64:
        raise ValueError(f"{op}: expected int64 class indices as target (or float32 class probabilities "
                         f"of the input's shape), got {target.dtype} with shape {tuple(target.shape)}")
    if tuple(target.shape) != tshape_expect:
        raise ValueError(f"{op}: input {tuple(input.shape)} needs a target of shape {tshape_expect}, "
                         f"got {tuple(target.shape)}")
    return as_contiguous(x.reshape(-1, C)), as_contiguous(target.reshape(-1)), tshape_expect, C


def _check_weight(op, weight, C, device):
    if weight is None:
        return None
    check_tensor(op, "weight", weight, D.float32, device=device)
    if tuple(weight.shape) != (C,):
        raise ValueError(f"{op}: weight must have shape ({C},) (one per class), got {tuple(weight.shape)}")
    return as_contiguous(weight)


def _reduce_rows(loss, roww, reduction, tshape):
    """Per-row losses -> PyTorch's reduction ('mean' divides by the summed target weights)."""
    from .reduce import sum as _sum
    if reduction == "none":
        return loss.reshape(tshape)
    total = _sum(loss)
    if reduction == "sum":
        return total
    return total / _sum(roww)


def _grad_rows(g, roww, reduction):
    """(per-row gradient tensor, stride) for the backward kernels."""
    from .reduce import sum as _sum
    if reduction == "none":
        return as_contiguous(g.reshape(-1)), 1
    if reduction == "sum":
        return as_contiguous(g.reshape(1)), 0
    return as_contiguous((g / _sum(roww)).reshape(1)), 0


class _CrossEntropy(Function):
    @staticmethod
    def forward(ctx, z, t, w, ignore_index, eps, reduction, tshape):
        rows, C = z._shape
        be = z._backend
        loss = Tensor._empty((rows,), D.float32, z.device)
        lse = Tensor._empty((rows,), D.float32, z.device)
        roww = Tensor._empty((rows,), D.float32, z.device)
        if rows:
            be.cross_entropy_forward(z.data_ptr(), t.data_ptr(), w.data_ptr() if w is not None else 0,
                                     loss.data_ptr(), lse.data_ptr(), roww.data_ptr(), rows, C,
                                     int(ignore_index), float(eps))
        ctx.save_for_backward(z, t, w, lse, roww)
        ctx.args = (int(ignore_index), float(eps), reduction)
        return _reduce_rows(loss, roww, reduction, tshape)

    @staticmethod
    def backward(ctx, g):
        z, t, w, lse, roww = ctx.saved_tensors
        ignore_index, eps, reduction = ctx.args
        rows, C = z._shape
        dz = Tensor._empty(z._shape, D.float32, z.device)
        if rows:
            gr, gstride = _grad_rows(g, roww, reduction)
            z._backend.cross_entropy_backward(z.data_ptr(), t.data_ptr(), w.data_ptr() if w is not None else 0,
                                              lse.data_ptr(), gr.data_ptr(), gstride, dz.data_ptr(), rows, C,
                                              ignore_index, eps)
        return dz


def _check_reduction(op, reduction, size_average=None, reduce=None):
    if size_average is not None or reduce is not None:  # PyTorch's deprecated arguments
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                  *, size_average=None, reduce=None):
    """Softmax cross-entropy over dim 1 of input [N, C, d...] (or [C]); target int64 class indices
    [N, d...], or float32 class probabilities of the input's shape."""
    op = "cross_entropy"
    reduction = _check_reduction(op, reduction, size_average, reduce)
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    check_tensor(op, "target", target)
    if target.dtype is D.float32:
        if ignore_index >= 0:  # PyTorch's rule: a class index means nothing for probability targets
            raise RuntimeError(f"{op}: ignore_index ({ignore_index}) is not supported for floating point "
                               "(class-probability) targets")
        return _cross_entropy_probs(op, input, target, weight, reduction, eps)
    z, t, tshape, C = _to_rows(op, input, target)
    w = _check_weight(op, weight, C, input.device)
    return _CrossEntropy.apply(z, t, w, ignore_index, eps, reduction, tshape)


def _cross_entropy_probs(op, input, target, weight, reduction, eps):
    """Class-probability targets: loss = -sum_c w_c t'_c log p_c with t' = (1-eps) t + eps/C;
    'mean' divides by the number of rows (PyTorch). Built from log_softmax and elementwise ops."""
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"{op}: class-probability target must have the input's shape "
                         f"{tuple(input.shape)}, got {tuple(target.shape)}")
    z, _, tshape, C = _to_rows(op, input, target, class_probs=True)
    tp = as_contiguous((target.movedim(1, -1) if input.dim() > 2 else target).reshape(-1, C))
    if eps:
        tp = tp * (1.0 - eps) + eps / C
    w = _check_weight(op, weight, C, input.device)
    if w is not None:
        tp = tp * w
    from .reduce import sum as _sum
    loss = -_sum(log_softmax(z, -1) * tp, -1)
    if reduction == "none":
        return loss.reshape(tshape)
    total = _sum(loss)
    return total if reduction == "sum" else total / max(z._shape[0], 1)


class _NLLLoss(Function):
    @staticmethod
    def forward(ctx, lp, t, w, ignore_index, reduction, tshape):
        rows, C = lp._shape
        loss = Tensor._empty((rows,), D.float32, lp.device)
        roww = Tensor._empty((rows,), D.float32, lp.device)
        if rows:
            lp._backend.nll_loss_forward(lp.data_ptr(), t.data_ptr(), w.data_ptr() if w is not None else 0,
                                         loss.data_ptr(), roww.data_ptr(), rows, C, int(ignore_index))
        ctx.save_for_backward(t, w, roww)
        ctx.args = (rows, C, int(ignore_index), reduction, lp.device)
        return _reduce_rows(loss, roww, reduction, tshape)

    @staticmethod
    def backward(ctx, g):
        t, w, roww = ctx.saved_tensors
        rows, C, ignore_index, reduction, device = ctx.args
        d = Tensor._empty((rows, C), D.float32, device)
        if rows:
            gr, gstride = _grad_rows(g, roww, reduction)
            t._backend.nll_loss_backward(t.data_ptr(), w.data_ptr() if w is not None else 0, gr.data_ptr(),
                                         gstride, d.data_ptr(), rows, C, ignore_index)
        return d


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean", *, size_average=None,
             reduce=None):
    """Negative log-likelihood of log-probabilities input [N, C, d...] (or [C]) at target [N, d...]."""
    op = "nll_loss"
    reduction = _check_reduction(op, reduction, size_average, reduce)
    lp, t, tshape, C = _to_rows(op, input, target)
    w = _check_weight(op, weight, C, input.device)
    return _NLLLoss.apply(lp, t, w, ignore_index, reduction, tshape)
