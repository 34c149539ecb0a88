"""The native MLP engine behind kernelnet.sklearn's estimators.

Parameters live on the device in one flat float32 vector laid out as scikit-learn's `_pack` does:
[W_0, ..., W_{L-1}, b_0, ..., b_{L-1}] with W_i of shape (fan_in, fan_out) row-major. The flat
layout lets one fused native call update every parameter (sk_adam_step / sk_sgd_step), and the
coefficients come first so the L2 penalty applies to a prefix.

A mini-batch step is: gather rows (index_select), per layer one GEMM with the bias (and ReLU) in
its epilogue, the output activation + loss + delta in one call (sk_output_loss), then per layer
the weight-gradient GEMM, a column sum for the intercept gradient, the delta GEMM and the
activation derivative (sk_act_backward); finally the optimizer step. Everything runs in
kernelnet's kernels through `backend(device)`, so the same code drives the CPU and CUDA modules.
"""
import numpy as np

from .._device import backend
from .. import _dtype as D
from ..tensor import Tensor

ACT_CODES = {"identity": 0, "logistic": 1, "tanh": 2, "relu": 3}
OUT_CODES = {"identity": 0, "logistic": 1, "softmax": 2, "exp": 3}
_R_SUM = 0
_BIAS_NONE, _BIAS_COL = 0, 1
_GEMM_RELU = 1


def empty(shape, dev, dtype=D.float32):
    return Tensor._empty(tuple(int(s) for s in shape), dtype, dev)


def to_device(arr, dev, dtype=np.float32):
    """A contiguous device copy of a host array, converted to float32 (or int64) in one pass."""
    arr = np.asarray(arr)
    t = empty(arr.shape, dev, D.float32 if dtype == np.float32 else D.int64)
    if t.numel():
        if dev.type == "cpu":
            # convert straight into the tensor's storage: no float32 temporary of the whole matrix
            np.copyto(t._storage[:arr.size].reshape(arr.shape), arr, casting="unsafe")
        else:
            from .. import ops
            t = ops.tensor(np.ascontiguousarray(arr, dtype=dtype), device=dev)
    return t


def to_host(t):
    return np.array(t.detach().cpu().numpy(), copy=True)


