"""One direction of one recurrent layer over a whole sequence, as a single autograd Function.

`recurrence(xg, w_hh, b_hh, h0, c0, mode, lengths, reverse)` takes the input projection of every
time step already computed (xg = x @ W_ih^T + b_ih, [T, B, G*H], one GEMM done by the caller with
autograd) and runs the time loop natively (csrc/cpu/rnn_sequence.cpp): per step the hidden
projection on a W_hh packed once, then the fused cell kernel (csrc/cpu/rnn_cell.cpp). Backward is
backpropagation through time over the saved gates, with W_hh's gradient computed as one GEMM over
all steps at the end. This is much cheaper than a per-step autograd graph (no Python nodes per op
per step).

When the backend has no cell kernels (the CUDA module today), the same maths is composed from core
ops per step, with ordinary autograd; results and gradients are the same.

mode: "LSTM", "GRU", "RNN_TANH", "RNN_RELU". lengths: None or a sequence of B ints (rows past their
length carry their state and output zeros). Returns (out [T, B, H], h_n [B, H]) and c_n for LSTM.
"""
import numpy as np

from .. import _dtype as D
from ..autograd import Function
from ..tensor import Tensor

GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _contig(t):
    return t if t.is_contiguous() else t.contiguous()


def has_native(t):
    return t.device.type == "cpu" and hasattr(t._backend, "rnn_sequence_forward")


def _zeros(shape, device):
    t = Tensor._empty(shape, D.float32, device)
    t.numpy(force=True)[...] = 0
    return t


MODE_CODE = {"LSTM": 0, "GRU": 1, "RNN_TANH": 2, "RNN_RELU": 2}


class _Recurrence(Function):
    """The time loop runs natively (csrc/cpu/rnn_sequence.cpp): one call for the whole sequence
    forward, one for backpropagation through time; W_hh's gradient is one GEMM over all steps here."""

    @staticmethod
    def forward(ctx, xg, w_hh, b_hh, h0, c0, mode, lengths, reverse):
        be = xg._backend
        T, B, GH = xg._shape
        H = GH // GATES[mode]
        lstm = mode == "LSTM"
        dev = xg.device
        first = T - 1 if reverse else 0
        len_t = None
        lp = 0
        if lengths is not None:
            len_t = np.ascontiguousarray(lengths, dtype=np.int64)
            lp = len_t.ctypes.data
        # time-indexed states: hp[t] is the state the step at time t starts from
        hp = Tensor._empty((T, B, H), D.float32, dev)
        hp.numpy(force=True)[first] = h0.numpy(force=True)
        cp = c_n = None
        if lstm:
            cp = Tensor._empty((T, B, H), D.float32, dev)
            cp.numpy(force=True)[first] = c0.numpy(force=True)
            c_n = Tensor._empty((B, H), D.float32, dev)
        saved = None
        if mode != "RNN_TANH" and mode != "RNN_RELU":
            saved = Tensor._empty((T, B, 4 * H if mode == "GRU" else GH), D.float32, dev)
        h_n = Tensor._empty((B, H), D.float32, dev)
        out = Tensor._empty((T, B, H), D.float32, dev)
        ptr = lambda t: t.data_ptr() if t is not None else 0  # noqa: E731
        be.rnn_sequence_forward(MODE_CODE[mode], 1 if mode == "RNN_RELU" else 0, T, B, H, xg.data_ptr(),
                                w_hh.data_ptr(), ptr(b_hh), hp.data_ptr(), ptr(cp), out.data_ptr(),
                                h_n.data_ptr(), ptr(c_n), ptr(saved), lp, reverse)
        ctx.mode, ctx.reverse, ctx.len_t = mode, reverse, len_t
        ctx.has_bias = b_hh is not None
        ctx.save_for_backward(w_hh, hp, saved, h_n, cp, c_n)
        if lstm:
            return out, h_n, c_n
        return out, h_n

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn=None):
        mode, len_t = ctx.mode, ctx.len_t
        w_hh, hp, saved, h_n, cp, c_n = ctx.saved_tensors
        lstm = mode == "LSTM"
        be = w_hh._backend
        dev = w_hh.device
        T, B, H = hp._shape
        GH = w_hh._shape[0]
        # dh/dc come in as the gradients w.r.t. h_n/c_n and go out w.r.t. h0/c0
        dh = _zeros((B, H), dev) if g_hn is None else g_hn.contiguous().clone()
        dc = None
        if lstm:
            dc = _zeros((B, H), dev) if g_cn is None else g_cn.contiguous().clone()
        go = g_out.contiguous() if g_out is not None else None
        dxg = Tensor._empty((T, B, GH), D.float32, dev)
        dhg = Tensor._empty((T, B, GH), D.float32, dev) if mode == "GRU" else dxg
        need = ctx.needs_input_grad
        g_w = g_b = None
        if ctx.has_bias and need[2]:
            g_b = Tensor._empty((GH,), D.float32, dev)
        ptr = lambda t: t.data_ptr() if t is not None else 0  # noqa: E731
        be.rnn_sequence_backward(MODE_CODE[mode], 1 if mode == "RNN_RELU" else 0, T, B, H, w_hh.data_ptr(),
                                 hp.data_ptr(), ptr(cp), h_n.data_ptr(), ptr(c_n), ptr(saved), ptr(go),
                                 dh.data_ptr(), ptr(dc), dxg.data_ptr(), dhg.data_ptr(), ptr(g_b),
                                 len_t.ctypes.data if len_t is not None else 0, ctx.reverse)
        if need[1]:  # dW_hh = sum_t dhg[t]^T @ hp[t]: one GEMM with K = T*B
            g_w = Tensor._empty((GH, H), D.float32, dev)
            be.sgemm(1, True, False, GH, H, T * B, 1.0, dhg.data_ptr(), GH, 0, hp.data_ptr(), H, 0, 0.0,
                     g_w.data_ptr(), H, 0, 0, 0, 0)
        return dxg, g_w, g_b, dh, dc, None, None, None


