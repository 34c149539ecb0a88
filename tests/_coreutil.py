"""Helpers for the core tests: NumPy/PyTorch references, awkward (non-contiguous) inputs, and a
central-finite-difference gradient check."""
import numpy as np

import kernelnet as kn

try:
    import torch
except ImportError:  # the torch comparisons skip; NumPy and finite differences still run
    torch = None

RNG = np.random.default_rng(20261126)


def arr(*shape, kind="randn", low=-2.0, high=2.0):
    """A float32 NumPy array (returned as float64 holding float32 values)."""
    if kind == "randn":
        a = RNG.standard_normal(shape)
    elif kind == "pos":
        a = RNG.uniform(0.5, 2.0, shape)
    elif kind == "uniform":
        a = RNG.uniform(low, high, shape)
    elif kind == "away":  # |x| in [0.3, 2]: safe for kinks at 0 (relu, abs, sign)
        a = RNG.uniform(0.3, 2.0, shape) * RNG.choice([-1.0, 1.0], shape)
    elif kind == "int":
        a = RNG.integers(-5, 6, shape)
        return a.astype(np.int64)
    elif kind == "bool":
        return RNG.random(shape) < 0.5
    else:
        raise ValueError(kind)
    return a.astype(np.float32).astype(np.float64)


def make(a, device="cpu", layout="contig", requires_grad=False):
    """A kernelnet tensor with a's values, laid out contiguously, transposed ('T': a
    non-contiguous transposed view), or strided ('step': every other element of a bigger buffer)."""
    a = np.asarray(a)
    dt = {np.dtype(np.float64): np.float32}.get(a.dtype, a.dtype)
    if layout == "contig" or a.ndim == 0:
        t = kn.tensor(a.astype(dt), device=device)
    elif layout == "T":
        base = kn.tensor(np.ascontiguousarray(a.astype(dt).T), device=device)
        t = base.permute(*reversed(range(a.ndim)))
    elif layout == "step":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), dtype=dt)
        big[..., 1::2] = a
        t = kn.tensor(big, device=device)[..., 1::2]
    else:
        raise ValueError(layout)
    assert tuple(t.shape) == a.shape
    if requires_grad:
        t.requires_grad_(True)
    return t


def tonp(t):
    """float64 copy of a tensor's values (or pass NumPy/scalars through)."""
    if isinstance(t, kn.Tensor):
        a = t.detach().cpu().numpy()
        # C-ordered copies (astype keeps a transposed layout; reshape(-1) of that would copy)
        return np.array(a, dtype=np.float64 if a.dtype == np.float32 else a.dtype, order="C")
    if torch is not None and isinstance(t, torch.Tensor):
        return t.detach().numpy()
    return np.asarray(t)


def close(got, ref, tol=1e-5, dtype_check=True):
    g = tonp(got)
    r = np.asarray(tonp(ref))
    assert g.shape == r.shape, f"shape {g.shape} != reference {r.shape}"
    if r.dtype == np.bool_ or np.issubdtype(r.dtype, np.integer):
        np.testing.assert_array_equal(g, r)
        return
    fin = np.abs(r[np.isfinite(r)])  # scale from finite values only (an inf would make atol inf)
    scale = max(1.0, float(fin.max()) if fin.size else 1.0)
    np.testing.assert_allclose(g.astype(np.float64), r, rtol=tol, atol=tol * scale, equal_nan=True)


def finite_diff_grads(fn, inputs, weight=None, eps=1e-2):
    """Central differences of L = sum(fn(*inputs) * weight) w.r.t. every float input, computed on
    kernelnet itself in float32 (so each perturbation goes through the native forward kernels)."""
    with kn.no_grad():
        out = fn(*inputs)
        if weight is None:
            weight = kn.tensor(RNG.uniform(0.5, 1.5, tuple(out.shape)).astype(np.float32), device=out.device)
        grads = []
        for x in inputs:
            if not (isinstance(x, kn.Tensor) and x.requires_grad):
                grads.append(None)
                continue
            base = tonp(x)
            g = np.zeros_like(base)
            flat = base.reshape(-1)
            for i in range(flat.size):
                vals = []
                for sgn in (1, -1):
                    p = flat.copy()
                    p[i] += sgn * eps
                    x._assign(kn.tensor(p.reshape(base.shape).astype(np.float32), device=x.device))
                    vals.append(float(np.sum(tonp(fn(*inputs)) * tonp(weight))))
                g.reshape(-1)[i] = (vals[0] - vals[1]) / (2 * eps)
            x._assign(kn.tensor(base.astype(np.float32), device=x.device))
            grads.append(g)
    return grads, weight


def analytic_grads(fn, inputs, weight):
    for x in inputs:
        if isinstance(x, kn.Tensor):
            x.grad = None
    out = fn(*inputs)
    (out * weight).sum().backward()
    return [x.grad if isinstance(x, kn.Tensor) and x.requires_grad else None for x in inputs]


def gradcheck(fn, inputs, eps=1e-2, tol=2e-2):
    """Analytic gradients of fn (kernelnet autograd) against central finite differences."""
    num, weight = finite_diff_grads(fn, inputs, eps=eps)
    ana = analytic_grads(fn, inputs, weight)
    for k, (n, a) in enumerate(zip(num, ana)):
        if n is None:
            continue
        assert a is not None, f"input {k} got no gradient"
        close(a, n, tol=tol)
    return ana, weight


def to_torch(x, requires_grad=None):
    """float64 torch copy of a kernelnet tensor (int64/bool kept), leaf with the same requires_grad."""
    a = tonp(x)
    t = torch.from_numpy(np.array(a, order="C"))  # (ascontiguousarray would make 0-d 1-d)
    rg = x.requires_grad if requires_grad is None else requires_grad
    if rg:
        t.requires_grad_(True)
    return t


def torch_check(fn, inputs, weight=None, tol=1e-4, fn_torch=None):
    """Run the same program in kernelnet and in torch (float64 CPU): compare outputs and the
    gradients of sum(out * weight) with respect to every input that requires grad."""
    if torch is None:
        import pytest
        pytest.skip("torch is not installed")
    fn_torch = fn_torch or fn
    tins = [to_torch(x) if isinstance(x, kn.Tensor) else x for x in inputs]
    for x in inputs:
        if isinstance(x, kn.Tensor):
            x.grad = None
    out = fn(*inputs)
    tout = fn_torch(*tins)
    close(out, tout, tol=tol)
    if not any(isinstance(x, kn.Tensor) and x.requires_grad for x in inputs):
        return
    if weight is None:
        weight = RNG.uniform(0.5, 1.5, tuple(out.shape)).astype(np.float32)
    (out * kn.tensor(weight, device=out.device)).sum().backward()
    (tout * torch.from_numpy(weight.astype(np.float64))).sum().backward()
    for k, (x, tx) in enumerate(zip(inputs, tins)):
        if isinstance(x, kn.Tensor) and x.requires_grad:
            assert x.grad is not None, f"input {k}: no gradient"
            assert tuple(x.grad.shape) == tuple(x.shape)
            close(x.grad, tx.grad, tol=tol)
