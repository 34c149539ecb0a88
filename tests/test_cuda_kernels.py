"""kernelnet._cuda kernels against the CPU kernels (kernelnet._cpu) and NumPy float64.

Every function of the core contract (docs/KERNEL_CONTRACT.md) is run on awkward shapes (size 1,
odd tails, broadcast, transposed and misaligned views) and compared with the CPU backend, which
has its own tests against NumPy/PyTorch. Skipped as a whole without a CUDA build or a GPU.
"""
import numpy as np
import pytest

try:
    from kernelnet import _cuda as G
except ImportError as e:  # CPU-only build
    pytest.skip(f"kernelnet._cuda is not built ({e})", allow_module_level=True)
if G.device_count() == 0:
    pytest.skip("no CUDA GPU visible (kernelnet._cuda.device_count() == 0)", allow_module_level=True)
from kernelnet import _cpu as C  # noqa: E402

F32, I64, BOOL = 0, 1, 2
NP = {F32: np.float32, I64: np.int64, BOOL: np.uint8}
B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MAX, B_MIN = range(7)
B_EQ, B_NE, B_LT, B_LE, B_GT, B_GE, B_AND, B_OR, B_XOR = range(7, 16)
B_FMOD, B_REMAINDER, B_FLOOR_DIV, B_BIT_AND, B_BIT_OR, B_BIT_XOR = range(16, 22)


def _is_compare(op):
    return B_EQ <= op <= B_XOR
R_SUM, R_MEAN, R_MAX, R_MIN, R_ARGMAX, R_ARGMIN, R_PROD, R_ANY, R_ALL = range(9)
U_NOT = 25


# ------------------------------------------------------------------------------ helpers
_KEEP = []  # every Dev of the running test: `Dev(x).ptr` inline must not free the buffer at once


@pytest.fixture(autouse=True)
def _release_buffers():
    yield
    G.synchronize()
    _KEEP.clear()


class Dev:
    """A device copy of a NumPy array (its Buffer keeps the memory alive until the test ends)."""

    def __init__(self, arr, pad=0):
        _KEEP.append(self)
        arr = np.ascontiguousarray(arr)
        self.np_dtype = arr.dtype
        self.shape = arr.shape
        self.pad = pad  # elements of offset: misaligned pointers for the scalar paths
        self.buf = G.Buffer((arr.size + pad) * arr.itemsize + 16)
        self.ptr = self.buf.ptr + pad * arr.itemsize
        if arr.size:
            G.memcpy_htod(self.ptr, arr.ctypes.data, arr.nbytes)

    @staticmethod
    def empty(shape, dtype, pad=0):
        return Dev(np.zeros(shape, dtype), pad)

    def get(self):
        out = np.empty(self.shape, self.np_dtype)
        if out.size:
            G.memcpy_dtoh(out.ctypes.data, self.ptr, out.nbytes)
        return out


def cpu_ptr(a):
    return a.ctypes.data


