"""RNN / LSTM / GRU layers and cells against torch CPU: outputs, h_n/c_n and every gradient
(input, initial states, each weight and bias), for every option combination; the native
whole-sequence path and the composed-core-ops fallback; variable lengths vs torch's packed sequences."""
import itertools

import numpy as np
import pytest
import torch

import kernelnet as kn
from kernelnet.ops import recurrent as R
from _nn_util import assert_close, copy_params, to_kn

MODES = [("LSTM", {}), ("GRU", {}), ("RNN", {"nonlinearity": "tanh"}), ("RNN", {"nonlinearity": "relu"})]


def _make(name, kw, I, H, **opts):
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(I, H, **kw, **opts)
    km = getattr(kn.nn, name)(I, H, **kw, **opts)
    copy_params(tm, km)
    return tm, km


def _run_pair(tm, km, x_np, lstm, with_state, rng, lengths=None, tol=2e-4):
    L = tm.num_layers * (2 if tm.bidirectional else 1)
    B = x_np.shape[0] if tm.batch_first else x_np.shape[1]
    H = tm.hidden_size
    Hh = getattr(tm, "proj_size", 0) or H  # h's size (LSTM projections); c keeps H
    xt = torch.tensor(x_np, requires_grad=True)
    xk = kn.tensor(x_np, requires_grad=True)
    st_t = st_k = None
    states_t = []
    states_k = []
    if with_state:
        for size in ((Hh, H) if lstm else (Hh,)):
            s = rng.standard_normal((L, B, size)).astype(np.float32)
            states_t.append(torch.tensor(s, requires_grad=True))
            states_k.append(kn.tensor(s, requires_grad=True))
        st_t = tuple(states_t) if lstm else states_t[0]
        st_k = tuple(states_k) if lstm else states_k[0]
    if lengths is None:
        ot, ht = tm(xt, st_t)
        ok, hk = km(xk, st_k)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=tm.batch_first,
                                                         enforce_sorted=False)
        ot, ht = tm(packed, st_t)
        ot, _ = torch.nn.utils.rnn.pad_packed_sequence(ot, batch_first=tm.batch_first,
                                                       total_length=x_np.shape[1 if tm.batch_first else 0])
        ok, hk = km(xk, st_k, lengths=lengths)
    assert tuple(ok.shape) == tuple(ot.shape)
    assert_close(ok, ot, rtol=tol, atol=tol, what="output")
    hts = ht if lstm else (ht,)
    hks = hk if lstm else (hk,)
    for a, b in zip(hks, hts):
        assert_close(a, b, rtol=tol, atol=tol, what="h_n/c_n")
    # a loss touching output and every final state, with random weights so no gradient is symmetric
    wo = rng.standard_normal(tuple(ot.shape)).astype(np.float32)
    whs = [rng.standard_normal(tuple(h.shape)).astype(np.float32) for h in hts]
    lt = (ot * torch.tensor(wo)).sum() + sum((h * torch.tensor(w)).sum() for h, w in zip(hts, whs))
    lk = (ok * kn.tensor(wo)).sum() + sum((h * kn.tensor(w)).sum() for h, w in zip(hks, whs))
    lt.backward()
    lk.backward()
    assert_close(xk.grad, xt.grad, rtol=tol, atol=tol, what="grad input")
    for a, b in zip(states_k, states_t):
        assert_close(a.grad, b.grad, rtol=tol, atol=tol, what="grad h0/c0")
    kp = dict(km.named_parameters())
    for name, p in tm.named_parameters():
        if not p.requires_grad:
            assert kp[name].grad is None, name
            continue
        assert kp[name].grad is not None, name
        assert_close(kp[name].grad, p.grad, rtol=tol, atol=tol, what=f"grad {name}")


COMBOS = list(itertools.product(MODES, [1, 2], [False, True], [False, True], [True, False]))


@pytest.mark.parametrize("mode,num_layers,bidirectional,batch_first,bias", COMBOS,
                         ids=[f"{m[0]}{m[1].get('nonlinearity', '')}-L{n}-bi{int(b)}-bf{int(f)}-bias{int(s)}"
                              for m, n, b, f, s in COMBOS])
