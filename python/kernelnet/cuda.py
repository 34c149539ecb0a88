"""kernelnet.cuda: is a GPU usable, and the CUDA caching allocator's statistics.

Importing this never fails on a machine without a GPU, driver or CUDA build."""
from ._device import cuda_available, _load_cuda


def is_available():
    return cuda_available()


def device_count():
    mod = _load_cuda()
    return mod.device_count() if mod is not None else 0


def _mod(op):
    mod = _load_cuda()
    if mod is None:
        from ._device import _cuda_error
        raise RuntimeError(f"kernelnet.cuda.{op}: CUDA is not available ({_cuda_error})")
    return mod


def synchronize():
    mod = _load_cuda()
    if mod is not None:
        mod.synchronize()


def get_device_name(i=0):
    return _mod("get_device_name").device_name(i)


def memory_allocated(device=None):
    mod = _load_cuda()
    return mod.memory_allocated() if mod is not None else 0


def max_memory_allocated(device=None):
    mod = _load_cuda()
    return mod.max_memory_allocated() if mod is not None else 0


def reset_peak_memory_stats(device=None):
    mod = _load_cuda()
    if mod is not None:
        mod.reset_peak_memory_stats()


def empty_cache():
    mod = _load_cuda()
    if mod is not None:
        mod.empty_cache()


def graphed(fn, *args, warmup=0):
    """Capture fn(*args) as a CUDA graph and replay it (kernelnet.graphed: same function, any device)."""
    from .graphs import graphed as _graphed
    return _graphed(fn, *args, warmup=warmup)


def manual_seed(seed):
    from .ops import manual_seed as _ms
    _ms(seed)


manual_seed_all = manual_seed
