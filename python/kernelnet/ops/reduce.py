"""Reductions (sum, mean, max, min, argmax, argmin, prod, var, std, any, all, logsumexp, norm)
over any dims with keepdim. The kernel reduces the middle axis of a contiguous [outer, R, inner]
view; a set of adjacent dims is one call, other sets are reduced one dim at a time."""
from collections import namedtuple

from .. import _dtype as D
from ..autograd import Function
from ..tensor import Tensor, _prod
from ._util import normalize_dims
from .copy import contiguous

R_SUM, R_MEAN, R_MAX, R_MIN, R_ARGMAX, R_ARGMIN, R_PROD, R_ANY, R_ALL = range(9)
_NAMES = {R_SUM: "sum", R_MEAN: "mean", R_MAX: "max", R_MIN: "min", R_ARGMAX: "argmax",
          R_ARGMIN: "argmin", R_PROD: "prod", R_ANY: "any", R_ALL: "all"}

values_indices = namedtuple("values_indices", ["values", "indices"])


def _out_dtype(op, dt):
    if op in (R_ARGMAX, R_ARGMIN):
        return D.int64
    if op in (R_ANY, R_ALL):
        return D.bool_
    if op in (R_SUM, R_PROD) and dt is not D.float32:
        return D.int64
    if op == R_MEAN:
        return D.float32
    return dt


def _reduce_adjacent(op, x, d0, d1, out_shape=None):
    """Reduce dims d0..d1 (inclusive, adjacent) of contiguous x; returns the keepdim shape, or
    out_shape when given (any shape of outer * inner elements: the result's final shape, made
    directly rather than through a reshape)."""
    x = contiguous(x)
    shape = x._shape
    outer = _prod(shape[:d0])
    R = _prod(shape[d0:d1 + 1])
    inner = _prod(shape[d1 + 1:])
    if out_shape is None:
        out_shape = shape[:d0] + (1,) * (d1 + 1 - d0) + shape[d1 + 1:]
    out = Tensor._empty(out_shape, _out_dtype(op, x.dtype), x.device)
    if R == 0 and op in (R_MAX, R_MIN, R_ARGMAX, R_ARGMIN):
        raise IndexError(f"{_NAMES[op]}(): expected reduction dim to have a non-zero size "
                         f"(input shape {tuple(shape)})")
    if out.numel():
        if R == 0:
            fill = {R_SUM: 0, R_PROD: 1, R_MEAN: float("nan"), R_ANY: 0, R_ALL: 1}[op]
            out._backend.fill(out.dtype.code, out.data_ptr(), out.numel(), float(fill))
        else:
            x._backend.reduce(op, x.dtype.code, out.data_ptr(), x.data_ptr(), outer, R, inner)
    return out


def reduce_kernel(op, x, dims, keepdim):
    """No-autograd reduction of x over `dims` (sorted, non-negative)."""
    if x.dim() == 0:
        y = _reduce_adjacent(op, x.reshape(1), 0, 0).reshape(())
        return y
    if op == R_MEAN and x.dtype is not D.float32:
        x = x.to(D.float32)
    # group the dims into adjacent runs
    runs, start = [], None
    for i, d in enumerate(dims):
        if start is None:
            start = prev = d
        elif d == prev + 1:
            prev = d
        else:
            runs.append((start, prev))
            start = prev = d
    if start is not None:
        runs.append((start, prev))
    squeezed = None if keepdim else tuple(s for i, s in enumerate(x._shape) if i not in dims)
    if len(runs) == 1:  # one kernel call: allocate the result in its final shape (keepdim's is the default)
        return _reduce_adjacent(op, x, runs[0][0], runs[0][1], squeezed)
    y = x
    if op == R_MEAN and len(runs) > 1:
        y = reduce_kernel(R_SUM, x, dims, True)
        from .elementwise import div
        y = div(y, float(_prod(x._shape[d] for d in dims)))
    else:
        for d0, d1 in reversed(runs):
            y = _reduce_adjacent(op, y, d0, d1)
    if squeezed is not None:
        y = y.reshape(squeezed)
    return y


def _expand_back(g, x_shape, dims, keepdim):
    if not keepdim:
        shape = list(x_shape)
        for d in dims:
            shape[d] = 1
        g = g.reshape(tuple(shape))
    return g.expand(*x_shape)


class Sum(Function):
    ctx_holds_tensors = False

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.shape, ctx.dims, ctx.keepdim = x._shape, dims, keepdim
        return reduce_kernel(R_SUM, x, dims, keepdim)

    @staticmethod
    def backward(ctx, g):
        return _expand_back(g, ctx.shape, ctx.dims, ctx.keepdim)


class Mean(Function):
    ctx_holds_tensors = False

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.shape, ctx.dims, ctx.keepdim = x._shape, dims, keepdim
        ctx.n = _prod(x._shape[d] for d in dims) if x.dim() else 1
        return reduce_kernel(R_MEAN, x, dims, keepdim)

    @staticmethod
    def backward(ctx, g):
        from .elementwise import mul
        # (no builtin max here: this module defines max/min/sum as tensor reductions)
        return _expand_back(mul(g, 1.0 / (ctx.n if ctx.n > 0 else 1)), ctx.shape, ctx.dims, ctx.keepdim)