def test_layer_vs_torch(mode, num_layers, bidirectional, batch_first, bias):
    name, kw = mode
    rng = np.random.default_rng(hash((name, str(kw), num_layers, bidirectional, batch_first, bias)) % 2**32)
    T, B, I, H = 5, 3, 4, 6
    tm, km = _make(name, kw, I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                   bias=bias)
    assert [n for n, _ in km.named_parameters()] == [n for n, _ in tm.named_parameters()]
    shape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(shape).astype(np.float32)
    _run_pair(tm, km, x, name == "LSTM", with_state=bias, rng=rng)


@pytest.mark.parametrize("name,kw", MODES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lengths_match_packed_sequence(name, kw, bidirectional):
    rng = np.random.default_rng(7)
    T, B, I, H = 6, 4, 3, 5
    tm, km = _make(name, kw, I, H, num_layers=2, bidirectional=bidirectional)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    _run_pair(tm, km, x, name == "LSTM", with_state=True, rng=rng, lengths=[6, 2, 5, 1])


@pytest.mark.parametrize("name,kw", MODES)
@pytest.mark.parametrize("frozen", ["weight_ih", "weight_hh", "bias"])
def test_frozen_parameters(name, kw, frozen):
    # LSTM and RNN take dW_ih and dW_hh from one product when both are wanted: a frozen weight
    # (or frozen biases) must leave the other gradients as they are and get none itself.
    rng = np.random.default_rng(11)
    T, B, I, H = 5, 3, 4, 6
    tm, km = _make(name, kw, I, H, num_layers=2, bidirectional=True)
    for m in (tm, km):
        for pname, p in m.named_parameters():
            if pname.startswith(frozen):
                p.requires_grad_(False)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    _run_pair(tm, km, x, name == "LSTM", with_state=True, rng=rng)


PROJ_COMBOS = list(itertools.product([1, 2], [False, True], [False, True]))


@pytest.mark.parametrize("num_layers,bidirectional,use_lengths", PROJ_COMBOS,
                         ids=[f"L{n}-bi{int(b)}-len{int(u)}" for n, b, u in PROJ_COMBOS])
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_lstm_proj_size_vs_torch(num_layers, bidirectional, use_lengths):
    """PyTorch's proj_size: h = W_hr (o * tanh(c)) has proj_size features, c keeps hidden_size;
    weight_hr_l{k}[_reverse] after the biases; outputs, states and every gradient match."""
    rng = np.random.default_rng(5)
    T, B, I, H, P = 5, 3, 4, 6, 2
    tm, km = _make("LSTM", {}, I, H, num_layers=num_layers, bidirectional=bidirectional, proj_size=P)
    assert [n for n, _ in km.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert all(tuple(p.shape) == tuple(q.shape) for p, q in zip(km.parameters(), tm.parameters()))
    assert "proj_size=2" in repr(km)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    _run_pair(tm, km, x, True, with_state=True, rng=rng, lengths=[5, 2, 4] if use_lengths else None)


def test_proj_size_errors():
    with pytest.raises(ValueError, match="only supported for LSTM"):
        kn.nn.GRU(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="smaller than hidden_size"):
        kn.nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="non-negative"):
        kn.nn.LSTM(3, 4, proj_size=-1)
    m = kn.nn.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match=r"\(1, 2, 2\) for h0"):
        m(kn.randn(5, 2, 3), (kn.zeros(1, 2, 4), kn.zeros(1, 2, 4)))


_SIMD_ORDER = ["portable", "avx2", "avx512"]
SIMD_PATHS = _SIMD_ORDER[: _SIMD_ORDER.index(kn._cpu.simd_detected()) + 1]


# (T, B, H): with 2 threads the first splits the batch rows (more rows per thread than one row
# block, 72 on AVX-512; 4*100 gate rows > 384: several K blocks in backward); the second splits the
# hidden units (a batch too small to share: ragged 64 + 36 unit slices); the third splits the
# units because W_hh (4*300 x 300 floats > 1 MiB) is too big for every thread to stream each step.
SEQ_SHAPES = [(3, 160, 100), (4, 5, 100), (2, 9, 300)]


