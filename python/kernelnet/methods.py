"""Binds the ops to Tensor as methods and operators (x.sum(), x + y, x[idx], x.add_(y), ...)."""
import numbers

from . import _dtype as D
from . import ops
from .ops import elementwise as _ew
from .tensor import Tensor
from ._device import to_device
from .autograd import is_grad_enabled


def _m(name, fn=None):
    setattr(Tensor, name, fn if fn is not None else getattr(ops, name))


for _name in ["add", "sub", "mul", "div", "true_divide", "divide", "multiply", "subtract",
              "floor_divide", "remainder", "fmod", "pow", "maximum", "minimum", "eq", "ne", "lt",
              "le", "gt", "ge", "greater", "greater_equal", "less", "less_equal", "not_equal",
              "equal", "allclose", "isclose", "isnan", "isinf", "isfinite", "logical_and",
              "logical_or", "logical_xor", "logical_not", "neg", "negative", "exp", "log", "log2",
              "log10", "exp2", "tanh", "sigmoid", "relu", "sqrt", "rsqrt", "sin", "cos",
              "reciprocal", "square", "log1p", "expm1", "floor", "ceil", "round", "abs", "sign", "erf", "erfinv",
              "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not",
              "clamp", "clip", "lerp", "addcmul", "addcdiv", "sum", "mean", "max", "min", "amax", "amin", "argmax",
              "argmin", "prod", "any", "all", "var", "std", "logsumexp", "norm", "count_nonzero",
              "view", "reshape", "flatten", "unflatten", "permute", "transpose", "swapaxes",
              "swapdims", "t", "expand", "expand_as", "broadcast_to", "squeeze", "unsqueeze",
              "movedim", "nonzero", "argwhere", "index_select", "masked_select", "masked_fill",
              "gather", "scatter_add", "split", "chunk", "unbind", "narrow", "repeat", "flip",
              "matmul", "mm", "bmm", "dot", "mv", "outer", "contiguous", "clone", "to"]:
    _m(_name)

Tensor.__getitem__ = ops.getitem
Tensor.__setitem__ = ops.setitem


def _operator_pair(name, fn):
    """a <op> b and its reflection b <op> a (x + 1 and 1 + x) as fn(a, b) and fn(b, a)."""
    setattr(Tensor, f"__{name}__", lambda a, b: fn(a, b))
    setattr(Tensor, f"__r{name}__", lambda a, b: fn(b, a))


# & | ^ are bitwise on integers, logical on bools (PyTorch: 6 & 3 is 2)
for _name, _fn in [("add", ops.add), ("sub", ops.sub), ("mul", ops.mul), ("truediv", ops.div),
                   ("floordiv", ops.floor_divide), ("mod", ops.remainder), ("matmul", ops.matmul),
                   ("and", ops.bitwise_and), ("or", ops.bitwise_or), ("xor", ops.bitwise_xor)]:
    _operator_pair(_name, _fn)
Tensor.__contains__ = lambda a, v: bool(ops.eq(a, v).any().item())
Tensor.__pow__ = lambda a, b: ops.pow(a, b)
Tensor.__rpow__ = lambda a, b: ops.pow(ops.full((), b, dtype=a.dtype if a.dtype is D.float32 else None, device=a.device), a)
Tensor.__neg__ = lambda a: ops.neg(a)  # int64 exactly; bool refused with a hint at ~


def _pos(a):
    if a.dtype is D.bool_:
        raise RuntimeError("The `+` operator, on a bool tensor is not supported.")
    return a


Tensor.__pos__ = _pos
Tensor.__abs__ = lambda a: ops.abs(a)
# bitwise on integers, logical on bools (~5 is -6, ~mask flips a bool mask)
Tensor.__invert__ = lambda a: ops.bitwise_not(a)
Tensor.__eq__ = lambda a, b: ops.eq(a, b) if isinstance(b, (Tensor, numbers.Number)) else NotImplemented
Tensor.__ne__ = lambda a, b: ops.ne(a, b) if isinstance(b, (Tensor, numbers.Number)) else NotImplemented
Tensor.__lt__ = lambda a, b: ops.lt(a, b)
Tensor.__le__ = lambda a, b: ops.le(a, b)
Tensor.__gt__ = lambda a, b: ops.gt(a, b)
Tensor.__ge__ = lambda a, b: ops.ge(a, b)


