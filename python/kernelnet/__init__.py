"""kernelnet: a small, readable, fast deep-learning library.

Hand-written C++ (CPU) and CUDA (GPU) kernels under a PyTorch-like API:

    import kernelnet as kn
    x = kn.randn(4, 3, requires_grad=True)
    (x @ x.T).relu().sum().backward()
"""
__version__ = "0.1.0"

import os as _os

# Sleeping (not spinning) OpenMP waiters: on a machine with any other busy process, spinning
# threads make each parallel region wait for a descheduled thread (measured here: the course CNN
# step 175 ms -> 80 ms at load ~2 on 2 cores, small GEMMs up to 90x). Must be set before the
# native module loads libgomp; an explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT from the user wins.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from ._dtype import dtype, float32, int64, bool_ as bool  # noqa: A001
from ._dtype import float32 as float, int64 as long  # noqa: A001
from ._device import device
from .tensor import Tensor, Size
from . import methods as _methods  # noqa: F401  (binds ops to Tensor)
from . import dlpack as _dlpack  # noqa: F401
from .dlpack import from_dlpack
from .autograd import no_grad, enable_grad, set_grad_enabled, is_grad_enabled, inference_mode
from . import autograd
from .ops import *  # noqa: F401,F403
from .ops import sum, max, min, abs, pow, round, all, any  # noqa: F401,A004  (shadow builtins, as torch does)
from . import cuda, cpu
from .graphs import graphed, GraphCaptureError
from .info import info, set_num_threads, get_num_threads, set_flush_denormal

float64 = float32  # kernelnet computes in float32; code asking for float64 gets float32
double = float32
int32 = int64
uint8 = int64
is_tensor = lambda obj: isinstance(obj, Tensor)  # noqa: E731


def numel(t):
    return t.numel()


def is_floating_point(t):
    return t.dtype.is_floating_point

# neural-network API (issue 9): modules, optimizers, data, checkpoints
from . import nn, optim, utils, datasets, transforms  # noqa: E402
from .serialization import save, load  # noqa: E402
from . import backends  # noqa: E402,F401  (kernelnet.backends.allow_tf32)
