"""What kernelnet runs on: backend, SIMD path, threads, GPU."""
import platform

from . import _cpu
from ._device import cuda_built, cuda_available, device as _device


def set_num_threads(n):
    """Threads used by the CPU kernels (like torch.set_num_threads)."""
    _cpu.set_num_threads(int(n))


def get_num_threads():
    return _cpu.num_threads()


def set_flush_denormal(mode):
    """Flush denormal floats (|x| < 1.2e-38) to zero inside the CPU kernels; returns True (the
    setting is supported), like torch.set_flush_denormal. Unlike PyTorch it is ON by default:
    denormal arithmetic costs ~100 cycles per instruction on x86 and made the course CNN's
    training step 2x slower once Adam's moments decayed into that range. Only kernel threads are
    affected, for the duration of each kernel; NumPy keeps IEEE gradual underflow.
    KERNELNET_FLUSH_DENORMAL=0 turns the default off."""
    _cpu.set_flush_denormal(bool(mode))
    return True


def info(as_dict=False):
    """Print (or return) which backend and SIMD path run, and how many threads."""
    from . import __version__
    d = {
        "kernelnet": __version__,
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "simd_detected": _cpu.simd_detected(),
        "simd_active": _cpu.simd_active(),
        "threads": _cpu.num_threads(),
        "openmp": bool(_cpu.openmp),
        "cuda_built": cuda_built(),
        "cuda_available": cuda_available(),
        "default_device": str(_device("auto")),
    }
    if d["cuda_available"]:
        from . import cuda
        d["gpus"] = [cuda.get_device_name(i) for i in range(cuda.device_count())]
    if as_dict:
        return d
    lines = [f"kernelnet {d['kernelnet']} (Python {d['python']})",
             f"CPU backend : {d['cpu']}",
             f"  SIMD path : {d['simd_active']} (CPU supports {d['simd_detected']}; KERNELNET_SIMD overrides)",
             f"  threads   : {d['threads']} (OpenMP {'on' if d['openmp'] else 'off'}; KERNELNET_NUM_THREADS overrides)",
             f"CUDA backend: {'built' if d['cuda_built'] else 'not built'}, "
             f"{'GPU available: ' + ', '.join(d['gpus']) if d['cuda_available'] else 'no GPU visible'}",
             f"device('auto') -> {d['default_device']}"]
    print("\n".join(lines))
    return None


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