def estrides(a):
    return [s // a.itemsize for s in a.strides]


# ------------------------------------------------------------------------------ memory
def test_buffer_and_cache_reuse():
    G.synchronize()
    base = G.memory_allocated()
    b = G.Buffer(1000)
    assert b.ptr != 0 and b.nbytes == 1000 and b.ptr % 256 == 0
    assert G.memory_allocated() >= base + 1000
    p = b.ptr
    del b
    assert G.memory_allocated() == base
    x = G.Buffer(3 << 20)  # first use of this size class may cudaMalloc
    del x
    n0 = G._allocator_stats()["n_malloc"]
    for _ in range(20):  # steady state: blocks come from the cache, no cudaMalloc
        x = G.Buffer(1000)
        y = G.Buffer(3 << 20)
        del x, y
    assert G._allocator_stats()["n_malloc"] == n0
    again = G.Buffer(900)  # same size class
    assert again.ptr == p
    assert G.Buffer(0).ptr == 0
    G.reset_peak_memory_stats()
    big = G.Buffer(5 << 20)
    assert G.max_memory_allocated() >= G.memory_allocated() >= 5 << 20
    del big
    G.empty_cache()
    assert G._allocator_stats()["cached"] == 0


def test_size_classes_bound_waste():
    for n in [1, 511, 512, 513, 1 << 20, (1 << 20) + 1, 3 << 20, 123456789]:
        s = G._size_class(n)
        assert s >= n and s <= max(512, 1.25 * n + 512)
    # from 1 GiB up only the 2 MiB granule: a 70 GiB tensor must not ask for an 80 GiB block
    for n in [1 << 30, 70 << 30, (70 << 30) + 1]:
        s = G._size_class(n)
        assert n <= s < n + (2 << 20) and s % (2 << 20) == 0
    with pytest.raises(ValueError, match="negative"):
        G._size_class(-1)


@pytest.mark.parametrize("n", [0, 1, 7, 4096, (1 << 20) + 3, (9 << 20) + 5])
def test_memcpy_roundtrip(n):
    rng = np.random.default_rng(n)
    a = rng.integers(0, 255, n, dtype=np.uint8)
    d = Dev(a)
    e = Dev.empty(n, np.uint8)
    G.memcpy_dtod(e.ptr, d.ptr, n)
    np.testing.assert_array_equal(e.get(), a)


def test_device_queries():
    assert isinstance(G.device_name(0), str) and G.device_name(0)
    G.synchronize()


# ------------------------------------------------------------------------------ elementwise
@pytest.mark.parametrize("dtype", [F32, I64, BOOL])
@pytest.mark.parametrize("n,pad", [(1, 0), (13, 1), (1000, 0), (1001, 3)])
def test_fill(dtype, n, pad):
    d = Dev.empty(n, NP[dtype], pad)
    G.fill(dtype, d.ptr, n, 3.0 if dtype != BOOL else 1.0)
    np.testing.assert_array_equal(d.get(), np.full(n, 3 if dtype != BOOL else 1, NP[dtype]))


def test_cast_all_pairs():
    src = {F32: np.array([0, -1.5, 2.7, 1e9, -0.0, 3], np.float32),
           I64: np.array([0, -3, 5, 1 << 40, 1, 2], np.int64),
           BOOL: np.array([0, 1, 1, 0, 1, 0], np.uint8)}
    for s in (F32, I64, BOOL):
        for d in (F32, I64, BOOL):
            a = src[s]
            ref = np.empty(a.shape, NP[d])
            C.cast(s, d, cpu_ptr(ref), cpu_ptr(a), a.size)
            o = Dev.empty(a.shape, NP[d])
            G.cast(s, d, o.ptr, Dev(a).ptr, a.size)
            np.testing.assert_array_equal(o.get(), ref, err_msg=f"cast {s}->{d}")


@pytest.mark.parametrize("dtype", [F32, I64, BOOL])
def test_copy_strided_and_assign_strided(dtype):
    rng = np.random.default_rng(0)
    base = (rng.standard_normal((5, 6, 7)) * 10).astype(NP[dtype])
    d = Dev(base)
    for view_shape, view_strides, off in [((7, 6, 5), (1, 7, 42), 0), ((3, 6), (84, 1), 8),
                                          ((5, 3, 7), (42, 14, 1), 7), ((4, 1, 2), (0, 0, 3), 1)]:
        ref = np.lib.stride_tricks.as_strided(base.ravel()[off:], view_shape,
                                              [s * base.itemsize for s in view_strides]).copy()
        o = Dev.empty(view_shape, NP[dtype])
        G.copy_strided(dtype, o.ptr, d.ptr + off * base.itemsize, list(view_shape), list(view_strides))
        np.testing.assert_array_equal(o.get(), ref)
    # assign: dst = transposed view of a (6, 5) buffer, src broadcast along rows
    dst = Dev(np.zeros((6, 5), NP[dtype]))
    src = base[0, 0, :5].copy()
    G.assign_strided(dtype, dst.ptr, [1, 5], Dev(src).ptr, [1, 0], [5, 6])
    # element (i, j) of the [5, 6] iteration space is dst[j, i] = src[i]: every row of dst is src
    np.testing.assert_array_equal(dst.get(), np.tile(src, (6, 1)))


def _binary_case(op, dtype, a, b, shape, a_st, b_st, pad=0):
    out_dt = np.uint8 if _is_compare(op) else NP[dtype]
    ref = np.empty(shape, out_dt)
    C.binary(op, dtype, cpu_ptr(ref), cpu_ptr(a), a_st, cpu_ptr(b), b_st, list(shape))
    o = Dev.empty(shape, out_dt, pad)
    G.binary(op, dtype, o.ptr, Dev(a, pad).ptr, a_st, Dev(b).ptr, b_st, list(shape))
    got = o.get()
    if dtype == F32 and not _is_compare(op):
        np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-6, err_msg=f"op {op}")
    else:
        np.testing.assert_array_equal(got, ref, err_msg=f"op {op}")


BIN_LAYOUTS = [  # shape, a strides, b strides, a elems, b elems
    ((1,), [1], [1], 1, 1),
    ((1037,), [1], [1], 1037, 1037),       # contiguous, odd tail (float4 path + tail)
    ((1037,), [1], [0], 1037, 1),          # scalar b
    ((3, 1,), [1, 0], [0, 1], 3, 1),
    ((7, 33), [33, 1], [0, 1], 231, 33),   # row broadcast
    ((7, 33), [1, 7], [1, 0], 231, 7),     # transposed a, column broadcast b
    ((2, 3, 4, 5, 2, 3, 2, 3), None, None, None, None),  # 8 dims, strided
]


