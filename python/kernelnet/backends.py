"""Backend switches, like torch.backends.

    import kernelnet
    kernelnet.backends.allow_tf32 = True   # let CUDA matmuls use TF32 tensor cores

`allow_tf32` (default False): CUDA sgemm may round its inputs to TF32 (10-bit mantissa, FP32
accumulation) and run on tensor cores, several times faster on Ampere/Hopper GPUs with about 1e-3
relative error. The CPU backend ignores it. Setting it without a CUDA build is allowed (no effect).
"""
import sys
import types

_cpu_flag = False  # remembered when there is no CUDA module, reported back by the getter


def _cuda_module():
    try:
        from . import _cuda
        return _cuda
    except ImportError:
        return None


class _BackendsModule(types.ModuleType):
    @property
    def allow_tf32(self):
        mod = _cuda_module()
        return bool(mod.allow_tf32()) if mod is not None else _cpu_flag

    @allow_tf32.setter
    def allow_tf32(self, value):
        global _cpu_flag
        _cpu_flag = bool(value)
        mod = _cuda_module()
        if mod is not None:
            mod.set_allow_tf32(bool(value))


sys.modules[__name__].__class__ = _BackendsModule
