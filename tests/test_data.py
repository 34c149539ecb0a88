"""Datasets (IDX reader, MNIST/FashionMNIST search and errors), DataLoader (fast path, collate,
determinism, prefetch), random_split and transforms (batch path == per-sample path)."""
import gzip
import os
import struct

import numpy as np
import pytest

import kernelnet as kn
from kernelnet import datasets, transforms as T
from kernelnet.utils.data import DataLoader, Dataset, TensorDataset, random_split, Subset

FMNIST = "/usr/share/datasets/fashion-mnist"
have_fmnist = pytest.mark.skipif(not os.path.isfile(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")),
                                 reason="Fashion-MNIST not installed")


def write_idx(path, arr, code=0x08):
    arr = np.asarray(arr)
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    dt = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    data = header + arr.astype(dt).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


def make_mnist_dir(root, n=10, gz=False, name="MNIST", train=True):
    d = os.path.join(root, name, "raw")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    pre = "train" if train else "t10k"
    ext = ".gz" if gz else ""
    write_idx(os.path.join(d, f"{pre}-images-idx3-ubyte{ext}"), imgs)
    write_idx(os.path.join(d, f"{pre}-labels-idx1-ubyte{ext}"), labels)
    return imgs, labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader_synthetic(tmp_path, gz):
    a = np.arange(2 * 3 * 5, dtype=np.int32).reshape(2, 3, 5) - 7
    p = tmp_path / ("x.idx" + (".gz" if gz else ""))
    write_idx(p, a, code=0x0C)
    out = datasets.read_idx(p)
    assert out.dtype == np.int32 and np.array_equal(out, a)
    f = np.linspace(-1, 1, 6, dtype=np.float32)
    write_idx(tmp_path / "f.idx", f, code=0x0D)
    assert np.array_equal(datasets.read_idx(tmp_path / "f.idx"), f)


def test_idx_reader_rejects_bad_files(tmp_path):
    p = tmp_path / "bad.idx"
    p.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.read_idx(p)
    write_idx(p, np.zeros((4, 4), np.uint8))
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        datasets.read_idx(p)


@have_fmnist
def test_fashion_mnist_real_files():
    test = datasets.FashionMNIST("nonexistent-root", train=False)
    assert tuple(test.data.shape) == (10000, 28, 28) and len(test) == 10000
    assert test.targets.numpy().min() == 0 and test.targets.numpy().max() == 9
    assert np.bincount(test.targets.numpy()).tolist() == [1000] * 10
    train = datasets.FashionMNIST(None, train=True)
    assert tuple(train.data.shape) == (60000, 28, 28)
    assert train.paths[0].startswith(FMNIST)
    x, y = datasets.FashionMNIST(None, train=False, transform=T.ToTensor())[0]
    assert tuple(x.shape) == (1, 28, 28) and x.dtype == kn.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y == int(test.targets[0].item())


def test_mnist_from_root_raw_and_missing_error(tmp_path):
    imgs, labels = make_mnist_dir(str(tmp_path), gz=True)
    ds = datasets.MNIST(str(tmp_path), train=True)
    assert np.array_equal(ds.data.numpy(), imgs) and np.array_equal(ds.targets.numpy(), labels)
    with pytest.raises(FileNotFoundError) as ei:
        datasets.MNIST(str(tmp_path / "empty"), train=False)
    msg = str(ei.value)
    for place in [str(tmp_path / "empty"), os.path.join(str(tmp_path / "empty"), "MNIST", "raw"),
                  "/usr/share/datasets/mnist", os.path.join(os.path.expanduser("~"), ".cache", "kernelnet", "MNIST")]:
        assert place in msg
    assert "download=True" in msg


def test_dataloader_fast_path_equals_per_sample_path(tmp_path):
    make_mnist_dir(str(tmp_path), n=23)
    ds = datasets.MNIST(str(tmp_path), transform=T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.25,))]))
    kn.manual_seed(1)
    fast = [(x.numpy().copy(), y.numpy().copy()) for x, y in DataLoader(ds, batch_size=5, shuffle=True)]
    kn.manual_seed(1)
    slow_loader = DataLoader(ds, batch_size=5, shuffle=True, collate_fn=lambda b: kn.utils.data.default_collate(b))
    slow = [(x.numpy().copy(), y.numpy().copy()) for x, y in slow_loader]
    assert len(fast) == 5 and fast[-1][0].shape == (3, 1, 28, 28)
    for (a, b), (c, d) in zip(fast, slow):
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-6)
        assert np.array_equal(b, d)


