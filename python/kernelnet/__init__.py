"""kernelnet: a small, readable, fast deep-learning library."""
__version__ = "0.1.0"