@pytest.mark.parametrize("simd", SIMD_PATHS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", SEQ_SHAPES, ids=["rows", "units-small-batch", "units-big-weight"])
@pytest.mark.parametrize("name,kw", MODES)
def test_sequence_kernel_blocks_threads_and_simd(name, kw, shape, threads, simd):
    """Shapes that reach every branch of rnn_sequence.cpp (both ways of sharing the time loop) and
    its pre-packed GEMM, with ragged register tiles, variable lengths and both directions; on every
    SIMD path (the GEMM micro-kernels and the cells' exp)."""
    old_simd, old_threads = kn._cpu.simd_active(), kn.get_num_threads()
    kn._cpu.set_simd(simd)
    kn.set_num_threads(threads)
    try:
        rng = np.random.default_rng(11)
        T, B, H = shape
        I = 5
        tm, km = _make(name, kw, I, H, bidirectional=True)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        lengths = list(rng.integers(1, T + 1, size=B))
        _run_pair(tm, km, x, name == "LSTM", with_state=True, rng=rng, lengths=lengths, tol=1e-3)
    finally:
        kn._cpu.set_simd(old_simd)
        kn.set_num_threads(old_threads)


@pytest.mark.parametrize("simd", SIMD_PATHS)
@pytest.mark.parametrize("name,kw", MODES[:2])
def test_gates_saturate_on_huge_inputs(name, kw, simd):
    """Pre-activations of +-1e3 drive the cells' sigmoid and tanh into their extremes (exp clamped,
    the reciprocal of ~1e38): outputs and gradients stay finite and match PyTorch's, on every SIMD
    path."""
    old_simd = kn._cpu.simd_active()
    kn._cpu.set_simd(simd)
    try:
        rng = np.random.default_rng(5)
        tm, km = _make(name, kw, 3, 20)
        x = (rng.standard_normal((6, 4, 3)) * np.array([1.0, 30.0, 1000.0])).astype(np.float32)
        _run_pair(tm, km, x, name == "LSTM", with_state=True, rng=rng, tol=1e-3)  # x*1e3 in the dW_ih sums
    finally:
        kn._cpu.set_simd(old_simd)


@pytest.mark.parametrize("simd", SIMD_PATHS)
def test_cell_activations_are_float_accurate(simd):
    """The cells' own sigmoid/tanh (exp polynomial, a Newton-refined reciprocal on AVX-512) against
    float64: a few float ulps, far tighter than the layer tests' tolerance (a bare 14-bit
    reciprocal estimate would miss by ~6e-5)."""
    old_simd = kn._cpu.simd_active()
    kn._cpu.set_simd(simd)
    try:
        rng = np.random.default_rng(3)
        B, I, H = 7, 5, 37
        km = kn.nn.LSTM(I, H)
        x = (rng.standard_normal((1, B, I)) * 2).astype(np.float32)
        h0, c0 = (rng.standard_normal((1, B, H)).astype(np.float32) for _ in range(2))
        out = km(kn.tensor(x), (kn.tensor(h0), kn.tensor(c0)))[0].detach().numpy()[0]
        p = {n: v.detach().numpy().astype(np.float64) for n, v in km.named_parameters()}
        g = x[0] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + h0[0] @ p["weight_hh_l0"].T + p["bias_hh_l0"]
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        i, f, gg, o = sig(g[:, :H]), sig(g[:, H:2 * H]), np.tanh(g[:, 2 * H:3 * H]), sig(g[:, 3 * H:])
        want = o * np.tanh(f * c0[0] + i * gg)
        np.testing.assert_allclose(out, want, rtol=0, atol=2e-6)
    finally:
        kn._cpu.set_simd(old_simd)


@pytest.mark.parametrize("name,kw", MODES)
def test_composed_fallback_matches_native(name, kw, monkeypatch):
    """The core-ops path (used where the backend has no cell kernels, e.g. CUDA) is checked too."""
    monkeypatch.setattr(R, "has_native", lambda t: False)
    rng = np.random.default_rng(3)
    tm, km = _make(name, kw, 3, 4, num_layers=2, bidirectional=True)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    _run_pair(tm, km, x, name == "LSTM", with_state=True, rng=rng)
    _run_pair(tm, km, x, name == "LSTM", with_state=True, rng=rng, lengths=[2, 4])


@pytest.mark.parametrize("name,kw", [("LSTMCell", {}), ("GRUCell", {}), ("RNNCell", {"nonlinearity": "tanh"}),
                                     ("RNNCell", {"nonlinearity": "relu"})])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("state", [True, False])
def test_cells_vs_torch(name, kw, bias, state):
    rng = np.random.default_rng(11)
    B, I, H = 3, 5, 7
    torch.manual_seed(1)
    tc = getattr(torch.nn, name)(I, H, bias=bias, **kw)
    kc = getattr(kn.nn, name)(I, H, bias=bias, **kw)
    copy_params(tc, kc)
    x = rng.standard_normal((B, I)).astype(np.float32)
    xt, xk = torch.tensor(x, requires_grad=True), kn.tensor(x, requires_grad=True)
    lstm = name == "LSTMCell"
    st, sk = [], []
    if state:
        for _ in range(2 if lstm else 1):
            s = rng.standard_normal((B, H)).astype(np.float32)
            st.append(torch.tensor(s, requires_grad=True))
            sk.append(kn.tensor(s, requires_grad=True))
    argt = (tuple(st) if lstm else st[0]) if state else None
    argk = (tuple(sk) if lstm else sk[0]) if state else None
    ot, ok = tc(xt, argt), kc(xk, argk)
    ots = ot if lstm else (ot,)
    oks = ok if lstm else (ok,)
    lt = lk = 0
    for a, b in zip(oks, ots):
        assert_close(a, b, rtol=1e-4, atol=1e-5)
        w = rng.standard_normal(tuple(b.shape)).astype(np.float32)
        lt = lt + (b * torch.tensor(w)).sum()
        lk = lk + (a * kn.tensor(w)).sum()
    lt.backward()
    lk.backward()
    assert_close(xk.grad, xt.grad, rtol=1e-4, atol=1e-5)
    for a, b in zip(sk, st):
        assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)
    kp = dict(kc.named_parameters())
    for n, p in tc.named_parameters():
        assert_close(kp[n].grad, p.grad, rtol=1e-4, atol=1e-5, what=n)


