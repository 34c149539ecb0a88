"""Image transforms with torchvision's names and arguments, vectorised over batches.

Each transform works per sample when called (``t(img)``, as torchvision's do when used as a
dataset transform) and per batch internally: the DataLoader's fast path gathers a batch of raw
uint8 images with one index op and runs the whole Compose once on the [N, ...] array.

Layouts: raw images are [H, W] or [H, W, C] uint8 (what a dataset stores); after ToTensor,
[C, H, W] float32 in [0, 1]. Random transforms draw from the DataLoader's per-epoch stream when
running inside one, else from kernelnet's default generator, so a seed fixes them.
"""
import math
import numbers
import threading

import numpy as np

import kernelnet as _kn

__all__ = ["Compose", "ToTensor", "Normalize", "RandomCrop", "RandomHorizontalFlip", "RandomVerticalFlip",
           "RandomAffine", "Lambda", "Pad"]

_local = threading.local()


def _set_thread_rng(rng):
    """Used by the DataLoader: random transforms in this thread draw from ``rng`` (None: default)."""
    _local.rng = rng


def _rng():
    rng = getattr(_local, "rng", None)
    if rng is not None:
        return rng
    from .utils.data._random import draw_seed
    return np.random.Generator(np.random.Philox(draw_seed(None)))


# ----------------------------------------------------------------------------- conversions
def _sample_to_numpy(img):
    """(array, kind) for one sample: kind says how to convert a result back."""
    if isinstance(img, _kn.Tensor):
        return img.detach().cpu().numpy(), "tensor"
    if isinstance(img, np.ndarray):
        return img, "numpy"
    if type(img).__module__.startswith("PIL."):
        return np.asarray(img), "numpy"
    raise TypeError(f"transform: expected a kernelnet.Tensor, numpy array or PIL image, got {type(img).__name__}")


def _from_numpy_like(arr, kind):
    return _kn.from_numpy(np.ascontiguousarray(arr)) if kind == "tensor" else arr


def _to_tensor_out(x):
    return _kn.from_numpy(np.ascontiguousarray(x))


def _batchable(t):
    return getattr(t, "_batchable", False)


def _apply_batch(t, x):
    return t._batch(x, _rng())


def _to_nchw(x):
    """Canonical [N, C, H, W] view of a batch plus the function that restores the input layout.
    [N,H,W] -> C=1; uint8 [N,H,W,C] (raw images) -> channels moved first; else already NCHW."""
    if x.ndim == 3:
        return x[:, None], lambda y: y[:, 0]
    if x.ndim == 4 and x.dtype == np.uint8:
        return x.transpose(0, 3, 1, 2), lambda y: y.transpose(0, 2, 3, 1)
    if x.ndim == 4:
        return x, lambda y: y
    raise ValueError(f"transform: expected a batch of images [N,H,W], [N,H,W,C] or [N,C,H,W], got shape {x.shape}")


class _Transform:
    _batchable = True

    def __call__(self, img):
        arr, kind = _sample_to_numpy(img)
        out = self._batch(arr[None], _rng())
        return _from_numpy_like(out[0], kind)

    def _batch(self, x, rng):
        raise NotImplementedError

    def __repr__(self):
        return self.__class__.__name__ + "()"


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    @property
    def _batchable(self):
        return all(_batchable(t) for t in self.transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def _batch(self, x, rng):
        for t in self.transforms:
            x = t._batch(x, rng)
        return x

    def __repr__(self):
        return self.__class__.__name__ + "(" + "".join(f"\n    {t}" for t in self.transforms) + "\n)"


class Lambda:
    """A user function, applied per sample (not batchable)."""
    _batchable = False

    def __init__(self, lambd):
        if not callable(lambd):
            raise TypeError(f"Argument lambd should be callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self):
        return self.__class__.__name__ + "()"


class ToTensor(_Transform):
    """uint8 [H,W] or [H,W,C] -> float32 [C,H,W] scaled to [0,1]; float arrays keep their values.
    kernelnet has no uint8 dtype, so integer tensors (int64 images) are scaled by 1/255 too."""

    def __call__(self, img):
        arr, _ = _sample_to_numpy(img)
        if arr.ndim not in (2, 3):
            raise ValueError(f"ToTensor: expected an image [H,W] or [H,W,C], got shape {arr.shape}")
        return _to_tensor_out(self._batch(arr[None], None)[0])

    def _batch(self, x, rng):
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        else:
            raise ValueError(f"ToTensor: expected a batch [N,H,W] or [N,H,W,C], got shape {x.shape}")
        if x.dtype == np.uint8 or np.issubdtype(x.dtype, np.integer):
            return np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0)
        return np.ascontiguousarray(x, dtype=np.float32)


class Normalize(_Transform):
    """(x - mean[c]) / std[c] on float [C,H,W] images."""

    def __init__(self, mean, std, inplace=False):
        self.mean = list(mean) if isinstance(mean, (list, tuple)) else [mean]
        self.std = list(std) if isinstance(std, (list, tuple)) else [std]
        if any(s == 0 for s in self.std):
            raise ValueError(f"Normalize: std evaluated to zero after conversion to float32 ({self.std})")
        self.inplace = inplace

    def _batch(self, x, rng):
        if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"Normalize: expected float images [C,H,W] (apply ToTensor first), got batch shape "
                            f"{x.shape} dtype {x.dtype}")
        c = x.shape[1]
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        if mean.size not in (1, c) or std.size not in (1, c):
            raise ValueError(f"Normalize: {mean.size} means / {std.size} stds for {c} channels")
        return ((x - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)).astype(np.float32)

    def __repr__(self):
        return f"{self.__class__.__name__}(mean={self.mean}, std={self.std})"


