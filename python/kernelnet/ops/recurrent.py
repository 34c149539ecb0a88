"""One direction of one recurrent layer over a whole sequence, as a single autograd Function.

`recurrent_layer(x, w_ih, w_hh, b_ih, b_hh, h0, c0, mode, lengths, reverse)` computes the input
projection of every time step as one GEMM (xg = x @ W_ih^T + b_ih, [T, B, G*H]) and runs the time
loop, in one autograd node; `recurrence(xg, w_hh, b_hh, h0, c0, ...)` (the cells: T = 1) takes xg
already computed. Both run the time loop natively, one backend call per direction
(rnn_sequence_forward / rnn_sequence_backward: csrc/cpu/rnn_sequence.cpp, csrc/cuda/rnn_sequence.cu):
per step the hidden projection, then the fused cell kernel. Backward is backpropagation through time
over the saved gates, with the weight gradients as GEMMs over all steps at the end (outside GRU,
dW_ih and dW_hh together: one product of the gate gradients with x and h_prev side by side). This is
much cheaper than a per-step autograd graph (no Python nodes per op per step). The code here is
device-agnostic: buffers are filled, copied and added with backend kernels, never through numpy, so
the same classes run on CPU and CUDA tensors (`lengths` stays a host int64 array on both: the
kernels take a host pointer).

When the backend has no sequence kernels, the same maths is composed from core ops per step, with
ordinary autograd; results and gradients are the same.

mode: "LSTM", "GRU", "RNN_TANH", "RNN_RELU". lengths: None or a sequence of B ints (rows past their
length carry their state and output zeros). Returns (out [T, B, H], h_n [B, H]) and c_n for LSTM.
"""
import numpy as np

from .. import _dtype as D
from ..autograd import Function
from ..tensor import Tensor
from .creation import zeros
from .elementwise import ADD, binary_kernel

GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _contig(t):
    return t if t.is_contiguous() else t.contiguous()


def has_native(t):
    return hasattr(t._backend, "rnn_sequence_forward")


def _copy_to(dst_ptr, src, like, n):
    """src (contiguous float32, n elements) -> the device memory at dst_ptr, one backend copy; src
    None (no initial state given) writes n zeros instead. `like`: a tensor on the target device."""
    if not n:
        return
    if src is None:
        like._backend.fill(D.float32.code, dst_ptr, n, 0.0)
    else:
        src._backend.copy_strided(D.float32.code, dst_ptr, src.data_ptr(), [n], [1])


def _check_operands(op, x, *tensors):
    """The kernels get raw float32 pointers: every operand must be float32 and live where x does (a
    CPU pointer in a CUDA kernel would fault, and the reverse would crash the process)."""
    dev = x.device
    for t in tensors:
        if t is None:
            continue
        if t.device is not dev and t.device != dev:
            raise RuntimeError(f"{op}: expected all tensors to be on the same device, but found at least two "
                               f"devices, {x.device} and {t.device}")
        if t.dtype is not D.float32:
            raise RuntimeError(f"{op}: expected float32 weights and states, got {t.dtype}")


def _check_shapes(mode, xg_shape, w_hh, b_hh, h0, c0):
    """The kernels index every operand by T, B, H taken from xg [T, B, G*H] and w_hh [G*H, H]: a
    state or bias of another shape would be read past its end (garbage, or a fault)."""
    if len(xg_shape) != 3 or w_hh.dim() != 2:
        raise RuntimeError(f"{mode}: expected a [T, B, gates] sequence and a 2-D w_hh, got shapes "
                           f"{tuple(xg_shape)} and {tuple(w_hh.shape)}")
    T, B, GH = xg_shape
    H = w_hh._shape[1]
    if w_hh._shape[0] != GATES[mode] * H or GH != GATES[mode] * H:
        raise RuntimeError(f"{mode}: w_hh has shape {tuple(w_hh.shape)} and the gates {GH} values a step; "
                           f"{mode} with hidden size {H} needs [{GATES[mode] * H}, {H}] and {GATES[mode] * H}")
    if b_hh is not None and tuple(b_hh._shape) != (GH,):
        raise RuntimeError(f"{mode}: b_hh has shape {tuple(b_hh.shape)}, expected ({GH},)")
    for name, st in (("hidden0", h0), ("cell0", c0)):
        if st is None:
            continue
        if st.dim() != 2 or st._shape[0] != B:
            raise RuntimeError(f"{mode}: Input batch size {B} doesn't match {name} batch size "
                               f"{st._shape[0] if st.dim() else 'of a 0-d tensor'} (shape {tuple(st.shape)})")
        if st._shape[1] != H:
            raise RuntimeError(f"{mode}: {name} has inconsistent hidden_size: got {st._shape[1]}, expected {H}")