# ------------------------------------------------------------------ conversions
def _cpu(self):
    return ops.to(self, "cpu")


def _cuda(self, device=None, non_blocking=False):
    return ops.to(self, device if device is not None else "cuda")


Tensor.cpu = _cpu
Tensor.cuda = _cuda
Tensor.float = lambda self: ops.to(self, D.float32)
Tensor.long = lambda self: ops.to(self, D.int64)
Tensor.int = lambda self: ops.to(self, D.int64)
Tensor.bool = lambda self: ops.to(self, D.bool_)
Tensor.double = lambda self: ops.to(self, D.float32)
Tensor.type_as = lambda self, other: ops.to(self, other.dtype)
Tensor.new_zeros = lambda self, *size, dtype=None, device=None: ops.zeros(*size, dtype=dtype or self.dtype, device=device or self.device)
Tensor.new_ones = lambda self, *size, dtype=None, device=None: ops.ones(*size, dtype=dtype or self.dtype, device=device or self.device)
Tensor.new_full = lambda self, size, v, dtype=None, device=None: ops.full(size, v, dtype=dtype or self.dtype, device=device or self.device)
Tensor.new_empty = lambda self, *size, dtype=None, device=None: ops.empty(*size, dtype=dtype or self.dtype, device=device or self.device)
Tensor.new_tensor = lambda self, data, dtype=None, device=None: ops.tensor(data, dtype=dtype or self.dtype, device=device or self.device)


def _is_floating_point(self):
    return self.dtype.is_floating_point


Tensor.is_floating_point = _is_floating_point
Tensor.softmax = lambda self, dim: __import__("kernelnet.nn.functional", fromlist=["softmax"]).softmax(self, dim)
Tensor.log_softmax = lambda self, dim: __import__("kernelnet.nn.functional", fromlist=["log_softmax"]).log_softmax(self, dim)


# ------------------------------------------------------------------ in-place ops
from .ops import inplace as _inplace_ops  # noqa: E402
_CAST_ORDER = {D.bool_: 0, D.int64: 1, D.float32: 2}


def _inplace_result_dtype(name, self, result, args, kwargs):
    """The dtype PyTorch's in-place op checks against self's (its result type)."""
    if name == "div_" and kwargs.get("rounding_mode") is not None and args:
        from .ops._util import result_dtype
        return result_dtype(self, args[0])  # floor/trunc division keeps the promoted type (int64 // int)
    return result.dtype


def _inplace(name, fn):
    def method(self, *args, **kwargs):
        _check_inplace(self, name, recordable=True)
        if _inplace_ops.records(self, args, kwargs):  # in the graph: ops/inplace.py
            return _inplace_ops.inplace_in_graph(
                self, name, lambda old: fn(old, *[old if a is self else a for a in args],
                                           **{k: old if v is self else v for k, v in kwargs.items()}))
        result = fn(self, *args, **kwargs)
        if (isinstance(result, Tensor)
                and _CAST_ORDER[_inplace_result_dtype(name, self, result, args, kwargs)] > _CAST_ORDER[self.dtype]):
            # PyTorch's rule: an in-place result must not lose its kind (float into an integer
            # tensor would truncate silently)
            raise RuntimeError(f"{name}: result type {result.dtype} can't be cast to the desired output type "
                               f"{self.dtype}")
        ops.assign(self, result)
        self._bump_version()
        return self
    method.__name__ = name
    setattr(Tensor, name, method)


def _check_inplace(t, name, recordable=False):
    """Refuse what no in-place op may do; `recordable`: the op can be recorded in the graph
    (ops/inplace.py), else one on a tensor in the graph is refused too."""
    if 0 in t._stride and t.numel() > 1 and any(st == 0 and sz > 1 for st, sz in zip(t._stride, t._shape)):
        # an expanded tensor: one memory location stands for several elements (PyTorch refuses too)
        raise RuntimeError(f"{name}: unsupported operation: more than one element of the written-to tensor "
                           "refers to a single memory location. Please clone() the tensor before performing "
                           "the operation.")
    if t.requires_grad and is_grad_enabled():
        if t.grad_fn is None:
            raise RuntimeError(f"{name}: a leaf Variable that requires grad is being used in an "
                               "in-place operation.")
        if not recordable:
            raise RuntimeError(f"{name}: this in-place operation on a tensor in the autograd graph is not "
                               "recorded by kernelnet; use the out-of-place version")