@pytest.mark.parametrize("layout", range(len(BIN_LAYOUTS)))
@pytest.mark.parametrize("dtype", [F32, I64])
@pytest.mark.parametrize("pad", [0, 1])
def test_binary_all_ops(layout, dtype, pad):
    shape, a_st, b_st, na, nb = BIN_LAYOUTS[layout]
    rng = np.random.default_rng(layout)
    if a_st is None:  # a fully reversed (column-major) 8-d a, and a b broadcast along 5 dims
        na = int(np.prod(shape))
        a_st = [int(np.prod(shape[:d])) for d in range(8)]
        b_st = [0, 36, 0, 3, 0, 1, 0, 0]
        nb = 100
    # fmod, remainder and floor division on both dtypes; the bitwise ops on int64 only
    ops = list(range(B_ADD, B_FLOOR_DIV + 1)) + ([B_BIT_AND, B_BIT_OR, B_BIT_XOR] if dtype == I64 else [])
    for op in ops:
        if dtype == F32:
            a = rng.standard_normal(na).astype(np.float32)
            b = rng.standard_normal(nb).astype(np.float32)
            if op == B_POW:
                a = np.abs(a) + 0.5
            if op in (B_EQ, B_NE, B_LE, B_GE):
                b[: nb // 2] = a[: nb // 2] if na >= nb // 2 else b[: nb // 2]
        else:
            a = rng.integers(-20, 20, na).astype(np.int64)
            b = rng.integers(-5, 6, nb).astype(np.int64)
            if op == B_POW:
                b = np.abs(b) % 4
        _binary_case(op, dtype, a, b, shape, a_st, b_st, pad)


def test_binary_bool_logic():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, 301).astype(np.uint8)
    b = rng.integers(0, 2, 301).astype(np.uint8)
    for op in range(B_EQ, B_XOR + 1):
        _binary_case(op, BOOL, a, b, (301,), [1], [1])
    for op in (B_MAX, B_MIN):
        _binary_case(op, BOOL, a, b, (301,), [1], [1])


def test_binary_nan_and_int_division():
    a = np.array([np.nan, 1, 2, -np.inf], np.float32)
    b = np.array([0, np.nan, 3, 1], np.float32)
    for op in (B_MAX, B_MIN, B_ADD, B_DIV):
        _binary_case(op, F32, a, b, (4,), [1], [1])
    ai = np.array([7, -7, 7, -7, 0, 5, -2 ** 63, -2 ** 63], np.int64)
    bi = np.array([2, 2, -2, -2, 3, 0, -1, 3], np.int64)
    for op in (B_DIV, B_FLOOR_DIV, B_FMOD, B_REMAINDER):  # INT64_MIN / -1 wraps (it trapped on the CPU)
        _binary_case(op, I64, ai, bi, (8,), [1], [1])
    af = np.array([1.0, 1e10, 123456789.0, 5.0, -5.0, np.inf, -5.0, 7.0], np.float32)
    bf = np.array([0.1, 3.0, 7.0, np.inf, np.inf, 2.0, 0.0, -0.0], np.float32)
    for op in (B_FMOD, B_REMAINDER, B_FLOOR_DIV):  # PyTorch's formulas on both backends
        _binary_case(op, F32, af, bf, (8,), [1], [1])


UNARY_OPS = list(range(0, 29))


def _unary_input(op, n, rng):
    x = rng.standard_normal(n).astype(np.float32) * 2
    if op in (2, 6, 11):  # log, sqrt, rsqrt
        x = np.abs(x) + 0.1
    if op == 20:  # log1p
        x = np.abs(x) - 0.5
    if op == 8:  # pow with a fractional exponent
        x = np.abs(x) + 0.1
    return x


def _params(op):
    return {8: (2.5, 0.0), 9: (-0.5, 0.7), 14: (0.1, 0.0), 15: (1.3, 0.0), 26: (1.5, 4.0)}.get(op, (0.0, 0.0))


@pytest.mark.parametrize("op", [o for o in UNARY_OPS if o != U_NOT])
def test_unary_matches_cpu(op):
    rng = np.random.default_rng(op)
    p0, p1 = _params(op)
    for shape, st, n, pad in [((1,), [1], 1, 0), ((1031,), [1], 1031, 0), ((1031,), [1], 1031, 1),
                              ((9, 13), [1, 9], 117, 0)]:
        x = _unary_input(op, n, rng)
        ref = np.empty(shape, np.float32)
        C.unary(op, cpu_ptr(ref), cpu_ptr(x), st, list(shape), p0, p1)
        o = Dev.empty(shape, np.float32, pad)
        G.unary(op, o.ptr, Dev(x, pad).ptr, st, list(shape), p0, p1)
        np.testing.assert_allclose(o.get(), ref, rtol=3e-6, atol=3e-6, err_msg=f"unary op {op} {shape}")


def test_unary_not():
    a = np.array([0, 1, 1, 0, 1], np.uint8)
    o = Dev.empty(5, np.uint8)
    G.unary(U_NOT, o.ptr, Dev(a).ptr, [1], [5], 0.0, 0.0)
    np.testing.assert_array_equal(o.get(), 1 - a)