MODE_CODE = {"LSTM": 0, "GRU": 1, "RNN_TANH": 2, "RNN_RELU": 2}


def _ptr(t):
    return t.data_ptr() if t is not None else 0


class _Sequence:
    """The native time loop of one direction (rnn_sequence_forward/backward): forward keeps what
    backpropagation through time needs; backward returns the gradients of the input projection
    (dxg), of W_hh, of the initial states and the column sums of the gate gradients (the bias
    gradients)."""

    def __init__(self, xg, w_hh, b_hh, h0, c0, mode, lengths, reverse):
        be = xg._backend
        T, B, GH = xg._shape
        H = GH // GATES[mode]
        dev = xg.device
        first = T - 1 if reverse else 0
        self.mode, self.reverse, self.w_hh = mode, reverse, w_hh
        self.len_t = None
        if lengths is not None:
            self.len_t = np.ascontiguousarray(lengths, dtype=np.int64)
            from .. import graphs as _graphs
            _graphs.keep_alive(self.len_t)  # a replay reads the lengths through this address
            if self.len_t.shape != (B,):  # the kernels read B int64s through a raw host pointer
                raise ValueError(f"{mode}: lengths must hold one length per batch row (B={B}), got shape "
                                 f"{self.len_t.shape}")
        # time-indexed states: hp[t] is the state the step at time t starts from
        self.hp = Tensor._empty((T, B, H), D.float32, dev)
        _copy_to(self.hp.data_ptr() + first * B * H * D.float32.itemsize, h0, xg, B * H)  # hp[first] = h0
        self.cp = self.c_n = None
        if mode == "LSTM":
            self.cp = Tensor._empty((T, B, H), D.float32, dev)
            _copy_to(self.cp.data_ptr() + first * B * H * D.float32.itemsize, c0, xg, B * H)
            self.c_n = Tensor._empty((B, H), D.float32, dev)
        self.saved = None
        if mode in ("LSTM", "GRU"):
            self.saved = Tensor._empty((T, B, 4 * H if mode == "GRU" else GH), D.float32, dev)
        self.h_n = Tensor._empty((B, H), D.float32, dev)
        self.out = Tensor._empty((T, B, H), D.float32, dev)
        be.rnn_sequence_forward(MODE_CODE[mode], 1 if mode == "RNN_RELU" else 0, T, B, H, xg.data_ptr(),
                                w_hh.data_ptr(), _ptr(b_hh), self.hp.data_ptr(), _ptr(self.cp), self.out.data_ptr(),
                                self.h_n.data_ptr(), _ptr(self.c_n), _ptr(self.saved), self._lengths_ptr(), reverse)

    def _lengths_ptr(self):
        return self.len_t.ctypes.data if self.len_t is not None else 0

    def outputs(self):
        # backward reads h_n and c_n: the caller gets copies ([B, H], small next to the step), so
        # whatever it does to them (in-place ops, writes through a detached alias or NumPy) leaves
        # what the backward reads alone, where PyTorch's composite cells compute too
        from .copy import _contiguous_copy
        h_n = _contiguous_copy(self.h_n)
        if self.mode == "LSTM":
            return self.out, h_n, _contiguous_copy(self.c_n)
        return self.out, h_n

    def backward(self, g_out, g_hn, g_cn, want_w, want_db_x, want_db_h):
        """-> dxg, dW_hh (or None), db_x (sums of dxg), db_h (sums of dhg), dh0, dc0."""
        w_hh, hp = self.w_hh, self.hp
        be, dev = w_hh._backend, w_hh.device
        T, B, H = hp._shape
        GH = w_hh._shape[0]
        gru = self.mode == "GRU"
        # dh/dc come in as the gradients w.r.t. h_n/c_n and go out w.r.t. h0/c0
        dh = zeros((B, H), device=dev) if g_hn is None else g_hn.contiguous().clone()
        dc = None
        if self.mode == "LSTM":
            dc = zeros((B, H), device=dev) if g_cn is None else g_cn.contiguous().clone()
        go = g_out.contiguous() if g_out is not None else None
        dxg = Tensor._empty((T, B, GH), D.float32, dev)
        dhg = Tensor._empty((T, B, GH), D.float32, dev) if gru else dxg
        db_x = Tensor._empty((GH,), D.float32, dev) if want_db_x else None
        db_h = Tensor._empty((GH,), D.float32, dev) if want_db_h else None
        be.rnn_sequence_backward(MODE_CODE[self.mode], 1 if self.mode == "RNN_RELU" else 0, T, B, H,
                                 w_hh.data_ptr(), hp.data_ptr(), _ptr(self.cp), self.h_n.data_ptr(), _ptr(self.c_n),
                                 _ptr(self.saved), _ptr(go), dh.data_ptr(), _ptr(dc), dxg.data_ptr(),
                                 dhg.data_ptr(), _ptr(db_x), _ptr(db_h), self._lengths_ptr(), self.reverse)
        g_w = None
        if want_w:  # dW_hh = sum_t dhg[t]^T @ hp[t]: one GEMM with K = T*B
            g_w = Tensor._empty((GH, H), D.float32, dev)
            be.sgemm(1, True, False, GH, H, T * B, 1.0, dhg.data_ptr(), GH, 0, hp.data_ptr(), H, 0, 0.0,
                     g_w.data_ptr(), H, 0, 0, 0, 0)
        return dxg, g_w, db_x, db_h, dh, dc


