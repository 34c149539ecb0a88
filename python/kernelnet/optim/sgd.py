"""SGD with momentum, dampening, Nesterov, weight decay and maximize (PyTorch's update rule)."""
import kernelnet as _kn
from . import _fused
from .optimizer import Optimizer, required


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        if lr is not required and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                        fused=fused)
        super().__init__(params, defaults)

    def step(self, closure=None):
        loss = self._closure(closure)
        with _kn.no_grad():
            for group in self.param_groups:
                ps = _fused.params_with_grad(group, "SGD")
                if not ps:
                    continue
                grads = [_fused.dense(p.grad, "SGD", "gradients") for p in ps]
                bufs, init = [], []
                if group["momentum"] != 0:
                    for p in ps:
                        st = self.state[p]
                        buf = st.get("momentum_buffer")
                        init.append(buf is None)
                        if buf is None:
                            buf = _kn.empty_like(p)
                            st["momentum_buffer"] = buf
                        bufs.append(buf)
                _fused.step(
                    "sgd_step", ps, grads, bufs, init, _fused.sizes(ps),
                    float(group["lr"]), float(group["momentum"]), float(group["dampening"]),
                    float(group["weight_decay"]), bool(group["nesterov"]), bool(group["maximize"]))
        return loss
