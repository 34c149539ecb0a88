"""2-D pooling with PyTorch's signatures: max_pool2d, avg_pool2d, adaptive_avg_pool2d, on the native
kernels of csrc/cpu/pool.cpp (and the CUDA twin). Inputs are [N, C, H, W] or unbatched [C, H, W]."""
from .. import _dtype as D
from ..autograd import Function
from ..tensor import Tensor
from ._layer_util import as_contiguous, check_tensor, pair


def pool2d_output_size(size, kernel, stride, padding, dilation, ceil_mode):
    """PyTorch's rule; with ceil_mode the last window must start inside the input or left padding."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _prepare(op, input):
    check_tensor(op, "input", input)
    if input.dtype is not D.float32:
        raise ValueError(f"{op}: expected a float32 input, got {input.dtype} (shape {tuple(input.shape)})")
    if input.dim() not in (3, 4):
        raise ValueError(f"{op}: expected a 3-D (unbatched) or 4-D (batched) input, got shape {tuple(input.shape)}")
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    if x._shape[2] < 1 or x._shape[3] < 1:
        raise ValueError(f"{op}: input {tuple(input.shape)} has an empty spatial dimension")
    return as_contiguous(x), unbatched


def _window_args(op, input, kernel_size, stride, padding, dilation, ceil_mode):
    k = pair(op, "kernel_size", kernel_size)
    s = k if stride is None or (not isinstance(stride, int) and len(stride) == 0) else pair(op, "stride", stride)
    p, d = pair(op, "padding", padding), pair(op, "dilation", dilation)
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError(f"{op}: kernel_size {k}, stride {s} and dilation {d} must be >= 1 and padding {p} >= 0")
    for pi, ki in zip(p, k):
        if pi > ki // 2:  # PyTorch's rule (half the kernel size, whatever the dilation)
            raise ValueError(f"{op}: pad should be smaller than or equal to half of kernel size, but got "
                             f"padding {p} for kernel_size {k}")
    H, W = input._shape[-2:]
    P = pool2d_output_size(H, k[0], s[0], p[0], d[0], ceil_mode)
    Q = pool2d_output_size(W, k[1], s[1], p[1], d[1], ceil_mode)
    if P < 1 or Q < 1:
        raise ValueError(f"{op}: input {tuple(input.shape)} is too small for kernel_size {k} "
                         f"(padding {p}, dilation {d}): output would be {P}x{Q}")
    return k, s, p, d, P, Q


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, k, s, p, d, P, Q):
        N, C, H, W = x._shape
        y = Tensor._empty((N, C, P, Q), D.float32, x.device)
        ind = Tensor._empty((N, C, P, Q), D.int64, x.device)
        if y.numel():
            x._backend.max_pool2d_forward(x.data_ptr(), y.data_ptr(), ind.data_ptr(), N, C, H, W, P, Q,
                                          *k, *s, *p, *d)
        ctx.save_for_backward(ind)
        ctx.x_shape = x._shape
        ctx.device = x.device
        ctx.mark_non_differentiable(ind)
        return y, ind

    @staticmethod
    def backward(ctx, g, _g_ind=None):
        (ind,) = ctx.saved_tensors
        N, C, H, W = ctx.x_shape
        dx = Tensor._empty(ctx.x_shape, D.float32, ctx.device)
        if dx.numel():
            g = as_contiguous(g)
            ind._backend.max_pool2d_backward(g.data_ptr(), ind.data_ptr(), dx.data_ptr(), N, C, H, W,
                                             ind._shape[2], ind._shape[3])
        return dx


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    op = "max_pool2d"
    x, unbatched = _prepare(op, input)
    k, s, p, d, P, Q = _window_args(op, x, kernel_size, stride, padding, dilation, ceil_mode)
    y, ind = MaxPool2d.apply(x, k, s, p, d, P, Q)
    if unbatched:
        y, ind = y.squeeze(0), ind.squeeze(0)
    return (y, ind) if return_indices else y


class AvgPool2d(Function):
    ctx_holds_tensors = False

    @staticmethod
    def forward(ctx, x, k, s, p, P, Q, count_include_pad, divisor):
        N, C, H, W = x._shape
        ctx.args = (N, C, H, W, P, Q, *k, *s, *p, bool(count_include_pad), int(divisor))
        ctx.x_shape, ctx.device = x._shape, x.device
        y = Tensor._empty((N, C, P, Q), D.float32, x.device)
        if y.numel():
            x._backend.avg_pool2d_forward(x.data_ptr(), y.data_ptr(), *ctx.args)
        return y

    @staticmethod
    def backward(ctx, g):
        dx = Tensor._empty(ctx.x_shape, D.float32, ctx.device)
        if dx.numel():
            g = as_contiguous(g)
            g._backend.avg_pool2d_backward(g.data_ptr(), dx.data_ptr(), *ctx.args)
        return dx


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    op = "avg_pool2d"
    x, unbatched = _prepare(op, input)
    k, s, p, _, P, Q = _window_args(op, x, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and int(divisor_override) <= 0:
        raise ValueError(f"{op}: divisor_override must be a positive integer, got {divisor_override}")
    y = AvgPool2d.apply(x, k, s, p, P, Q, count_include_pad, divisor_override or 0)
    return y.squeeze(0) if unbatched else y


class AdaptiveAvgPool2d(Function):
    ctx_holds_tensors = False

    @staticmethod
    def forward(ctx, x, P, Q):
        N, C, H, W = x._shape
        ctx.args = (N, C, H, W, P, Q)
        ctx.x_shape, ctx.device = x._shape, x.device
        y = Tensor._empty((N, C, P, Q), D.float32, x.device)
        if y.numel():
            x._backend.adaptive_avg_pool2d_forward(x.data_ptr(), y.data_ptr(), *ctx.args)
        return y

    @staticmethod
    def backward(ctx, g):
        dx = Tensor._empty(ctx.x_shape, D.float32, ctx.device)
        if dx.numel():
            g = as_contiguous(g)
            g._backend.adaptive_avg_pool2d_backward(g.data_ptr(), dx.data_ptr(), *ctx.args)
        return dx


def adaptive_avg_pool2d(input, output_size):
    """output_size: int or (P, Q); None in a position keeps that input size."""
    op = "adaptive_avg_pool2d"
    x, unbatched = _prepare(op, input)
    H, W = x._shape[2:]
    if output_size is None or isinstance(output_size, int):
        output_size = (output_size, output_size)
    if len(output_size) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    P = H if output_size[0] is None else int(output_size[0])
    Q = W if output_size[1] is None else int(output_size[1])
    if P < 1 or Q < 1:
        raise ValueError(f"{op}: output_size {output_size} must be positive")
    y = AdaptiveAvgPool2d.apply(x, P, Q)
    return y.squeeze(0) if unbatched else y
