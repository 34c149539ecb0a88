"""Broadcasting binary ops, comparisons, unary math and where(), each forward and backward in
the native kernels (csrc/*/elementwise.*)."""
import math
import numbers

import numpy as np

from .. import _dtype as D
from ..autograd import Function, is_grad_enabled
from ..tensor import Tensor
from ._util import broadcast_shapes, broadcast_strides, coalesce, check_same_device, result_dtype
from .copy import _contiguous_copy, contiguous
from .reduce import sum as _sum

# op codes: csrc/common/ops.h
(ADD, SUB, MUL, DIV, POW, MAX, MIN, EQ, NE, LT, LE, GT, GE, AND, OR, XOR, FMOD, REMAINDER, FLOOR_DIV,
 BIT_AND, BIT_OR, BIT_XOR) = range(22)
_NAMES = {ADD: "add", SUB: "sub", MUL: "mul", DIV: "div", POW: "pow", MAX: "maximum", MIN: "minimum",
          EQ: "eq", NE: "ne", LT: "lt", LE: "le", GT: "gt", GE: "ge", AND: "logical_and",
          OR: "logical_or", XOR: "logical_xor", FMOD: "fmod", REMAINDER: "remainder",
          FLOOR_DIV: "floor_divide", BIT_AND: "bitwise_and", BIT_OR: "bitwise_or", BIT_XOR: "bitwise_xor"}
_COMPARE = {EQ, NE, LT, LE, GT, GE, AND, OR, XOR}

(U_NEG, U_EXP, U_LOG, U_TANH, U_SIGMOID, U_RELU, U_SQRT, U_ABS, U_POWS, U_CLAMP, U_SIGN, U_RSQRT,
 U_SIN, U_COS, U_LEAKY_RELU, U_ELU, U_GELU, U_GELU_TANH, U_RECIP, U_SQUARE, U_LOG1P, U_EXPM1,
 U_FLOOR, U_CEIL, U_ROUND, U_NOT, U_SOFTPLUS, U_SILU, U_ERF) = range(29)


def _as_tensor(x, dtype, device):
    from .creation import full
    if isinstance(x, Tensor):
        return x
    if not isinstance(x, (numbers.Number,)) and not hasattr(x, "__float__"):
        raise TypeError(f"unsupported operand type {type(x).__name__}")
    return full((), x, dtype=dtype, device=device)


def _scalar_to(t, dev):
    """A 0-d CPU tensor joining a CUDA one. While this thread captures a CUDA graph: a captured fill
    with its (constant) value, since a host-to-device copy cannot be captured."""
    from .. import graphs as _graphs
    if _graphs._capture is not None and _graphs.active() is not None and not t.requires_grad:
        from .creation import full
        return full((), t._storage[t._offset].item(), dtype=t.dtype, device=dev)
    return t.to(dev)


def _keeps_dtype(dt, v):
    """Whether Python number v joins a tensor of dtype dt without changing its dtype."""
    return (type(v) is float and dt is D.float32) or (type(v) is int and (dt is D.float32 or dt is D.int64))


# 0-d tensors of the Python numbers that binary ops meet (x * 0.5, 1 - p, n + 1), made once per
# (value, dtype, device): they are operands only, never handed to the caller, and no kernel writes
# them. Keyed by type, and a zero by its sign (1 and 1.0, 0.0 and -0.0 are equal keys otherwise). Not filled
# while any graph capture runs (a CUDA capture's blocks belong to the graph); emptied when full (the
# tensors stay alive where something holds them).
_SCALARS = {}
_SCALARS_MAX = 512


def _scalar_tensor(v, dt, dev):
    key = (v, type(v), dt, dev) if v else (v, type(v), dt, dev, math.copysign(1.0, v))  # (the sign of 0.0)
    t = _SCALARS.get(key)
    if t is None:
        from .creation import full
        t = full((), v, dtype=dt, device=dev)
        from .. import graphs as _graphs
        if _graphs._capture is None:
            if len(_SCALARS) >= _SCALARS_MAX:
                _SCALARS.clear()  # values that change every step (a decaying factor, NaNs) would fill it
            _SCALARS[key] = t
    return t