def _pad_amounts(padding):
    if isinstance(padding, numbers.Number):
        p = int(padding)
        return p, p, p, p
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        return padding[0], padding[1], padding[0], padding[1]
    if len(padding) == 4:
        return padding
    raise ValueError(f"padding must be an int or a 2- or 4-element sequence, got {padding}")


_NP_PAD_MODE = {"constant": "constant", "edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}


def _pad_nchw(x, left, top, right, bottom, fill, mode):
    if mode not in _NP_PAD_MODE:
        raise ValueError(f"padding_mode should be one of {sorted(_NP_PAD_MODE)}, got {mode!r}")
    width = ((0, 0), (0, 0), (top, bottom), (left, right))
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=fill)
    return np.pad(x, width, mode=_NP_PAD_MODE[mode])


class Pad(_Transform):
    def __init__(self, padding, fill=0, padding_mode="constant"):
        self.padding = padding
        self.fill = fill
        self.padding_mode = padding_mode

    def _batch(self, x, rng):
        y, back = _to_nchw(x)
        return back(_pad_nchw(y, *_pad_amounts(self.padding), self.fill, self.padding_mode))

    def __repr__(self):
        return f"{self.__class__.__name__}(padding={self.padding}, fill={self.fill}, padding_mode={self.padding_mode})"


class RandomCrop(_Transform):
    """Pad (optional), then crop ``size`` at a random position, independently per image."""

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant"):
        self.size = (int(size), int(size)) if isinstance(size, numbers.Number) else tuple(int(s) for s in size)
        self.padding = padding
        self.pad_if_needed = pad_if_needed
        self.fill = fill
        self.padding_mode = padding_mode

    def _batch(self, x, rng):
        y, back = _to_nchw(x)
        if self.padding is not None:
            y = _pad_nchw(y, *_pad_amounts(self.padding), self.fill, self.padding_mode)
        th, tw = self.size
        H, W = y.shape[2], y.shape[3]
        if self.pad_if_needed and (H < th or W < tw):
            ph, pw = max(th - H, 0), max(tw - W, 0)
            y = _pad_nchw(y, pw, ph, pw, ph, self.fill, self.padding_mode)
            H, W = y.shape[2], y.shape[3]
        if H < th or W < tw:
            raise ValueError(f"RandomCrop: required crop size {(th, tw)} is larger than input image size {(H, W)}")
        n = y.shape[0]
        oy = rng.integers(0, H - th + 1, size=n)
        ox = rng.integers(0, W - tw + 1, size=n)
        # one gather for the whole batch: rows oy+[0,th), cols ox+[0,tw) per image
        rows = (oy[:, None] + np.arange(th))[:, None, :, None]
        cols = (ox[:, None] + np.arange(tw))[:, None, None, :]
        out = y[np.arange(n)[:, None, None, None], np.arange(y.shape[1])[None, :, None, None], rows, cols]
        return back(out)

    def __repr__(self):
        return f"{self.__class__.__name__}(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip(_Transform):
    def __init__(self, p=0.5):
        self.p = p

    def _batch(self, x, rng):
        y, back = _to_nchw(x)
        flip = rng.random(y.shape[0]) < self.p
        y = y.copy()
        y[flip] = y[flip][..., ::-1]
        return back(y)

    def __repr__(self):
        return f"{self.__class__.__name__}(p={self.p})"


class RandomVerticalFlip(RandomHorizontalFlip):
    def _batch(self, x, rng):
        y, back = _to_nchw(x)
        flip = rng.random(y.shape[0]) < self.p
        y = y.copy()
        y[flip] = y[flip][..., ::-1, :]
        return back(y)