def test_unbatched_and_defaults():
    torch.manual_seed(0)
    tm, km = torch.nn.GRU(3, 4, num_layers=2), kn.nn.GRU(3, 4, num_layers=2)
    copy_params(tm, km)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    ot, ht = tm(torch.tensor(x))
    ok, hk = km(kn.tensor(x))
    assert tuple(ok.shape) == (5, 4) and tuple(hk.shape) == (2, 4)
    assert_close(ok, ot, rtol=1e-4, atol=1e-5)
    assert_close(hk, ht, rtol=1e-4, atol=1e-5)


def test_init_range_and_state_dict_keys():
    m = kn.nn.LSTM(10, 16, num_layers=2, bidirectional=True)
    t = torch.nn.LSTM(10, 16, num_layers=2, bidirectional=True)
    assert list(m.state_dict().keys()) == list(t.state_dict().keys())
    for k, v in m.state_dict().items():
        assert tuple(v.shape) == tuple(t.state_dict()[k].shape), k
        a = v.numpy()
        assert np.abs(a).max() <= 0.25 + 1e-6 and a.std() > 0.1, k  # U(-1/sqrt(16), 1/sqrt(16))


def test_dropout_between_layers():
    m = kn.nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = kn.randn(5, 2, 3)
    m.eval()
    a, b = m(x)[0].detach().numpy(), m(x)[0].detach().numpy()
    np.testing.assert_array_equal(a, b)  # eval: deterministic
    m.train()
    c = m(x)[0].detach().numpy()
    assert not np.allclose(a, c)  # train: dropout on layer 0's output changes layer 1
    m0 = kn.nn.LSTM(3, 4, num_layers=2, dropout=0.0)
    np.testing.assert_array_equal(m0(x)[0].detach().numpy(), m0(x)[0].detach().numpy())