@pytest.mark.parametrize("op", [o for o in UNARY_OPS if o != U_NOT])
def test_unary_backward_matches_cpu(op):
    rng = np.random.default_rng(100 + op)
    p0, p1 = _params(op)
    for n, pad in [(1, 0), (1027, 0), (1027, 1)]:
        x = _unary_input(op, n, rng)
        y = np.empty(n, np.float32)
        C.unary(op, cpu_ptr(y), cpu_ptr(x), [1], [n], p0, p1)
        g = rng.standard_normal(n).astype(np.float32)
        ref = np.empty(n, np.float32)
        C.unary_backward(op, cpu_ptr(ref), cpu_ptr(g), cpu_ptr(x), cpu_ptr(y), n, p0, p1)
        o = Dev.empty(n, np.float32, pad)
        G.unary_backward(op, o.ptr, Dev(g, pad).ptr, Dev(x).ptr, Dev(y).ptr, n, p0, p1)
        np.testing.assert_allclose(o.get(), ref, rtol=3e-5, atol=3e-6, err_msg=f"unary_backward op {op}")


@pytest.mark.parametrize("dtype", [F32, I64, BOOL])
def test_where(dtype):
    rng = np.random.default_rng(5)
    c = rng.integers(0, 2, (6, 1)).astype(np.uint8)
    a = (rng.standard_normal((6, 9)) * 5).astype(NP[dtype])
    b = (rng.standard_normal((9,)) * 5).astype(NP[dtype])
    shape = [6, 9]
    cs, as_, bs = [1, 0], [9, 1], [0, 1]
    ref = np.empty(shape, NP[dtype])
    C.where(dtype, cpu_ptr(ref), cpu_ptr(c), cs, cpu_ptr(a), as_, cpu_ptr(b), bs, shape)
    o = Dev.empty(shape, NP[dtype])
    G.where(dtype, o.ptr, Dev(c).ptr, cs, Dev(a).ptr, as_, Dev(b).ptr, bs, shape)
    np.testing.assert_array_equal(o.get(), ref)


# ------------------------------------------------------------------------------ reduce
REDUCE_SHAPES = [(1, 1, 1), (1, 7, 1), (37, 33, 1), (5, 3000, 1), (1, 200003, 1), (3, 1025, 1),
                 (4, 7, 33), (2, 5000, 3), (1, 70000, 2), (3, 1, 65), (2, 0, 3)]
REDUCE_OUT = {R_ARGMAX: np.int64, R_ARGMIN: np.int64, R_ANY: np.uint8, R_ALL: np.uint8}


def _reduce_case(op, dtype, x, shape):
    outer, R, inner = shape
    out_dt = REDUCE_OUT.get(op, NP[dtype])
    if dtype != F32 and op in (R_SUM, R_PROD):
        out_dt = np.int64
    ref = np.empty((outer, inner), out_dt)
    C.reduce(op, dtype, cpu_ptr(ref), cpu_ptr(x), outer, R, inner)
    o = Dev.empty((outer, inner), out_dt)
    G.reduce(op, dtype, o.ptr, Dev(x).ptr, outer, R, inner)
    got = o.get()
    if out_dt == np.float32:
        scale = np.abs(x.astype(np.float64)).reshape(outer, R, inner).sum(1) if op in (R_SUM, R_MEAN) else 0
        if op == R_MEAN:
            scale = scale / max(R, 1)
        rtol = 1e-3 if op == R_PROD else 1e-5  # a float product tree vs the CPU's double product
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-5 + 1e-6 * np.max(scale, initial=0),
                                   err_msg=f"reduce op {op} {shape}")
    else:
        np.testing.assert_array_equal(got, ref, err_msg=f"reduce op {op} dtype {dtype} {shape}")


@pytest.mark.parametrize("shape", REDUCE_SHAPES)
def test_reduce_float(shape):
    rng = np.random.default_rng(sum(shape))
    n = int(np.prod(shape))
    for op in range(9):
        if shape[1] == 0 and op in (R_MAX, R_MIN, R_ARGMAX, R_ARGMIN):
            continue
        x = rng.standard_normal(n).astype(np.float32)
        if op == R_PROD:
            x = (1 + 0.001 * x).astype(np.float32)
        if op in (R_ANY, R_ALL):
            x = (rng.random(n) < (0.999 if op == R_ALL else 0.001)).astype(np.float32)
        if op in (R_ARGMAX, R_ARGMIN):
            x = rng.integers(-3, 4, n).astype(np.float32)  # many ties: first index must win
        _reduce_case(op, F32, x, shape)


@pytest.mark.parametrize("shape", REDUCE_SHAPES)
@pytest.mark.parametrize("dtype", [I64, BOOL])
def test_reduce_int_bool(shape, dtype):
    rng = np.random.default_rng(sum(shape) + dtype)
    n = int(np.prod(shape))
    for op in (R_SUM, R_MAX, R_MIN, R_ARGMAX, R_ARGMIN, R_PROD, R_ANY, R_ALL):
        if shape[1] == 0 and op in (R_MAX, R_MIN, R_ARGMAX, R_ARGMIN):
            continue
        if dtype == I64:
            x = rng.integers(-1000, 1000, n).astype(np.int64)
            if op == R_PROD:
                x = rng.integers(-1, 2, n).astype(np.int64) | 1
        else:
            x = rng.integers(0, 2, n).astype(np.uint8)
        _reduce_case(op, dtype, x, shape)