for _name in ["add", "sub", "mul", "div", "pow", "clamp", "clip", "exp", "log", "sqrt", "abs", "neg",
              "relu", "sigmoid", "tanh", "floor", "ceil", "round", "sign", "reciprocal", "square",
              "masked_fill", "lerp", "addcmul", "addcdiv", "maximum", "minimum", "floor_divide", "remainder", "fmod",
              "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not"]:
    _inplace(_name + "_", getattr(ops, _name))


def _inplace_arith(name, op):
    """add_/sub_/mul_/div_ (and +=, -=, *=, /=): one kernel writing self where that gives what the
    general path (the out-of-place op, then a copy back) gives, 4-5x faster (a manual SGD update
    `w -= lr * w.grad` is two ops instead of three plus a copy); anything else takes the general path."""
    general = getattr(Tensor, name)

    def method(self, other, *args, **kwargs):
        if not args and not kwargs and _ew.binary_into_self(op, self, other):
            return self
        return general(self, other, *args, **kwargs)
    method.__name__ = name
    setattr(Tensor, name, method)


for _name, _op in [("add_", _ew.ADD), ("sub_", _ew.SUB), ("mul_", _ew.MUL), ("div_", _ew.DIV)]:
    _inplace_arith(_name, _op)
Tensor.__iadd__ = Tensor.add_
Tensor.__isub__ = Tensor.sub_
Tensor.__imul__ = Tensor.mul_
Tensor.__itruediv__ = Tensor.div_
# without these Python falls back to x = x // y: a new tensor, and a view's base never changes
Tensor.__ifloordiv__ = Tensor.floor_divide_
Tensor.__imod__ = Tensor.remainder_
Tensor.__ipow__ = Tensor.pow_
Tensor.__iand__ = Tensor.bitwise_and_
Tensor.__ior__ = Tensor.bitwise_or_
Tensor.__ixor__ = Tensor.bitwise_xor_


def _overwrite_in_graph(self, name, value):
    """fill_/zero_/copy_ of a tensor autograd records: the new values come from value (a number,
    or a tensor broadcast to self's shape, which receives the gradient) and the old ones get no
    gradient, as in PyTorch."""
    everywhere = ops.ones(self._shape, dtype=D.bool_, device=self.device)
    return _inplace_ops.inplace_in_graph(self, name, lambda old: ops.where(everywhere, value, old))


def _zero_(self):
    return _fill(self, 0, "zero_")


def _fill_(self, value):
    return _fill(self, value, "fill_")


def _fill(self, value, name):
    _check_inplace(self, name, recordable=True)
    if isinstance(value, Tensor):  # a 0-d tensor (PyTorch): its gradient flows when it has one
        if value.dim() != 0:
            raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with "
                               f"{value.dim()} dimensions.")
        if _inplace_ops.records(self, (value,), {}):
            return _overwrite_in_graph(self, name, value.to(device=self.device, dtype=self.dtype))
        value = value.item()
    if _inplace_ops.records(self, (), {}):
        return _overwrite_in_graph(self, name, float(value))
    if self.is_contiguous():
        ops.creation.fill_native(self, value)
    else:
        ops.assign(self, ops.full((), value, dtype=self.dtype, device=self.device))
    self._bump_version()
    return self


def _copy_(self, src, non_blocking=False):
    _check_inplace(self, "copy_", recordable=True)
    if _inplace_ops.records(self, (src,), {}):
        if not isinstance(src, Tensor):
            src = ops.tensor(src, dtype=self.dtype, device=self.device)
        return _overwrite_in_graph(self, "copy_", src.to(device=self.device, dtype=self.dtype))
    ops.assign(self, src)  # (not recorded: grad mode is off, or nothing requires grad)
    self._bump_version()
    return self


def _uniform_(self, a=0.0, b=1.0, generator=None):
    _check_inplace(self, "uniform_")
    ops.uniform_(self, a, b, generator)
    self._bump_version()
    return self


def _normal_(self, mean=0.0, std=1.0, generator=None):
    _check_inplace(self, "normal_")
    ops.normal_(self, mean, std, generator)
    self._bump_version()
    return self


def _assign(self, src):
    ops.assign(self, src)
    return self


Tensor.zero_ = _zero_
Tensor.fill_ = _fill_
Tensor.copy_ = _copy_
Tensor.uniform_ = _uniform_
Tensor.normal_ = _normal_
Tensor._assign = _assign