class MaxMin(Function):
    """Values of max/min over dims; the gradient goes to the extremal elements (split on ties)."""

    @staticmethod
    def forward(ctx, x, op, dims, keepdim):
        y = reduce_kernel(op, x, dims, keepdim)
        ctx.dims, ctx.keepdim = dims, keepdim
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, g):
        from .elementwise import eq, mul, div
        x, y = ctx.saved_tensors
        yk = _expand_back(y, x._shape, ctx.dims, ctx.keepdim)
        mask = eq(x, yk).to(D.float32)
        count = reduce_kernel(R_SUM, mask, ctx.dims, True)
        gk = _expand_back(g, x._shape, ctx.dims, ctx.keepdim)
        return mul(div(gk, count), mask)


def _dims_arg(x, dim, op):
    if isinstance(dim, (tuple, list)) and len(dim) == 0:
        dim = None  # PyTorch: an empty dim list reduces over every dim
    return normalize_dims(dim, x.dim(), op)


def sum(x, dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        x = x.to(D.to_dtype(dtype))
    dims = _dims_arg(x, dim, "sum")
    if x.dtype is D.float32 and x.requires_grad:
        return Sum.apply(x, dims, keepdim)
    return reduce_kernel(R_SUM, x, dims, keepdim)


def mean(x, dim=None, keepdim=False, dtype=None):
    if x.dtype is not D.float32 and dtype is None:
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be floating point, got {x.dtype}. Use x.float().mean()")
    if dtype is not None:
        x = x.to(D.to_dtype(dtype))
    dims = _dims_arg(x, dim, "mean")
    if x.requires_grad:
        return Mean.apply(x, dims, keepdim)
    return reduce_kernel(R_MEAN, x, dims, keepdim)


def _extremum(op, x, dim, keepdim):
    if dim is None:
        if x.numel() == 0:
            raise RuntimeError(f"{_NAMES[op]}(): Expected reduction dim to be specified for input.numel() == 0 "
                               f"(input shape {tuple(x.shape)}). Specify the reduction dim with the 'dim' argument.")
        dims = list(range(x.dim()))
        if x.requires_grad and x.dtype is D.float32:
            return MaxMin.apply(x, op, dims, False)
        return reduce_kernel(op, x, dims, False)
    if isinstance(dim, Tensor):
        raise TypeError("max/min(x, other_tensor): use maximum/minimum")
    dims = _dims_arg(x, dim, _NAMES[op])
    idx = reduce_kernel(R_ARGMAX if op == R_MAX else R_ARGMIN, x, dims, keepdim)
    if x.requires_grad and x.dtype is D.float32 and len(dims) == 1 and x.dim() > 0:
        # max(dim) sends the gradient to the returned index only (PyTorch), not split over ties
        from .shape import gather, squeeze
        ik = idx if keepdim else idx.unsqueeze(dims[0])
        vals = gather(x, dims[0], ik)
        return values_indices(vals if keepdim else squeeze(vals, dims[0]), idx)
    vals = MaxMin.apply(x, op, dims, keepdim) if (x.requires_grad and x.dtype is D.float32) else reduce_kernel(op, x, dims, keepdim)
    return values_indices(vals, idx)


def max(x, dim=None, keepdim=False):
    if isinstance(dim, Tensor):
        from .elementwise import maximum
        return maximum(x, dim)
    return _extremum(R_MAX, x, dim, keepdim)


def min(x, dim=None, keepdim=False):
    if isinstance(dim, Tensor):
        from .elementwise import minimum
        return minimum(x, dim)
    return _extremum(R_MIN, x, dim, keepdim)


def amax(x, dim=None, keepdim=False):
    dims = _dims_arg(x, dim, "amax")
    return MaxMin.apply(x, R_MAX, dims, keepdim) if x.requires_grad else reduce_kernel(R_MAX, x, dims, keepdim)


def amin(x, dim=None, keepdim=False):
    dims = _dims_arg(x, dim, "amin")
    return MaxMin.apply(x, R_MIN, dims, keepdim) if x.requires_grad else reduce_kernel(R_MIN, x, dims, keepdim)


def argmax(x, dim=None, keepdim=False):
    if dim is None:
        return reduce_kernel(R_ARGMAX, x.reshape(-1), [0], False) if x.dim() else reduce_kernel(R_ARGMAX, x, [], False)
    return reduce_kernel(R_ARGMAX, x, _dims_arg(x, dim, "argmax"), keepdim)


def argmin(x, dim=None, keepdim=False):
    if dim is None:
        return reduce_kernel(R_ARGMIN, x.reshape(-1), [0], False) if x.dim() else reduce_kernel(R_ARGMIN, x, [], False)
    return reduce_kernel(R_ARGMIN, x, _dims_arg(x, dim, "argmin"), keepdim)


class Prod(Function):
    """Product over dims. The backward is the product of the *other* elements, computed so that
    zeros are handled exactly (prod/x would divide by zero): one zero in a group sends the product
    of the rest to that element and 0 elsewhere; two or more zeros give a zero gradient."""

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        y = reduce_kernel(R_PROD, x, dims, keepdim)
        ctx.dims, ctx.keepdim = dims, keepdim
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, g):
        from .elementwise import eq, where, div, mul, logical_and
        (x,) = ctx.saved_tensors
        zero = eq(x, 0.0)
        nzeros = reduce_kernel(R_SUM, zero, ctx.dims, True)
        x_safe = where(zero, 1.0, x)
        p_nz = reduce_kernel(R_PROD, x_safe, ctx.dims, True)  # product of the nonzero elements
        factor = where(eq(nzeros, 0), div(p_nz, x_safe),
                       where(logical_and(zero, eq(nzeros, 1)), p_nz, 0.0))
        return mul(_expand_back(g, x._shape, ctx.dims, ctx.keepdim), factor)