def _inverse_affine(angle, tx, ty, scale, shear_x, shear_y):
    """Inverse of rotate/scale/shear then translate, about the image centre (torchvision's
    _get_inverse_affine_matrix with centre 0 in centred coordinates). Arrays of length N."""
    rot = np.radians(angle)
    sx, sy = np.radians(shear_x), np.radians(shear_y)
    a = np.cos(rot - sy) / np.cos(sy)
    b = -np.cos(rot - sy) * np.tan(sx) / np.cos(sy) - np.sin(rot)
    c = np.sin(rot - sy) / np.cos(sy)
    d = -np.sin(rot - sy) * np.tan(sx) / np.cos(sy) + np.cos(rot)
    m0, m1, m3, m4 = d / scale, -b / scale, -c / scale, a / scale
    m2 = m0 * (-tx) + m1 * (-ty)
    m5 = m3 * (-tx) + m4 * (-ty)
    return m0, m1, m2, m3, m4, m5


class RandomAffine(_Transform):
    """Random rotation (degrees), translation (fractions of width/height), scale and shear,
    nearest-neighbour sampling, ``fill`` outside the source image (torchvision's parameters)."""

    def __init__(self, degrees, translate=None, scale=None, shear=None, interpolation=None, fill=0, center=None):
        if isinstance(degrees, numbers.Number):
            if degrees < 0:
                raise ValueError("If degrees is a single number, it must be positive.")
            degrees = (-float(degrees), float(degrees))
        self.degrees = tuple(float(d) for d in degrees)
        if translate is not None:
            if len(translate) != 2 or not all(0.0 <= t <= 1.0 for t in translate):
                raise ValueError("translate should be a sequence of two values between 0 and 1")
        self.translate = translate
        if scale is not None and (len(scale) != 2 or any(s <= 0 for s in scale)):
            raise ValueError("scale should be a sequence of two positive values")
        self.scale = scale
        if shear is not None:
            if isinstance(shear, numbers.Number):
                shear = (-float(shear), float(shear), 0.0, 0.0)
            elif len(shear) == 2:
                shear = (float(shear[0]), float(shear[1]), 0.0, 0.0)
            shear = tuple(float(s) for s in shear)
        self.shear = shear
        if interpolation not in (None, "nearest", 0) and str(interpolation).lower().find("nearest") < 0:
            raise NotImplementedError("RandomAffine: only nearest-neighbour interpolation is implemented")
        self.fill = fill
        if center is not None:
            raise NotImplementedError("RandomAffine: only rotation about the image centre is implemented")
        self.center = center

    def _batch(self, x, rng):
        y, back = _to_nchw(x)
        n, c, H, W = y.shape
        angle = rng.uniform(self.degrees[0], self.degrees[1], size=n)
        if self.translate is not None:
            mx, my = self.translate[0] * W, self.translate[1] * H
            tx = np.round(rng.uniform(-mx, mx, size=n))
            ty = np.round(rng.uniform(-my, my, size=n))
        else:
            tx = ty = np.zeros(n)
        sc = rng.uniform(self.scale[0], self.scale[1], size=n) if self.scale is not None else np.ones(n)
        if self.shear is not None:
            shx = rng.uniform(self.shear[0], self.shear[1], size=n)
            shy = rng.uniform(self.shear[2], self.shear[3], size=n) if self.shear[2:] != (0.0, 0.0) else np.zeros(n)
        else:
            shx = shy = np.zeros(n)
        m0, m1, m2, m3, m4, m5 = (v[:, None, None] for v in _inverse_affine(angle, tx, ty, sc, shx, shy))
        xo = (np.arange(W) - (W - 1) / 2.0)[None, None, :]
        yo = (np.arange(H) - (H - 1) / 2.0)[None, :, None]
        xi = np.rint(m0 * xo + m1 * yo + m2 + (W - 1) / 2.0).astype(np.int64)
        yi = np.rint(m3 * xo + m4 * yo + m5 + (H - 1) / 2.0).astype(np.int64)
        valid = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
        flat = np.where(valid, yi * W + xi, 0).reshape(n, 1, H * W)
        src = y.reshape(n, c, H * W)
        out = np.take_along_axis(src, np.broadcast_to(flat, (n, c, H * W)), axis=2).reshape(n, c, H, W)
        out = np.where(valid[:, None], out, np.asarray(self.fill, dtype=y.dtype))
        return back(out.astype(y.dtype, copy=False))

    def __repr__(self):
        s = f"{self.__class__.__name__}(degrees={list(self.degrees)}"
        if self.translate is not None:
            s += f", translate={self.translate}"
        if self.scale is not None:
            s += f", scale={self.scale}"
        if self.shear is not None:
            s += f", shear={list(self.shear)}"
        return s + ")"
