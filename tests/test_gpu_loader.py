"""kernelnet.utils.gpu_loader.GPUDataLoader: batches drawn on the device from a resident dataset.
Runs on the CPU backend everywhere and on CUDA when a GPU is visible."""
import numpy as np
import pytest

import kernelnet as kn
from kernelnet.utils.gpu_loader import GPUDataLoader

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not kn.cuda.is_available(), reason="no CUDA GPU visible"))]


def data(n=53):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 2, 3)).astype(np.float32)
    x[:, 0, 0] = np.arange(n)  # row id, to check which rows a batch holds
    y = rng.integers(0, 10, n).astype(np.int64)
    return x, y


@pytest.mark.parametrize("dev", DEVICES)
def test_sequential_batches(dev):
    x, y = data()
    loader = GPUDataLoader((x, y), batch_size=10, shuffle=False, device=dev)
    assert len(loader) == 6
    got = list(loader)
    assert [b[0].shape[0] for b in got] == [10] * 5 + [3]
    assert got[0][0].device.type == dev and got[0][1].dtype == kn.int64
    np.testing.assert_array_equal(np.concatenate([b[0].cpu().numpy() for b in got]), x)
    np.testing.assert_array_equal(np.concatenate([b[1].cpu().numpy() for b in got]), y)


@pytest.mark.parametrize("dev", DEVICES)
def test_shuffle_is_a_permutation_and_pairs_stay_together(dev):
    x, y = data()
    kn.manual_seed(0)
    loader = GPUDataLoader((kn.tensor(x), kn.tensor(y)), batch_size=8, shuffle=True, device=dev, drop_last=True)
    assert len(loader) == 6
    epochs = []
    for _ in range(2):
        xs, ys = zip(*[(a.cpu().numpy(), b.cpu().numpy()) for a, b in loader])
        xs, ys = np.concatenate(xs), np.concatenate(ys)
        ids = xs[:, 0, 0].astype(np.int64)
        assert len(ids) == 48 and len(set(ids.tolist())) == 48  # no repeats, drop_last honoured
        np.testing.assert_array_equal(xs, x[ids])
        np.testing.assert_array_equal(ys, y[ids])
        epochs.append(ids)
    assert not np.array_equal(epochs[0], epochs[1])  # a fresh order each epoch


def test_map_style_dataset_and_errors():
    class DS:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full(3, i, np.float32), i

    (xb, yb), = list(GPUDataLoader(DS(), batch_size=5, device="cpu"))
    np.testing.assert_array_equal(yb.numpy(), np.arange(5))
    np.testing.assert_array_equal(xb.numpy()[:, 1], np.arange(5))
    with pytest.raises(ValueError, match="same first dimension"):
        GPUDataLoader((np.zeros(3), np.zeros(4)), device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        GPUDataLoader((np.zeros(3),), batch_size=0, device="cpu")
