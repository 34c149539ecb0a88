"""Glue between the optimizers and the fused native update kernels.

The kernels (csrc/cpu/optim.cpp; the CUDA module exports the same names) take lists of raw
pointers; this module checks what they rely on (float32, contiguous, one device per call) and
keeps the tensors whose pointers are passed alive until the call returns.
"""
import os

import kernelnet as _kn
from .. import graphs as _graphs


def params_with_grad(group, opt_name):
    # every optimizer's step() calls this first, before it touches its state (step counts, moments)
    if _graphs._capture is not None and _graphs.active() is not None:
        _graphs._refuse("running an optimizer update outside an island (optimizer subclasses' step() is "
                        "one; decorate other update methods with kernelnet.graphs.island_method)")
    ps = [p for p in group["params"] if p.grad is not None]
    for p in ps:
        if getattr(p.grad, "is_sparse", False):
            raise RuntimeError(f"{opt_name} does not support sparse gradients")
        if tuple(p.grad.shape) != tuple(p.shape):
            raise RuntimeError(f"{opt_name}: gradient shape {tuple(p.grad.shape)} does not match parameter "
                               f"shape {tuple(p.shape)}")
    return ps


def backend_of(tensors, opt_name):
    dev = tensors[0].device
    for t in tensors:
        if t.device != dev:
            raise RuntimeError(f"{opt_name}: all parameters of a param group must be on one device; found "
                               f"{dev} and {t.device}")
    return tensors[0]._backend


def dense(t, opt_name, what):
    """A contiguous float32 tensor with t's values (the tensor itself when it already is one)."""
    if t.dtype != _kn.float32:
        raise TypeError(f"{opt_name}: {what} must be float32, got {t.dtype}")
    return t if t.is_contiguous() else t.contiguous()


def ptrs(tensors):
    return [t.data_ptr() for t in tensors]


def sizes(tensors):
    return [t.numel() for t in tensors]


def step(kernel, params, *args):
    """Run the update ``kernel`` ("adam_step", ...) over a group. ``args`` follow the kernel's
    signature (docs/KERNEL_CONTRACT.md) with tensor lists in place of pointer lists. The fused
    native kernel runs when the parameters' backend has it; otherwise (or with
    KERNELNET_OPTIM=reference) the tensor-op reference in _reference.py does the same update."""
    if _graphs._capture is not None and _graphs.active() is not None:
        _graphs._refuse("running an optimizer update outside an island (optimizer subclasses' step() is "
                        "one; decorate other update methods with kernelnet.graphs.island_method)")
    backend = backend_of(params, kernel)
    dev = params[0].device
    for a in args:  # gradients and state: a kernel handed another device's pointer would crash
        if isinstance(a, list) and a and isinstance(a[0], _kn.Tensor):
            for t in a:
                if t.device != dev:
                    raise RuntimeError(
                        f"{kernel}: expected all tensors on {dev} (the parameters' device), found one on "
                        f"{t.device}; was the optimizer stepped before Module.to()? Create the optimizer after "
                        "moving the model, or move its state with opt.load_state_dict(opt.state_dict())")
    # The kernels update flat float arrays: a non-contiguous parameter (nn.Parameter(w.T)) is updated
    # in a contiguous copy, written back after (its state tensors are dense in its logical order).
    work = [dense(p, kernel, "parameters") for p in params]
    fn = None if os.environ.get("KERNELNET_OPTIM") == "reference" else getattr(backend, kernel, None)
    if fn is None:
        from . import _reference
        result = getattr(_reference, kernel)(work, *args)
    else:
        conv = [ptrs(a) if isinstance(a, list) and a and isinstance(a[0], _kn.Tensor) else a for a in args]
        result = fn(ptrs(work), *conv)
    for p, w in zip(params, work):
        if w is not p:
            p.copy_(w)
        else:
            p._bump_version()  # written in place by the kernel (copy_ bumps the others)
    return result
