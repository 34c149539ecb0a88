"""nn.functional: PyTorch's functional forms and losses.

Layer kernels (conv, pooling, softmax, cross-entropy/NLL, dropout) live in kernelnet.ops.{conv,
pool, loss, dropout} with their autograd and PyTorch's signatures; the functions here call them.
(Softmax, cross-entropy, NLL and dropout keep a composed fallback for builds without them.) The
rest (batch/layer norm, BCE, MSE, L1, pad, embedding, ...) is composed from core tensor ops.
"""
import importlib
import math
import numbers
import warnings

import kernelnet as _kn
from ..ops import inplace as _inplace_ops

__all__ = ["relu", "relu_", "leaky_relu", "elu", "gelu", "silu", "softplus", "tanh", "sigmoid", "softmax",
           "log_softmax", "linear", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "dropout",
           "batch_norm", "layer_norm", "pad", "one_hot", "embedding", "flatten", "cross_entropy", "nll_loss",
           "mse_loss", "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"]


def _layer_ops(name):
    """kernelnet.ops.<name> (the native layer kernels' autograd wrappers), or None if absent."""
    try:
        return importlib.import_module(f"kernelnet.ops.{name}")
    except ModuleNotFoundError as ex:
        if ex.name != f"kernelnet.ops.{name}":
            raise
        return None


def _need(name, fn):
    mod = _layer_ops(name)
    if mod is None or not hasattr(mod, fn):
        raise NotImplementedError(f"{fn}: the native kernel wrapper kernelnet.ops.{name}.{fn} is not available "
                                  "in this build")
    return getattr(mod, fn)


def _pair(x, name="argument"):
    if isinstance(x, (tuple, list)):
        if len(x) == 1:
            return (int(x[0]), int(x[0]))
        if len(x) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {x}")
        return (int(x[0]), int(x[1]))
    return (int(x), int(x))


def _check_reduction(reduction, op):
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{op}: {reduction} is not a valid value for reduction")


def _legacy(size_average, reduce, reduction):
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "none" if not reduce else ("mean" if size_average else "sum")


def _mean(x, dims=None, keepdim=False):
    """sum / count (kept separate from Tensor.mean, whose backward the core is still fixing)."""
    if dims is None:
        return x.sum() / max(x.numel(), 1)
    n = 1
    for d in dims:
        n *= x.shape[d]
    return x.sum(dims, keepdim=keepdim) / max(n, 1)


def _reduce(loss, reduction):
    if reduction == "mean":
        return _mean(loss)
    if reduction == "sum":
        return loss.sum()
    return loss


# ----------------------------------------------------------------------------- activations
def _maybe_inplace(name, input, inplace, compute):
    """compute(input), written into input when inplace=True (PyTorch's semantics: recorded by
    autograd when input is in the graph, see ops/inplace.py)."""
    if not inplace:
        return compute(input)
    if _inplace_ops.records(input, (), {}):
        return _inplace_ops.inplace_in_graph(input, name, compute)
    input.copy_(compute(input))
    return input


def relu(input, inplace=False):
    return _maybe_inplace("relu_", input, inplace, _kn.relu)


def relu_(input):
    return relu(input, inplace=True)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return _maybe_inplace("leaky_relu_", input, inplace, lambda x: _kn.leaky_relu(x, negative_slope))


def elu(input, alpha=1.0, inplace=False):
    return _maybe_inplace("elu_", input, inplace, lambda x: _kn.elu(x, alpha))


def gelu(input, approximate="none"):
    return _kn.gelu(input, approximate=approximate)


def silu(input, inplace=False):
    return _maybe_inplace("silu_", input, inplace, _kn.silu)


def softplus(input, beta=1.0, threshold=20.0):
    return _kn.softplus(input, beta, threshold)


def tanh(input):
    return _kn.tanh(input)


def sigmoid(input):
    return _kn.sigmoid(input)


