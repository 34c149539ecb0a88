"""All tensor ops, gathered; kernelnet/__init__.py re-exports them and methods.py binds them to
Tensor."""
from .creation import (empty, full, zeros, ones, empty_like, zeros_like, ones_like, full_like,
                       from_numpy, tensor, as_tensor, arange, linspace, eye, Generator,
                       default_generator, manual_seed, seed, initial_seed, get_rng_state,
                       set_rng_state, rand, randn, rand_like, randn_like, randint, randperm,
                       normal, uniform_, normal_, bernoulli_mask)
from .copy import contiguous, clone, to, assign
from .elementwise import (add, sub, rsub, mul, div, true_divide, divide, multiply, subtract,
                          floor_divide, remainder, fmod, pow, maximum, minimum, eq, ne, lt, le, gt,
                          ge, greater, greater_equal, less, less_equal, not_equal, equal, allclose,
                          isclose, isnan, isinf, isfinite, logical_and, logical_or, logical_xor,
                          logical_not, neg, negative, exp, log, log2, log10, exp2, tanh, sigmoid,
                          relu, sqrt, rsqrt, sin, cos, reciprocal, square, log1p, expm1, floor,
                          ceil, round, silu, erf, erfinv, abs, bitwise_and, bitwise_or, bitwise_xor, bitwise_not, sign, leaky_relu, elu, gelu, softplus,
                          clamp, clip, where, lerp, addcmul, addcdiv, sum_to)
from .reduce import (sum, mean, max, min, amax, amin, argmax, argmin, prod, any, all, var, std,
                     var_mean, std_mean, logsumexp, norm, count_nonzero)
from .shape import (view, reshape, flatten, unflatten, permute, transpose, swapaxes, swapdims, t,
                    expand, expand_as, broadcast_to, squeeze, unsqueeze, movedim, getitem, setitem,
                    nonzero, argwhere, index_select, masked_select, masked_fill, gather,
                    scatter_add, cat, concat, concatenate, stack, hstack, vstack, split, chunk,
                    unbind, narrow, repeat, flip, one_hot)
from .linalg import matmul, mm, bmm, dot, mv, outer, linear, addmm