def test_pack_pad_roundtrip():
    rng = np.random.default_rng(5)
    torch.manual_seed(0)
    tm, km = torch.nn.LSTM(3, 4, batch_first=True), kn.nn.LSTM(3, 4, batch_first=True)
    copy_params(tm, km)
    x = rng.standard_normal((3, 5, 3)).astype(np.float32)
    lens = [5, 3, 1]
    pt = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), lens, batch_first=True)
    pk = kn.nn.utils.rnn.pack_padded_sequence(kn.tensor(x), lens, batch_first=True)
    ot, (ht, _) = tm(pt)
    ok, (hk, _) = km(pk)
    ot, lt = torch.nn.utils.rnn.pad_packed_sequence(ot, batch_first=True)
    ok, lk = kn.nn.utils.rnn.pad_packed_sequence(ok, batch_first=True)
    assert lk.tolist() == lt.tolist()
    assert_close(ok, ot, rtol=1e-4, atol=1e-5)
    assert_close(hk, ht, rtol=1e-4, atol=1e-5)
    # unsorted lengths: refused by default as in PyTorch, fine with enforce_sorted=False
    with pytest.raises(RuntimeError, match="enforce_sorted"):
        kn.nn.utils.rnn.pack_padded_sequence(kn.tensor(x), [1, 5, 3], batch_first=True)
    pk = kn.nn.utils.rnn.pack_padded_sequence(kn.tensor(x), [1, 5, 3], batch_first=True, enforce_sorted=False)
    pt = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), [1, 5, 3], batch_first=True, enforce_sorted=False)
    assert_close(km(pk)[1][0], tm(pt)[1][0], rtol=1e-4, atol=1e-5)


def test_bad_input_raises():
    m = kn.nn.GRU(3, 4)
    with pytest.raises(ValueError, match="input_size"):
        m(kn.randn(5, 2, 7))
    with pytest.raises(ValueError, match="hidden size"):
        m(kn.randn(5, 2, 3), kn.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="lengths"):
        m(kn.randn(5, 2, 3), lengths=[6, 1])
    with pytest.raises(ValueError, match="nonlinearity"):
        kn.nn.RNN(3, 4, nonlinearity="gelu")
    # the functional entry points hand lengths to the kernels as a raw host pointer of B int64s
    from kernelnet.ops.recurrent import recurrent_layer
    w_ih, w_hh = kn.randn(12, 3), kn.randn(12, 4)
    for bad in ([3], [[3, 3]], [3, 3, 3]):
        with pytest.raises(ValueError, match="one length per batch row"):
            recurrent_layer(kn.randn(5, 2, 3), w_ih, w_hh, None, None, None, None, "GRU", lengths=bad)


@pytest.mark.parametrize("name", ["RNNCell", "GRUCell", "LSTMCell"])
def test_cell_state_shapes_are_checked(name, device):
    """A cell's state of the wrong batch or width was read past its end by the kernels (garbage
    out, or a fault); PyTorch raises, and so do the cells and the functional entry points now."""
    cell = getattr(kn.nn, name)(4, 6).to(device)
    x = kn.randn(3, 4, device=device)
    for bad, what in (((1, 1), "batch size"), ((3, 3), "hidden_size"), ((3,), "batch size")):
        h = kn.randn(*bad, device=device)
        with pytest.raises(RuntimeError, match=what):
            cell(x, (h, kn.zeros(3, 6, device=device)) if name == "LSTMCell" else h)
    if name == "LSTMCell":
        with pytest.raises(RuntimeError, match="hidden_size"):
            cell(x, (kn.zeros(3, 6, device=device), kn.zeros(3, 5, device=device)))
    from kernelnet.ops.recurrent import recurrence, recurrent_layer
    mode = {"RNNCell": "RNN_TANH", "GRUCell": "GRU", "LSTMCell": "LSTM"}[name]
    G = {"RNN_TANH": 1, "GRU": 3, "LSTM": 4}[mode] * 6
    xg, w_hh = kn.randn(2, 3, G, device=device), kn.randn(G, 6, device=device)
    c0 = kn.zeros(3, 6, device=device) if mode == "LSTM" else None
    with pytest.raises(RuntimeError, match="batch size"):
        recurrence(xg, w_hh, None, kn.zeros(1, 6, device=device), c0, mode)
    with pytest.raises(RuntimeError, match="b_hh"):
        recurrence(xg, w_hh, kn.zeros(G + 1, device=device), kn.zeros(3, 6, device=device), c0, mode)
    with pytest.raises(RuntimeError, match="w_ih"):
        recurrent_layer(kn.randn(2, 3, 5, device=device), kn.randn(G, 4, device=device), w_hh, None, None,
                        None, None, mode)