def test_dataloader_honours_an_overridden_getitem():
    """The batch gather is only a shortcut for dataset[i]: a TensorDataset subclass that maps its
    samples (augmentation, label remapping), and Subsets of it, must be read through __getitem__."""
    from kernelnet.utils.gpu_loader import GPUDataLoader

    class Mapped(TensorDataset):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return x * 100, y + 1000

    x, y = kn.arange(8.0).reshape(4, 2), kn.arange(4)
    want = ([[0.0, 100.0], [200.0, 300.0]], [1000, 1001])
    for ds in (Mapped(x, y), Subset(Mapped(x, y), [0, 1, 2])):
        xb, yb = next(iter(DataLoader(ds, batch_size=2)))
        assert (xb.tolist(), yb.tolist()) == want
    xb, yb = next(iter(GPUDataLoader(Mapped(x, y), batch_size=2, device="cpu")))
    assert (xb.tolist(), yb.tolist()) == want
    # a plain TensorDataset (and a Subset of it) keeps the one-gather path
    assert kn.utils.data.dataset.batch_path(TensorDataset(x, y)) is not None
    assert kn.utils.data.dataset.batch_path(Subset(TensorDataset(x, y), [1])) is not None
    assert kn.utils.data.dataset.batch_path(Mapped(x, y)) is None


