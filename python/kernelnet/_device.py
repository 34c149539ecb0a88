"""Devices and backend selection.

`device("auto")` is CUDA when the CUDA backend was built and a GPU is visible, else CPU.
KERNELNET_DEVICE=cpu|cuda forces what "auto" means (e.g. to run GPU code on CPU for a test).
The CUDA module is imported lazily, so `import kernelnet` never fails without a GPU or driver.
"""
import os

from . import _cpu

_cuda_module = None
_cuda_error = None
_cuda_checked = False


def _load_cuda():
    global _cuda_module, _cuda_error, _cuda_checked
    if not _cuda_checked:
        _cuda_checked = True
        try:
            from . import _cuda as mod  # noqa: F401
            if mod.device_count() > 0:
                _cuda_module = mod
            else:
                _cuda_error = "the CUDA backend is built but no GPU is visible (device_count() == 0)"
        except ImportError as e:
            _cuda_error = f"kernelnet was built without the CUDA backend ({e})"
        except Exception as e:  # a broken driver must not break import kernelnet
            _cuda_error = f"CUDA initialisation failed: {e}"
    return _cuda_module


def cuda_built():
    try:
        from . import _cuda  # noqa: F401
        return True
    except ImportError:
        return False


def cuda_available():
    return _load_cuda() is not None


class device:
    """A device: `device("cpu")`, `device("cuda")`, `device("cuda:0")`, `device("auto")`."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu", index=None):
        if isinstance(spec, device):
            self.type, self.index = spec.type, spec.index
            return
        if spec is None:
            spec = "cpu"
        if not isinstance(spec, str):
            spec = str(spec)  # e.g. a torch.device
        s = spec.strip().lower()
        if s == "auto":
            forced = os.environ.get("KERNELNET_DEVICE", "").strip().lower()
            if forced and forced != "auto":
                s = forced
            else:
                s = "cuda" if cuda_available() else "cpu"
        if ":" in s:
            s, idx = s.split(":", 1)
            if not idx.isdigit():
                raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
            index = int(idx)
        if s not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
        self.type = s
        self.index = (index or 0) if s == "cuda" else None

    def __repr__(self):
        return f"device(type='{self.type}'" + (f", index={self.index})" if self.index is not None else ")")

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other):
        if other is self:  # the common case: tensors share the CPU / CUDA device objects
            return True
        if isinstance(other, str):
            try:
                other = device(other)
            except ValueError:
                return False
        return isinstance(other, device) and self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __reduce__(self):
        return (device, (str(self),))


CPU = device("cpu")


def to_device(obj):
    if obj is None:
        return CPU
    if isinstance(obj, device):
        return obj
    return device(obj)


_capture_backend = None  # set by kernelnet.graphs while a capture records CPU kernels


def backend(dev):
    """The native module that runs kernels for `dev`."""
    if _capture_backend is not None:
        return _capture_backend(dev, _cpu if dev.type == "cpu" else _backend_cuda(dev))
    if dev.type == "cpu":
        return _cpu
    return _backend_cuda(dev)


def _backend_cuda(dev):
    mod = _load_cuda()
    if mod is None:
        raise RuntimeError(f"cannot use device '{dev}': {_cuda_error}. "
                           "Use device='cpu' or device='auto' to fall back to the CPU.")
    if dev.index:  # every kernel and allocation runs on the current device; nothing selects another
        raise RuntimeError(f"cannot use device '{dev}': kernelnet runs on one GPU, cuda:0 "
                           "(set CUDA_VISIBLE_DEVICES to choose which physical GPU that is)")
    return mod