def prod(x, dim=None, keepdim=False):
    dims = _dims_arg(x, dim, "prod")
    if x.requires_grad and x.dtype is D.float32:
        return Prod.apply(x, dims, keepdim)
    return reduce_kernel(R_PROD, x, dims, keepdim)


def any(x, dim=None, keepdim=False):
    return reduce_kernel(R_ANY, x, _dims_arg(x, dim, "any"), keepdim)


def all(x, dim=None, keepdim=False):
    return reduce_kernel(R_ALL, x, _dims_arg(x, dim, "all"), keepdim)


def var(x, dim=None, unbiased=None, keepdim=False, correction=None):
    """Variance with Bessel's correction by default (PyTorch: correction=1)."""
    from .elementwise import sub, mul
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    dims = _dims_arg(x, dim, "var")
    n = _prod(x._shape[d] for d in dims) if x.dim() else 1
    mu = mean(x, dims, keepdim=True)
    d = sub(x, mu)
    ss = sum(mul(d, d), dims, keepdim)
    return mul(ss, 1.0 / (n - correction) if n - correction > 0 else float("nan"))


class _SafeSqrt(Function):
    """sqrt whose gradient is 0 (not inf, which times 0 gives nan) where the result is 0:
    PyTorch's std()/norm() backward at a constant / zero input is 0."""

    @staticmethod
    def forward(ctx, x):
        from .elementwise import sqrt
        y = sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        from .elementwise import where, eq, div, mul
        (y,) = ctx.saved_tensors
        return where(eq(y, 0.0), 0.0, div(g, mul(y, 2.0)))


def _safe_sqrt(x):
    if x.requires_grad:
        return _SafeSqrt.apply(x)
    from .elementwise import sqrt
    return sqrt(x)


def std(x, dim=None, unbiased=None, keepdim=False, correction=None):
    return _safe_sqrt(var(x, dim, unbiased, keepdim, correction))


def var_mean(x, dim=None, unbiased=None, keepdim=False, correction=None):
    return var(x, dim, unbiased, keepdim, correction), mean(x, dim, keepdim)


def std_mean(x, dim=None, unbiased=None, keepdim=False, correction=None):
    return std(x, dim, unbiased, keepdim, correction), mean(x, dim, keepdim)


def logsumexp(x, dim, keepdim=False):
    from .elementwise import sub, exp, log, add, where, isfinite
    dims = _dims_arg(x, dim, "logsumexp")
    if 0 in [x._shape[i] for i in dims]:  # an empty sum: log 0 = -inf (PyTorch), not amax's error
        return log(sum(exp(x), dim, keepdim))
    m = amax(x, dim, keepdim=True).detach()
    m = where(isfinite(m), m, 0.0)  # all -inf (or an inf) in a row: shift by 0, not by inf (nan)
    s = log(sum(exp(sub(x, m)), dim, keepdim=True))
    r = add(s, m)
    if not keepdim:
        r = r.reshape(tuple(sz for i, sz in enumerate(x._shape) if i not in dims))
    return r


def norm(x, p="fro", dim=None, keepdim=False):
    from .elementwise import sqrt, mul, abs as _abs, pow as _pow
    if p in ("fro", 2, 2.0):
        return _safe_sqrt(sum(mul(x, x), dim, keepdim))
    if p in (1, 1.0):
        return sum(_abs(x), dim, keepdim)
    if p == float("inf"):
        return amax(_abs(x), dim, keepdim)
    if p == float("-inf"):
        return amin(_abs(x), dim, keepdim)
    if p == 0:  # the "0-norm": how many entries are nonzero (PyTorch)
        from .elementwise import ne
        return sum(ne(x, 0).to(D.float32), dim, keepdim)
    s = sum(_pow(_abs(x), float(p)), dim, keepdim)
    if not s.requires_grad:
        return _pow(s, 1.0 / p)
    # s^(1/p) has an infinite slope at s = 0: PyTorch's norm gradient there is 0, not 0 * inf
    from .elementwise import eq, where
    zero = eq(s, 0.0)
    return where(zero, 0.0, _pow(where(zero, 1.0, s), 1.0 / p))


def count_nonzero(x, dim=None):
    from .elementwise import ne
    return sum(ne(x, 0), dim)
