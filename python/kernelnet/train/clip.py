"""Gradient clipping for the Trainer: kernelnet.nn.utils.clip_grad_norm_ (PyTorch's rule), with the
norm before clipping returned as a float for the training log."""
from ..nn.utils import clip_grad_norm_ as _clip_grad_norm


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so that their joint ``norm_type`` norm is at most
    ``max_norm``; returns the norm before clipping (a float)."""
    total = _clip_grad_norm(parameters, max_norm, norm_type=norm_type, error_if_nonfinite=error_if_nonfinite)
    return float(total.item())