def _step_composed(mode, xt, h, c, w_hh, b_hh):
    """One step from core ops (autograd-tracked): the fallback for backends without cell kernels."""
    from .linalg import linear
    hg = linear(h, w_hh, b_hh)
    H = h.shape[-1]
    if mode == "LSTM":
        g = xt + hg
        i = g[:, 0:H].sigmoid()
        f = g[:, H:2 * H].sigmoid()
        gg = g[:, 2 * H:3 * H].tanh()
        o = g[:, 3 * H:4 * H].sigmoid()
        c = f * c + i * gg
        return o * c.tanh(), c
    if mode == "GRU":
        r = (xt[:, 0:H] + hg[:, 0:H]).sigmoid()
        z = (xt[:, H:2 * H] + hg[:, H:2 * H]).sigmoid()
        n = (xt[:, 2 * H:] + r * hg[:, 2 * H:]).tanh()
        return (1 - z) * n + z * h, None
    v = xt + hg
    return (v.tanh() if mode == "RNN_TANH" else v.relu()), None


def _composed(xg, w_hh, b_hh, h0, c0, mode, lengths, reverse):
    from .shape import stack
    T = xg.shape[0]
    h, c = h0, c0
    outs = [None] * T
    masks = None
    if lengths is not None:
        L = np.asarray(lengths)
        m = (np.arange(T)[:, None] < L[None, :]).astype(np.float32)[:, :, None]
        from .creation import tensor as _tensor
        masks = _tensor(m, device=xg.device)
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        hn, cn = _step_composed(mode, xg[t], h, c, w_hh, b_hh)
        if masks is not None:
            mt = masks[t]
            hn = mt * hn + (1 - mt) * h
            if cn is not None:
                cn = mt * cn + (1 - mt) * c
            outs[t] = hn * mt
        else:
            outs[t] = hn
        h, c = hn, cn
    out = stack(outs, 0)
    return (out, h, c) if mode == "LSTM" else (out, h)


def recurrence(xg, w_hh, b_hh, h0, c0, mode, lengths=None, reverse=False):
    if has_native(xg):
        xg, w_hh, h0 = _contig(xg), _contig(w_hh), _contig(h0)
        b_hh = _contig(b_hh) if b_hh is not None else None
        c0 = _contig(c0) if c0 is not None else None
        return _Recurrence.apply(xg, w_hh, b_hh, h0, c0, mode, lengths, reverse)
    return _composed(xg, w_hh, b_hh, h0, c0, mode, lengths, reverse)