def _prep(op_name, a, b):
    """Tensors of one dtype and device for a binary op; Python scalars become 0-d tensors."""
    ta, tb = type(a) is Tensor, type(b) is Tensor
    if ta and tb and a.dtype is b.dtype and (a.device is b.device or a.device == b.device):
        return a, b  # the common case, without the promotion/device machinery
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):  # x + np.array(...): a tensor, as in PyTorch
        from .creation import tensor
        dev = a.device if isinstance(a, Tensor) else b.device if isinstance(b, Tensor) else None
        a = tensor(a, device=dev) if isinstance(a, np.ndarray) else a
        b = tensor(b, device=dev) if isinstance(b, np.ndarray) else b
        ta, tb = type(a) is Tensor, type(b) is Tensor
    # a tensor and a number of its kind (x * 0.5, 1 - p, n + 1): the number as a 0-d tensor of the
    # tensor's dtype on its device, as the general path below makes it
    if ta and not tb and _keeps_dtype(a.dtype, b):
        return a, _scalar_tensor(b, a.dtype, a.device)
    if tb and not ta and _keeps_dtype(b.dtype, a):
        return _scalar_tensor(a, b.dtype, b.device), b
    dt = result_dtype(a, b)
    # the op runs where the tensors are; a 0-d CPU tensor may join a CUDA one (PyTorch allows it),
    # any other mix is refused below with both devices named
    devs = [t.device for t in (a, b) if isinstance(t, Tensor) and not (t.dim() == 0 and t.device.type == "cpu")]
    dev = devs[0] if devs else (a.device if isinstance(a, Tensor) else b.device if isinstance(b, Tensor) else None)
    a = _as_tensor(a, dt, dev)
    b = _as_tensor(b, dt, dev)
    # a 0-d CPU tensor mixes with a CUDA tensor, as in PyTorch
    if a.device != b.device:
        if a.dim() == 0 and a.device.type == "cpu":
            a = _scalar_to(a, b.device)
        elif b.dim() == 0 and b.device.type == "cpu":
            b = _scalar_to(b, a.device)
        else:
            raise RuntimeError(f"{op_name}: expected all tensors to be on the same device, but found "
                               f"at least two devices, {a.device} and {b.device}")
    if a.dtype is not dt:
        a = a.to(dt)
    if b.dtype is not dt:
        b = b.to(dt)
    return a, b


