"""Adam and AdamW (amsgrad, weight decay, maximize), PyTorch's update rule in one fused call per group."""
import kernelnet as _kn
from . import _fused
from .optimizer import Optimizer


def _check(lr, betas, eps, weight_decay):
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        _check(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    _name = "Adam"

    def step(self, closure=None):
        loss = self._closure(closure)
        name = type(self).__name__
        with _kn.no_grad():
            for group in self.param_groups:
                ps = _fused.params_with_grad(group, name)
                if not ps:
                    continue
                grads = [_fused.dense(p.grad, name, "gradients") for p in ps]
                amsgrad = bool(group["amsgrad"])
                m, v, vmax, steps = [], [], [], []
                for p in ps:
                    st = self.state[p]
                    if len(st) == 0:
                        st["step"] = 0.0
                        st["exp_avg"] = _kn.zeros_like(p)
                        st["exp_avg_sq"] = _kn.zeros_like(p)
                        if amsgrad:
                            st["max_exp_avg_sq"] = _kn.zeros_like(p)
                    elif amsgrad and "max_exp_avg_sq" not in st:
                        st["max_exp_avg_sq"] = _kn.zeros_like(p)
                    st["step"] = float(st["step"]) + 1.0
                    steps.append(st["step"])
                    m.append(st["exp_avg"])
                    v.append(st["exp_avg_sq"])
                    if amsgrad:
                        vmax.append(st["max_exp_avg_sq"])
                beta1, beta2 = group["betas"]
                _fused.step(
                    "adam_step", ps, grads, m, v, vmax,
                    _fused.sizes(ps), steps, float(group["lr"]), float(beta1), float(beta2), float(group["eps"]),
                    float(group["weight_decay"]), bool(group.get("decoupled_weight_decay", False)), amsgrad,
                    bool(group["maximize"]))
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (default 1e-2), as torch.optim.AdamW."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         foreach=foreach, maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True)

    def add_param_group(self, param_group):
        param_group["decoupled_weight_decay"] = True
        super().add_param_group(param_group)
