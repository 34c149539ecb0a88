"""Adadelta (rho, eps, weight decay, maximize), PyTorch's update rule."""
import kernelnet as _kn
from . import _fused
from .optimizer import Optimizer


class Adadelta(Optimizer):
    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                        capturable=capturable, foreach=foreach, differentiable=differentiable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        loss = self._closure(closure)
        with _kn.no_grad():
            for group in self.param_groups:
                ps = _fused.params_with_grad(group, "Adadelta")
                if not ps:
                    continue
                grads = [_fused.dense(p.grad, "Adadelta", "gradients") for p in ps]
                sq, acc = [], []
                for p in ps:
                    st = self.state[p]
                    if len(st) == 0:
                        st["step"] = 0.0
                        st["square_avg"] = _kn.zeros_like(p)
                        st["acc_delta"] = _kn.zeros_like(p)
                    st["step"] = float(st["step"]) + 1.0
                    sq.append(st["square_avg"])
                    acc.append(st["acc_delta"])
                _fused.step(
                    "adadelta_step", ps, grads, sq, acc, _fused.sizes(ps),
                    float(group["lr"]), float(group["rho"]), float(group["eps"]), float(group["weight_decay"]),
                    bool(group["maximize"]))
        return loss
