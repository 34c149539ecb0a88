"""RMSprop (centered, momentum, weight decay, maximize), PyTorch's update rule."""
import kernelnet as _kn
from . import _fused
from .optimizer import Optimizer


class RMSprop(Optimizer):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        loss = self._closure(closure)
        with _kn.no_grad():
            for group in self.param_groups:
                ps = _fused.params_with_grad(group, "RMSprop")
                if not ps:
                    continue
                grads = [_fused.dense(p.grad, "RMSprop", "gradients") for p in ps]
                sq, ga, mb = [], [], []
                for p in ps:
                    st = self.state[p]
                    if len(st) == 0:
                        st["step"] = 0.0
                        st["square_avg"] = _kn.zeros_like(p)
                        if group["momentum"] > 0:
                            st["momentum_buffer"] = _kn.zeros_like(p)
                        if group["centered"]:
                            st["grad_avg"] = _kn.zeros_like(p)
                    st["step"] = float(st["step"]) + 1.0
                    sq.append(st["square_avg"])
                    if group["centered"]:
                        ga.append(st["grad_avg"])
                    if group["momentum"] > 0:
                        mb.append(st["momentum_buffer"])
                _fused.step(
                    "rmsprop_step", ps, grads, sq, ga, mb,
                    _fused.sizes(ps), float(group["lr"]), float(group["alpha"]), float(group["eps"]),
                    float(group["weight_decay"]), float(group["momentum"]), bool(group["centered"]),
                    bool(group["maximize"]))
        return loss
