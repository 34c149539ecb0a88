"""Dataset, TensorDataset, Subset, ConcatDataset and random_split (PyTorch semantics).

Tensor-backed datasets also implement ``_get_batch(indices)`` (indices: numpy int64 array) that
returns a whole collated batch with one vectorised index op; the DataLoader uses it when the
default collate is in effect and the dataset's ``__getitem__`` is the one written alongside that
``_get_batch`` (see batch_path).
"""
import bisect
import math

import numpy as np

import kernelnet as _kn


def batch_path(dataset):
    """The dataset's ``_get_batch``, or None when a batch must be built from ``dataset[i]`` calls.

    A batch gather is only what ``dataset[i]`` would give when the class that defines ``_get_batch``
    also defines the ``__getitem__`` in effect: a subclass overriding ``__getitem__`` (an
    augmentation, a label mapping) must be honoured, as PyTorch's DataLoader honours it."""
    cls = type(dataset)
    get_owner = next((c for c in cls.__mro__ if "__getitem__" in c.__dict__), None)
    batch_owner = next((c for c in cls.__mro__ if "_get_batch" in c.__dict__), None)
    if batch_owner is None or batch_owner is not get_owner:
        return None
    return dataset._get_batch


class Dataset:
    def __getitem__(self, index):
        raise NotImplementedError("Subclasses of Dataset should implement __getitem__.")

    def __add__(self, other):
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Samples are the i-th rows of the given tensors (all with the same first dimension)."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        n = tensors[0].shape[0]
        for t in tensors:
            if t.shape[0] != n:
                raise ValueError("Size mismatch between tensors: first dimensions are "
                                 f"{[tuple(x.shape)[0] for x in tensors]}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]

    def _get_batch(self, indices):
        idx = _kn.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
        out = []
        for t in self.tensors:
            i = idx if t.device == idx.device else idx.to(t.device)
            out.append(t.index_select(0, i))
        return out


class Subset(Dataset):
    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __len__(self):
        return len(self.indices)

    def _get_batch(self, indices):
        inner = batch_path(self.dataset)
        if inner is None:
            return None
        return inner(np.asarray(self.indices, dtype=np.int64)[indices])


class ConcatDataset(Dataset):
    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("datasets should not be an empty iterable")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        if idx < 0:
            if -idx > len(self):
                raise ValueError("absolute value of index should not exceed dataset length")
            idx = len(self) + idx
        d = bisect.bisect_right(self.cumulative_sizes, idx)
        start = 0 if d == 0 else self.cumulative_sizes[d - 1]
        return self.datasets[d][idx - start]


def random_split(dataset, lengths, generator=None):
    """Split into non-overlapping Subsets of the given lengths (or fractions summing to 1)."""
    from ._random import draw_seed
    n = len(dataset)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        sizes = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        lengths = sizes
    if sum(lengths) != n:
        raise ValueError("Sum of input lengths does not equal the length of the input dataset!")
    perm = np.random.Generator(np.random.Philox(draw_seed(generator))).permutation(n).tolist()
    out, off = [], 0
    for length in lengths:
        out.append(Subset(dataset, perm[off:off + length]))
        off += length
    return out
