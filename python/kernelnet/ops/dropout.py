"""dropout with PyTorch's signature, on the native Philox dropout kernel (csrc/cpu/dropout.cpp and
the CUDA twin). The random stream comes from kernelnet's generator (seed, offset), so a seeded run
drops the same elements on CPU and GPU and for any thread count."""
from .. import _dtype as D
from ..autograd import Function
from ..tensor import Tensor
from ._layer_util import as_contiguous, check_tensor
from .. import graphs as _graphs


class _Dropout(Function):
    @staticmethod
    def forward(ctx, x, p, seed, offset, rng_state=0):
        n = x.numel()
        y = Tensor._empty(x._shape, D.float32, x.device)
        mask = Tensor._empty(x._shape, D.float32, x.device)  # 1/(1-p) where kept, else 0
        if n:
            x._backend.dropout_forward(x.data_ptr(), y.data_ptr(), mask.data_ptr(), n, float(p), seed, offset,
                                       rng_state)
        ctx.save_for_backward(mask)
        return y

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        dx = Tensor._empty(mask._shape, D.float32, mask.device)
        if dx.numel():
            g = as_contiguous(g)
            mask._backend.dropout_backward(g.data_ptr(), mask.data_ptr(), dx.data_ptr(), dx.numel())
        return dx


def dropout(input, p=0.5, training=True, inplace=False, generator=None):
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity when not
    training). `inplace` is accepted for compatibility; the result is always a new tensor."""
    op = "dropout"
    check_tensor(op, "input", input)
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    if input.dtype is not D.float32:
        raise ValueError(f"{op}: expected a float32 input, got {input.dtype} (shape {tuple(input.shape)})")
    if not training or p == 0.0:
        return input
    from .creation import _gen
    cap = _graphs.active() if _graphs._capture is not None else None
    if cap is not None:  # a replayed graph reads the generator's position when it runs
        seed, offset, state = cap.dropout_rng(_gen(generator), input.numel())
    else:
        (seed, offset), state = _gen(generator)._advance(input.numel()), 0
    return _Dropout.apply(as_contiguous(input), p, seed, offset, state)