def test_reduce_nan():
    x = np.array([1, np.nan, 3, 2, np.nan, 0], np.float32)
    for op in (R_MAX, R_MIN, R_ARGMAX, R_ARGMIN, R_SUM):
        _reduce_case(op, F32, x, (1, 6, 1))
        _reduce_case(op, F32, x.reshape(1, 3, 2).copy().ravel(), (1, 3, 2))


# ------------------------------------------------------------------------------ indexing
@pytest.mark.parametrize("dtype", [F32, I64, BOOL])
@pytest.mark.parametrize("outer,n_src,inner,n_idx", [(1, 1, 1, 1), (3, 10, 7, 25), (1, 1000, 1, 3), (2, 5, 300, 4)])
def test_index_select_and_gather(dtype, outer, n_src, inner, n_idx):
    rng = np.random.default_rng(outer * 7 + inner)
    src = (rng.standard_normal((outer, n_src, inner)) * 9).astype(NP[dtype])
    idx = rng.integers(0, n_src, n_idx).astype(np.int64)
    ref = np.empty((outer, n_idx, inner), NP[dtype])
    C.index_select(dtype, cpu_ptr(ref), cpu_ptr(src), outer, n_src, inner, cpu_ptr(idx), n_idx)
    o = Dev.empty((outer, n_idx, inner), NP[dtype])
    G.index_select(dtype, o.ptr, Dev(src).ptr, outer, n_src, inner, Dev(idx).ptr, n_idx)
    np.testing.assert_array_equal(o.get(), ref)
    gidx = rng.integers(0, n_src, (outer, n_idx, inner)).astype(np.int64)
    ref = np.take_along_axis(src, gidx, axis=1)
    o = Dev.empty((outer, n_idx, inner), NP[dtype])
    G.gather(dtype, o.ptr, Dev(src).ptr, Dev(gidx).ptr, outer, n_src, inner, n_idx)
    np.testing.assert_array_equal(o.get(), ref)


@pytest.mark.parametrize("outer,n_out,inner,n_idx", [(1, 1, 1, 5), (3, 10, 7, 25), (1, 4, 1000, 9), (2, 3, 1, 2000)])
def test_index_add_and_scatter_add_accumulate_duplicates(outer, n_out, inner, n_idx):
    rng = np.random.default_rng(n_idx)
    src = rng.standard_normal((outer, n_idx, inner)).astype(np.float32)
    idx = rng.integers(0, n_out, n_idx).astype(np.int64)
    base = rng.standard_normal((outer, n_out, inner)).astype(np.float32)
    ref = base.astype(np.float64).copy()
    np.add.at(ref, (slice(None), idx, slice(None)), src.astype(np.float64))
    o = Dev(base)
    G.index_add(o.ptr, Dev(src).ptr, outer, n_out, inner, Dev(idx).ptr, n_idx)
    np.testing.assert_allclose(o.get(), ref, rtol=1e-5, atol=1e-4)
    sidx = rng.integers(0, n_out, (outer, n_idx, inner)).astype(np.int64)
    ref = base.astype(np.float64).copy()
    oo, _, ii = np.meshgrid(np.arange(outer), np.arange(n_idx), np.arange(inner), indexing="ij")
    np.add.at(ref, (oo, sidx, ii), src.astype(np.float64))
    o = Dev(base)
    G.scatter_add(o.ptr, Dev(src).ptr, Dev(sidx).ptr, outer, n_out, inner, n_idx)
    np.testing.assert_allclose(o.get(), ref, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------------ random
@pytest.mark.parametrize("n,offset", [(1, 0), (7, 3), (10001, 12345), (4, 2**40)])
def test_philox_streams_equal_cpu(n, offset):
    seed = 0xDEADBEEF12345
    for fn, a, b, exact in [("philox_uniform", -2.0, 3.0, True), ("philox_bernoulli_mask", 0.7, 1 / 0.7, True),
                            ("philox_normal", 1.0, 2.0, False)]:
        ref = np.empty(n, np.float32)
        getattr(C, fn)(cpu_ptr(ref), n, seed, offset, a, b)
        o = Dev.empty(n, np.float32)
        getattr(G, fn)(o.ptr, n, seed, offset, a, b)
        if exact:
            np.testing.assert_array_equal(o.get(), ref, err_msg=fn)
        else:
            np.testing.assert_allclose(o.get(), ref, rtol=2e-5, atol=2e-5, err_msg=fn)


# ------------------------------------------------------------------------------ softmax
@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 10), (33, 1024), (3, 1025), (2, 5000)])
def test_softmax_forward_backward(rows, cols):
    rng = np.random.default_rng(rows * cols)
    x = (rng.standard_normal((rows, cols)) * 4).astype(np.float32)
    dy = rng.standard_normal((rows, cols)).astype(np.float32)
    xd = x.astype(np.float64)
    lse = np.log(np.exp(xd - xd.max(1, keepdims=True)).sum(1, keepdims=True)) + xd.max(1, keepdims=True)
    sm, lsm = np.exp(xd - lse), xd - lse
    for log, ref_y in ((False, sm), (True, lsm)):
        y = Dev.empty((rows, cols), np.float32)
        (G.log_softmax_forward if log else G.softmax_forward)(Dev(x).ptr, y.ptr, rows, cols)
        yv = y.get()
        np.testing.assert_allclose(yv, ref_y, rtol=1e-5, atol=3e-5 if log else 1e-6)
        if log:
            ref_dx = dy - np.exp(lsm) * dy.sum(1, keepdims=True)
        else:
            ref_dx = sm * (dy - (dy * sm).sum(1, keepdims=True))
        dx = Dev.empty((rows, cols), np.float32)
        (G.log_softmax_backward if log else G.softmax_backward)(Dev(yv).ptr, Dev(dy).ptr, dx.ptr, rows, cols)
        np.testing.assert_allclose(dx.get(), ref_dx, rtol=1e-4, atol=1e-5)


