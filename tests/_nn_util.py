"""Helpers shared by the nn tests: move tensors between kernelnet and torch, copy weights."""
import numpy as np
import torch

import kernelnet as kn


def to_torch(t, requires_grad=False):
    out = torch.from_numpy(np.array(t.detach().numpy(), copy=True))
    return out.requires_grad_(requires_grad) if requires_grad else out


def to_kn(t, requires_grad=False):
    out = kn.from_numpy(np.array(t.detach().numpy(), copy=True))  # kn.tensor(0-d array) gives shape [1] (core bug)
    return out.requires_grad_(True) if requires_grad else out


def copy_params(torch_module, kn_module):
    """Copy torch's parameters and buffers into the kernelnet module (same names)."""
    sd = {k: to_kn(v) for k, v in torch_module.state_dict().items()}
    kn_module.load_state_dict(sd)


def assert_close(a, b, rtol=1e-4, atol=1e-5, what=""):
    a = a.detach().numpy() if isinstance(a, kn.Tensor) else a
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol,
                               err_msg=what)


def check_layer(torch_layer, kn_layer, x_np, rtol=1e-4, atol=1e-5, train=True, copy=True):
    """Forward and backward (input and parameter grads) of kn_layer against torch_layer."""
    if copy:
        copy_params(torch_layer, kn_layer)
    torch_layer.train(train)
    kn_layer.train(train)
    xt = torch.tensor(x_np, requires_grad=True)
    xk = kn.tensor(x_np, requires_grad=True)
    yt = torch_layer(xt)
    yk = kn_layer(xk)
    assert tuple(yk.shape) == tuple(yt.shape), (tuple(yk.shape), tuple(yt.shape))
    assert_close(yk, yt, rtol, atol, "forward")
    g = np.random.default_rng(0).standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.tensor(g))
    yk.backward(kn.tensor(g))
    assert_close(xk.grad, xt.grad, rtol, atol, "input grad")
    tparams = dict(torch_layer.named_parameters())
    for name, p in kn_layer.named_parameters():
        assert_close(p.grad, tparams[name].grad, rtol, atol, f"grad of {name}")
    for name, b in torch_layer.named_buffers():
        kb = dict(kn_layer.named_buffers())[name]
        assert_close(kb, b, rtol, atol, f"buffer {name}")
    return yk, yt
