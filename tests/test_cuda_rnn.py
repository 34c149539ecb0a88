"""Recurrent layers on CUDA (csrc/cuda/rnn_sequence.cu) against the CPU kernels.

The CPU kernels are themselves tested against PyTorch (test_rnn.py), so here CUDA must reproduce
them: the two bindings rnn_sequence_forward / rnn_sequence_backward called on the same inputs on
both backends (outputs pre-filled with NaN so a missed element fails; every buffer compared:
states, saved gates, output, gate and bias gradients).

Needs a GPU, except the bad-argument checks: those run wherever kernelnet._cuda is built, since
the bindings reject bad arguments before touching the device.
"""
import os
import zlib

import numpy as np
import pytest

import kernelnet as kn
from kernelnet import _cpu
from kernelnet._device import _load_cuda

try:
    from kernelnet import _cuda as _cuda_built
except ImportError:  # CPU-only build
    _cuda_built = None
_cuda = _load_cuda()  # None without a GPU
_DEV = "cuda"
# KN_TEST_RNN_DRY_RUN=1 runs the GPU tests with the CPU module standing in for the CUDA one: it
# checks the test plumbing on a machine without a GPU (CPU vs CPU, so it proves nothing about CUDA).
if os.environ.get("KN_TEST_RNN_DRY_RUN") == "1":
    _cuda, _DEV = _cpu, "cpu"
_HAS_SEQ = _cuda is not None and hasattr(_cuda, "rnn_sequence_forward")
needs_gpu = pytest.mark.skipif(not _HAS_SEQ, reason="no CUDA GPU visible" if _cuda is None
                               else "kernelnet._cuda lacks rnn_sequence_forward")
needs_module = pytest.mark.skipif(_cuda_built is None or not hasattr(_cuda_built, "rnn_sequence_forward"),
                                  reason="kernelnet._cuda (with rnn_sequence_forward) is not built")

LSTM, GRU, ELMAN = 0, 1, 2
KERNEL_MODES = [("LSTM", LSTM, 0), ("GRU", GRU, 0), ("RNN_TANH", ELMAN, 0), ("RNN_RELU", ELMAN, 1)]
GATES = {LSTM: 4, GRU: 3, ELMAN: 1}


@pytest.fixture(autouse=True)
def _fp32_gemm():
    """The comparison assumes FP32 products: TF32 (if a test left it on) has ~1e-3 error."""
    if not _HAS_SEQ or not hasattr(_cuda, "allow_tf32"):
        yield
        return
    old = _cuda.allow_tf32()
    _cuda.set_allow_tf32(False)
    yield
    _cuda.set_allow_tf32(old)


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))  # the same data on every run


def close(got, ref, tol=1e-4, what=""):
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    assert not np.isnan(got).any() or np.isnan(ref).any(), f"{what}: unwritten (NaN) elements in the CUDA output"
    scale = max(1.0, float(np.nanmax(np.abs(ref))) if ref.size else 1.0)
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale, err_msg=what)


# ----------------------------------------------------------------------------- the bindings
class Out:
    """An output (or in/out) buffer: a copy of `init`, or NaN everywhere."""

    def __init__(self, shape, init=None):
        self.shape, self.init = tuple(shape), init

    def host(self):
        if self.init is not None:
            return np.array(self.init, dtype=np.float32, copy=True).reshape(self.shape)
        return np.full(self.shape, np.nan, dtype=np.float32)


class Host:
    """A host int64 array passed as a host pointer on both backends (the `lengths` contract)."""

    def __init__(self, values):
        self.arr = np.ascontiguousarray(values, dtype=np.int64)


class Alias:
    """The same pointer as argument number `index` (dhg == dxg outside GRU)."""

    def __init__(self, index):
        self.index = index


