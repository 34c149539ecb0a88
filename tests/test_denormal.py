"""Denormal floats are flushed to zero inside the CPU kernels (default), on the calling thread
and on the OpenMP workers, and only there: NumPy keeps IEEE gradual underflow."""
import numpy as np
import pytest

import kernelnet as kn

DENORMAL = np.float32(1e-39)  # below float32's smallest normal, 1.18e-38


@pytest.fixture
def restore():
    yield
    kn.set_flush_denormal(True)


@pytest.mark.parametrize("n", [7, 1_000_003])  # inline on the calling thread / split over workers
def test_kernels_flush_denormals_by_default(n, restore):
    x = kn.from_numpy(np.full(n, DENORMAL))  # NumPy's copy: the denormals are really there
    assert x.numpy()[0] == DENORMAL
    y = (x * 1.0).numpy()
    assert not y.any()
    big = kn.full((n,), 1e-30)
    assert not (big * 1e-10).numpy().any()  # results that would be denormal become 0


def test_flush_can_be_turned_off(restore):
    assert kn.set_flush_denormal(False) is True
    x = kn.full((1_000_003,), float(DENORMAL))  # a kernel: with flushing off it stores the denormal
    y = (x * 2.0).numpy()
    np.testing.assert_array_equal(y, np.full(1_000_003, DENORMAL * 2, np.float32))


def test_numpy_keeps_gradual_underflow_after_kernels_ran(restore):
    (kn.ones(1_000_003) * 2.0).sum()
    assert np.float32(1e-30) * np.float32(1e-10) != 0  # MXCSR restored on this thread


def test_adam_moments_of_zero_gradients_reach_zero_not_denormals(restore):
    p = kn.nn.Parameter(kn.ones(1000))
    opt = kn.optim.Adam([p], lr=1e-3)
    p.grad = kn.full((1000,), 1e-5)
    opt.step()
    p.grad = kn.zeros(1000)
    for _ in range(900):  # 1e-6 * 0.9**900 ~ 1e-47: passes through the denormal range
        opt.step()
    m = opt.state[p]["exp_avg"].numpy()
    tiny = np.finfo(np.float32).tiny
    assert not np.any((m != 0) & (np.abs(m) < tiny))
