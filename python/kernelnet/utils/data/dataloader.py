"""DataLoader with PyTorch's arguments, a vectorised fast path and a background prefetch thread.

- Fast path: when the dataset is tensor-backed (TensorDataset, MNIST/FashionMNIST, Subsets of
  them) and the default collate is used, a batch is one gather ``data[indices]`` (plus batched
  transforms), not batch_size Python ``__getitem__`` calls and a stack.
- Prefetch: a background thread builds the next batches while the training step runs (kernels
  release the GIL), so a batch is ready when the step ends. ``prefetch_factor`` batches are
  kept ready (default 2); ``num_workers`` is accepted for compatibility and means the same thread.
- Determinism: every epoch draws one seed from ``generator`` (kernelnet's default generator when
  None), exactly as PyTorch draws its base seed; the shuffle order and every random transform of
  the epoch derive from it, so ``kernelnet.manual_seed(s)`` fixes the batches run to run.
"""
import collections.abc
import queue
import threading

import numpy as np

import kernelnet as _kn
from ._random import draw_seed
from .dataset import batch_path
from .sampler import BatchSampler, RandomSampler, SequentialSampler

_END = object()


class _Failure:
    def __init__(self, exc):
        self.exc = exc


def _stack(tensors):
    if all(str(t.device) == "cpu" for t in tensors):  # numpy stacks CPU samples in one pass
        return _kn.from_numpy(np.stack([t.numpy() for t in tensors]))
    return _kn.stack(tensors, 0)


def default_collate(batch):
    """Stack samples into a batch: tensors -> stacked tensor, numbers -> tensor, sequences and
    mappings collated element-wise (a list of (x, y) pairs gives [xs, ys]), as in PyTorch."""
    elem = batch[0]
    if isinstance(elem, _kn.Tensor):
        return _stack(batch)
    if isinstance(elem, np.ndarray):
        return _kn.from_numpy(np.stack(batch))
    if isinstance(elem, (bool, np.bool_)):
        return _kn.tensor(list(batch), dtype=_kn.bool)
    if isinstance(elem, (int, np.integer)):
        return _kn.tensor([int(b) for b in batch], dtype=_kn.int64)
    if isinstance(elem, (float, np.floating)):
        return _kn.tensor([float(b) for b in batch], dtype=_kn.float32)
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        return {k: default_collate([d[k] for d in batch]) for k in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(default_collate(s) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        n = len(elem)
        if any(len(e) != n for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return [default_collate(list(s)) for s in zip(*batch)]
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
                    f"found {type(elem).__name__}")


def default_convert(data):
    if isinstance(data, np.ndarray):
        return _kn.from_numpy(data)
    return data


class DataLoader:
    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 pin_memory_device="", in_order=True):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.timeout = timeout
        self.generator = generator
        self.prefetch_factor = 2 if prefetch_factor is None else max(1, int(prefetch_factor))
        self._default_sampler = sampler is None
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        self.sampler = sampler
        self._default_batching = batch_sampler is None and batch_size is not None
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_sampler = batch_sampler
        self._auto_collation = batch_sampler is not None
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if self._auto_collation else default_convert)
        self._fast = collate_fn is None and self._auto_collation and batch_path(dataset) is not None
        self.prefetch = True

    def __len__(self):
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return len(self.sampler)

    def _index_batches(self, rng):
        """All index batches of one epoch, computed up front in the calling thread."""
        if self._default_sampler and self._default_batching:
            n = len(self.dataset)
            order = rng.permutation(n) if isinstance(self.sampler, RandomSampler) else np.arange(n)
            bs = self.batch_size
            stop = (n // bs) * bs if self.drop_last else n
            return [order[i:i + bs] for i in range(0, stop, bs)]
        if self.batch_sampler is not None:
            return [np.asarray(b, dtype=np.int64) for b in self.batch_sampler]
        return list(iter(self.sampler))

    def __iter__(self):
        seed = draw_seed(self.generator)
        rng = np.random.Generator(np.random.Philox(seed))
        batches = self._index_batches(rng)
        transform_rng = np.random.Generator(np.random.Philox(key=seed, counter=[0, 0, 0, 1]))
        return _LoaderIter(self, batches, transform_rng)

    def _produce(self, b):
        if not self._auto_collation:
            return self.collate_fn(self.dataset[b])
        if self._fast:
            out = self.dataset._get_batch(b)
            if out is not None:
                return list(out)
        return self.collate_fn([self.dataset[int(i)] for i in b])


def _produce_with_rng(loader, b, rng):
    from ... import transforms as T
    T._set_thread_rng(rng)
    try:
        return loader._produce(b)
    finally:
        T._set_thread_rng(None)


def _prefetch_worker(loader, batches, rng, q, stop):
    """Background thread body. It holds no reference to the iterator, so an abandoned iterator
    is collected, its __del__ sets `stop`, and this thread ends."""
    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    try:
        for b in batches:
            if stop.is_set() or not put(_produce_with_rng(loader, b, rng)):
                return
        put(_END)
    except BaseException as ex:  # re-raised in the consuming thread
        put(_Failure(ex))


class _LoaderIter:
    def __init__(self, loader, batches, rng):
        self._loader = loader
        self._batches = batches
        self._rng = rng
        self._next = 0
        self._thread = None
        if loader.prefetch and len(batches) > 1:
            self._queue = queue.Queue(maxsize=loader.prefetch_factor)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=_prefetch_worker, name="kernelnet-dataloader", daemon=True,
                                            args=(loader, batches, rng, self._queue, self._stop))
            self._thread.start()

    def __iter__(self):
        return self

    def __len__(self):
        return len(self._batches)

    def __next__(self):
        if self._thread is None:
            if self._next >= len(self._batches):
                raise StopIteration
            b = self._batches[self._next]
            self._next += 1
            return _produce_with_rng(self._loader, b, self._rng)
        if self._next > len(self._batches):
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._next = len(self._batches) + 1
            self._thread.join()
            raise StopIteration
        if isinstance(item, _Failure):
            self._next = len(self._batches) + 1
            raise item.exc
        self._next += 1
        return item

    def close(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