def call(name, *args):
    """Run binding `name` on the CPU and the CUDA backend. np arrays are inputs and Out buffers
    outputs (device tensors on CUDA), None a null pointer, anything else a scalar.
    Returns ([cpu outputs], [cuda outputs]) in argument order."""
    results = []
    for mod, dev in ((_cpu, "cpu"), (_cuda, _DEV)):
        keep, outs, conv = [], [], []
        for a in args:
            if a is None:
                conv.append(0)
            elif isinstance(a, Host):
                conv.append(a.arr.ctypes.data)
            elif isinstance(a, Alias):
                conv.append(conv[a.index])
            elif isinstance(a, (np.ndarray, Out)):
                arr = a.host() if isinstance(a, Out) else np.ascontiguousarray(a, dtype=np.float32)
                t = kn.tensor(arr, device=dev)
                keep.append(t)
                conv.append(t.data_ptr())
                if isinstance(a, Out):
                    outs.append(t)
            else:
                conv.append(a)
        getattr(mod, name)(*conv)
        if hasattr(mod, "synchronize"):
            mod.synchronize()
        results.append([t.cpu().numpy() for t in outs])
    return results


# (T, B, H): T = 1; ragged sizes; H = 300 gives the hidden-projection GEMMs split-K, and T*B = 300
# rows two chunks in the bias-gradient sum; B = 0 an empty batch (bias gradients are zeros)
SHAPES = [(1, 2, 3), (5, 3, 7), (6, 50, 300), (2, 0, 4)]


def _lengths_for(T, B, rng):
    if B == 0:
        return None
    lens = rng.integers(1, T + 1, size=B)
    lens[0] = T
    if B > 1:
        lens[1] = 1
    return lens


@needs_gpu
@pytest.mark.parametrize("shape", SHAPES, ids=[f"T{t}B{b}H{h}" for t, b, h in SHAPES])
@pytest.mark.parametrize("mode_name,mode,act", KERNEL_MODES, ids=[m[0] for m in KERNEL_MODES])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_sequence_kernels_match_cpu(shape, mode_name, mode, act, reverse, with_lengths):
    T, B, H = shape
    rng = _rng(shape, mode_name, reverse, with_lengths)
    GH = GATES[mode] * H
    SR = 4 * H if mode == GRU else GH
    lstm = mode == LSTM
    xg = rng.standard_normal((T, B, GH)).astype(np.float32)
    w_hh = (rng.standard_normal((GH, H)) / np.sqrt(H)).astype(np.float32)
    b_hh = rng.standard_normal(GH).astype(np.float32) if mode != ELMAN or reverse else None
    first = T - 1 if reverse else 0
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    c0 = rng.standard_normal((B, H)).astype(np.float32)
    hp0 = np.full((T, B, H), np.nan, np.float32)
    hp0[first] = h0
    cp0 = np.full((T, B, H), np.nan, np.float32)
    cp0[first] = c0
    lens = _lengths_for(T, B, rng) if with_lengths else None
    L = Host(lens) if lens is not None else None

    # forward: every output buffer starts as NaN (hp/cp except the initial state)
    ref, got = call("rnn_sequence_forward", mode, act, T, B, H, xg, w_hh, b_hh,
                    Out((T, B, H), hp0), Out((T, B, H), cp0) if lstm else None, Out((T, B, H)), Out((B, H)),
                    Out((B, H)) if lstm else None, Out((T, B, SR)) if mode != ELMAN else None, L, reverse)
    names = ["hp"] + (["cp"] if lstm else []) + ["out", "h_n"] + (["c_n"] if lstm else []) + \
        (["saved"] if mode != ELMAN else [])
    for n, r, g in zip(names, ref, got):
        close(g, r, what=f"forward {n}")
    fw = dict(zip(names, ref))  # both backwards start from the CPU forward's buffers

    # backward, with and without an output gradient; the bias-gradient variants: outside GRU dhg is
    # dxg (one sum for db_x and db_h), GRU has its own dhg
    gru = mode == GRU
    variants = [(True, True, True), (False, True, False), (True, False, True)]
    for with_gout, want_x, want_h in variants:
        g_out = rng.standard_normal((T, B, H)).astype(np.float32) if with_gout else None
        dh0 = rng.standard_normal((B, H)).astype(np.float32)
        dc0 = rng.standard_normal((B, H)).astype(np.float32)
        args = [mode, act, T, B, H, w_hh, fw["hp"], fw["cp"] if lstm else None, fw["h_n"],
                fw["c_n"] if lstm else None, fw["saved"] if mode != ELMAN else None, g_out,
                Out((B, H), dh0), Out((B, H), dc0) if lstm else None, Out((T, B, GH))]
        dxg_index = len(args) - 1
        args.append(Out((T, B, GH)) if gru else Alias(dxg_index))
        args += [Out((GH,)) if want_x else None, Out((GH,)) if want_h else None, L, reverse]
        ref, got = call("rnn_sequence_backward", *args)
        names = ["dh"] + (["dc"] if lstm else []) + ["dxg"] + (["dhg"] if gru else []) + \
            (["db_x"] if want_x else []) + (["db_h"] if want_h else [])
        assert len(ref) == len(names)
        for n, r, g in zip(names, ref, got):
            close(g, r, what=f"backward {n} (g_out={with_gout}, db_x={want_x}, db_h={want_h})")
        if B == 0:
            for n, g in zip(names, got):
                if n.startswith("db"):
                    assert (g == 0).all(), n