def binary_kernel(op, a, b):
    """out = a (op) b with broadcasting; a and b already share dtype and device."""
    out_dt = D.bool_ if op in _COMPARE else a.dtype
    if a._shape == b._shape and a.is_contiguous() and b.is_contiguous():
        # same-shape dense operands: one flat row, no broadcasting or coalescing to work out
        out = Tensor._empty(a._shape, out_dt, a.device)
        n = out.numel()
        if n:
            a._backend.binary(op, a.dtype.code, out.data_ptr(), a.data_ptr(), [1], b.data_ptr(), [1], [n])
        return out
    if not b._shape and a.is_contiguous() or not a._shape and b.is_contiguous():
        # a dense tensor and a 0-d one (a scalar operand): one flat row, the scalar at stride 0
        out = Tensor._empty(a._shape or b._shape, out_dt, a.device)
        n = out.numel()
        if n:
            a._backend.binary(op, a.dtype.code, out.data_ptr(), a.data_ptr(), [1 if a._shape else 0],
                              b.data_ptr(), [1 if b._shape else 0], [n])
        return out
    rep = _trailing_block(a, b) if a.is_contiguous() and b.is_contiguous() else None
    if rep:
        # a dense tensor and a dense operand that repeats along its leading dims (x + bias): rows
        # of the small operand's size, it at stride 0 across them
        big_is_a, nb = rep
        out = Tensor._empty(a._shape if big_is_a else b._shape, out_dt, a.device)
        n = out.numel()
        if n:
            sa, sb = ([nb, 1], [0, 1]) if big_is_a else ([0, 1], [nb, 1])
            a._backend.binary(op, a.dtype.code, out.data_ptr(), a.data_ptr(), sa, b.data_ptr(), sb, [n // nb, nb])
        return out
    shape = broadcast_shapes(a._shape, b._shape, op=_NAMES[op])
    out = Tensor._empty(shape, out_dt, a.device)
    if out.numel():
        sh, (sa, sb) = coalesce(shape, broadcast_strides(a, shape), broadcast_strides(b, shape))
        a._backend.binary(op, a.dtype.code, out.data_ptr(), a.data_ptr(), sa, b.data_ptr(), sb, sh)
    return out


def _trailing_block(a, b):
    """(a_is_the_larger, block size) when one operand's shape, leading 1s dropped, is the other's
    trailing dims and it has no more dims than the other (so the result has the other's shape and
    the smaller repeats every block elements), else None. The block is never 0 (an empty operand
    takes the general path)."""
    for big_is_a, big, small in ((True, a._shape, b._shape), (False, b._shape, a._shape)):
        if len(small) > len(big):
            continue
        i = 0
        while i < len(small) and small[i] == 1:
            i += 1
        core = small[i:]
        if big[len(big) - len(core):] == core:
            nb = 1
            for d in core:
                nb *= d
            return (big_is_a, nb) if nb else None
    return None


def binary_into_self(op, t, other):
    """t (op)= other in place with one kernel call, when that is exactly what the out-of-place op
    followed by a copy back would give; returns False (nothing done) otherwise, for the caller's
    general path. Taken when: t is contiguous (the kernels write a dense output) and does not need
    grad tracking; other is a tensor of t's dtype and device that broadcasts to t's shape without
    sharing t's storage (a kernel writing t while reading an overlapping other would read updated
    values), or a Python number that keeps t's dtype (int for int64/float32, float for float32);
    and the op keeps t's dtype (true division only on float32)."""
    dt = t.dtype
    if dt is D.bool_ or (op == DIV and dt is not D.float32) or not t.is_contiguous():
        return False
    grad = is_grad_enabled()
    if grad and t.requires_grad:
        return False
    if isinstance(other, Tensor):
        if (other.dtype is not dt or (other.device is not t.device and other.device != t.device)
                or other._storage is t._storage or (grad and other.requires_grad)):
            return False
        if other._shape != t._shape:
            try:
                if broadcast_shapes(t._shape, other._shape) != t._shape:
                    return False  # the result would be larger than t
            except ValueError:
                return False  # not broadcastable: the general path raises
    elif _keeps_dtype(dt, other):
        other = _scalar_tensor(other, dt, t.device)
    else:
        return False
    n = t.numel()
    if not n:
        return True
    if other._shape == t._shape and other.is_contiguous():
        t._backend.binary(op, dt.code, t.data_ptr(), t.data_ptr(), [1], other.data_ptr(), [1], [n])
        t._bump_version()
        return True
    sh, (sa, sb) = coalesce(t._shape, list(t._stride), broadcast_strides(other, t._shape))
    t._backend.binary(op, dt.code, t.data_ptr(), t.data_ptr(), sa, other.data_ptr(), sb, sh)
    t._bump_version()
    return True


def sum_to(g, shape):
    """Reduce a broadcast gradient back to `shape` (the backward of broadcasting)."""
    shape = tuple(shape)
    if tuple(g._shape) == shape:
        return g
    lead = g.dim() - len(shape)
    dims = list(range(lead)) + [lead + i for i, s in enumerate(shape) if s == 1 and g._shape[lead + i] != 1]
    r = _sum(g, dim=dims, keepdim=True) if dims else g
    return r.reshape(shape)


class _Binary(Function):
    op = None

    @classmethod
    def forward(cls, ctx, a, b):
        cls.save(ctx, a, b)
        return binary_kernel(cls.op, a, b)

    @staticmethod
    def save(ctx, a, b):
        ctx.save_for_backward(a, b)


class _SavesShapes(_Binary):
    ctx_holds_tensors = False

    @staticmethod
    def save(ctx, a, b):
        # shapes only: the gradient does not depend on the values (nor is the memory held, nor is an
        # in-place write to an input refused, as in PyTorch)
        ctx.shapes = (a._shape, b._shape)


class Add(_SavesShapes):
    op = ADD

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return (sum_to(g, sa) if ctx.needs_input_grad[0] else None,
                sum_to(g, sb) if ctx.needs_input_grad[1] else None)


class Sub(_SavesShapes):
    op = SUB

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return (sum_to(g, sa) if ctx.needs_input_grad[0] else None,
                sum_to(neg(g), sb) if ctx.needs_input_grad[1] else None)


class Mul(_Binary):
    op = MUL

    @staticmethod
    def save(ctx, a, b):
        # a's values make b's gradient and the reverse: each is kept only when needed (as PyTorch
        # does), so x * mask does not hold x, and writing an unread input in place is allowed
        need = ctx.needs_input_grad
        ctx.save_for_backward(a if need[1] else None, b if need[0] else None)
        ctx.shapes = (a._shape, b._shape)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        return (sum_to(mul(g, b), sa) if ctx.needs_input_grad[0] else None,
                sum_to(mul(g, a), sb) if ctx.needs_input_grad[1] else None)


class Div(_Binary):
    op = DIV

    @staticmethod
    def save(ctx, a, b):
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b)  # a only for b's gradient
        ctx.a_shape = a._shape

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = sum_to(div(g, b), ctx.a_shape) if ctx.needs_input_grad[0] else None
        gb = sum_to(neg(div(mul(g, a), mul(b, b))), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Pow(_Binary):
    op = POW

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = gb = None
        if ctx.needs_input_grad[0]:  # b a^(b-1), 0 where b == 0 (PyTorch: 0 * 0^-1 would be NaN)
            ga = sum_to(where(eq(b, 0.0), 0.0, mul(g, mul(b, pow(a, sub(b, 1.0))))), a.shape)
        if ctx.needs_input_grad[1]:
            # a^b log a, as PyTorch: 0 where a == 0 and b >= 0; NaN for a negative base (log a)
            la = where(logical_and(eq(a, 0.0), ge(b, 0.0)), 0.0, log(a))
            gb = sum_to(mul(g, mul(pow(a, b), la)), b.shape)
        return ga, gb


class _MaxMin(_Binary):
    @classmethod
    def backward(cls, ctx, g):
        a, b = ctx.saved_tensors
        win = gt(a, b) if cls.op == MAX else lt(a, b)
        tie = eq(a, b)
        wa = add(win.to(D.float32), mul(tie.to(D.float32), 0.5))  # ties split the gradient
        ga = sum_to(mul(g, wa), a.shape) if ctx.needs_input_grad[0] else None
        gb = sum_to(mul(g, sub(1.0, wa)), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Maximum(_MaxMin):
    op = MAX


class Minimum(_MaxMin):
    op = MIN


def _float_div_args(a, b):
    # true division: integer operands are computed in float32, as in PyTorch
    if result_dtype(a, b) is not D.float32:
        a = a.to(D.float32) if isinstance(a, Tensor) else float(a)
        b = b.to(D.float32) if isinstance(b, Tensor) else float(b)
    return a, b


# bool arithmetic stays in {0, 1}: PyTorch's True + True is True (the raw kernel would store 2,
# which then compares unequal to True)
_BOOL_OP = {ADD: OR, MUL: AND, MAX: OR, MIN: AND}


def _apply(cls, a, b):
    a, b = _prep(_NAMES[cls.op], a, b)
    if a.dtype is D.bool_:
        if cls.op in _BOOL_OP:
            return binary_kernel(_BOOL_OP[cls.op], a, b)
        if cls.op == SUB:
            raise RuntimeError("sub: subtraction with two bool tensors is not supported; use logical_xor() "
                               "or logical_not() (~) instead")
    if a.dtype is D.float32 and (a.requires_grad or b.requires_grad):
        return cls.apply(a, b)
    return binary_kernel(cls.op, a, b)


def _scaled_by_alpha(op, a, b, alpha):
    """b * alpha in the result's dtype (PyTorch: alpha joins after promotion, so bool + bool*2 stays
    bool and a float a with an int64 b does not overflow in int64 first); a fractional alpha with
    integer results is refused as there."""
    rd = result_dtype(a, b)
    if rd is not D.float32 and isinstance(alpha, float) and not float(alpha).is_integer():
        raise RuntimeError(f"{op}: for integral input tensors, argument alpha must not be a floating point number")
    if isinstance(b, Tensor) and b.dtype is not rd:
        b = b.to(rd)
    return mul(b, bool(alpha) if rd is D.bool_ else alpha)  # bool results: b and (alpha != 0)


def add(a, b, alpha=1, out=None):
    if alpha is not True and alpha != 1:
        b = _scaled_by_alpha("add", a, b, alpha)
    return _apply(Add, a, b)


def sub(a, b, alpha=1, out=None):
    if (isinstance(a, Tensor) and a.dtype is D.bool_) or (isinstance(b, Tensor) and b.dtype is D.bool_):
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. If you are "
                           "trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    if alpha is not True and alpha != 1:
        b = _scaled_by_alpha("sub", a, b, alpha)
    return _apply(Sub, a, b)


def rsub(a, b):
    return sub(b, a)


def mul(a, b, out=None):
    return _apply(Mul, a, b)


def div(a, b, rounding_mode=None, out=None):
    if rounding_mode == "floor":
        return _division_op(_FloorQuotient, a, b)
    if rounding_mode == "trunc":
        if result_dtype(a, b) is D.int64:  # exact: the floor quotient, +1 where it rounded down
            a, b = _prep("div", a, b)
            q = floor_divide(a, b)
            rounded = logical_and(ne(remainder(a, b), 0), ne(lt(a, 0), lt(b, 0)))
            return add(q, rounded.to(D.int64))
        q = div(a, b)
        return where(lt(q, 0.0), ceil(q), floor(q))
    if rounding_mode is not None:
        raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
                           f"'{rounding_mode}'")
    a, b = _float_div_args(a, b)
    return _apply(Div, a, b)


true_divide = divide = div
multiply = mul
subtract = sub


class FloorDivide(_Binary):
    op = FLOOR_DIV

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("derivative for floor_divide is not implemented (as in PyTorch: the result is "
                           "piecewise constant; detach() it, or use div() for a gradient)")


class _FloorQuotient(_SavesShapes):
    """div(a, b, rounding_mode="floor"): the floor_divide kernel with PyTorch's zero gradient for
    div's rounding modes (floor_divide itself has none)."""
    op = FLOOR_DIV

    @staticmethod
    def backward(ctx, g):
        from .creation import zeros
        sa, sb = ctx.shapes
        return (zeros(sa, device=g.device) if ctx.needs_input_grad[0] else None,
                zeros(sb, device=g.device) if ctx.needs_input_grad[1] else None)


class _RemainderOf(_Binary):
    """a - q(a / b) b for a rounding q: the gradient is g for a and -g q(a / b) for b."""

    @classmethod
    def backward(cls, ctx, g):
        a, b = ctx.saved_tensors
        return (sum_to(g, a.shape) if ctx.needs_input_grad[0] else None,
                sum_to(neg(mul(g, cls.quotient(a, b))), b.shape) if ctx.needs_input_grad[1] else None)


class Remainder(_RemainderOf):
    op = REMAINDER

    @staticmethod
    def quotient(a, b):  # floor
        return floor_divide(a, b)


class Fmod(_RemainderOf):
    op = FMOD

    @staticmethod
    def quotient(a, b):  # toward zero
        return div(a, b, rounding_mode="trunc")


def _division_op(cls, a, b):
    """floor_divide / remainder / fmod: one native kernel (PyTorch's float formulas, exact int64);
    an int64 division by zero raises as PyTorch does."""
    name = _NAMES[cls.op]
    a, b = _prep(name, a, b)
    if a.dtype is D.bool_:
        raise RuntimeError(f"{name}: not supported on bool tensors")
    if a.dtype is D.int64:
        if b.numel() and a.numel() and bool(binary_kernel(EQ, b, _scalar_tensor(0, D.int64, b.device)).any().item()):
            raise ZeroDivisionError(f"{name}: integer division by zero (divisor shape {tuple(b.shape)})")
        return binary_kernel(cls.op, a, b)
    if a.requires_grad or b.requires_grad:
        return cls.apply(a, b)
    return binary_kernel(cls.op, a, b)


def floor_divide(a, b):
    return _division_op(FloorDivide, a, b)


def remainder(a, b):
    """a - floor(a / b) b: the sign of b, as Python's %."""
    return _division_op(Remainder, a, b)


def fmod(a, b):
    """C's fmod: the remainder takes the sign of a (remainder() takes the sign of b)."""
    return _division_op(Fmod, a, b)


def pow(a, b):
    if isinstance(a, Tensor) and isinstance(b, numbers.Number) and not isinstance(b, bool) and a.dtype is D.float32:
        if b == 2:
            return _unary(U_SQUARE, a)
        return _unary(U_POWS, a, float(b))
    if (isinstance(a, Tensor) and a.dtype is D.int64 and isinstance(b, numbers.Integral)
            and not isinstance(b, bool) and b < 0):
        # PyTorch refuses a negative Python-int exponent; a tensor of exponents is computed
        # (1 and -1 have integer powers, other bases give 0), and so it is here
        raise RuntimeError(f"pow: integers to negative integer powers are not allowed (base {a.dtype} of shape "
                           f"{tuple(a.shape)}, exponent {b})")
    a, b = _prep("pow", a, b)
    if a.dtype is not D.float32:
        return binary_kernel(POW, a, b)
    return Pow.apply(a, b) if (a.requires_grad or b.requires_grad) else binary_kernel(POW, a, b)


def maximum(a, b):
    return _apply(Maximum, a, b)


def minimum(a, b):
    return _apply(Minimum, a, b)


def _compare(op, a, b):
    a, b = _prep(_NAMES[op], a, b)
    return binary_kernel(op, a, b)


def _bitwise(op, logical, a, b):
    """& | ^ as PyTorch: bitwise on integers, logical on bools (same bits), refused on floats."""
    a, b = _prep(_NAMES[op], a, b)
    if a.dtype is D.float32:
        raise RuntimeError(f"{_NAMES[op]}: not implemented for float32 tensors (integer or bool only)")
    if a.dtype is D.bool_:
        return binary_kernel(logical, a, b)
    return binary_kernel(op, a, b)


def bitwise_and(a, b): return _bitwise(BIT_AND, AND, a, b)
def bitwise_or(a, b): return _bitwise(BIT_OR, OR, a, b)
def bitwise_xor(a, b): return _bitwise(BIT_XOR, XOR, a, b)


def bitwise_not(x):
    if not isinstance(x, Tensor):
        raise TypeError(f"bitwise_not: expected a Tensor, got {type(x).__name__}")
    if x.dtype is D.float32:
        raise RuntimeError("bitwise_not: not implemented for float32 tensors (integer or bool only)")
    if x.dtype is D.bool_:
        return logical_not(x)
    return binary_kernel(SUB, _scalar_tensor(-1, D.int64, x.device), x)  # ~x == -1 - x, exactly


def eq(a, b): return _compare(EQ, a, b)
def ne(a, b): return _compare(NE, a, b)
def lt(a, b): return _compare(LT, a, b)
def le(a, b): return _compare(LE, a, b)
def gt(a, b): return _compare(GT, a, b)
def ge(a, b): return _compare(GE, a, b)
def logical_and(a, b): return _compare(AND, a, b)
def logical_or(a, b): return _compare(OR, a, b)
def logical_xor(a, b): return _compare(XOR, a, b)


greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


def equal(a, b):
    return tuple(a.shape) == tuple(b.shape) and bool(eq(a, b).all().item())


def allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    return bool(isclose(a, b, rtol, atol, equal_nan).all().item())


def isclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    """PyTorch's rule: equal values (infinities of one sign included) are close; otherwise a finite
    |a - b| <= atol + rtol |b| (inf is close to nothing else, and -inf is not close to inf)."""
    a, b = _prep("isclose", a, b)
    a, b = a.to(D.float32), b.to(D.float32)
    close = eq(a, b)
    if equal_nan:
        close = logical_or(close, logical_and(isnan(a), isnan(b)))
    if rtol == 0 and atol == 0:
        return close
    err = abs(sub(a, b))
    return logical_or(close, logical_and(isfinite(err), le(err, add(atol, mul(abs(b), rtol)))))


def isnan(a):
    return ne(a, a)


def isinf(a):
    return eq(abs(a.to(D.float32)), float("inf"))


def isfinite(a):
    return logical_not(logical_or(isnan(a), isinf(a)))


# ------------------------------------------------------------------ unary
# (input, result): whose values each op's backward reads (csrc/cpu/elementwise.cpp unary_backward,
# csrc/cuda/elementwise_ops.cuh un_grad); ELU reads both. The input is saved only where it is read
# (as PyTorch saves the result of relu, exp, tanh, sigmoid, sqrt, rsqrt, reciprocal, expm1: their
# input is freed once nothing else holds it, and writing it in place afterwards is allowed), and
# the version check covers only what is read.
_NO_VALUES, _INPUT, _RESULT = (False, False), (True, False), (False, True)
_UNARY_READS = {U_NEG: _NO_VALUES, U_SIGN: _NO_VALUES, U_FLOOR: _NO_VALUES, U_CEIL: _NO_VALUES,
                U_ROUND: _NO_VALUES,
                U_EXP: _RESULT, U_TANH: _RESULT, U_SIGMOID: _RESULT, U_SQRT: _RESULT, U_RSQRT: _RESULT,
                U_RECIP: _RESULT, U_EXPM1: _RESULT,
                U_RELU: _RESULT, U_LOG: _INPUT, U_ABS: _INPUT, U_POWS: _INPUT, U_CLAMP: _INPUT, U_SIN: _INPUT,
                U_COS: _INPUT, U_LEAKY_RELU: _INPUT, U_GELU: _INPUT, U_GELU_TANH: _INPUT, U_SQUARE: _INPUT,
                U_LOG1P: _INPUT, U_SOFTPLUS: _INPUT, U_SILU: _INPUT, U_ERF: _INPUT}


class Unary(Function):
    @staticmethod
    def forward(ctx, x, op, p0=0.0, p1=0.0):
        y = unary_kernel(op, x, p0, p1)
        ctx.op, ctx.p = op, (p0, p1)
        reads = _UNARY_READS.get(op)
        ctx.save_for_backward(x if reads is None or reads[0] else None, y)
        ctx.saved_values_read = reads
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        g, x = contiguous(g), (y if x is None else contiguous(x))  # (an unread input: any pointer)
        gi = Tensor._empty(x._shape, D.float32, x.device)
        if gi.numel():
            x._backend.unary_backward(ctx.op, gi.data_ptr(), g.data_ptr(), x.data_ptr(), y.data_ptr(),
                                      gi.numel(), float(ctx.p[0]), float(ctx.p[1]))
        return gi


def unary_kernel(op, x, p0=0.0, p1=0.0):
    out = Tensor._empty(x._shape, D.bool_ if op == U_NOT else D.float32, x.device)
    n = out.numel()
    if n:
        if x.is_contiguous():  # one flat row, without working out the coalesced dims
            sh, st = [n], [1]
        else:
            sh, (st,) = coalesce(x._shape, x._stride)
        x._backend.unary(op, out.data_ptr(), x.data_ptr(), st, sh, float(p0), float(p1))
    return out


_UNARY_NAMES = {}


def _int_unary(op, x):
    """The unary ops whose result keeps an int64 input's dtype in PyTorch, computed exactly in
    int64 with the binary kernels (the unary kernels are float32: neg of 2**40 + 1 would round)."""
    zero = _scalar_tensor(0, D.int64, x.device)
    if op == U_NEG:
        return binary_kernel(SUB, zero, x)
    if op == U_RELU:
        return binary_kernel(MAX, x, zero)
    if op == U_SQUARE:
        return binary_kernel(MUL, x, x)
    if op == U_SIGN:  # -1, 0, 1 are exact in float32 whatever x is
        return unary_kernel(U_SIGN, x.to(D.float32)).to(D.int64)
    return _contiguous_copy(x)  # floor, ceil, round of an integer: a copy of it


def _unary(op, x, p0=0.0, p1=0.0):
    if not isinstance(x, Tensor):
        raise TypeError(f"{_UNARY_NAMES.get(op, 'unary op')}: expected a Tensor, got {type(x).__name__}")
    if x.dtype is D.int64 and op in _INT_UNARY_OPS:
        return _int_unary(op, x)
    if x.dtype is D.bool_ and op in _BOOL_UNARY:  # PyTorch's bool rules: no float detour
        if op == U_SIGN:
            return _contiguous_copy(x)
        if op == U_SQUARE:
            return x.to(D.int64)
        raise RuntimeError(f"{_UNARY_NAMES.get(op, 'unary op')}: not supported on bool tensors"
                           + (" (use ~ or logical_not() to invert a mask)" if op == U_NEG else ""))
    if x.dtype is not D.float32:
        x = x.to(D.float32)
    if x.requires_grad:
        return Unary.apply(x, op, p0, p1)
    return unary_kernel(op, x, p0, p1)


def _make_unary(name, op):
    def fn(x):
        return _unary(op, x)
    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name} (native kernel, with its backward)."
    _UNARY_NAMES[op] = name
    return fn


_INT_UNARY_OPS = frozenset({U_NEG, U_RELU, U_SQUARE, U_SIGN, U_FLOOR, U_CEIL, U_ROUND})
_BOOL_UNARY = frozenset({U_NEG, U_RELU, U_SQUARE, U_SIGN, U_FLOOR, U_CEIL, U_ROUND, U_ABS})


neg = _make_unary("neg", U_NEG)
exp = _make_unary("exp", U_EXP)
log = _make_unary("log", U_LOG)
tanh = _make_unary("tanh", U_TANH)
sigmoid = _make_unary("sigmoid", U_SIGMOID)
relu = _make_unary("relu", U_RELU)
sqrt = _make_unary("sqrt", U_SQRT)
rsqrt = _make_unary("rsqrt", U_RSQRT)
sin = _make_unary("sin", U_SIN)
cos = _make_unary("cos", U_COS)
reciprocal = _make_unary("reciprocal", U_RECIP)
square = _make_unary("square", U_SQUARE)
log1p = _make_unary("log1p", U_LOG1P)
expm1 = _make_unary("expm1", U_EXPM1)
floor = _make_unary("floor", U_FLOOR)
ceil = _make_unary("ceil", U_CEIL)
round = _make_unary("round", U_ROUND)
silu = _make_unary("silu", U_SILU)
erf = _make_unary("erf", U_ERF)
negative = neg

# Giles' single-precision erfinv ("Approximating the erfinv function", GPU Computing Gems, 2010):
# a polynomial in w = -log(1 - x^2), one for the centre (w < 5) and one in sqrt(w) for the tails,
# ~1e-7 relative error.
_ERFINV_CENTRE = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                  -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_ERFINV_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)


