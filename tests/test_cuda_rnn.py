"""Recurrent layers on CUDA (csrc/cuda/rnn_sequence.cu) against the CPU kernels.

The CPU kernels are themselves tested against PyTorch (test_rnn.py), so here CUDA must reproduce
them: the two bindings rnn_sequence_forward / rnn_sequence_backward called on the same inputs on
both backends (outputs pre-filled with NaN so a missed element fails; every buffer compared:
states, saved gates, output, gate and bias gradients), then whole layers (LSTM, GRU, RNN tanh/relu,
bidirectional, 2 layers, with and without lengths) and cells, outputs and every gradient.

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
from kernelnet.ops import recurrent as R

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


# ----------------------------------------------------------------------------- layers
LAYER_MODES = [("LSTM", {}), ("GRU", {}), ("RNN", {"nonlinearity": "tanh"}), ("RNN", {"nonlinearity": "relu"})]


def _run_layer(module, x_np, states_np, lengths, wo, whs, dev):
    """Forward + backward of `module` on `dev`; -> (output, final states, grads of x, of the
    initial states, of every parameter by name), all as numpy."""
    x = kn.tensor(x_np, device=dev, requires_grad=True)
    states = [kn.tensor(s, device=dev, requires_grad=True) for s in states_np]
    hx = (tuple(states) if len(states) == 2 else states[0]) if states else None
    out, hn = module(x, hx, lengths=lengths) if lengths is not None else module(x, hx)
    finals = list(hn) if isinstance(hn, tuple) else [hn]
    loss = (out * kn.tensor(wo, device=dev)).sum()
    for h, w in zip(finals, whs):
        loss = loss + (h * kn.tensor(w, device=dev)).sum()
    loss.backward()
    grads = {n: p.grad.cpu().numpy() for n, p in module.named_parameters()}
    return (out.detach().cpu().numpy(), [h.detach().cpu().numpy() for h in finals], x.grad.cpu().numpy(),
            [s.grad.cpu().numpy() for s in states], grads)


LAYER_CASES = [(mode, layers, bi, lens, bias)
               for mode in LAYER_MODES for layers in (1, 2) for bi in (False, True) for lens in (False, True)
               for bias in (True,)] + [(mode, 2, True, True, False) for mode in LAYER_MODES]


@needs_gpu
@pytest.mark.parametrize("mode,num_layers,bidirectional,with_lengths,bias", LAYER_CASES,
                         ids=[f"{m[0]}{m[1].get('nonlinearity', '')}-L{n}-bi{int(b)}-len{int(s)}-bias{int(c)}"
                              for m, n, b, s, c in LAYER_CASES])
def test_layer_cuda_matches_cpu(mode, num_layers, bidirectional, with_lengths, bias):
    name, kw = mode
    rng = _rng(name, kw, num_layers, bidirectional, with_lengths, bias)
    T, B, I, H = 7, 5, 6, 12
    kn.manual_seed(0)
    cpu_m = getattr(kn.nn, name)(I, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias, **kw)
    gpu_m = getattr(kn.nn, name)(I, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias, **kw)
    gpu_m.load_state_dict(cpu_m.state_dict())
    gpu_m.to(_DEV)
    assert R.has_native(next(gpu_m.parameters())), "CUDA must run the native sequence kernels"
    L = num_layers * (2 if bidirectional else 1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    states = [rng.standard_normal((L, B, H)).astype(np.float32) for _ in range(2 if name == "LSTM" else 1)]
    lengths = [7, 3, 1, 7, 5] if with_lengths else None
    wo = rng.standard_normal((T, B, H * (2 if bidirectional else 1))).astype(np.float32)
    whs = [rng.standard_normal((L, B, H)).astype(np.float32) for _ in states]
    ref = _run_layer(cpu_m, x, states, lengths, wo, whs, "cpu")
    got = _run_layer(gpu_m, x, states, lengths, wo, whs, _DEV)
    close(got[0], ref[0], what="output")
    for g, r in zip(got[1], ref[1]):
        close(g, r, what="h_n/c_n")
    close(got[2], ref[2], what="grad input")
    for g, r in zip(got[3], ref[3]):
        close(g, r, what="grad h0/c0")
    assert sorted(got[4]) == sorted(ref[4])
    for n in ref[4]:
        close(got[4][n], ref[4][n], what=f"grad {n}")


@needs_gpu
def test_layer_default_state_and_batch_first():
    """No initial state (zeros made on the device) and batch_first, GRU and LSTM."""
    rng = np.random.default_rng(5)
    for name in ("GRU", "LSTM"):
        kn.manual_seed(1)
        cpu_m = getattr(kn.nn, name)(4, 8, batch_first=True)
        gpu_m = getattr(kn.nn, name)(4, 8, batch_first=True)
        gpu_m.load_state_dict(cpu_m.state_dict())
        gpu_m.to(_DEV)
        x = rng.standard_normal((3, 6, 4)).astype(np.float32)
        wo = rng.standard_normal((3, 6, 8)).astype(np.float32)
        ref = _run_layer(cpu_m, x, [], None, wo, [], "cpu")
        got = _run_layer(gpu_m, x, [], None, wo, [], _DEV)
        close(got[0], ref[0], what=f"{name} output")
        close(got[2], ref[2], what=f"{name} grad input")
        for n in ref[4]:
            close(got[4][n], ref[4][n], what=f"{name} grad {n}")


@needs_gpu
@pytest.mark.parametrize("name,kw", [("LSTMCell", {}), ("GRUCell", {}), ("RNNCell", {"nonlinearity": "tanh"}),
                                     ("RNNCell", {"nonlinearity": "relu"})])
def test_cells_cuda_match_cpu(name, kw):
    """Cells go through recurrence() (T = 1, b_hh inside the sequence kernel's GEMM)."""
    rng = np.random.default_rng(9)
    B, I, H = 4, 5, 9
    kn.manual_seed(2)
    cpu_c = getattr(kn.nn, name)(I, H, **kw)
    gpu_c = getattr(kn.nn, name)(I, H, **kw)
    gpu_c.load_state_dict(cpu_c.state_dict())
    gpu_c.to(_DEV)
    x = rng.standard_normal((B, I)).astype(np.float32)
    lstm = name == "LSTMCell"
    st = [rng.standard_normal((B, H)).astype(np.float32) for _ in range(2 if lstm else 1)]
    ws = [rng.standard_normal((B, H)).astype(np.float32) for _ in st]
    res = []
    for cell, dev in ((cpu_c, "cpu"), (gpu_c, _DEV)):
        xt = kn.tensor(x, device=dev, requires_grad=True)
        s = [kn.tensor(a, device=dev, requires_grad=True) for a in st]
        o = cell(xt, tuple(s) if lstm else s[0])
        outs = list(o) if lstm else [o]
        loss = sum((a * kn.tensor(w, device=dev)).sum() for a, w in zip(outs, ws))
        loss.backward()
        res.append(([a.detach().cpu().numpy() for a in outs], xt.grad.cpu().numpy(),
                    [a.grad.cpu().numpy() for a in s], {n: p.grad.cpu().numpy() for n, p in cell.named_parameters()}))
    (ro, rx, rs, rp), (go, gx, gs, gp) = res
    for g, r in zip(go, ro):
        close(g, r, what="cell output")
    close(gx, rx, what="grad input")
    for g, r in zip(gs, rs):
        close(g, r, what="grad state")
    for n in rp:
        close(gp[n], rp[n], what=f"grad {n}")


@needs_gpu
def test_layer_refuses_mixed_devices():
    if _DEV != "cuda":
        pytest.skip("needs two devices")
    m = kn.nn.GRU(3, 4)  # parameters on the CPU
    with pytest.raises(RuntimeError, match="same device"):
        m(kn.zeros(2, 1, 3, device="cuda"))
