"""A DataLoader whose dataset lives in device memory: batches are drawn on the device.

Why: small models on a GPU are bound by per-step overhead, and a host DataLoader adds a host
gather, a pinned copy and a host-to-device transfer to every step. When the whole dataset fits in
GPU memory (Fashion-MNIST: 60000x28x28 float32 = 188 MB), it is copied there once; each epoch then
costs one small host-to-device copy of the permutation, and each batch is one `index_select`
kernel per tensor into a fresh contiguous batch, with no synchronisation at all.

    from kernelnet.utils.gpu_loader import GPUDataLoader
    loader = GPUDataLoader((x_train, y_train), batch_size=128, shuffle=True, device="cuda")
    for xb, yb in loader: ...

`dataset` may be a tuple/list of arrays or tensors (first dimensions equal), an object with a
`.tensors` attribute (a TensorDataset), or any map-style dataset (`len` and `[i]` returning a
tuple of array-likes), which is stacked once on the host. A TensorDataset subclass that overrides
`__getitem__` is read through it, once (a random augmentation there is drawn once, not per epoch). Works on device="cpu" as well (the same
code path with the CPU kernels), which is what the tests without a GPU exercise.
"""
import numpy as np

from .._device import device as _device
from ..tensor import Tensor
from .data.dataset import TensorDataset, batch_path


def _as_columns(dataset):
    if hasattr(dataset, "tensors") and (not isinstance(dataset, TensorDataset) or batch_path(dataset) is not None):
        cols = list(dataset.tensors)
    elif isinstance(dataset, (Tensor, np.ndarray)):
        cols = [dataset]
    elif isinstance(dataset, (tuple, list)) and len(dataset) > 0 and all(
            isinstance(c, (Tensor, np.ndarray)) for c in dataset):
        cols = list(dataset)
    elif hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        items = [dataset[i] for i in range(len(dataset))]
        if not items:
            raise ValueError("GPUDataLoader: the dataset is empty")
        single = not isinstance(items[0], (tuple, list))
        rows = [(it,) if single else tuple(it) for it in items]
        cols = [np.stack([np.asarray(r[k].numpy() if isinstance(r[k], Tensor) else r[k]) for r in rows])
                for k in range(len(rows[0]))]
    else:
        raise TypeError(f"GPUDataLoader: cannot read a dataset of type {type(dataset).__name__}; "
                        "pass a tuple of arrays/tensors, a TensorDataset or a map-style dataset")
    n = {int(c.shape[0]) for c in cols}
    if len(n) != 1:
        raise ValueError(f"GPUDataLoader: all tensors need the same first dimension, got "
                         f"{[tuple(c.shape) for c in cols]}")
    return cols


def _to_device(col, dev):
    import kernelnet as kn
    if isinstance(col, Tensor):
        t = col.detach()
        if t.device != dev:
            t = t.to(dev)
        return t.contiguous()
    arr = np.ascontiguousarray(col)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu" and arr.dtype != np.int64:
        arr = arr.astype(np.int64)
    return kn.tensor(arr, device=dev)


class GPUDataLoader:
    """Iterate over (shuffled) batches of a dataset kept resident on `device`."""

    def __init__(self, dataset, batch_size=1, shuffle=False, device="auto", drop_last=False,
                 generator=None):
        if int(batch_size) < 1:
            raise ValueError(f"GPUDataLoader: batch_size must be >= 1, got {batch_size}")
        self.device = _device(device)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.generator = generator
        try:
            self.tensors = [_to_device(c, self.device) for c in _as_columns(dataset)]
        except MemoryError as e:
            raise MemoryError(f"GPUDataLoader: the dataset does not fit in {self.device} memory ({e}); "
                              "use kernelnet.utils.data.DataLoader instead") from e
        self.n = int(self.tensors[0].shape[0])

    def __len__(self):
        if self.drop_last:
            return self.n // self.batch_size
        return (self.n + self.batch_size - 1) // self.batch_size

    def _order(self):
        import kernelnet as kn
        if self.shuffle:
            return kn.randperm(self.n, generator=self.generator, device=self.device)
        return kn.arange(self.n, dtype=kn.int64, device=self.device)

    def _take(self, t, idx, start, count):
        """t[idx[start:start+count]] with the backend's index_select kernel (no range check and
        no sync: the indices are a permutation built here)."""
        out = Tensor._empty((count,) + tuple(t.shape[1:]), t.dtype, t.device)
        inner = 1
        for s in t.shape[1:]:
            inner *= int(s)
        if count and inner:
            t._backend.index_select(t.dtype.code, out.data_ptr(), t.data_ptr(), 1, self.n, inner,
                                    idx.data_ptr() + 8 * start, count)
        return out

    def __iter__(self):
        idx = self._order()
        for b in range(len(self)):
            start = b * self.batch_size
            count = min(self.batch_size, self.n - start)
            batch = [self._take(t, idx, start, count) for t in self.tensors]
            yield batch[0] if len(batch) == 1 else tuple(batch)
