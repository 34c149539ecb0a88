"""One direction of one recurrent layer over a whole sequence, as a single autograd Function.

`recurrence(xg, w_hh, b_hh, h0, c0, mode, lengths, reverse)` takes the input projection of every
time step already computed (xg = x @ W_ih^T + b_ih, [T, B, G*H], one GEMM done by the caller with
autograd) and runs the time loop: per step one SGEMM for the hidden projection and one fused cell
kernel (csrc/cpu/rnn_cell.cpp). Backward is backpropagation through time over the saved gates,
with W_hh's gradient computed as one GEMM over all steps at the end. This is much cheaper than a
per-step autograd graph (no Python nodes per op per step).

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
    return t.device.type == "cpu" and hasattr(t._backend, "lstm_cell_forward")


def _zeros(shape, device):
    t = Tensor._empty(shape, D.float32, device)
    t.numpy(force=True)[...] = 0
    return t


class _Recurrence(Function):
    @staticmethod
    def forward(ctx, xg, w_hh, b_hh, h0, c0, mode, lengths, reverse):
        be = xg._backend
        T, B, GH = xg._shape
        H = GH // GATES[mode]
        lstm = mode == "LSTM"
        dev = xg.device
        steps = range(T - 1, -1, -1) if reverse else range(T)
        order = list(steps)
        len_t = None
        lp = 0
        if lengths is not None:
            len_t = np.ascontiguousarray(lengths, dtype=np.int64)
            lp = len_t.ctypes.data
        # time-indexed buffers: hp[t] is the state the step at time t starts from
        hp = Tensor._empty((T, B, H), D.float32, dev)
        hpn = hp.numpy(force=True)
        hpn[order[0]] = h0.numpy(force=True)
        if lstm:
            cp = Tensor._empty((T, B, H), D.float32, dev)
            cpn = cp.numpy(force=True)
            cpn[order[0]] = c0.numpy(force=True)
            saved = Tensor._empty((T, B, GH), D.float32, dev)
            c_n = Tensor._empty((B, H), D.float32, dev)
        elif mode == "GRU":
            saved = Tensor._empty((T, B, 4 * H), D.float32, dev)
        else:
            saved = None
        h_n = Tensor._empty((B, H), D.float32, dev)
        out = Tensor._empty((T, B, H), D.float32, dev)
        outn = out.numpy(force=True)
        hg = Tensor._empty((B, GH), D.float32, dev)
        hgp = hg.data_ptr()
        wp = w_hh.data_ptr()
        bp = b_hh.data_ptr() if b_hh is not None else 0
        bmode = 1 if b_hh is not None else 0
        xp0, hp0 = xg.data_ptr(), hp.data_ptr()
        sz_g, sz_h = B * GH * 4, B * H * 4  # bytes per time step
        act = 1 if mode == "RNN_RELU" else 0
        for k, t in enumerate(order):
            last = k == T - 1
            nxt = None if last else order[k + 1]
            h_prev = hp0 + t * sz_h
            h_out = h_n.data_ptr() if last else hp0 + nxt * sz_h
            be.sgemm(1, False, True, B, GH, H, 1.0, h_prev, H, 0, wp, H, 0, 0.0, hgp, GH, 0, bp, bmode, 0)
            xt = xp0 + t * sz_g
            if lstm:
                c_prev = cp.data_ptr() + t * sz_h
                c_out = c_n.data_ptr() if last else cp.data_ptr() + nxt * sz_h
                be.lstm_cell_forward(xt, hgp, h_prev, c_prev, h_out, c_out, saved.data_ptr() + t * sz_g,
                                     B, H, lp, t)
            elif mode == "GRU":
                be.gru_cell_forward(xt, hgp, h_prev, h_out, saved.data_ptr() + t * B * 4 * H * 4, B, H, lp, t)
            else:
                be.rnn_cell_forward(xt, hgp, h_prev, h_out, B, H, act, lp, t)
            outn[t] = h_n.numpy(force=True) if last else hpn[nxt]
        if len_t is not None:  # rows past their end output zeros
            outn *= (np.arange(T)[:, None] < len_t[None, :])[:, :, None]
        ctx.mode, ctx.reverse, ctx.len_t, ctx.order = mode, reverse, len_t, order
        ctx.has_bias = b_hh is not None
        ctx.save_for_backward(w_hh, hp, saved, h_n, *( (cp, c_n) if lstm else ()))
        if lstm:
            return out, h_n, c_n
        return out, h_n

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn=None):
        mode, order, len_t = ctx.mode, ctx.order, ctx.len_t
        lstm = mode == "LSTM"
        if lstm:
            w_hh, hp, saved, h_n, cp, c_n = ctx.saved_tensors
        else:
            w_hh, hp, saved, h_n = ctx.saved_tensors
        be = w_hh._backend
        dev = w_hh.device
        T, B, H = hp._shape
        GH = w_hh._shape[0]
        lp = len_t.ctypes.data if len_t is not None else 0
        go = g_out.contiguous().numpy(force=True) if g_out is not None else None
        if go is not None and len_t is not None:
            go = go * (np.arange(T)[:, None] < len_t[None, :])[:, :, None]
        dh = _zeros((B, H), dev) if g_hn is None else g_hn.contiguous().clone()
        dhn = dh.numpy(force=True)
        dhp = Tensor._empty((B, H), D.float32, dev)
        if lstm:
            dc = _zeros((B, H), dev) if g_cn is None else g_cn.contiguous().clone()
            dcp = Tensor._empty((B, H), D.float32, dev)
        dxg = Tensor._empty((T, B, GH), D.float32, dev)
        dhg = Tensor._empty((T, B, GH), D.float32, dev) if mode == "GRU" else dxg
        sz_g, sz_h = B * GH * 4, B * H * 4
        wp = w_hh.data_ptr()
        act = 1 if mode == "RNN_RELU" else 0
        for k in range(T - 1, -1, -1):
            t = order[k]
            last = k == T - 1
            if go is not None:
                dhn += go[t]
            h_prev = hp.data_ptr() + t * sz_h
            dgt = dxg.data_ptr() + t * sz_g
            dht = dhg.data_ptr() + t * sz_g
            if lstm:
                c_prev = cp.data_ptr() + t * sz_h
                c_cur = c_n.data_ptr() if last else cp.data_ptr() + order[k + 1] * sz_h
                be.lstm_cell_backward(dh.data_ptr(), dc.data_ptr(), saved.data_ptr() + t * sz_g, c_prev, c_cur,
                                      dgt, dhp.data_ptr(), dcp.data_ptr(), B, H, lp, t)
                dc, dcp = dcp, dc
            elif mode == "GRU":
                be.gru_cell_backward(dh.data_ptr(), saved.data_ptr() + t * B * 4 * H * 4, h_prev, dgt, dht,
                                     dhp.data_ptr(), B, H, lp, t)
            else:
                h_cur = h_n.data_ptr() if last else hp.data_ptr() + order[k + 1] * sz_h
                be.rnn_cell_backward(dh.data_ptr(), h_cur, dgt, dhp.data_ptr(), B, H, act, lp, t)
            # dh_prev += dgates_h @ W_hh
            be.sgemm(1, False, False, B, H, GH, 1.0, dht, GH, 0, wp, H, 0, 1.0, dhp.data_ptr(), H, 0, 0, 0, 0)
            dh, dhp = dhp, dh
            dhn = dh.numpy(force=True)
        need = ctx.needs_input_grad
        g_w = g_b = None
        if need[1]:  # dW_hh = sum_t dhg[t]^T @ hp[t]: one GEMM with K = T*B
            g_w = Tensor._empty((GH, H), D.float32, dev)
            be.sgemm(1, True, False, GH, H, T * B, 1.0, dhg.data_ptr(), GH, 0, hp.data_ptr(), H, 0, 0.0,
                     g_w.data_ptr(), H, 0, 0, 0, 0)
        if ctx.has_bias and need[2]:
            g_b = Tensor._empty((GH,), D.float32, dev)
            g_b.numpy(force=True)[...] = dhg.numpy(force=True).reshape(T * B, GH).sum(0, dtype=np.float64)
        g_c0 = dc if lstm else None
        return dxg, g_w, g_b, dh, g_c0, None, None, None


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
