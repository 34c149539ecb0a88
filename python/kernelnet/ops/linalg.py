"""matmul (with broadcast batch dims) and linear, on the native SGEMM. Transposed operands are
passed to the GEMM as flags with their leading dimension, never copied."""
from .. import _dtype as D
from ..autograd import Function
from ..tensor import Tensor, _prod
from ._util import broadcast_shapes, check_same_device
from .copy import _contiguous_copy, contiguous
from .elementwise import add, mul, sum_to
from .reduce import R_SUM, sum as _sum

BIAS_NONE, BIAS_COL, BIAS_ROW = 0, 1, 2


def _gemm_operand(t):
    """(tensor, transposed, ld) for a 2-D matrix view usable by the GEMM without a copy."""
    r, c = t._shape
    sr, sc = t._stride
    if sc == 1 and (sr >= max(c, 1) or r == 1):
        return t, False, max(sr, c, 1)
    if sr == 1 and (sc >= max(r, 1) or c == 1):
        return t, True, max(sc, r, 1)
    return _contiguous_copy(t), False, max(c, 1)


def _batched_operand(t, batch_shape):
    """t is [..., r, c]; returns (tensor, transposed, ld, batch_stride) with batch dims collapsed."""
    r, c = t._shape[-2:]
    nb = len(batch_shape)
    off = nb - (t.dim() - 2)
    bstr = [0] * nb
    for i in range(t.dim() - 2):
        if t._shape[i] != 1:
            bstr[off + i] = t._stride[i]
    mat = t._view((r, c), t._stride[-2:])
    _, trans, ld = _gemm_operand(mat)
    copied = _ is not mat
    # one batch stride must describe every batch dim (or all broadcast)
    B = _prod(batch_shape)
    ok = not copied
    if ok and B > 1:
        if all(s == 0 for s in bstr):
            return t, trans, ld, 0
        expect = None
        acc = None
        for size, s in zip(reversed(batch_shape), reversed(bstr)):
            if size == 1:
                continue
            if acc is None:
                acc = s
                expect = s * size
                if s == 0:
                    ok = False
                    break
            elif s != expect:
                ok = False
                break
            else:
                expect = s * size
        if ok:
            return t, trans, ld, acc
    elif ok:
        return t, trans, ld, 0
    # fall back: materialise the broadcast batch contiguously
    full = t.expand(*batch_shape, r, c)
    full = _contiguous_copy(full)
    return full, False, max(c, 1), r * c


def gemm_kernel(a, b, bias=None, bias_mode=BIAS_NONE, act=0):
    """C = a @ b for a [..., M, K], b [..., K, N] (batch dims broadcast). No autograd."""
    M, K = a._shape[-2:]
    N = b._shape[-1]
    two_d = len(a._shape) == 2 and len(b._shape) == 2
    batch = () if two_d else broadcast_shapes(a._shape[:-2], b._shape[:-2], op="matmul")
    out = Tensor._empty(batch + (M, N), D.float32, a.device)
    B = _prod(batch)
    if out.numel() == 0:
        return out
    if two_d:
        at, ta, lda = _gemm_operand(a)
        bt, tb, ldb = _gemm_operand(b)
        sa = sb = 0
    else:
        at, ta, lda, sa = _batched_operand(a, batch)
        bt, tb, ldb, sb = _batched_operand(b, batch)
    bptr = 0
    if bias is not None:
        bptr = bias.data_ptr()
    a._backend.sgemm(B, ta, tb, M, N, K, 1.0, at.data_ptr(), lda, sa, bt.data_ptr(), ldb, sb,
                     0.0, out.data_ptr(), N, M * N, bptr, bias_mode, act)
    return out


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        need = ctx.needs_input_grad
        ctx.save_for_backward(a if need[1] else None, b if need[0] else None)  # a for b's gradient, b for a's
        ctx.shapes = (a._shape, b._shape)
        return gemm_kernel(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = sum_to(gemm_kernel(g, b.transpose(-1, -2)), sa)
        if ctx.needs_input_grad[1]:
            gb = sum_to(gemm_kernel(a.transpose(-1, -2), g), sb)
        return ga, gb


def _check(op, a, b):
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"{op}: expected Tensors, got {type(a).__name__} and {type(b).__name__}")
    check_same_device(op, a, b)
    if a.dtype is not D.float32 or b.dtype is not D.float32:
        raise RuntimeError(f"{op}: expected float32 tensors, got {a.dtype} and {b.dtype}")
    if a.dim() == 0 or b.dim() == 0:
        raise RuntimeError(f"{op}: both arguments need at least 1 dimension, got {a.dim()}D and {b.dim()}D")


def matmul(a, b):
    _check("matmul", a, b)
    squeeze_first = squeeze_last = False
    if a.dim() == 1:
        a = a.reshape(1, a.shape[0])
        squeeze_first = True
    if b.dim() == 1:
        b = b.reshape(b.shape[0], 1)
        squeeze_last = True
    if a._shape[-1] != b._shape[-2]:
        raise RuntimeError(f"matmul: shapes {tuple(a.shape) if not squeeze_first else (a.shape[1],)} and "
                           f"{tuple(b.shape) if not squeeze_last else (b.shape[0],)} cannot be multiplied "
                           f"({a._shape[-2]}x{a._shape[-1]} and {b._shape[-2]}x{b._shape[-1]})")
    out = MatMul.apply(a, b) if (a.requires_grad or b.requires_grad) else gemm_kernel(a, b)
    if squeeze_first:
        out = out.squeeze(-2)
    if squeeze_last:
        out = out.squeeze(-1)
    return out