def _softmax_dim(ndim, stacklevel):
    warnings.warn("Implicit dimension choice for softmax has been deprecated. Change the call to include dim=X "
                  "as an argument.", stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def _last_dim_op(fn_name, fallback, input, dim):
    """Composed fallback (used only when kernelnet.ops.loss is absent) on any ``dim``."""
    nd = input.dim()
    if nd == 0:
        input = input.reshape(1)
    d = dim % max(nd, 1) if nd else 0
    x = input if d == max(nd, 1) - 1 else input.movedim(d, -1)
    y = fallback(x)
    if x is not input:
        y = y.movedim(-1, d)
    return y.reshape(()) if nd == 0 else y


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim(input.dim(), _stacklevel)
    mod = _layer_ops("loss")
    if mod is not None and hasattr(mod, "softmax"):
        return mod.softmax(input, dim, dtype=dtype)
    if dtype is not None:
        input = input.to(dtype)
    return _last_dim_op("softmax", lambda x: (x - _kn.logsumexp(x, -1, keepdim=True)).exp(), input, dim)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim(input.dim(), _stacklevel)
    mod = _layer_ops("loss")
    if mod is not None and hasattr(mod, "log_softmax"):
        return mod.log_softmax(input, dim, dtype=dtype)
    if dtype is not None:
        input = input.to(dtype)
    return _last_dim_op("log_softmax", lambda x: x - _kn.logsumexp(x, -1, keepdim=True), input, dim)


# ----------------------------------------------------------------------------- layers
def linear(input, weight, bias=None):
    """y = input @ weight.T + bias: one SGEMM with the bias added in its epilogue (BIAS_COL)."""
    return _kn.linear(input, weight, bias)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (im2col + SGEMM kernels); padding may be an int, a pair, 'same' or 'valid'."""
    return _need("conv", "conv2d")(input, weight, bias=bias, stride=stride, padding=padding, dilation=dilation,
                                   groups=groups)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return _need("pool", "max_pool2d")(input, kernel_size, stride=stride, padding=padding, dilation=dilation,
                                       ceil_mode=ceil_mode, return_indices=return_indices)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    return _need("pool", "avg_pool2d")(input, kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                                       count_include_pad=count_include_pad, divisor_override=divisor_override)


def adaptive_avg_pool2d(input, output_size):
    return _need("pool", "adaptive_avg_pool2d")(input, output_size)


def dropout(input, p=0.5, training=True, inplace=False):
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    def compute(x):
        mod = _layer_ops("dropout")
        if mod is not None and hasattr(mod, "dropout"):
            return mod.dropout(x, p=p, training=True)
        keep = 1.0 - p
        mask = _kn.bernoulli_mask(tuple(x.shape), keep, (1.0 / keep) if keep > 0 else 0.0, device=x.device)
        return x * mask
    return _maybe_inplace("dropout_", input, inplace, compute)


def flatten(input, start_dim=0, end_dim=-1):
    return input.flatten(start_dim, end_dim)


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` picked by int64 ``input``; the padding_idx row gets no gradient."""
    if input.dtype != _kn.int64:
        raise RuntimeError(f"embedding: indices must be int64, got {input.dtype}")
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: max_norm, scale_grad_by_freq and sparse are not supported")
    w = weight
    if padding_idx is not None and weight.requires_grad and _kn.is_grad_enabled():
        # zero the padding row's gradient: multiply by a constant mask (value unchanged, row is 0 anyway
        # unless the user changed it, so add back the detached row)
        n = weight.shape[0]
        pidx = padding_idx % n
        mask = _kn.ones((n, 1), device=weight.device)
        mask[pidx] = 0.0
        w = weight * mask + (weight.detach() * (1.0 - mask))
    out = w.index_select(0, input.reshape(-1))
    return out.reshape(tuple(input.shape) + (weight.shape[1],))


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalise over every dim but the channel dim 1. Training: batch statistics, and the running
    statistics (if given) move by ``momentum`` toward the batch mean and UNBIASED variance.
    Native kernels: kernelnet/ops/norm.py."""
    return _need("norm", "batch_norm")(input, running_mean, running_var, weight, bias, training, momentum, eps)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing ``normalized_shape`` dims of each sample. Native kernels:
    kernelnet/ops/norm.py."""
    return _need("norm", "layer_norm")(input, normalized_shape, weight, bias, eps)


def pad(input, pad, mode="constant", value=None):
    """PyTorch's F.pad: ``pad`` lists (left, right) amounts from the LAST dim backwards; negative
    amounts crop. Every mode is one index_select per padded dim (gradients flow through it)."""
    if len(pad) % 2 != 0:
        raise ValueError("Padding length must be divisible by 2")
    if len(pad) // 2 > input.dim():
        raise ValueError(f"Padding length too large: {len(pad)} for a {input.dim()}-d input")
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode {mode!r} is not supported")
    value = 0.0 if value is None else float(value)
    out = input
    for i in range(len(pad) // 2):
        d = input.dim() - 1 - i
        lo, hi = int(pad[2 * i]), int(pad[2 * i + 1])
        if lo == 0 and hi == 0:
            continue
        n = out.shape[d]
        pos = list(range(-lo, n + hi))
        if mode == "constant":
            src = [min(max(p, 0), n - 1) for p in pos]
            valid = [0 <= p < n for p in pos]
        elif mode == "replicate":
            src = [min(max(p, 0), n - 1) for p in pos]
            valid = None
        elif mode == "reflect":
            if lo >= n or hi >= n:
                raise ValueError(f"pad: reflect padding ({lo}, {hi}) must be smaller than the dim size {n}")
            src = [(-p if p < 0 else (2 * (n - 1) - p if p >= n else p)) for p in pos]
            valid = None
        else:
            if lo > n or hi > n:  # PyTorch's limit: each side wraps around at most once
                raise ValueError(f"pad: circular padding ({lo}, {hi}) causes wrapping around more than once "
                                 f"(dim size {n})")
            src = [p % n for p in pos]
            valid = None
        if n == 0:
            raise ValueError("pad: cannot pad an empty dimension")
        idx = _kn.tensor(src, dtype=_kn.int64, device=input.device)
        out = out.index_select(d, idx)
        if valid is not None and not all(valid):
            mshape = [1] * input.dim()
            mshape[d] = len(pos)
            mask = _kn.tensor(valid, dtype=_kn.bool, device=input.device).reshape(mshape)
            out = _kn.where(mask, out, _kn.full((), value, dtype=out.dtype, device=out.device))
    return out


def one_hot(tensor, num_classes=-1):
    return _kn.one_hot(tensor, num_classes)


# ----------------------------------------------------------------------------- losses
def _class_rows(input, target, op):
    """[N, C, d1..] logits + [N, d1..] targets -> ([rows, C], [rows], restore shape); [C] + [] too."""
    if input.dim() == 1:
        if target.dim() != 0:
            raise ValueError(f"{op}: for 1-D input of shape {list(input.shape)} the target must be 0-D, got "
                             f"{list(target.shape)}")
        return input.reshape(1, -1), target.reshape(1), ()
    if input.dim() < 1:
        raise ValueError(f"{op}: input must have a class dimension, got shape {list(input.shape)}")
    N, C = input.shape[0], input.shape[1]
    rest = tuple(input.shape[2:])
    if tuple(target.shape) != (N,) + rest:
        raise ValueError(f"{op}: expected target of shape {[N] + list(rest)} for input of shape "
                         f"{list(input.shape)}, got {list(target.shape)}")
    if rest:
        x = input.movedim(1, -1).reshape(-1, C)
    else:
        x = input
    return x, target.reshape(-1), (N,) + rest


def _check_targets(target, op):
    if target.dtype != _kn.int64:
        raise RuntimeError(f"{op}: expected target of dtype int64 (class indices) or float32 probabilities, got "
                           f"{target.dtype}")


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0):
    """Softmax cross-entropy from logits; targets as class indices (int64) or probabilities (float)."""
    mod = _layer_ops("loss")
    if mod is not None and hasattr(mod, "cross_entropy"):  # the fused native kernel
        return mod.cross_entropy(input, target, weight=weight, ignore_index=ignore_index,
                                 reduction=_legacy(size_average, reduce, reduction), label_smoothing=label_smoothing)
    reduction = _legacy(size_average, reduce, reduction)
    _check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if target.dtype == _kn.float32:  # class probabilities
        if ignore_index >= 0:
            raise RuntimeError(f"cross_entropy: ignore_index ({ignore_index}) is not supported for floating "
                               "point (class-probability) targets")
        if tuple(target.shape) != tuple(input.shape):
            raise ValueError(f"cross_entropy: probability targets must have the input's shape {list(input.shape)}, "
                             f"got {list(target.shape)}")
        cdim = 0 if input.dim() == 1 else 1
        C = input.shape[cdim]
        logp = log_softmax(input, cdim)
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / C
        if weight is not None:
            wshape = [1] * input.dim()
            wshape[cdim] = C
            logp = logp * weight.reshape(wshape)
        loss = -(logp * target).sum(cdim)
        if reduction == "mean":
            return loss.sum() / (input.numel() // C)
        return _reduce(loss, reduction)
    _check_targets(target, "cross_entropy")
    x, t, shape = _class_rows(input, target, "cross_entropy")
    loss = _cross_entropy_composed(x, t, weight, ignore_index, reduction, label_smoothing)
    if reduction == "none":
        return loss.reshape(shape)
    return loss


def _nll_rows(logp, t, weight, ignore_index):
    """Per-row -w[t] logp[t] and w[t] (0 on ignored rows), from core ops."""
    valid = t != ignore_index
    safe_t = _kn.where(valid, t, _kn.zeros((), dtype=_kn.int64, device=t.device))
    C = logp.shape[1]
    if ((safe_t < 0) | (safe_t >= C)).any().item():
        bad = safe_t[(safe_t < 0) | (safe_t >= C)][0].item()
        raise IndexError(f"Target {bad} is out of bounds (classes 0..{C - 1})")
    picked = logp.gather(1, safe_t.reshape(-1, 1)).reshape(-1)
    w = weight.index_select(0, safe_t) if weight is not None else _kn.ones(t.shape, device=logp.device)
    w = w * valid.float()
    return -picked * w, w


def _cross_entropy_composed(x, t, weight, ignore_index, reduction, label_smoothing):
    logp = x - _kn.logsumexp(x, -1, keepdim=True)
    nll, w = _nll_rows(logp, t, weight, ignore_index)
    loss = nll
    if label_smoothing > 0:
        C = x.shape[1]
        wl = logp * weight.reshape(1, -1) if weight is not None else logp
        valid = (t != ignore_index).float()
        smooth = -wl.sum(1) * valid
        loss = nll * (1 - label_smoothing) + smooth * (label_smoothing / C)
    if reduction == "mean":
        return loss.sum() / w.sum()
    return _reduce(loss, reduction)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    mod = _layer_ops("loss")
    if mod is not None and hasattr(mod, "nll_loss"):
        return mod.nll_loss(input, target, weight=weight, ignore_index=ignore_index,
                            reduction=_legacy(size_average, reduce, reduction))
    reduction = _legacy(size_average, reduce, reduction)
    _check_reduction(reduction, "nll_loss")
    _check_targets(target, "nll_loss")
    x, t, shape = _class_rows(input, target, "nll_loss")
    nll, w = _nll_rows(x, t, weight, ignore_index)
    loss = nll.sum() / w.sum() if reduction == "mean" else _reduce(nll, reduction)
    if reduction == "none":
        return loss.reshape(shape)
    return loss


def _check_same_shape(input, target, op):
    if tuple(input.shape) != tuple(target.shape):
        warnings.warn(f"{op}: Using a target size ({list(target.shape)}) that is different to the input size "
                      f"({list(input.shape)}). This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", stacklevel=3)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = _legacy(size_average, reduce, reduction)
    _check_reduction(reduction, "mse_loss")
    _check_same_shape(input, target, "mse_loss")
    d = input - target
    loss = d * d
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = _legacy(size_average, reduce, reduction)
    _check_reduction(reduction, "l1_loss")
    _check_same_shape(input, target, "l1_loss")
    loss = (input - target).abs()
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


class _BinaryCrossEntropy(_kn.autograd.Function):
    """Elementwise -(t log x + (1-t) log(1-x)), each log clamped at -100 as PyTorch does, with
    PyTorch's gradient (x - t) / max(x (1 - x), 1e-12): finite where x is exactly 0 or 1 (a
    saturated sigmoid), where the chain rule through log and the clamp gives 0 * inf = NaN."""

    @staticmethod
    def forward(ctx, x, t):
        ctx.save_for_backward(x, t)
        return -(t * x.log().clamp(min=-100.0) + (1 - t) * (1 - x).log().clamp(min=-100.0))

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        gx = g * (x - t) / (x * (1 - x)).clamp(min=1e-12) if ctx.needs_input_grad[0] else None
        # the target's gradient is PyTorch's too: log(1 - x) - log(x), unclamped (+-inf at 0 and 1)
        gt = g * ((1 - x).log() - x.log()) if ctx.needs_input_grad[1] else None
        return gx, gt


def _check_float_target(op, input, target):
    if not isinstance(target, _kn.Tensor) or target.dtype is not _kn.float32:
        got = target.dtype if isinstance(target, _kn.Tensor) else type(target).__name__
        raise RuntimeError(f"{op}: target must be a float32 tensor of probabilities, got {got} "
                           f"(integer class labels: convert with target.float())")


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """-(t log x + (1-t) log(1-x)), each log clamped at -100 as PyTorch does."""
    reduction = _legacy(size_average, reduce, reduction)
    _check_reduction(reduction, "binary_cross_entropy")
    _check_float_target("binary_cross_entropy", input, target)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"Using a target size ({list(target.shape)}) that is different to the input size "
                         f"({list(input.shape)}) is deprecated. Please ensure they have the same size.")
    with _kn.no_grad():
        if ((input < 0) | (input > 1)).any().item():
            raise RuntimeError("all elements of input should be between 0 and 1")
    loss = _BinaryCrossEntropy.apply(input, target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    """BCE on logits, computed stably: (1-t) x + (1 + (pw-1) t) (log(1+exp(-|x|)) + max(-x, 0))."""
    reduction = _legacy(size_average, reduce, reduction)
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    _check_float_target("binary_cross_entropy_with_logits", input, target)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"Target size ({list(target.shape)}) must be the same as input size ({list(input.shape)})")
    log_term = (-input.abs()).exp().log1p() + (-input).relu()
    if pos_weight is not None:
        lw = (pos_weight - 1) * target + 1
        loss = (1 - target) * input + lw * log_term
    else:
        loss = (1 - target) * input + log_term
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    reduction = _legacy(size_average, reduce, reduction)
    _check_reduction(reduction, "smooth_l1_loss")
    if beta < 0:
        raise RuntimeError(f"smooth_l1_loss does not support negative values for beta (got {beta})")
    d = (input - target).abs()
    if beta == 0:
        return _reduce(d, reduction)
    loss = _kn.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)
    return _reduce(loss, reduction)
