"""Datasets by name for the command line: digits, fashion-mnist, mnist, or a path to an .npz file
(arrays X and y, optionally X_test and y_test) or to a folder of MNIST-style IDX files.

Images are returned as [C, H, W] float32 in [0, 1] (digits: [1, 8, 8] scaled from 0..16), so
every zoo model (which flattens when it needs to) takes every image dataset.
"""
import glob
import os
from dataclasses import dataclass, field

import numpy as np

BUILTIN = ("digits", "fashion-mnist", "mnist")


class DataError(ValueError):
    """A dataset that cannot be found or read (reported as one line by the CLI)."""


@dataclass
class DataSource:
    name: str
    train: object
    test: object
    num_classes: int
    input_shape: tuple
    class_names: list = field(default_factory=list)
    image_shape: tuple = None   # (H, W) for plotting, None for tabular data
    test_fraction: float = 0.0  # how much of train to hold out as test when there is no test set


def _kn():
    import kernelnet
    return kernelnet


def _images_dataset():
    kn = _kn()

    class ImageArrayDataset(kn.utils.data.Dataset):
        """uint8 (or float) images [N, C, H, W] kept as they are; scaled to float32 per batch."""

        def __init__(self, images, labels, scale):
            self.images, self.labels, self.scale = images, labels.astype(np.int64), scale

        def __len__(self):
            return self.images.shape[0]

        def _x(self, a):
            return kn.from_numpy(np.ascontiguousarray(a, dtype=np.float32) * np.float32(self.scale))

        def __getitem__(self, i):
            return self._x(self.images[i]), int(self.labels[i])

        def _get_batch(self, idx):
            return self._x(self.images[idx]), kn.from_numpy(self.labels[idx])

        @property
        def targets(self):
            return kn.from_numpy(self.labels)

    return ImageArrayDataset


def _labels_to_classes(y, what):
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{what}: labels y must be one-dimensional, got shape {y.shape}")
    values = np.unique(y)
    if y.dtype.kind in "iu" and values.size and values.min() >= 0 and values.max() < 2 * values.size + 10:
        return y.astype(np.int64), [str(v) for v in range(int(values.max()) + 1)]
    # arbitrary labels (strings, sparse integers): index them
    return np.searchsorted(values, y).astype(np.int64), [str(v) for v in values]


def _from_arrays(name, X, y, X_test=None, y_test=None):
    kn = _kn()
    X = np.asarray(X)
    if X.ndim < 2 or X.shape[0] != np.asarray(y).shape[0]:
        raise DataError(f"{name}: X must be [N, features] or [N, H, W] images with one label per row; got X "
                        f"{X.shape} and y {np.asarray(y).shape}")
    if y_test is not None:
        y_all, names = _labels_to_classes(np.concatenate([np.asarray(y), np.asarray(y_test)]), name)
        y, y_test = y_all[:len(y)], y_all[len(y):]
    else:
        y, names = _labels_to_classes(y, name)
    scale = 1.0 / 255.0 if X.dtype == np.uint8 else 1.0
    if X.ndim == 2:
        make = lambda A, b: kn.utils.data.TensorDataset(  # noqa: E731
            kn.from_numpy(np.ascontiguousarray(A, dtype=np.float32) * np.float32(scale)), kn.from_numpy(b))
        shape, img = (X.shape[1],), None
    else:
        if X.ndim == 3:
            X = X[:, None]
            X_test = None if X_test is None else np.asarray(X_test)[:, None]
        Cls = _images_dataset()
        make = lambda A, b: Cls(np.asarray(A), b, scale)  # noqa: E731
        shape, img = tuple(X.shape[1:]), tuple(X.shape[2:])
    train = make(X, y)
    test = make(X_test, y_test) if X_test is not None else None
    return DataSource(name, train, test, len(names), shape, names, img, 0.0 if test is not None else 0.15)