def test_softmax_matches_cpu_names():
    for name in ("softmax_forward", "log_softmax_forward", "softmax_backward", "log_softmax_backward"):
        if hasattr(C, name):
            assert hasattr(G, name)


# ------------------------------------------------------------------------------ sgemm
def _gemm_ref(batch, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C0, ldc, sc, bias, bias_mode, act):
    out = C0.astype(np.float64).copy()
    for b in range(batch):
        a = np.lib.stride_tricks.as_strided(A[b * sa:], (K, M) if ta else (M, K),
                                            (lda * 4, 4) if True else None).astype(np.float64)
        a = a.T if ta else a
        bb = np.lib.stride_tricks.as_strided(B[b * sb:], (N, K) if tb else (K, N), (ldb * 4, 4)).astype(np.float64)
        bb = bb.T if tb else bb
        c = np.lib.stride_tricks.as_strided(out.ravel()[b * sc:], (M, N), (ldc * 8, 8))
        v = alpha * (a @ bb) + (beta * c if beta != 0 else 0)
        if bias_mode == 1:
            v = v + bias[None, :N]
        elif bias_mode == 2:
            v = v + bias[:M, None]
        if act == 1:
            v = np.maximum(v, 0)
        c[...] = v
    return out


def _run_gemm(batch, ta, tb, M, N, K, alpha=1.0, beta=0.0, bias_mode=0, act=0, pad_ld=0, bcast=None,
              rng=None, tf32=False, config=-1):
    rng = rng or np.random.default_rng(M * 131 + N * 7 + K)
    lda = (M if ta else K) + pad_ld
    ldb = (K if tb else N) + pad_ld
    ldc = N + pad_ld
    rows_a, rows_b = (K if ta else M), (N if tb else K)
    sa = rows_a * lda if bcast != "a" else 0
    sb = rows_b * ldb if bcast != "b" else 0
    sc = M * ldc
    A = rng.standard_normal(max(sa * batch, rows_a * lda) + 4).astype(np.float32)
    B = rng.standard_normal(max(sb * batch, rows_b * ldb) + 4).astype(np.float32)
    C0 = rng.standard_normal(sc * batch + 4).astype(np.float32)
    if beta == 0.0:
        C0[:] = np.nan  # beta == 0 must not read C
    bias = rng.standard_normal(max(M, N)).astype(np.float32)
    ref = _gemm_ref(batch, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C0, ldc, sc, bias, bias_mode, act)
    dA, dB, dC, dbias = Dev(A), Dev(B), Dev(C0), Dev(bias)
    G.set_allow_tf32(tf32)
    G._sgemm_force_config(config)
    try:
        G.sgemm(batch, ta, tb, M, N, K, alpha, dA.ptr, lda, sa, dB.ptr, ldb, sb, beta, dC.ptr, ldc, sc,
                dbias.ptr if bias_mode else 0, bias_mode, act)
        got = dC.get().astype(np.float64)
    finally:
        G.set_allow_tf32(False)
        G._sgemm_force_config(-1)
    # only the M x N window of each batch item was written; compare it (padding columns hold C0)
    mask = np.zeros_like(got, bool)
    for b in range(batch):
        win = np.lib.stride_tricks.as_strided(mask.ravel()[b * sc:], (M, N), (ldc, 1))
        win[...] = True
    tol = (2e-3 if tf32 else 2e-5) * np.sqrt(K + 1) * (abs(alpha) + 1)
    if beta == 0.0:
        np.testing.assert_array_equal(np.isnan(got[mask]), False)
    np.testing.assert_allclose(got[mask], ref[mask], rtol=tol, atol=tol)
    np.testing.assert_array_equal(np.isnan(got[~mask]) | (got[~mask] == ref[~mask]), True)


