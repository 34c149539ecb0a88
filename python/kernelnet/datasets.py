"""Datasets: MNIST / FashionMNIST from IDX files (raw or .gz), and scikit-learn's digits.

Signatures follow torchvision: ``FashionMNIST(root, train=True, transform=None,
target_transform=None, download=False)``. Files are looked for, in order, in ``root``,
``root/<Name>/raw``, ``root/<Name>``, the Debian dataset folder (``/usr/share/datasets/...``)
and ``~/.cache/kernelnet/<Name>``; a missing dataset raises FileNotFoundError listing every
place looked. ``download=True`` fetches into ``root/<Name>/raw`` only when asked.

The images stay one uint8 array, so a DataLoader gathers a whole batch with one index op and
runs batchable transforms once per batch (see utils/data/dataloader.py).
"""
import gzip
import os
import struct

import numpy as np

import kernelnet as _kn
from .utils.data.dataset import Dataset

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path):
    """Read an IDX file (raw or gzip-compressed) into a numpy array (native byte order)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as ex:
        raise ValueError(f"read_idx: cannot read {path}: {ex}") from ex
    if len(data) < 4:
        raise ValueError(f"read_idx: {path} is too short to be an IDX file ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_DTYPES:
        raise ValueError(f"read_idx: {path} is not an IDX file (magic bytes {data[:4].hex()})")
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"read_idx: {path} is truncated inside its header")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - 4 - 4 * ndim
    if payload != expected:
        raise ValueError(f"read_idx: {path}: header says shape {tuple(shape)} ({expected} bytes of data) but "
                         f"the file holds {payload} bytes (truncated or corrupted)")
    arr = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True) if dtype.itemsize > 1 else arr.copy()


class MNIST(Dataset):
    """MNIST digits: 60000 training / 10000 test images, 28x28 uint8, labels 0..9."""

    base_folder_name = None  # class name unless overridden
    debian_dirs = ("/usr/share/datasets/mnist",)
    mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
               "http://yann.lecun.com/exdb/mnist/")
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six",
               "7 - seven", "8 - eight", "9 - nine"]
    _files = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        self.root = os.path.expanduser(os.fspath(root)) if root is not None else None
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        places = self._search_places()
        found = self._find(places)
        if found is None and download:
            self.download()
            found = self._find(places)
        if found is None:
            names = ", ".join(n + "[.gz]" for n in self._files[train])
            lines = "\n  ".join(places)
            hint = "" if download else "\nPass download=True to fetch it (needs network access)."
            raise FileNotFoundError(f"{self._name()}: dataset files not found ({names}). Looked in:\n  {lines}{hint}")
        img_path, lbl_path = found
        images = read_idx(img_path)
        labels = read_idx(lbl_path)
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"{self._name()}: {img_path} has shape {images.shape} and {lbl_path} has shape "
                             f"{labels.shape}; expected [N, H, W] images and [N] labels")
        self._images = images                      # uint8 [N, H, W]
        self._labels = labels.astype(np.int64)     # int64 [N]
        self._data_t = None
        self._targets_t = None
        self.paths = found

    @classmethod
    def _name(cls):
        return cls.base_folder_name or cls.__name__

    def _search_places(self):
        name = self._name()
        places = []
        if self.root is not None:
            places += [self.root, os.path.join(self.root, name, "raw"), os.path.join(self.root, name)]
        places += list(self.debian_dirs)
        places.append(os.path.join(os.path.expanduser("~"), ".cache", "kernelnet", name))
        return places

    def _find(self, places):
        for d in places:
            hit = []
            for stem in self._files[self.train]:
                p = next((os.path.join(d, stem + ext) for ext in ("", ".gz")
                          if os.path.isfile(os.path.join(d, stem + ext))), None)
                hit.append(p)
            if all(hit):
                return tuple(hit)
        return None

    def download(self):
        import urllib.request
        if self.root is None:
            raise ValueError(f"{self._name()}: download=True needs a root folder")
        raw = os.path.join(self.root, self._name(), "raw")
        os.makedirs(raw, exist_ok=True)
        errors = []
        for stem in self._files[self.train]:
            dest = os.path.join(raw, stem + ".gz")
            if os.path.isfile(dest):
                continue
            for mirror in self.mirrors:
                url = mirror + stem + ".gz"
                try:
                    tmp = dest + ".part"
                    with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as out:
                        out.write(r.read())
                    os.replace(tmp, dest)
                    break
                except OSError as ex:
                    errors.append(f"{url}: {ex}")
            else:
                raise RuntimeError(f"{self._name()}: download failed (no network?):\n  " + "\n  ".join(errors))

    # torchvision exposes .data (uint8 [N,H,W]) and .targets (int64 [N]) as tensors
    @property
    def data(self):
        if self._data_t is None:
            self._data_t = _kn.from_numpy(self._images)
        return self._data_t

    @property
    def targets(self):
        if self._targets_t is None:
            self._targets_t = _kn.from_numpy(self._labels)
        return self._targets_t

    @property
    def class_to_idx(self):
        return {c: i for i, c in enumerate(self.classes)}

    def __len__(self):
        return self._images.shape[0]

    def __getitem__(self, index):
        # torchvision hands transforms a PIL image; the closest raw image here is the uint8 [H, W]
        # numpy array (what np.asarray(pil_image) gives). Without a transform: an int64 tensor.
        img = self._images[index]
        target = int(self._labels[index])
        if self.transform is not None:
            img = self.transform(img)
        else:
            img = _kn.from_numpy(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def _get_batch(self, indices):
        """Whole batch at once: one gather, transforms applied per batch when they support it.
        Returns None when a per-sample path is needed (e.g. a user-defined transform)."""
        from . import transforms as T
        if self.target_transform is not None:
            return None
        imgs = self._images[indices]
        if self.transform is not None:
            if not T._batchable(self.transform):
                return None
            x = T._apply_batch(self.transform, imgs)
        else:
            x = imgs
        return T._to_tensor_out(x), _kn.from_numpy(self._labels[indices])

    def __repr__(self):
        head = "Dataset " + self.__class__.__name__
        body = [f"Number of datapoints: {len(self)}", f"Root location: {self.root}",
                f"Split: {'Train' if self.train else 'Test'}"]
        if self.transform is not None:
            body.append("StandardTransform\nTransform: " + repr(self.transform).replace("\n", "\n" + " " * 4))
        return "\n".join([head] + [" " * 4 + line for line in body])


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST: same layout as MNIST, 10 clothing classes."""

    debian_dirs = ("/usr/share/datasets/fashion-mnist",)
    mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]


def load_digits(return_X_y=False):
    """scikit-learn's 8x8 digits (1797 images) as kernelnet tensors: X float32 [N, 64] in [0, 16],
    y int64 [N]. With return_X_y=False returns a TensorDataset of (X reshaped [N,1,8,8], y)."""
    from sklearn.datasets import load_digits as _sk_digits
    from .utils.data import TensorDataset
    d = _sk_digits()
    X = _kn.from_numpy(d.data.astype(np.float32))
    y = _kn.from_numpy(d.target.astype(np.int64))
    if return_X_y:
        return X, y
    return TensorDataset(X.reshape(-1, 1, 8, 8), y)