def mm(a, b):
    _check("mm", a, b)
    if a.dim() != 2 or b.dim() != 2:
        raise RuntimeError(f"mm: expected 2-D tensors, got {a.dim()}D and {b.dim()}D")
    return matmul(a, b)


def bmm(a, b):
    _check("bmm", a, b)
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0]:
        raise RuntimeError(f"bmm: expected 3-D tensors with the same batch size, got {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def dot(a, b):
    if a.dim() != 1 or b.dim() != 1:
        raise RuntimeError("dot: 1D tensors expected")
    return matmul(a, b)


def mv(a, b):
    if a.dim() != 2 or b.dim() != 1:
        raise RuntimeError(f"mv: expected a matrix and a vector, got {a.dim()}-D and {b.dim()}-D tensors")
    return matmul(a, b)


def outer(a, b):
    if a.dim() != 1 or b.dim() != 1:
        raise RuntimeError(f"outer: expected 1-D arguments, got {a.dim()}-D and {b.dim()}-D tensors")
    return matmul(a.reshape(-1, 1), b.reshape(1, -1))


class Linear(Function):
    """y = x W^T + b with the bias added in the GEMM epilogue. Contiguous operands (the usual case)
    go straight to the backend's sgemm/reduce with their shapes as [rows, features], skipping the
    reshape/transpose views of the general path: a small MLP's step is mostly such per-op Python."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.saved_values_read = (ctx.needs_input_grad[1], ctx.needs_input_grad[0])  # x for w's gradient, w for x's
        ctx.has_bias = b is not None
        N, K = w._shape
        lead = x._shape[:-1]
        M = _prod(lead)
        if M and N and K and x.is_contiguous() and w.is_contiguous():
            y = Tensor._empty(lead + (N,), D.float32, x.device)
            x._backend.sgemm(1, False, True, M, N, K, 1.0, x.data_ptr(), K, 0, w.data_ptr(), K, 0, 0.0,
                             y.data_ptr(), N, 0, b.data_ptr() if b is not None else 0,
                             BIAS_COL if b is not None else BIAS_NONE, 0)
            return y
        x2 = x.reshape(M, x._shape[-1])
        y = gemm_kernel(x2, w.transpose(0, 1), bias=b, bias_mode=BIAS_COL if b is not None else BIAS_NONE)
        return y.reshape(lead + (N,))

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        N, K = w._shape
        M = _prod(x._shape[:-1])
        need = ctx.needs_input_grad
        if M and N and K and g.is_contiguous() and x.is_contiguous() and w.is_contiguous():
            be, dev = g._backend, g.device
            gx = gw = gb = None
            if need[0]:  # gx = g @ W
                gx = Tensor._empty(x._shape, D.float32, dev)
                be.sgemm(1, False, False, M, K, N, 1.0, g.data_ptr(), N, 0, w.data_ptr(), K, 0, 0.0,
                         gx.data_ptr(), K, 0, 0, 0, 0)
            if need[1]:  # gW = g^T @ x
                gw = Tensor._empty((N, K), D.float32, dev)
                be.sgemm(1, True, False, N, K, M, 1.0, g.data_ptr(), N, 0, x.data_ptr(), K, 0, 0.0,
                         gw.data_ptr(), K, 0, 0, 0, 0)
            if ctx.has_bias and need[2]:  # gb = sum of g's rows
                gb = Tensor._empty((N,), D.float32, dev)
                be.reduce(R_SUM, D.float32.code, gb.data_ptr(), g.data_ptr(), 1, M, N)
            return gx, gw, gb
        g2 = g.reshape(-1, g._shape[-1])
        gx = gw = gb = None
        if need[0]:
            gx = gemm_kernel(g2, w).reshape(x._shape)
        if need[1]:
            gw = gemm_kernel(g2.transpose(0, 1), x.reshape(-1, x._shape[-1]))
        if ctx.has_bias and need[2]:
            gb = _sum(g2, 0)
        return gx, gw, gb


def linear(input, weight, bias=None):
    _check("linear", input, weight)
    if weight.dim() != 2:
        raise RuntimeError(f"linear: weight must be 2-D, got shape {tuple(weight.shape)}")
    if input._shape[-1] != weight._shape[1]:
        raise RuntimeError(f"linear: input features {input._shape[-1]} do not match weight shape "
                           f"{tuple(weight.shape)} (expected input [..., {weight._shape[1]}])")
    if bias is not None:
        check_same_device("linear", input, weight, bias)
        if bias.dtype is not D.float32:
            raise RuntimeError(f"linear: expected a float32 bias, got {bias.dtype}")
        if tuple(bias.shape) != (weight._shape[0],):
            raise RuntimeError(f"linear: bias shape {tuple(bias.shape)} does not match out_features {weight._shape[0]}")
        bias = contiguous(bias)
    return Linear.apply(input, weight, bias)


def addmm(input, a, b, beta=1, alpha=1):
    r = matmul(a, b)
    if alpha != 1:
        r = mul(r, alpha)
    if beta == 0:  # input is ignored, NaN and inf included (PyTorch, BLAS): only its shape broadcasts
        from .creation import zeros
        return add(r, zeros(input.shape, device=input.device))
    return add(mul(input, beta) if beta != 1 else input, r)