@needs_module
def test_sequence_bindings_reject_bad_args():
    """Checked before any device work, with the CPU backend's messages."""
    be = _cuda_built
    with pytest.raises(ValueError, match=r"rnn_sequence_forward: mode must be 0 \(LSTM\), 1 \(GRU\) or 2 \(RNN\)"):
        be.rnn_sequence_forward(5, 0, 2, 3, 4, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, False)
    with pytest.raises(ValueError, match=r"rnn_sequence_backward: mode must be"):
        be.rnn_sequence_backward(-1, 0, 2, 3, 4, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, False)
    with pytest.raises(ValueError, match=r"rnn_sequence_forward: act must be 0 \(tanh\) or 1 \(relu\)"):
        be.rnn_sequence_forward(2, 3, 2, 3, 4, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, False)
    with pytest.raises(ValueError, match="rnn_sequence_backward: act must be"):
        be.rnn_sequence_backward(2, -1, 2, 3, 4, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, False)
    for T, B, H in ((0, 3, 4), (2, -1, 4), (2, 3, 0)):
        with pytest.raises(ValueError, match="rnn_sequence_forward: bad sizes"):
            be.rnn_sequence_forward(0, 0, T, B, H, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, False)
        with pytest.raises(ValueError, match="rnn_sequence_backward: bad sizes"):
            be.rnn_sequence_backward(0, 0, T, B, H, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, False)
    with pytest.raises(ValueError, match="rnn_sequence_forward: null pointer"):
        be.rnn_sequence_forward(1, 0, 2, 3, 4, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0, False)  # xg
    with pytest.raises(ValueError, match=r"rnn_sequence_forward: null pointer \(saved\)"):
        be.rnn_sequence_forward(1, 0, 2, 3, 4, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0, False)  # GRU saved
    with pytest.raises(ValueError, match=r"rnn_sequence_forward: null pointer \(cp, c_n\)"):
        be.rnn_sequence_forward(0, 0, 2, 3, 4, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, False)  # LSTM cp
    with pytest.raises(ValueError, match="rnn_sequence_backward: null pointer"):
        be.rnn_sequence_backward(0, 0, 2, 3, 4, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, False)  # hp
    with pytest.raises(ValueError, match=r"rnn_sequence_backward: null pointer \(saved\)"):
        be.rnn_sequence_backward(1, 0, 2, 3, 4, 1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, False)
    with pytest.raises(ValueError, match=r"rnn_sequence_backward: null pointer \(cp, c_n, dc\)"):
        be.rnn_sequence_backward(0, 0, 2, 3, 4, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0, False)  # dc