def erfinv(x):
    """Inverse error function on (-1, 1); +-inf at +-1 and NaN outside, as PyTorch. Composed of the
    native ops (differentiable through them)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"erfinv: expected a Tensor, got {type(x).__name__}")
    x = x if x.dtype is D.float32 else x.to(D.float32)
    w = neg(log(mul(sub(1.0, x), add(1.0, x))))
    centre, tail = sub(w, 2.5), sub(sqrt(w), 3.0)
    pc, pt = _ERFINV_CENTRE[0], _ERFINV_TAIL[0]
    for cc, ct in zip(_ERFINV_CENTRE[1:], _ERFINV_TAIL[1:]):
        pc = add(mul(pc, centre), cc)
        pt = add(mul(pt, tail), ct)
    y = mul(where(lt(w, 5.0), pc, pt), x)
    edge = eq(abs(x), 1.0)  # w is inf there: the tail polynomial gives inf - inf
    return where(edge, mul(x, float("inf")), y)


_UNARY_NAMES[U_ABS] = "abs"


def abs(x):
    if isinstance(x, Tensor) and x.dtype is D.int64:
        return where(lt(x, 0), neg_int(x), x)
    return _unary(U_ABS, x)


def neg_int(x):
    return _compare_free_sub(0, x)


def _compare_free_sub(a, b):
    a, b = _prep("neg", a, b)
    return binary_kernel(SUB, a, b)


def sign(x):
    return _unary(U_SIGN, x)


def log2(x):
    return mul(log(x), 1.4426950408889634)


def log10(x):
    return mul(log(x), 0.4342944819032518)


def exp2(x):
    return exp(mul(x, 0.6931471805599453))


def leaky_relu(x, negative_slope=0.01):
    return _unary(U_LEAKY_RELU, x, float(negative_slope))


def elu(x, alpha=1.0):
    return _unary(U_ELU, x, float(alpha))


def gelu(x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _unary(U_GELU if approximate == "none" else U_GELU_TANH, x)


def softplus(x, beta=1.0, threshold=20.0):
    return _unary(U_SOFTPLUS, x, float(beta), float(threshold))


def clamp(x, min=None, max=None):
    """min(max(x, min), max), as PyTorch: min > max gives max everywhere, a NaN bound gives NaN,
    and an integer tensor with a float bound is clamped in float32 (its result is float32)."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if not isinstance(x, Tensor):
        raise TypeError(f"clamp: expected a Tensor, got {type(x).__name__}")
    if x.dtype is not D.float32 and any(isinstance(v, float) or (isinstance(v, Tensor) and v.dtype is D.float32)
                                        for v in (min, max)):
        x = x.to(D.float32)  # PyTorch's promotion: clamp(int64, 0.5) is float
    elif x.dtype is D.bool_:
        x = x.to(D.int64)  # clamp(bool, 0, 1) is int64 in PyTorch
    if any(isinstance(v, float) and v != v for v in (min, max)):
        return mul(x, float("nan"))  # a NaN bound: every element NaN (and still differentiable)
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        # where(), not maximum(): at a tie PyTorch's clamp sends the whole gradient to x
        # (maximum would split it in half)
        y = x
        if min is not None:  # NaN in min or y propagates: y < NaN is False, so keep a NaN via ne
            y = where(logical_or(lt(y, min), ne(min, min) if isinstance(min, Tensor) else False), min, y)
        if max is not None:
            y = where(logical_or(gt(y, max), ne(max, max) if isinstance(max, Tensor) else False), max, y)
        return y
    if x.dtype is not D.float32:
        y = x
        if min is not None:
            y = where(lt(y, min), _as_tensor(min, y.dtype, y.device), y)
        if max is not None:
            y = where(gt(y, max), _as_tensor(max, y.dtype, y.device), y)
        return y
    lo = float("-inf") if min is None else float(min)
    hi = float("inf") if max is None else float(max)
    return _unary(U_CLAMP, x, lo, hi)


