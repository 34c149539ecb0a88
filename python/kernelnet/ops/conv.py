"""conv2d with PyTorch's signature, on the native im2col + GEMM kernels (csrc/cpu/conv.cpp and the
CUDA twin). Forward and backward are one autograd Function; the input, weight and bias gradients
are computed only when asked for."""
from .. import _dtype as D
from ..autograd import Function
from ..tensor import Tensor
from ._layer_util import as_contiguous, check_tensor, pair


def conv2d_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups):
        N, C, H, W = x._shape
        K, _, R, S = w._shape
        P = conv2d_output_size(H, R, stride[0], padding[0], dilation[0])
        Q = conv2d_output_size(W, S, stride[1], padding[1], dilation[1])
        ctx.geom = (N, C, H, W, K, R, S, *stride, *padding, *dilation, groups)
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        y = Tensor._empty((N, K, P, Q), D.float32, x.device)
        if y.numel():
            x._backend.conv2d_forward(x.data_ptr(), w.data_ptr(), b.data_ptr() if b is not None else 0,
                                      y.data_ptr(), *ctx.geom, 0)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g = as_contiguous(g)
        be = x._backend
        N, K = ctx.geom[0], ctx.geom[4]
        need = ctx.needs_input_grad
        gx = Tensor._empty(x._shape, D.float32, x.device) if need[0] else None
        gw = Tensor._empty(w._shape, D.float32, w.device) if need[1] else None
        gb = Tensor._empty((K,), D.float32, x.device) if ctx.has_bias and need[2] else None
        if hasattr(be, "conv2d_backward"):  # CPU: every wanted gradient in one pass over the images
            if gx is not None or gw is not None or gb is not None:
                ptr = lambda t: t.data_ptr() if t is not None else 0  # noqa: E731
                be.conv2d_backward(x.data_ptr(), g.data_ptr(), w.data_ptr(), ptr(gx), ptr(gw), ptr(gb),
                                   *ctx.geom)
            return gx, gw, gb
        if gx is not None and gx.numel():
            be.conv2d_backward_input(g.data_ptr(), w.data_ptr(), gx.data_ptr(), *ctx.geom)
        if gw is not None:
            be.conv2d_backward_weight(x.data_ptr(), g.data_ptr(), gw.data_ptr(), *ctx.geom, False)
        if gb is not None:
            be.conv2d_backward_bias(g.data_ptr(), gb.data_ptr(), N, K, g._shape[2] * g._shape[3])
        return gx, gw, gb


def _same_padding(op, kernel, stride, dilation):
    """padding='same': PyTorch pads total = dilation*(k-1), left = total//2, the odd one on the
    right. Returns (symmetric padding, crop at the start) per dim: the kernel pads symmetrically
    with the larger side, and one leading output row/column is dropped where total is odd."""
    if stride != (1, 1):
        raise ValueError(f"{op}: padding='same' is not supported for strided convolutions (stride={stride})")
    pads, crops = [], []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        left, right = total // 2, total - total // 2
        pads.append(right)
        crops.append(right - left)
    return tuple(pads), tuple(crops)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution over x [N, C, H, W] (or unbatched [C, H, W]) with weight [K, C/groups, R, S]."""
    op = "conv2d"
    check_tensor(op, "input", input, D.float32)
    check_tensor(op, "weight", weight, D.float32, device=input.device)
    if bias is not None:
        check_tensor(op, "bias", bias, D.float32, device=input.device)
    unbatched = input.dim() == 3
    if input.dim() not in (3, 4):
        raise ValueError(f"{op}: expected a 3-D (unbatched) or 4-D (batched) input, got shape {tuple(input.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"{op}: expected a 4-D weight [out_channels, in_channels/groups, kH, kW], "
                         f"got shape {tuple(weight.shape)}")
    x = input.unsqueeze(0) if unbatched else input
    groups = int(groups)
    K, Cg, R, S = weight._shape
    C = x._shape[1]
    if groups < 1 or C % groups or K % groups:
        raise ValueError(f"{op}: groups={groups} must be >= 1 and divide in_channels={C} and "
                         f"out_channels={K} (input {tuple(input.shape)}, weight {tuple(weight.shape)})")
    if Cg * groups != C:
        raise ValueError(f"{op}: input {tuple(input.shape)} has {C} channels but weight "
                         f"{tuple(weight.shape)} with groups={groups} expects {Cg * groups}")
    if bias is not None and tuple(bias.shape) != (K,):
        raise ValueError(f"{op}: bias shape {tuple(bias.shape)} does not match out_channels={K}")
    stride, dilation = pair(op, "stride", stride), pair(op, "dilation", dilation)
    if min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"{op}: stride {stride} and dilation {dilation} must be >= 1")
    crop = (0, 0)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            padding, crop = _same_padding(op, (R, S), stride, dilation)
        else:
            raise ValueError(f"{op}: padding must be 'same', 'valid', an int or a pair, got {padding!r}")
    else:
        padding = pair(op, "padding", padding)
        if min(padding) < 0:
            raise ValueError(f"{op}: padding {padding} must be >= 0")
    H, W = x._shape[2:]
    for size, k, s, p, d, name in ((H, R, stride[0], padding[0], dilation[0], "height"),
                                  (W, S, stride[1], padding[1], dilation[1], "width")):
        if conv2d_output_size(size, k, s, p, d) < 1:
            raise ValueError(f"{op}: kernel {(R, S)} (dilation {dilation}) is larger than the padded "
                             f"input {tuple(input.shape)} (padding {padding}) in {name}")
    x = as_contiguous(x)
    w = as_contiguous(weight)
    b = as_contiguous(bias) if bias is not None else None
    y = Conv2d.apply(x, w, b, stride, padding, dilation, groups)
    if crop != (0, 0):
        y = y[:, :, crop[0]:, crop[1]:]
    return y.squeeze(0) if unbatched else y
