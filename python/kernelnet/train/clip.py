"""Gradient clipping. Uses kernelnet.nn.utils.clip_grad_norm_ when the nn package provides it;
this is the same rule (PyTorch's) for when it does not."""
import math


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so that their joint ``norm_type`` norm is at most
    ``max_norm``; returns the norm before clipping (a float)."""
    import kernelnet as kn
    try:
        from kernelnet.nn.utils import clip_grad_norm_ as native
    except ImportError:
        native = None
    if native is not None:
        total = native(parameters, max_norm, norm_type=norm_type, error_if_nonfinite=error_if_nonfinite)
        return float(total.item() if hasattr(total, "item") else total)
    if hasattr(parameters, "grad") and not isinstance(parameters, (list, tuple)):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    with kn.no_grad():
        if math.isinf(norm_type):
            total = max(float(g.abs().max().item()) for g in grads)
        else:
            total = sum(float((g.abs() ** norm_type).sum().item()) for g in grads) ** (1.0 / norm_type)
        if error_if_nonfinite and not math.isfinite(total):
            raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
                               "non-finite, so it cannot be clipped")
        coef = float(max_norm) / (total + 1e-6)
        if coef < 1.0:
            for g in grads:
                g.mul_(coef)
    return total