def test_dataloader_determinism_and_shuffling():
    X = kn.arange(100).reshape(100, 1).float()
    Y = kn.arange(100)
    ds = TensorDataset(X, Y)

    def order(seed=None, gen=None, **kw):
        if seed is not None:
            kn.manual_seed(seed)
        return np.concatenate([y.numpy() for _, y in DataLoader(ds, batch_size=7, shuffle=True, generator=gen, **kw)])

    a, b, c = order(0), order(0), order(1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert sorted(a.tolist()) == list(range(100))
    g1, g2 = kn.Generator().manual_seed(5), kn.Generator().manual_seed(5)
    assert np.array_equal(order(gen=g1), order(gen=g2))
    kn.manual_seed(0)
    loader = DataLoader(ds, batch_size=7, shuffle=True)
    e1 = np.concatenate([y.numpy() for _, y in loader])
    e2 = np.concatenate([y.numpy() for _, y in loader])
    assert not np.array_equal(e1, e2)  # a new order each epoch
    seq = np.concatenate([y.numpy() for _, y in DataLoader(ds, batch_size=7)])
    assert np.array_equal(seq, np.arange(100))
    dl = DataLoader(ds, batch_size=7, drop_last=True)
    assert len(dl) == 14 and sum(1 for _ in dl) == 14
    for xb, yb in DataLoader(ds, batch_size=8):
        assert np.array_equal(xb.numpy()[:, 0], yb.numpy().astype(np.float32))


def test_dataloader_generic_dataset_collate_and_errors():
    class Pairs(Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            if i == 7:
                raise KeyError("boom at 7")
            return {"x": np.full(3, i, np.float32), "y": i, "name": f"s{i}"}, float(i) / 2

    batches = DataLoader(Pairs(), batch_size=4)
    it = iter(batches)
    d, w = next(it)
    assert tuple(d["x"].shape) == (4, 3) and d["y"].dtype == kn.int64 and d["name"] == ["s0", "s1", "s2", "s3"]
    assert w.dtype == kn.float32 and np.allclose(w.numpy(), [0, 0.5, 1, 1.5])
    with pytest.raises(KeyError, match="boom at 7"):
        next(it)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(Pairs(), sampler=range(10), shuffle=True)


def test_dataloader_early_break_stops_prefetch_thread():
    import threading
    ds = TensorDataset(kn.zeros(1000, 2))
    before = threading.active_count()
    for _ in range(3):
        for i, _b in enumerate(DataLoader(ds, batch_size=2)):
            if i == 2:
                break
    import gc
    gc.collect()
    import time
    time.sleep(0.3)
    assert threading.active_count() <= before + 1


def test_random_split():
    ds = TensorDataset(kn.arange(10))
    kn.manual_seed(0)
    a, b = random_split(ds, [7, 3])
    assert len(a) == 7 and len(b) == 3
    assert sorted(a.indices + b.indices) == list(range(10))
    kn.manual_seed(0)
    a2, _ = random_split(ds, [0.7, 0.3])
    assert a2.indices == a.indices
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(ds, [5, 6])
    xs = next(iter(DataLoader(a, batch_size=7)))[0].numpy()
    assert sorted(xs.tolist()) == sorted(a.indices)


def test_transforms_to_tensor_normalize():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    x = T.ToTensor()(img)
    assert tuple(x.shape) == (1, 3, 4) and x.dtype == kn.float32
    np.testing.assert_allclose(x.numpy()[0], img / 255.0, rtol=1e-6)
    hwc = np.zeros((2, 3, 3), np.uint8)
    hwc[..., 1] = 255
    y = T.ToTensor()(hwc)
    assert tuple(y.shape) == (3, 2, 3) and y.numpy()[1].min() == 1.0 and y.numpy()[0].max() == 0.0
    n = T.Normalize((0.5, 0.0, 1.0), (0.5, 1.0, 2.0))(y)
    np.testing.assert_allclose(n.numpy()[:, 0, 0], [-1.0, 1.0, -0.5])


def test_random_transforms_batch_shapes_and_content():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (16, 1, 10, 12)).astype(np.float32)
    crop = T.RandomCrop(8, padding=2)
    out = crop._batch(imgs, np.random.Generator(np.random.Philox(0)))
    assert out.shape == (16, 1, 8, 8)
    padded = np.pad(imgs, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(16):  # every crop is a window of the padded image
        win = np.lib.stride_tricks.sliding_window_view(padded[i, 0], (8, 8))
        assert (win == out[i, 0]).all(axis=(2, 3)).any()
    flip = T.RandomHorizontalFlip(p=1.0)._batch(imgs, np.random.Generator(np.random.Philox(0)))
    assert np.array_equal(flip, imgs[..., ::-1])
    same = T.RandomHorizontalFlip(p=0.0)._batch(imgs, np.random.Generator(np.random.Philox(0)))
    assert np.array_equal(same, imgs)
    ident = T.RandomAffine(0)._batch(imgs, np.random.Generator(np.random.Philox(0)))
    assert np.array_equal(ident, imgs)
    rot = T.RandomAffine((90, 90))._batch(imgs[:, :, :10, :10], np.random.Generator(np.random.Philox(0)))
    assert np.array_equal(rot[:, 0], np.rot90(imgs[:, 0, :10, :10], k=-1, axes=(1, 2))) or \
        np.array_equal(rot[:, 0], np.rot90(imgs[:, 0, :10, :10], k=1, axes=(1, 2)))
    shifted = T.RandomAffine(0, translate=(0.5, 0.5))._batch(imgs, np.random.Generator(np.random.Philox(3)))
    assert shifted.shape == imgs.shape and (shifted == 0).any()
    # per-sample call on a uint8 raw image and on a tensor
    assert tuple(T.RandomCrop(20, padding=4)(np.zeros((28, 28), np.uint8)).shape) == (20, 20)
    t = T.Compose([T.ToTensor(), T.RandomAffine(10, translate=(0.1, 0.1)), T.RandomHorizontalFlip()])
    assert tuple(t(np.zeros((28, 28), np.uint8)).shape) == (1, 28, 28)


def test_random_transform_determinism_in_loader(tmp_path):
    make_mnist_dir(str(tmp_path), n=20)
    tf = T.Compose([T.ToTensor(), T.RandomCrop(28, padding=3), T.RandomAffine(15)])
    ds = datasets.MNIST(str(tmp_path), transform=tf)

    def run():
        kn.manual_seed(11)
        return np.concatenate([x.numpy() for x, _ in DataLoader(ds, batch_size=6, shuffle=True)])

    assert np.array_equal(run(), run())


def test_load_digits():
    X, y = datasets.load_digits(return_X_y=True)
    assert tuple(X.shape) == (1797, 64) and X.dtype == kn.float32 and y.dtype == kn.int64
    ds = datasets.load_digits()
    x0, y0 = ds[0]
    assert tuple(x0.shape) == (1, 8, 8) and int(y0.item()) == int(y[0].item())


def test_same_seed_same_weights_batches_and_losses(tmp_path):
    """Issue 9, determinism: a seed fixes initial weights, batch order, augmentation and dropout."""
    import kernelnet.nn as nn
    import kernelnet.optim as optim
    make_mnist_dir(str(tmp_path), n=40)

    def run():
        kn.manual_seed(123)
        ds = datasets.MNIST(str(tmp_path), transform=T.Compose([T.ToTensor(), T.RandomCrop(28, padding=2)]))
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))
        opt = optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for x, y in DataLoader(ds, batch_size=8, shuffle=True):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
        return losses, model.state_dict()

    (l1, s1), (l2, s2) = run(), run()
    assert l1 == l2 and len(l1) == 5
    for k in s1:
        assert np.array_equal(s1[k].numpy(), s2[k].numpy())