class MLPEngine:
    """A device-resident MLP with scikit-learn's parametrisation and training step."""

    def __init__(self, layer_units, activation, out_activation, dev):
        self.units = [int(u) for u in layer_units]
        self.L = len(self.units) - 1
        self.act = ACT_CODES[activation]
        self.out = OUT_CODES[out_activation]
        self.dev = dev
        self.be = backend(dev)
        self.coef_off, self.icpt_off = [], []
        off = 0
        for i in range(self.L):
            self.coef_off.append(off)
            off += self.units[i] * self.units[i + 1]
        self.n_coef = off
        for i in range(self.L):
            self.icpt_off.append(off)
            off += self.units[i + 1]
        self.n_params = off
        self.params = empty((off,), dev)
        self._bufs = {}

    # ------------------------------------------------------------- parameters
    def load(self, coefs, intercepts):
        flat = np.concatenate([np.asarray(c, np.float32).ravel() for c in coefs]
                              + [np.asarray(b, np.float32).ravel() for b in intercepts])
        if flat.size != self.n_params:
            raise ValueError(f"MLP parameters have {flat.size} values, expected {self.n_params} "
                             f"for layer sizes {self.units}")
        self.params = to_device(flat, self.dev)

    def export(self, dtype, params=None):
        flat = to_host(self.params if params is None else params)
        coefs = [flat[o:o + self.units[i] * self.units[i + 1]].reshape(self.units[i], self.units[i + 1]).astype(dtype)
                 for i, o in enumerate(self.coef_off)]
        icpts = [flat[o:o + self.units[i + 1]].astype(dtype) for i, o in enumerate(self.icpt_off)]
        return coefs, icpts

    def _w(self, i, base=None):
        return (self.params if base is None else base).data_ptr() + 4 * self.coef_off[i]

    def _b(self, i, base=None):
        return (self.params if base is None else base).data_ptr() + 4 * self.icpt_off[i]

    # ------------------------------------------------------------- buffers
    def buffers(self, rows):
        """Activations A[1..L] and deltas D[0..L-1] for up to `rows` samples (cached)."""
        b = self._bufs.get(rows)
        if b is None:
            acts = [None] + [empty((rows, u), self.dev) for u in self.units[1:]]
            deltas = [empty((rows, u), self.dev) for u in self.units[1:]]
            b = self._bufs[rows] = (acts, deltas)
        return b

    # ------------------------------------------------------------- passes
    def forward(self, x_ptr, rows, acts):
        """Forward rows samples at x_ptr (rows x units[0]); leaves pre-output-activation logits in
        acts[L] (the caller applies sk_output_loss). Returns acts."""
        be, u = self.be, self.units
        prev = x_ptr
        for i in range(self.L):
            hidden = i < self.L - 1
            fuse_relu = hidden and self.act == ACT_CODES["relu"]
            out = acts[i + 1].data_ptr()
            be.sgemm(1, False, False, rows, u[i + 1], u[i], 1.0, prev, u[i], 0, self._w(i), u[i + 1], 0,
                     0.0, out, u[i + 1], 0, self._b(i), _BIAS_COL, _GEMM_RELU if fuse_relu else 0)
            if hidden and not fuse_relu and self.act != 0:
                be.sk_act_forward(self.act, out, rows * u[i + 1])
            prev = out
        return acts

    def predict_raw(self, X, chunk=8192):
        """Output activations for a host array X (float32 copy per chunk), as float32 numpy."""
        n = X.shape[0]
        out = np.empty((n, self.units[-1]), np.float32)
        rows = min(chunk, max(n, 1))
        acts, _ = self.buffers(rows)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            xb = to_device(X[s:e], self.dev)
            self._predict_rows(xb.data_ptr(), e - s, acts)
            out[s:e] = to_host(acts[self.L])[:e - s]
        return out

    def predict_device(self, x_dev, chunk=8192):
        """Output activations for a device matrix (already float32), as float32 numpy."""
        n = x_dev.shape[0]
        out = np.empty((n, self.units[-1]), np.float32)
        rows = min(chunk, max(n, 1))
        acts, _ = self.buffers(rows)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            self._predict_rows(x_dev.data_ptr() + 4 * s * self.units[0], e - s, acts)
            out[s:e] = to_host(acts[self.L])[:e - s]
        return out

    def _predict_rows(self, x_ptr, rows, acts):
        self.forward(x_ptr, rows, acts)
        self.be.sk_output_loss(self.out, acts[self.L].data_ptr(), 0, 0, 0, rows, self.units[-1], 1e-7, 0)

    def backward(self, x_ptr, rows, acts, deltas, grads):
        """Raw gradient sums into the flat `grads` (coefs: A^T delta, intercepts: sum(delta));
        the optimizer kernel applies 1/sum(sw) and the L2 term. deltas[L-1] must hold the output
        delta (sk_output_loss wrote it)."""
        be, u = self.be, self.units
        for i in range(self.L - 1, -1, -1):
            a_prev = x_ptr if i == 0 else acts[i].data_ptr()
            d = deltas[i].data_ptr()
            be.sgemm(1, True, False, u[i], u[i + 1], rows, 1.0, a_prev, u[i], 0, d, u[i + 1], 0,
                     0.0, self._w(i, grads), u[i + 1], 0, 0, _BIAS_NONE, 0)
            be.reduce(_R_SUM, 0, self._b(i, grads), d, 1, rows, u[i + 1])
            if i > 0:
                dp = deltas[i - 1].data_ptr()
                be.sgemm(1, False, True, rows, u[i], u[i + 1], 1.0, d, u[i + 1], 0, self._w(i), u[i + 1], 0,
                         0.0, dp, u[i], 0, 0, _BIAS_NONE, 0)
                if self.act != 0:
                    be.sk_act_backward(self.act, acts[i].data_ptr(), dp, rows * u[i])