class _Recurrence(Function):
    """recurrence(): the time loop over a given input projection xg."""

    @staticmethod
    def forward(ctx, xg, w_hh, b_hh, h0, c0, mode, lengths, reverse):
        ctx.seq = _Sequence(xg, w_hh, b_hh, h0, c0, mode, lengths, reverse)
        ctx.save_for_backward(w_hh)  # read through ctx.seq; saved here for the version check
        ctx.has_bias = b_hh is not None
        return ctx.seq.outputs()

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn=None):
        need = ctx.needs_input_grad
        dxg, g_w, _, g_b, dh, dc = ctx.seq.backward(g_out, g_hn, g_cn, need[1], False, ctx.has_bias and need[2])
        return dxg, g_w, g_b, dh, dc, None, None, None


class _RecurrentLayer(Function):
    """recurrent_layer(): the input projection of all steps (one GEMM each way) around the time loop,
    in one autograd node. Except for GRU (whose b_hn sits inside the reset gate), b_ih + b_hh are
    added once, in the projection GEMM's epilogue, and both get the same gradient."""

    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, h0, c0, mode, lengths, reverse):
        be = x._backend
        T, B, I = x._shape
        GH = w_ih._shape[0]
        gru = mode == "GRU"
        bias = b_ih
        if b_ih is not None and not gru:
            bias = binary_kernel(ADD, b_ih, b_hh)  # a kernel on the tensors' device, no autograd
        xg = Tensor._empty((T, B, GH), D.float32, x.device)
        be.sgemm(1, False, True, T * B, GH, I, 1.0, x.data_ptr(), I, 0, w_ih.data_ptr(), I, 0, 0.0,
                 xg.data_ptr(), GH, 0, _ptr(bias), 1 if bias is not None else 0, 0)
        ctx.seq = _Sequence(xg, w_hh, b_hh if gru else None, h0, c0, mode, lengths, reverse)
        # w_hh is read through ctx.seq; saved here too for the version check (h_n and c_n, read too,
        # are never handed out: outputs() returns copies). x's values make w_ih's gradient, w_ih's
        # make x's (PyTorch saves each only then)
        ctx.save_for_backward(x, w_ih, w_hh)
        ctx.saved_values_read = (ctx.needs_input_grad[1], ctx.needs_input_grad[0], True)
        ctx.has_bias, ctx.gru = b_ih is not None, gru
        return ctx.seq.outputs()

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn=None):
        x, w_ih = ctx.saved_tensors[:2]
        be = x._backend
        T, B, I = x._shape
        GH = w_ih._shape[0]
        need = ctx.needs_input_grad
        want_b = ctx.has_bias and (need[3] or need[4])
        # Outside GRU both weights take their gradient from the same dgates: [dW_ih | dW_hh] =
        # dgates^T @ [x | h_prev] is one product (K = T*B) instead of two, one of them only I wide.
        both_w = need[1] and need[2] and not ctx.gru
        dxg, g_whh, db_x, db_h, dh, dc = ctx.seq.backward(g_out, g_hn, g_cn, need[2] and not both_w,
                                                          want_b and ctx.gru, want_b)
        g_x = g_wih = g_bih = g_bhh = None
        if need[0]:  # dX = dxg @ W_ih
            g_x = Tensor._empty((T, B, I), D.float32, x.device)
            be.sgemm(1, False, False, T * B, I, GH, 1.0, dxg.data_ptr(), GH, 0, w_ih.data_ptr(), I, 0, 0.0,
                     g_x.data_ptr(), I, 0, 0, 0, 0)
        if both_w:
            g_wih, g_whh = _weight_grads(dxg, x, ctx.seq.hp)
        elif need[1]:  # dW_ih = dxg^T @ x over all steps
            g_wih = Tensor._empty((GH, I), D.float32, x.device)
            be.sgemm(1, True, False, GH, I, T * B, 1.0, dxg.data_ptr(), GH, 0, x.data_ptr(), I, 0, 0.0,
                     g_wih.data_ptr(), I, 0, 0, 0, 0)
        if want_b:
            g_bhh = db_h if need[4] else None
            if need[3]:
                g_bih = db_x if ctx.gru else (db_h.clone() if need[4] else db_h)
        return g_x, g_wih, g_whh, g_bih, g_bhh, dh, dc, None, None, None


