"""kernelnet.utils: data loading (kernelnet.utils.data)."""
from . import data

__all__ = ["data"]
