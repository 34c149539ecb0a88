"""nn.utils: gradient clipping (PyTorch's clip_grad_norm_ / clip_grad_value_)."""
import math

import kernelnet as _kn


def _grads(parameters):
    if isinstance(parameters, _kn.Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale all gradients together so that their joint ``norm_type`` norm is at most max_norm.
    Returns the total norm before clipping (a 0-d tensor), as PyTorch does. Inside a
    kernelnet.graphed capture it runs as an island (it reads the norm on the host)."""
    from .. import graphs as _graphs
    if _graphs._capture is not None and _graphs.capturing():
        params = [parameters] if isinstance(parameters, _kn.Tensor) else list(parameters)  # re-read each replay
        return _graphs.island(lambda: clip_grad_norm_(params, max_norm, norm_type, error_if_nonfinite, foreach))
    grads = _grads(parameters)
    norm_type = float(norm_type)
    if not grads:
        return _kn.zeros(())
    with _kn.no_grad():
        if math.isinf(norm_type):
            norms = [g.abs().max() for g in grads]
            total = _kn.stack(norms).max()
        elif norm_type == 0:
            # PyTorch's rule taken literally: the 0-"norm" (count of nonzeros) of the per-tensor
            # 0-norms, i.e. how many gradients have a nonzero entry
            total = (_kn.stack([(g != 0).sum().float() for g in grads]) != 0).sum().float()
        else:
            norms = [(g.abs() ** norm_type).sum() for g in grads]
            total = _kn.stack(norms).sum() ** (1.0 / norm_type)
        t = float(total.item())
        if error_if_nonfinite and not math.isfinite(t):
            raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                               "so it cannot be clipped. To disable this error and scale the gradients by the "
                               "non-finite norm anyway, set `error_if_nonfinite=False`")
        coef = float(max_norm) / (t + 1e-6)
        if not coef >= 1.0:  # also when the norm is NaN: the gradients become NaN, as in PyTorch
            for g in grads:
                g.mul_(coef)
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    with _kn.no_grad():
        for g in _grads(parameters):
            g.clamp_(-float(clip_value), float(clip_value))


def parameters_to_vector(parameters):
    return _kn.cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec, parameters):
    i = 0
    with _kn.no_grad():
        for p in parameters:
            n = p.numel()
            p.copy_(vec[i:i + n].reshape(p.shape))
            i += n