GEMM_SHAPES = [(1, 1, 1), (1, 7, 3), (5, 1, 9), (17, 33, 5), (64, 64, 64), (129, 65, 31), (3, 200, 257),
               (130, 129, 8), (32, 128, 1000)]


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("shape", GEMM_SHAPES)
def test_sgemm_shapes_and_transposes(ta, tb, shape):
    M, N, K = shape
    _run_gemm(1, ta, tb, M, N, K)


@pytest.mark.parametrize("config", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_sgemm_every_config(config, ta, tb):
    for M, N, K, pad in [(67, 131, 29, 0), (130, 70, 40, 1), (1, 5, 3, 0)]:
        _run_gemm(1, ta, tb, M, N, K, pad_ld=pad, config=config)


def _ran_config(config, ta, tb, M, N, K, pad):
    """The config sgemm launched: config 12 falls back to 10 for operands cp.async cannot copy in
    aligned 16-byte chunks (leading dimensions not multiples of 4) or without its shared memory."""
    if config != 12:
        return config
    lda = (M if ta else K) + pad
    ldb = (K if tb else N) + pad
    return 12 if lda % 4 == 0 and ldb % 4 == 0 and G._sgemm_tf32_async_smem_ok() else 10


@pytest.mark.parametrize("config", [10, 11, 12])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_sgemm_tf32_every_config(config, ta, tb):
    # config 12 needs 16-byte aligned rows (cp.async): pad 1 (and K = 29 or 3 unpadded) take its
    # fallback to config 10. pad 3 with sizes = 1 mod 4 keeps the rows aligned but ends M, N and K
    # inside a 16-byte chunk (cp.async's partial src-size, 4 bytes read + 12 zero-filled); K = 29
    # runs without split-K, so config 12 writes C itself; K = 1000 and 1001 run split-K (7 splits of
    # 160 = 5 k-tiles each around the 3-stage ring, the last one ragged)
    for M, N, K, pad in [(67, 131, 29, 0), (130, 70, 40, 1), (1, 5, 3, 0), (256, 128, 512, 0), (300, 260, 1000, 0),
                         (65, 133, 29, 3), (129, 257, 1001, 3)]:
        _run_gemm(1, ta, tb, M, N, K, pad_ld=pad, config=config, tf32=True)
        assert G._sgemm_last_config() == _ran_config(config, ta, tb, M, N, K, pad)


def test_sgemm_tf32_async_batched_split_k_and_epilogue():
    """Config 12 on batch items, split-K partials (a small output with a long K: the epilogue runs
    in the reduce kernel), the alpha/beta/bias/ReLU epilogue inside the kernel (K < 256: no
    split-K) and the z loop (more than 65535 batch items: blocks reuse the shared-memory ring)."""
    cases = [
        (3, False, False, 130, 136, 300, dict(alpha=0.5, beta=2.0, bias_mode=1, act=1)),  # split-K
        (2, True, True, 64, 72, 4096, {}),
        (1, True, False, 40, 44, 20000, dict(bias_mode=2)),
        (2, False, False, 132, 136, 200, dict(alpha=0.5, beta=2.0, bias_mode=1, act=1)),  # epilogue in kernel
        (2, True, True, 132, 136, 200, dict(alpha=-1.5, beta=0.5, bias_mode=2, act=1)),
        (65537, False, False, 4, 4, 36, {}),  # gridDim.z = 65535: blocks 0 and 1 run two items
    ]
    for batch, ta, tb, M, N, K, kw in cases:
        _run_gemm(batch, ta, tb, M, N, K, config=12, tf32=True, **kw)
        assert G._sgemm_last_config() == _ran_config(12, ta, tb, M, N, K, 0)


def test_sgemm_tf32_flag():
    assert G.allow_tf32() is False
    G.set_allow_tf32(True)
    assert G.allow_tf32() is True
    G.set_allow_tf32(False)
    _run_gemm(1, False, True, 100, 90, 300, tf32=True)


def test_sgemm_epilogue_alpha_beta_batch():
    _run_gemm(3, False, False, 19, 23, 17, alpha=0.5, beta=2.0, bias_mode=1, act=1)
    _run_gemm(2, True, False, 19, 23, 17, alpha=-1.0, beta=0.5, bias_mode=2, act=0)
    _run_gemm(4, False, True, 8, 40, 12, bcast="a", bias_mode=1)
    _run_gemm(4, True, True, 33, 9, 12, bcast="b", pad_ld=3, act=1)


def test_sgemm_split_k():
    # small output, long K: split-K partials + reduction kernel with the full epilogue
    _run_gemm(1, True, False, 64, 33, 5000, alpha=0.7, beta=1.0, bias_mode=1, act=1)
    _run_gemm(2, False, False, 32, 128, 3000, bias_mode=2)
    _run_gemm(1, False, True, 3, 5, 4001)


def test_sgemm_course_cnn_shapes():
    for M, N, K, ta, tb in [(32, 128, 9216, False, True), (128, 9216, 32, True, False), (32, 9216, 128, False, False),
                            (1152, 64, 288, False, False), (64, 288, 1152, True, False), (2704, 32, 9, False, False)]:
        _run_gemm(1, ta, tb, M, N, K)


def test_sgemm_misaligned_pointers():
    rng = np.random.default_rng(3)
    M, N, K = 37, 45, 29
    A = rng.standard_normal(M * K).astype(np.float32)
    B = rng.standard_normal(K * N).astype(np.float32)
    dA, dB, dC = Dev(A, pad=1), Dev(B, pad=3), Dev.empty(M * N, np.float32, pad=2)
    G.sgemm(1, False, False, M, N, K, 1.0, dA.ptr, K, 0, dB.ptr, N, 0, 0.0, dC.ptr, N, 0, 0, 0, 0)
    ref = A.reshape(M, K).astype(np.float64) @ B.reshape(K, N)
    np.testing.assert_allclose(dC.get().reshape(M, N), ref, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------ DLPack
def test_dlpack_roundtrip_keeps_owner_alive():
    import gc
    import weakref

    class Owner:
        pass

    a = np.arange(12, dtype=np.float32)
    d = Dev(a)
    owner = Owner()
    owner.buf = d.buf
    ref = weakref.ref(owner)
    cap = G.to_dlpack(d.ptr, [3, 4], [4, 1], F32, 0, owner)
    del owner, d
    gc.collect()
    assert ref() is not None  # the capsule holds the owner
    p, shape, strides, dtype, dev, holder = G.from_dlpack(cap)
    assert shape == [3, 4] and strides == [4, 1] and dtype == F32 and dev == 0
    out = np.empty(12, np.float32)
    G.memcpy_dtoh(out.ctypes.data, p, 48)
    np.testing.assert_array_equal(out, a)
    with pytest.raises(ValueError, match="consumed"):
        G.from_dlpack(cap)
    del cap
    gc.collect()
    assert ref() is not None  # holder still owns it
    del holder
    gc.collect()
    assert ref() is None


def test_dlpack_unconsumed_capsule_releases_owner():
    import gc
    import weakref

    class Owner:
        pass

    o = Owner()
    r = weakref.ref(o)
    cap = G.to_dlpack(G.Buffer(16).ptr, [4], [1], F32, 0, o)
    del o, cap
    gc.collect()
    assert r() is None


def test_dlpack_with_torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch without CUDA")
    a = np.arange(20, dtype=np.float32).reshape(4, 5)
    d = Dev(a)
    t = torch.utils.dlpack.from_dlpack(G.to_dlpack(d.ptr, [4, 5], [5, 1], F32, 0, d.buf))
    assert t.is_cuda and t.data_ptr() == d.ptr
    np.testing.assert_array_equal(t.cpu().numpy(), a)
    t2 = torch.arange(6, dtype=torch.int64, device="cuda").reshape(2, 3).t()
    p, shape, strides, dtype, dev, holder = G.from_dlpack(t2)
    assert p == t2.data_ptr() and shape == [3, 2] and strides == [1, 3] and dtype == I64
    tb = torch.tensor([True, False], device="cuda")
    assert G.from_dlpack(tb)[3] == BOOL


# ------------------------------------------------------------------------------ errors
# Errors raise C++ exceptions that pybind11 turns into Python exceptions. These run in a child
# process: on the first H100 run a thrown exception crashed the interpreter (SIGSEGV, cause not
# yet known), and a crash here must fail these tests, not kill the whole test session.
def _isolated(code):
    import subprocess
    import sys
    import textwrap
    prog = "import numpy as np\nfrom kernelnet import _cuda as G\n" + textwrap.dedent(code)
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"child exited with {r.returncode}:\n{r.stdout}\n{r.stderr[-3000:]}"


def test_bad_arguments_raise_value_error():
    _isolated("""
        import pytest
        with pytest.raises(ValueError, match="sgemm"):
            G.sgemm(1, False, False, -1, 2, 2, 1.0, 0, 2, 0, 0, 2, 0, 0.0, 0, 2, 0, 0, 0, 0)
        with pytest.raises(ValueError, match="binary"):
            G.binary(99, 0, 0, 0, [1], 0, [1], [1])
        with pytest.raises(ValueError, match="reduce"):
            G.reduce(2, 0, 0, 0, 2, 0, 1)
        G.synchronize()
    """)


def test_out_of_memory_raises_memory_error_and_recovers():
    _isolated("""
        import pytest
        with pytest.raises(MemoryError, match="Buffer"):
            G.Buffer(1 << 50)
        b = G.Buffer(1024)  # the device still works
        assert b.ptr
        G.fill(0, b.ptr, 256, 1.0)
        G.synchronize()
    """)


def test_host_index_pointer_is_rejected():
    # an index tensor left on the CPU must raise, not make the kernel read host memory
    _isolated("""
        import pytest
        idx = np.zeros(4, np.int64)
        out, src = G.Buffer(64), G.Buffer(64)
        with pytest.raises(ValueError, match="index_select"):
            G.index_select(0, out.ptr, src.ptr, 1, 4, 1, idx.ctypes.data, 4)
        G.synchronize()
    """)