def test_native_kernels_reject_bad_args():
    be = kn.zeros(1)._backend
    with pytest.raises(ValueError, match="rnn_sequence_forward: act"):
        be.rnn_sequence_forward(0, 7, 2, 3, 4, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, False)
    with pytest.raises(ValueError, match="rnn_sequence_forward: mode"):
        be.rnn_sequence_forward(5, 0, 2, 3, 4, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, False)
    with pytest.raises(ValueError, match="rnn_sequence_forward: bad sizes"):
        be.rnn_sequence_forward(0, 0, 0, 3, 4, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, False)
    with pytest.raises(ValueError, match="rnn_sequence_backward: null pointer"):
        be.rnn_sequence_backward(0, 0, 2, 3, 4, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, False)


@pytest.mark.parametrize("name,rnn", [("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)])
def test_zoo_row_readers(name, rnn):
    from kernelnet.train.zoo import build_model
    m = build_model(name, (1, 28, 28), 10)
    t = rnn(28, 128)
    expect = sum(p.numel() for p in t.parameters()) + 128 * 10 + 10
    assert sum(p.numel() for p in m.parameters()) == expect
    x = kn.randn(3, 1, 28, 28)
    out = m(x)
    assert tuple(out.shape) == (3, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_char_lm_example_learns():
    import os
    import sys
    ex = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")
    sys.path.insert(0, ex)
    try:
        import char_lm
    finally:
        sys.path.remove(ex)
    with open(os.path.join(ex, "data", "sonnets.txt"), encoding="utf-8") as f:
        text = f.read()[:1500]
    model, chars, losses = char_lm.train(text, steps=40, seq=16, batch=8, hidden=32, lr=1e-2, sample_every=0)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.5, losses
    s = char_lm.sample(model, chars, "Sha", 20, rng=np.random.default_rng(0))
    assert s.startswith("Sha") and len(s) == 23 and set(s[3:]) <= set(chars)


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("want", [(True, True), (True, False), (False, True)])
def test_sequence_backward_bias_sums(mode, want):
    """The binding's bias-gradient outputs: db_x and db_h are the column sums of dxg and dhg over all
    steps and rows (outside GRU both are the sums of the one gate gradient), whichever are asked."""
    be = kn.zeros(1)._backend
    rng = np.random.default_rng(2)
    T, B, H = 3, 5, 4
    G = {0: 4, 1: 3, 2: 1}[mode]
    GH = G * H
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    xg, w = f32(T, B, GH), f32(GH, H)
    hp, cp, out = f32(T, B, H), f32(T, B, H), np.zeros((T, B, H), np.float32)
    h_n, c_n = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
    saved = np.zeros((T, B, 4 * H if mode == 1 else GH), np.float32)
    be.rnn_sequence_forward(mode, 0, T, B, H, xg.ctypes.data, w.ctypes.data, 0, hp.ctypes.data, cp.ctypes.data,
                            out.ctypes.data, h_n.ctypes.data, c_n.ctypes.data, saved.ctypes.data, 0, False)
    dh, dc, g_out = f32(B, H), f32(B, H), f32(T, B, H)
    dxg = np.zeros((T, B, GH), np.float32)
    dhg = np.zeros((T, B, GH), np.float32) if mode == 1 else dxg
    db_x = np.full(GH, np.nan, np.float32)
    db_h = np.full(GH, np.nan, np.float32)
    be.rnn_sequence_backward(mode, 0, T, B, H, w.ctypes.data, hp.ctypes.data, cp.ctypes.data, h_n.ctypes.data,
                             c_n.ctypes.data, saved.ctypes.data, g_out.ctypes.data, dh.ctypes.data, dc.ctypes.data,
                             dxg.ctypes.data, dhg.ctypes.data, db_x.ctypes.data if want[0] else 0,
                             db_h.ctypes.data if want[1] else 0, 0, False)
    assert np.isfinite(dxg).all() and np.abs(dxg).sum() > 0
    if want[0]:
        np.testing.assert_allclose(db_x, dxg.reshape(-1, GH).sum(0, dtype=np.float64), rtol=1e-5, atol=1e-5)
    if want[1]:
        np.testing.assert_allclose(db_h, dhg.reshape(-1, GH).sum(0, dtype=np.float64), rtol=1e-5, atol=1e-5)
