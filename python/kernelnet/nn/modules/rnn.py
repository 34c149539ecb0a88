"""Recurrent layers: RNN, LSTM, GRU and their single-step cells, with PyTorch's parameters,
layout, initialisation and semantics.

Per layer and direction the input projection of ALL time steps is one GEMM ([T*B, I] x W_ih^T);
it and the time loop (hidden-projection GEMM + fused cell kernel per step, BPTT in backward) are
one autograd Function, kernelnet.ops.recurrent.recurrent_layer.

Variable-length batches: pass `lengths=` (B ints, each in 1..T) to forward, or use
pack_padded_sequence / pad_packed_sequence below. Rows past their length output zeros and their
h_n/c_n is the state at their last valid step; the reverse direction starts each row at its own
last element. This equals PyTorch's packed-sequence results (tests check it).
"""
import math


import kernelnet as _kn
from .module import Module
from ..parameter import Parameter
from .. import functional as F
from .. import init
from ...ops.recurrent import recurrence, recurrent_layer, GATES


class PackedSequence:
    """Minimal packed-sequence equivalent: the padded time-major data plus the lengths.

    (Not PyTorch's interleaved layout: kernelnet's kernels mask by length instead of shrinking the
    batch, so the padded tensor is what they want.)"""

    def __init__(self, data, lengths):
        self.data = data  # [T, B, *] time-major
        self.lengths = [int(v) for v in lengths]


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Wrap a padded batch and its lengths. The layers do not need sorted lengths, but as in PyTorch
    enforce_sorted=True (the default) refuses unsorted ones, so code written here runs there too;
    pass enforce_sorted=False for any order."""
    if isinstance(lengths, _kn.Tensor):
        lengths = lengths.tolist()
    lengths = [int(v) for v in lengths]
    x = input.transpose(0, 1) if batch_first else input
    if len(lengths) != x.shape[1]:
        raise ValueError(f"pack_padded_sequence: {len(lengths)} lengths for a batch of {x.shape[1]}")
    if any(v < 1 or v > x.shape[0] for v in lengths):
        raise ValueError(f"pack_padded_sequence: lengths must be in [1, {x.shape[0]}], got {lengths}")
    if enforce_sorted and any(a < b for a, b in zip(lengths, lengths[1:])):
        raise RuntimeError(f"pack_padded_sequence: `lengths` array must be sorted in decreasing order when "
                           f"`enforce_sorted` is True (got {lengths}); pass enforce_sorted=False for any order")
    return PackedSequence(x, lengths)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """(padded output, lengths tensor); positions past each length are zero (padding_value 0 only)."""
    if padding_value != 0.0:
        raise NotImplementedError("pad_packed_sequence: only padding_value=0 is supported")
    x = sequence.data
    T = max(sequence.lengths)
    if total_length is not None:
        T = total_length
    if T < x.shape[0]:
        x = x[:T]
    elif T > x.shape[0]:
        pad = _kn.zeros((T - x.shape[0],) + tuple(x.shape[1:]), device=x.device)
        x = _kn.cat([x, pad], 0)
    if batch_first:
        x = x.transpose(0, 1)
    return x, _kn.tensor(sequence.lengths, dtype=_kn.int64)


class RNNBase(Module):
    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        if proj_size < 0:
            raise ValueError(f"proj_size should be a non-negative integer, got {proj_size}")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size has to be smaller than hidden_size, got proj_size={proj_size}, "
                             f"hidden_size={hidden_size}")
        if not (0 <= dropout <= 1):
            raise ValueError(f"dropout should be a number in range [0, 1], got {dropout}")
        if hidden_size <= 0 or num_layers <= 0:
            raise ValueError(f"{type(self).__name__}: hidden_size and num_layers must be positive, got "
                             f"hidden_size={hidden_size}, num_layers={num_layers}")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = int(proj_size)
        G = GATES[mode] * hidden_size
        real_h = self.proj_size or hidden_size  # size of h (and of the output); c keeps hidden_size
        nd = 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(num_layers):
            for d in range(nd):
                sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
                in_sz = input_size if layer == 0 else real_h * nd
                names = [("weight_ih" + sfx, (G, in_sz)), ("weight_hh" + sfx, (G, real_h))]
                if bias:
                    names += [("bias_ih" + sfx, (G,)), ("bias_hh" + sfx, (G,))]
                if self.proj_size:
                    names += [("weight_hr" + sfx, (self.proj_size, hidden_size))]
                for name, shape in names:
                    setattr(self, name, Parameter(_kn.empty(shape, device=device)))
                    self._flat_weights_names.append(name)
        self.reset_parameters()

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -stdv, stdv)

    def _params(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
        g = lambda n: getattr(self, n + sfx, None)  # noqa: E731
        return g("weight_ih"), g("weight_hh"), (g("bias_ih") if self.bias else None), \
            (g("bias_hh") if self.bias else None), g("weight_hr")

    def forward(self, input, hx=None, lengths=None):
        packed = isinstance(input, PackedSequence)
        if packed:
            lengths = input.lengths
            x = input.data
        else:
            x = input
        lstm = self.mode == "LSTM"
        unbatched = x.dim() == 2
        if x.dim() not in (2, 3):
            raise ValueError(f"{type(self).__name__}: expected 2-D (unbatched) or 3-D input, got {x.dim()}-D "
                             f"shape {tuple(x.shape)}")
        if unbatched:
            x = x.unsqueeze(1)
        elif self.batch_first and not packed:
            x = x.transpose(0, 1)
        T, B, I = x.shape
        if I != self.input_size:
            raise ValueError(f"{type(self).__name__}: input.size(-1) must be equal to input_size. "
                             f"Expected {self.input_size}, got {I}")
        if lengths is not None:
            if isinstance(lengths, _kn.Tensor):
                lengths = lengths.tolist()
            lengths = [int(v) for v in lengths]
            if len(lengths) != B or any(v < 1 or v > T for v in lengths):
                raise ValueError(f"{type(self).__name__}: lengths must be B={B} ints in [1, {T}], got {lengths}")
            if all(v == T for v in lengths):
                lengths = None
        nd = 2 if self.bidirectional else 1
        H = self.hidden_size
        Hh = self.proj_size or H
        L = self.num_layers * nd
        if hx is None:
            h0 = c0 = None  # zero states: the kernels fill them, no tensors are made
        else:
            if lstm:
                h0, c0 = hx
            else:
                h0, c0 = hx, None
            if unbatched:
                h0 = h0.unsqueeze(1)
                c0 = c0.unsqueeze(1) if c0 is not None else None
            for name, s, want in (("h0", h0, (L, B, Hh)), ("c0", c0, (L, B, H))):
                if s is not None and tuple(s.shape) != want:
                    raise ValueError(f"{type(self).__name__}: expected hidden size {want} for {name}, "
                                     f"got {tuple(s.shape)}")
        hs, cs = [], []
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(nd):
                w_ih, w_hh, b_ih, b_hh, w_hr = self._params(layer, d)
                idx = layer * nd + d
                res = recurrent_layer(layer_in, w_ih, w_hh, b_ih, b_hh, None if h0 is None else h0[idx],
                                      None if c0 is None else c0[idx], self.mode, lengths, reverse=(d == 1),
                                      w_hr=w_hr)
                outs.append(res[0])
                hs.append(res[1])
                if lstm:
                    cs.append(res[2])
            layer_in = outs[0] if nd == 1 else _kn.cat(outs, 2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_in = F.dropout(layer_in, self.dropout, training=True)
        out = layer_in
        # one layer, one direction: a view instead of a stacked copy
        h_n = hs[0].unsqueeze(0) if len(hs) == 1 else _kn.stack(hs, 0)
        c_n = (cs[0].unsqueeze(0) if len(cs) == 1 else _kn.stack(cs, 0)) if lstm else None
        if unbatched:
            out = out.squeeze(1)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if lstm else None
        elif packed:
            out = PackedSequence(out, lengths if lengths is not None else [T] * B)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return (out, (h_n, c_n)) if lstm else (out, h_n)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s


class RNN(RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size,
                         num_layers, bias, batch_first, dropout, bidirectional, proj_size, device=device)


class LSTM(RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device=device)


class GRU(RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        # proj_size is accepted (and refused unless 0) as in PyTorch, whose GRU passes it to RNNBase
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device=device)


class RNNCellBase(Module):
    def __init__(self, mode, input_size, hidden_size, bias=True, device=None):
        super().__init__()
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        G = GATES[mode] * hidden_size
        self.weight_ih = Parameter(_kn.empty((G, input_size), device=device))
        self.weight_hh = Parameter(_kn.empty((G, hidden_size), device=device))
        if bias:
            self.bias_ih = Parameter(_kn.empty((G,), device=device))
            self.bias_hh = Parameter(_kn.empty((G,), device=device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -stdv, stdv)

    def _run(self, input, h, c):
        if input.dim() not in (1, 2):
            raise ValueError(f"{type(self).__name__}: expected 1-D or 2-D input, got shape {tuple(input.shape)}")
        unbatched = input.dim() == 1
        if unbatched:
            input = input.unsqueeze(0)
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has {input.shape[-1]} features, expected "
                             f"{self.input_size}")
        B = input.shape[0]
        H = self.hidden_size
        if h is None:
            h = _kn.zeros((B, H), device=input.device)
        elif unbatched:
            h = h.unsqueeze(0)
        if self.mode == "LSTM":
            if c is None:
                c = _kn.zeros((B, H), device=input.device)
            elif unbatched:
                c = c.unsqueeze(0)
        xg = F.linear(input, self.weight_ih, self.bias_ih)
        # one step through the same sequence Function (T = 1): native cell kernels on CPU; it checks
        # h and c against the batch and hidden sizes (PyTorch's errors) before the kernels read them
        res = recurrence(xg.unsqueeze(0), self.weight_hh, self.bias_hh, h, c, self.mode)
        hn = res[1]
        cn = res[2] if self.mode == "LSTM" else None
        if unbatched:
            hn = hn.squeeze(0)
            cn = cn.squeeze(0) if cn is not None else None
        return hn, cn

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity '{nonlinearity}'")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, bias,
                         device)

    def forward(self, input, hx=None):
        return self._run(input, hx, None)[0]


class LSTMCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, device)

    def forward(self, input, hx=None):
        h, c = (None, None) if hx is None else hx
        return self._run(input, h, c)


class GRUCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, device)

    def forward(self, input, hx=None):
        return self._run(input, hx, None)[0]
