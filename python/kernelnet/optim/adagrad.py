"""Adagrad (lr_decay, initial_accumulator_value, weight decay, maximize), PyTorch's update rule."""
import kernelnet as _kn
from . import _fused
from .optimizer import Optimizer


class Adagrad(Optimizer):
    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        # PyTorch creates the state eagerly, so state_dict() has it before the first step
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _init_state(self, p, group):
        st = self.state[p]
        if len(st) == 0:
            st["step"] = 0.0
            st["sum"] = _kn.full_like(p, float(group["initial_accumulator_value"]))

    def step(self, closure=None):
        loss = self._closure(closure)
        with _kn.no_grad():
            for group in self.param_groups:
                ps = _fused.params_with_grad(group, "Adagrad")
                if not ps:
                    continue
                grads = [_fused.dense(p.grad, "Adagrad", "gradients") for p in ps]
                sums, steps = [], []
                for p in ps:
                    self._init_state(p, group)
                    st = self.state[p]
                    st["step"] = float(st["step"]) + 1.0
                    steps.append(st["step"])
                    sums.append(st["sum"])
                _fused.step(
                    "adagrad_step", ps, grads, sums, _fused.sizes(ps), steps,
                    float(group["lr"]), float(group["lr_decay"]), float(group["weight_decay"]), float(group["eps"]),
                    bool(group["maximize"]))
        return loss
