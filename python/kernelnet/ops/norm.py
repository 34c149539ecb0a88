"""batch_norm and layer_norm with PyTorch's semantics, on the native kernels of csrc/cpu/norm.cpp
(and the CUDA twin csrc/cuda/norm.cu): one call forward (statistics, running-statistics update and
the affine transform together) and one call backward (input, weight and bias gradients together).

BatchNorm views its input as [outer, C, inner] (NCHW: outer = N, inner = H*W); LayerNorm as
[rows, D] with D the product of normalized_shape. Statistics are summed in double by the kernels."""
import math

from .. import _dtype as D
from ..autograd import Function
from ..tensor import Tensor
from ._layer_util import as_contiguous, check_tensor


def _ptr(t):
    return t.data_ptr() if t is not None else 0


class _BatchNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        C = x._shape[1]
        outer = x._shape[0]
        inner = x.numel() // (outer * C) if outer * C else 0
        y = Tensor._empty(x._shape, D.float32, x.device)
        mean = Tensor._empty((C,), D.float32, x.device)
        invstd = Tensor._empty((C,), D.float32, x.device)
        if outer * inner == 0:
            # an empty batch, as in PyTorch: empty output, running statistics left alone. No kernel
            # call (an empty CUDA tensor's data_ptr() is 0, which the bindings refuse)
            mean.zero_()
            invstd.zero_()
        else:
            x._backend.batch_norm_forward(x.data_ptr(), y.data_ptr(), _ptr(weight), _ptr(bias), mean.data_ptr(),
                                          invstd.data_ptr(), _ptr(running_mean), _ptr(running_var), outer, C, inner,
                                          bool(training), float(momentum), float(eps))
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.sizes = (outer, C, inner)
        ctx.training = bool(training)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, mean, invstd = ctx.saved_tensors
        outer, C, inner = ctx.sizes
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx = Tensor._empty(x._shape, D.float32, x.device) if need_x else None
        dw = Tensor._empty((C,), D.float32, x.device) if need_w else None
        db = Tensor._empty((C,), D.float32, x.device) if need_b else None
        if outer * inner == 0:  # empty batch: zero weight/bias gradients, no kernel (see forward)
            for t in (dw, db):
                if t is not None:
                    t.zero_()
            return dx, dw, db, None, None, None, None, None
        g = as_contiguous(g)
        x._backend.batch_norm_backward(x.data_ptr(), g.data_ptr(), mean.data_ptr(), invstd.data_ptr(), _ptr(weight),
                                       _ptr(dx), _ptr(dw), _ptr(db), outer, C, inner, ctx.training)
        return dx, dw, db, None, None, None, None, None


class _LayerNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, normalized_shape, eps):
        D_ = math.prod(normalized_shape)
        rows = x.numel() // D_
        y = Tensor._empty(x._shape, D.float32, x.device)
        mean = Tensor._empty((rows,), D.float32, x.device)
        rstd = Tensor._empty((rows,), D.float32, x.device)
        if rows:
            x._backend.layer_norm_forward(x.data_ptr(), y.data_ptr(), _ptr(weight), _ptr(bias), mean.data_ptr(),
                                          rstd.data_ptr(), rows, D_, float(eps))
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.sizes = (rows, D_)
        ctx.normalized_shape = normalized_shape
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, mean, rstd = ctx.saved_tensors
        rows, D_ = ctx.sizes
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        wshape = ctx.normalized_shape
        dx = Tensor._empty(x._shape, D.float32, x.device) if need_x else None
        dw = Tensor._empty(wshape, D.float32, x.device) if need_w else None
        db = Tensor._empty(wshape, D.float32, x.device) if need_b else None
        if rows == 0:  # no rows: zero weight/bias gradients, no kernel (x.data_ptr() is 0 on CUDA)
            for t in (dw, db):
                if t is not None:
                    t.zero_()
            return dx, dw, db, None, None
        g = as_contiguous(g)
        x._backend.layer_norm_backward(x.data_ptr(), g.data_ptr(), mean.data_ptr(), rstd.data_ptr(), _ptr(weight),
                                       _ptr(dx), _ptr(dw), _ptr(db), rows, D_)
        return dx, dw, db, None, None


def _check_param(op, name, t, shape, x):
    if t is None:
        return None
    check_tensor(op, name, t, D.float32, x.device)
    if tuple(t.shape) != tuple(shape):
        raise RuntimeError(f"{op}: expected {name} of shape {list(shape)}, got {list(t.shape)}")
    return as_contiguous(t)


def _check_running(op, name, t, C, x):
    """Running statistics are updated in place by the kernel: they must be float32, contiguous,
    on the input's device, C elements."""
    if t is None:
        return None
    check_tensor(op, name, t, D.float32, x.device)
    if t.numel() != C:
        raise RuntimeError(f"{op}: {name} should have {C} elements, got shape {list(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{op}: {name} must be contiguous (it is updated in place)")
    return t


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalise over every dim but the channel dim 1. Training: batch statistics, and the running
    statistics (if given) move by ``momentum`` toward the batch mean and UNBIASED variance."""
    op = "batch_norm"
    check_tensor(op, "input", input)
    if input.dtype is not D.float32:
        raise ValueError(f"{op}: expected a float32 input, got {input.dtype} (shape {tuple(input.shape)})")
    if input.dim() < 2:
        raise ValueError(f"{op}: expected at least 2D input (got {input.dim()}D input)")
    C = input.shape[1]
    if (running_mean is None) != (running_var is None):  # as PyTorch (one alone was silently not updated)
        raise ValueError(f"{op}: running_mean and running_var must either both be None or neither be None")
    if training:
        n = input.numel() // C if C else 0
        if n == 1 or C == 0:  # PyTorch lets an empty batch through (n == 0, C > 0)
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(input.shape)}")
    elif running_mean is None or running_var is None:
        raise ValueError(f"{op}: running_mean and running_var are needed when training=False")
    weight = _check_param(op, "weight", weight, (C,), input)
    bias = _check_param(op, "bias", bias, (C,), input)
    running_mean = _check_running(op, "running_mean", running_mean, C, input)
    running_var = _check_running(op, "running_var", running_var, C, input)
    # momentum only moves running statistics in training (PyTorch ignores it in eval, whatever its value)
    momentum = 0.0 if momentum is None or not training else float(momentum)
    return _BatchNorm.apply(as_contiguous(input), weight, bias, running_mean, running_var, bool(training), momentum,
                            float(eps))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    op = "layer_norm"
    check_tensor(op, "input", input)
    if input.dtype is not D.float32:
        raise ValueError(f"{op}: expected a float32 input, got {input.dtype} (shape {tuple(input.shape)})")
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(int(s) for s in normalized_shape)
    k = len(normalized_shape)
    if k == 0 or tuple(input.shape[input.dim() - k:]) != normalized_shape or k > input.dim():
        raise RuntimeError(f"{op}: given normalized_shape={list(normalized_shape)}, expected input with shape "
                           f"[*, {', '.join(map(str, normalized_shape))}], but got input of size {list(input.shape)}")
    if math.prod(normalized_shape) == 0:
        raise ValueError(f"{op}: normalized_shape {list(normalized_shape)} has no elements")
    weight = _check_param(op, "weight", weight, normalized_shape, input)
    bias = _check_param(op, "bias", bias, normalized_shape, input)
    return _LayerNorm.apply(as_contiguous(input), weight, bias, normalized_shape, float(eps))