def _weight_grads(dg, x, hp):
    """(dg^T @ x, dg^T @ hp) over all T*B rows as one GEMM: x and hp side by side in one buffer."""
    be, dev, f32 = x._backend, x.device, D.float32.code
    T, B, I = x._shape
    H = hp._shape[2]
    GH = dg._shape[2]
    W = I + H
    xh = Tensor._empty((T * B, W), D.float32, dev)
    be.assign_strided(f32, xh.data_ptr(), [W, 1], x.data_ptr(), [I, 1], [T * B, I])
    be.assign_strided(f32, xh.data_ptr() + I * D.float32.itemsize, [W, 1], hp.data_ptr(), [H, 1], [T * B, H])
    g = Tensor._empty((GH, W), D.float32, dev)
    be.sgemm(1, True, False, GH, W, T * B, 1.0, dg.data_ptr(), GH, 0, xh.data_ptr(), W, 0, 0.0, g.data_ptr(), W, 0,
             0, 0, 0)
    g_ih = Tensor._empty((GH, I), D.float32, dev)
    g_hh = Tensor._empty((GH, H), D.float32, dev)
    be.copy_strided(f32, g_ih.data_ptr(), g.data_ptr(), [GH, I], [W, 1])
    be.copy_strided(f32, g_hh.data_ptr(), g.data_ptr() + I * D.float32.itemsize, [GH, H], [W, 1])
    return g_ih, g_hh


