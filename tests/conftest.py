"""Shared pytest fixtures: `device` runs a test on the CPU and, when a GPU is usable, on CUDA."""
import pytest

import kernelnet


def _cuda_reason():
    if kernelnet.cuda.is_available():
        return None
    from kernelnet import _device
    return f"CUDA not available: {_device._cuda_error or 'no GPU visible'}"


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    """Device string for tests that must pass on every backend; cuda skips without a GPU."""
    if request.param == "cuda":
        reason = _cuda_reason()
        if reason:
            pytest.skip(reason)
    return request.param