def _load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as ex:
        raise DataError(f"cannot read {path!r} as an .npz file: {str(ex).splitlines()[0] if str(ex) else ex}") from ex
    X = arrays.get("X", arrays.get("X_train"))
    y = arrays.get("y", arrays.get("y_train"))
    if X is None or y is None:
        raise DataError(f"{path}: an .npz dataset needs arrays 'X' and 'y' (or X_train/y_train); it has "
                        f"{sorted(arrays) or 'none'}")
    return _from_arrays(os.path.basename(path), X, y, arrays.get("X_test"), arrays.get("y_test"))


def _find_one(folder, patterns):
    for p in patterns:
        hits = sorted(glob.glob(os.path.join(folder, p)))
        if hits:
            return hits[0]
    return None


def _load_idx_folder(path):
    from kernelnet.datasets import read_idx
    tri = _find_one(path, ["*train-images*idx3*", "*train-images*"])
    trl = _find_one(path, ["*train-labels*idx1*", "*train-labels*"])
    tei = _find_one(path, ["*t10k-images*", "*test-images*"])
    tel = _find_one(path, ["*t10k-labels*", "*test-labels*"])
    if tri is None or trl is None:
        raise DataError(f"{path}: no IDX training files found (expected train-images-idx3-ubyte[.gz] and "
                        "train-labels-idx1-ubyte[.gz])")
    try:
        X, y = read_idx(tri), read_idx(trl)
        Xt = yt = None
        if tei and tel:
            Xt, yt = read_idx(tei), read_idx(tel)
    except ValueError as ex:
        raise DataError(str(ex).splitlines()[0]) from ex
    return _from_arrays(os.path.basename(os.path.normpath(path)), X, y, Xt, yt)


def _load_digits():
    kn = _kn()
    from sklearn.datasets import load_digits
    d = load_digits()
    X = (d.data.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    ds = kn.utils.data.TensorDataset(kn.from_numpy(np.ascontiguousarray(X)),
                                     kn.from_numpy(d.target.astype(np.int64)))
    return DataSource("digits", ds, None, 10, (1, 8, 8), [str(i) for i in range(10)], (8, 8), 0.15)


def _load_mnist_like(cls_name, name):
    kn = _kn()
    cls = getattr(kn.datasets, cls_name)
    T = kn.transforms
    try:
        train = cls(None, train=True, transform=T.ToTensor())
        test = cls(None, train=False, transform=T.ToTensor())
    except FileNotFoundError as ex:
        lines = str(ex).splitlines()
        where = ", ".join(s.strip() for s in lines[1:] if s.startswith("  "))
        raise DataError(f"dataset {name!r}: IDX files not found (looked in {where}); no download is attempted "
                        "- copy the files there or pass --dataset FOLDER") from ex
    h, w = train._images.shape[1:] if hasattr(train, "_images") else (28, 28)
    return DataSource(name, train, test, len(cls.classes), (1, h, w), list(cls.classes), (h, w), 0.0)


def load_data(spec):
    """``spec``: 'digits', 'fashion-mnist', 'mnist', or a path (.npz file or IDX folder)."""
    key = str(spec).lower()
    if key == "digits":
        return _load_digits()
    if key in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return _load_mnist_like("FashionMNIST", "fashion-mnist")
    if key == "mnist":
        return _load_mnist_like("MNIST", "mnist")
    path = os.path.expanduser(str(spec))
    if os.path.isdir(path):
        return _load_idx_folder(path)
    if os.path.isfile(path):
        if path.endswith(".npz"):
            return _load_npz(path)
        raise DataError(f"dataset file {path!r}: only .npz files (arrays X, y) or IDX folders are read")
    raise DataError(f"unknown dataset {spec!r}: choose digits, fashion-mnist, mnist, or give a path to an .npz "
                    "file (arrays X and y) or a folder of IDX files")


def limit(ds, n):
    """The first n samples of ds (quick runs)."""
    if n is None or n >= len(ds):
        return ds
    return _kn().utils.data.Subset(ds, list(range(int(n))))