def _step_composed(mode, xt, h, c, w_hh, b_hh, w_hr=None):
    """One step from core ops (autograd-tracked): the fallback for backends without cell kernels,
    and the path of LSTMs with projections (w_hr: h = W_hr (o * tanh(c)), PyTorch's proj_size)."""
    from .linalg import linear
    hg = linear(h, w_hh, b_hh)
    H = w_hh.shape[0] // GATES[mode]
    if mode == "LSTM":
        g = xt + hg
        i = g[:, 0:H].sigmoid()
        f = g[:, H:2 * H].sigmoid()
        gg = g[:, 2 * H:3 * H].tanh()
        o = g[:, 3 * H:4 * H].sigmoid()
        c = f * c + i * gg
        h = o * c.tanh()
        return (h if w_hr is None else linear(h, w_hr)), c
    if mode == "GRU":
        r = (xt[:, 0:H] + hg[:, 0:H]).sigmoid()
        z = (xt[:, H:2 * H] + hg[:, H:2 * H]).sigmoid()
        n = (xt[:, 2 * H:] + r * hg[:, 2 * H:]).tanh()
        return (1 - z) * n + z * h, None
    v = xt + hg
    return (v.tanh() if mode == "RNN_TANH" else v.relu()), None


def _composed(xg, w_hh, b_hh, h0, c0, mode, lengths, reverse, w_hr=None):
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
        hn, cn = _step_composed(mode, xg[t], h, c, w_hh, b_hh, w_hr)
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


def recurrent_layer(x, w_ih, w_hh, b_ih, b_hh, h0, c0, mode, lengths=None, reverse=False, w_hr=None):
    """One direction of one layer: x [T, B, I] -> (out [T, B, H], h_n[, c_n]), input projection included.
    h0/c0 None: zero initial states (the native path fills them in place, no tensor is made).
    w_hr: an LSTM's projection (proj_size); it runs on the composed path (core ops per step)."""
    if has_native(x) and w_hr is None:
        if x.dtype is not D.float32:
            raise RuntimeError(f"{mode}: expected a float32 input, got {x.dtype}")
        _check_operands(mode, x, w_ih, w_hh, b_ih, b_hh, h0, c0)
        if x.dim() != 3 or w_ih.dim() != 2 or w_ih._shape[1] != x._shape[2]:
            raise RuntimeError(f"{mode}: input of shape {tuple(x.shape)} does not fit w_ih of shape {tuple(w_ih.shape)}")
        if b_ih is not None and tuple(b_ih._shape) != (w_ih._shape[0],):
            raise RuntimeError(f"{mode}: b_ih has shape {tuple(b_ih.shape)}, expected ({w_ih._shape[0]},)")
        _check_shapes(mode, (x._shape[0], x._shape[1], w_ih._shape[0]), w_hh, b_hh, h0, c0)
        x, w_ih, w_hh = _contig(x), _contig(w_ih), _contig(w_hh)
        h0 = _contig(h0) if h0 is not None else None
        b_ih = _contig(b_ih) if b_ih is not None else None
        b_hh = _contig(b_hh) if b_hh is not None else None
        c0 = _contig(c0) if c0 is not None else None
        return _RecurrentLayer.apply(x, w_ih, w_hh, b_ih, b_hh, h0, c0, mode, lengths, reverse)
    from .linalg import linear
    T, B, I = x.shape
    if h0 is None:
        h0 = zeros((B, w_hh.shape[1]), device=x.device)
    if c0 is None and mode == "LSTM":
        c0 = zeros((B, w_hh.shape[0] // 4), device=x.device)
    xg = linear(x.reshape(T * B, I), w_ih, b_ih).reshape(T, B, -1)
    return _composed(xg, w_hh, b_hh, h0, c0, mode, lengths, reverse, w_hr)


def recurrence(xg, w_hh, b_hh, h0, c0, mode, lengths=None, reverse=False):
    if has_native(xg):
        _check_operands(mode, xg, xg, w_hh, b_hh, h0, c0)
        _check_shapes(mode, xg._shape, w_hh, b_hh, h0, c0)
        xg, w_hh, h0 = _contig(xg), _contig(w_hh), _contig(h0)
        b_hh = _contig(b_hh) if b_hh is not None else None
        c0 = _contig(c0) if c0 is not None else None
        return _Recurrence.apply(xg, w_hh, b_hh, h0, c0, mode, lengths, reverse)
    return _composed(xg, w_hh, b_hh, h0, c0, mode, lengths, reverse)