clip = clamp


def logical_not(x):
    if x.dtype is not D.bool_:
        x = x.to(D.bool_)
    return unary_kernel(U_NOT, x)


# ------------------------------------------------------------------ where
class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)  # a and b only for their shapes
        ctx.shapes = (a._shape, b._shape)
        return where_kernel(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        sa, sb = ctx.shapes
        zero = _as_tensor(0.0, D.float32, g.device)
        ga = sum_to(where_kernel(cond, g, zero), sa) if ctx.needs_input_grad[1] else None
        gb = sum_to(where_kernel(cond, zero, g), sb) if ctx.needs_input_grad[2] else None
        return None, ga, gb


def where_kernel(cond, a, b):
    shape = broadcast_shapes(cond._shape, a._shape, b._shape, op="where")
    out = Tensor._empty(shape, a.dtype, a.device)
    if out.numel():
        sh, (sc, sa, sb) = coalesce(shape, broadcast_strides(cond, shape), broadcast_strides(a, shape),
                                    broadcast_strides(b, shape))
        a._backend.where(a.dtype.code, out.data_ptr(), cond.data_ptr(), sc, a.data_ptr(), sa,
                         b.data_ptr(), sb, sh)
    return out


def where(cond, a=None, b=None):
    if a is None and b is None:
        from .shape import nonzero
        return nonzero(cond, as_tuple=True)
    if not isinstance(cond, Tensor):
        raise TypeError("where: condition must be a bool Tensor")
    if cond.dtype is not D.bool_:  # PyTorch refuses it: an int mask read as truth values hides bugs
        raise RuntimeError(f"where expected condition to be a boolean tensor, but got a tensor with dtype "
                           f"{cond.dtype}")
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):  # where(cond, 1.0, 0.0): on cond's device
        a = _as_tensor(a, result_dtype(a, b), cond.device)
    a, b = _prep("where", a, b)
    if cond.device != a.device:
        raise RuntimeError(f"where: condition is on {cond.device} but the values are on {a.device}")
    if a.dtype is D.float32 and (a.requires_grad or b.requires_grad):
        return Where.apply(cond, a, b)
    return where_kernel(cond, a, b)


def addcmul(input, tensor1, tensor2, value=1):
    """input + value * tensor1 * tensor2 (PyTorch's addcmul; custom optimizers use addcmul_)."""
    return add(input, mul(mul(tensor1, tensor2), value))


def addcdiv(input, tensor1, tensor2, value=1):
    """input + value * tensor1 / tensor2."""
    return add(input, mul(div(tensor1, tensor2), value))


def lerp(a, b, w):
    return add(a, mul(sub(b, a), w))
