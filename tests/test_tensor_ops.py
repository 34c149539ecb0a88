"""Forward values of the core tensor ops against NumPy float64 on awkward shapes (0-size dims,
size 1, odd sizes) and layouts (contiguous, transposed, strided views)."""
import math

import numpy as np
import pytest

import kernelnet as kn
from _coreutil import arr, make, tonp, close, RNG

LAYOUTS = ["contig", "T", "step"]
SHAPES = [(7,), (1,), (0,), (3, 5), (1, 4), (4, 1), (2, 0, 3), (2, 3, 5), ()]

# ------------------------------------------------------------------ creation


def test_zeros_ones_full(device):
    for shape in [(), (0,), (3,), (2, 3, 1)]:
        close(kn.zeros(*shape, device=device), np.zeros(shape))
        close(kn.ones(shape, device=device), np.ones(shape))
        close(kn.full(shape, 2.5, device=device), np.full(shape, 2.5))
    assert kn.zeros(2, 3).dtype is kn.float32
    assert kn.full((2,), 3).dtype is kn.int64
    assert kn.full((2,), True).dtype is kn.bool
    assert kn.zeros(2, dtype=kn.int64).tolist() == [0, 0]
    assert kn.ones(2, 2, dtype=kn.bool).tolist() == [[True, True], [True, True]]
    t = kn.zeros_like(kn.ones(2, 3, dtype=kn.int64))
    assert t.dtype is kn.int64 and tuple(t.shape) == (2, 3)
    close(kn.full_like(kn.ones(2), 7.0), [7.0, 7.0])
    close(kn.ones_like(kn.zeros(3, 1)), np.ones((3, 1)))


def test_arange_linspace_eye(device):
    close(kn.arange(5, device=device), np.arange(5))
    assert kn.arange(5).dtype is kn.int64
    close(kn.arange(2, 11, 3, device=device), np.arange(2, 11, 3))
    close(kn.arange(0.0, 1.0, 0.25), np.arange(0.0, 1.0, 0.25))
    assert kn.arange(0.0, 1.0, 0.25).dtype is kn.float32
    close(kn.arange(5, 0, -2), np.arange(5, 0, -2))
    assert kn.arange(0).numel() == 0
    close(kn.linspace(-1, 1, 7, device=device), np.linspace(-1, 1, 7))
    close(kn.linspace(0, 1, 1), np.linspace(0, 1, 1))
    close(kn.eye(3, device=device), np.eye(3))
    close(kn.eye(2, 4), np.eye(2, 4))
    with pytest.raises(ValueError, match="arange"):
        kn.arange(0, 5, 0)


def test_tensor_from_data(device):
    t = kn.tensor([[1, 2], [3, 4]], device=device)
    assert t.dtype is kn.int64 and t.tolist() == [[1, 2], [3, 4]]
    assert kn.tensor([1.5, 2]).dtype is kn.float32
    assert kn.tensor([True, False]).dtype is kn.bool
    assert kn.tensor(3.0).dim() == 0 and kn.tensor(3.0).item() == 3.0
    assert kn.tensor(np.arange(3, dtype=np.int32)).dtype is kn.int64
    assert kn.tensor(np.ones(2, dtype=np.float64)).dtype is kn.float32
    assert kn.tensor([1, 2], dtype=kn.float32).dtype is kn.float32
    assert kn.tensor([]).numel() == 0
    # a copy: changing the source does not change the tensor
    a = np.ones(3, dtype=np.float32)
    t = kn.tensor(a)
    a[0] = 5
    assert t.tolist() == [1.0, 1.0, 1.0]
    # from a list of tensors
    close(kn.tensor([kn.tensor(1.0), kn.tensor(2.0)]), [1.0, 2.0])


def test_from_numpy_dtypes():
    for npd, kd in [(np.float32, kn.float32), (np.int64, kn.int64), (np.bool_, kn.bool),
                    (np.float64, kn.float32), (np.int32, kn.int64), (np.uint8, kn.int64)]:
        a = np.arange(6).reshape(2, 3).astype(npd)
        t = kn.from_numpy(a)
        assert t.dtype is kd
        close(t, a.astype(np.float64) if kd is kn.float32 else a.astype(kd.np))
    # non-contiguous numpy input keeps its strides
    a = np.arange(24, dtype=np.float32).reshape(4, 6)[::2, 1::2]
    t = kn.from_numpy(a)
    close(t, a)
    with pytest.raises(TypeError, match="numpy"):
        kn.from_numpy([1, 2])


def test_rand_randn_stats_and_shape(device):
    kn.manual_seed(0)
    u = kn.rand(2000, device=device)
    n = kn.randn(40, 50, device=device)
    assert tuple(n.shape) == (40, 50) and u.dtype is kn.float32
    un = tonp(u)
    assert un.min() >= 0 and un.max() < 1 and abs(un.mean() - 0.5) < 0.05
    nn_ = tonp(n)
    assert abs(nn_.mean()) < 0.1 and abs(nn_.std() - 1) < 0.1
    assert kn.rand(0).numel() == 0
    # non-contiguous fill
    t = kn.zeros(4, 6).T
    t.normal_()
    assert np.all(tonp(t) != 0)


def test_randint_randperm():
    kn.manual_seed(3)
    r = kn.randint(2, 7, (500,))
    v = tonp(r)
    assert r.dtype is kn.int64 and v.min() == 2 and v.max() == 6
    p = tonp(kn.randperm(9))
    assert sorted(p.tolist()) == list(range(9))


# ------------------------------------------------------------------ elementwise binary
BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "maximum": (kn.maximum, np.maximum),
    "minimum": (kn.minimum, np.minimum),
    "pow": (kn.pow, np.power),
}
BCAST = [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 5), (5,)), ((2, 1, 5), (3, 1)), ((7,), ()),
         ((), ()), ((0, 3), (1, 3)), ((1,), (5,)), ((4, 5), (4, 1)),
         # one operand repeating along the other's leading dims (binary_kernel's x + bias path),
         # either side, with leading 1s, as a single element, and the shapes that must not take it
         ((2, 3, 5), (1, 1, 5)), ((3, 5), (2, 3, 5)), ((1, 3, 5), (4, 3, 5)), ((2, 3), (1,)),
         ((1, 1), (2, 3)), ((1, 5), (4, 1, 5)), ((5,), (1, 1, 5)), ((2, 3), (0, 2, 3)), ((3, 1), (3,))]


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("sa,sb", BCAST)
def test_binary_broadcast(name, sa, sb, device):
    f, ref = BINARY[name]
    a = arr(*sa, kind="pos" if name == "pow" else "randn")
    b = arr(*sb, kind="away")
    for la, lb in [("contig", "contig"), ("T", "step")]:
        ta, tb = make(a, device, la), make(b, device, lb)
        close(f(ta, tb), ref(a, b), tol=1e-5)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow"])
def test_binary_python_scalars(name, device):
    f, ref = BINARY[name]
    a = arr(3, 5, kind="pos")
    t = make(a, device, "T")
    for s in [2, 0.5, -1.5]:
        close(f(t, s), ref(a, s))
        if name != "pow":
            close(f(s, t), ref(s, a))
    base = arr(4)
    close(2.0 ** make(base, device), np.power(2.0, base))


def test_type_promotion(device):
    i = kn.tensor([1, 2, 3], device=device)
    f = kn.tensor([0.5, 1.5, 2.5], device=device)
    b = kn.tensor([True, False, True], device=device)
    assert (i + i).dtype is kn.int64
    assert (i + f).dtype is kn.float32
    assert (i + b).dtype is kn.int64
    assert (b + b).dtype is kn.bool
    assert (f + b).dtype is kn.float32
    assert (i * 2).dtype is kn.int64
    assert (i * 2.5).dtype is kn.float32
    assert (b * 2).dtype is kn.int64
    assert (i / 2).dtype is kn.float32  # true division
    close(i / 2, [0.5, 1.0, 1.5])
    close(i + f, [1.5, 3.5, 5.5])
    close(i + b, [2, 2, 4])
    # 0-d tensors only promote across categories (PyTorch's rule)
    assert (i + kn.tensor(2.5)).dtype is kn.float32
    assert (f + kn.tensor(2)).dtype is kn.float32
    assert (kn.tensor([1, 2]) + kn.tensor(True)).dtype is kn.int64
    close(kn.tensor(3.0) * kn.tensor(2.0), 6.0)
    assert (kn.tensor(3.0) * kn.tensor(2.0)).dim() == 0


def test_integer_ops(device):
    a = arr(4, 5, kind="int")
    b = arr(4, 5, kind="int")
    b = np.where(b == 0, 3, b)
    ta, tb = make(a, device), make(b, device)
    close(ta + tb, a + b)
    close(ta * tb, a * b)
    close(ta - tb, a - b)
    close(ta // tb, np.floor_divide(a, b))
    close(ta % tb, np.mod(a, b))
    close(abs(ta), np.abs(a))
    close(-ta, -a)
    close(kn.maximum(ta, tb), np.maximum(a, b))
    close(kn.clamp(ta, -2, 3), np.clip(a, -2, 3))
    fa = arr(3, 4)
    close(make(fa, device) // 0.7, np.floor(fa / np.float32(0.7)), tol=1e-5)
    close(kn.remainder(make(fa, device), 0.7), fa - np.floor(fa / 0.7) * 0.7, tol=1e-4)


COMPARE = {"eq": (lambda a, b: a == b, np.equal), "ne": (lambda a, b: a != b, np.not_equal),
           "lt": (lambda a, b: a < b, np.less), "le": (lambda a, b: a <= b, np.less_equal),
           "gt": (lambda a, b: a > b, np.greater), "ge": (lambda a, b: a >= b, np.greater_equal)}


@pytest.mark.parametrize("name", list(COMPARE))
def test_comparisons(name, device):
    f, ref = COMPARE[name]
    a = np.round(arr(3, 4)).astype(np.float64)
    b = np.round(arr(4))
    r = f(make(a, device, "T"), make(b, device))
    assert r.dtype is kn.bool
    close(r, ref(a, b))
    close(f(make(a, device), 0.0), ref(a, 0.0))
    ia = arr(5, kind="int")
    close(f(make(ia, device), 1), ref(ia, 1))
    close(f(make(ia, device), 0.5), ref(ia, 0.5))


def test_logical_ops(device):
    a, b = arr(3, 4, kind="bool"), arr(4, kind="bool")
    ta, tb = make(a, device), make(b, device)
    close(ta & tb, a & b)
    close(ta | tb, a | b)
    close(ta ^ tb, a ^ b)
    close(~ta, ~a)
    fa = arr(4)
    fa[1] = 0.0
    close(kn.logical_not(make(fa, device)), np.logical_not(fa))


def test_erfinv_inverts_erf(device):
    x = np.concatenate([np.linspace(-0.999999, 0.999999, 4001), [0.0, -1.0, 1.0, 1.5, -2.0]]).astype(np.float32)
    y = tonp(kn.tensor(x, device=device).erfinv()).astype(np.float64)
    inner = np.abs(x) < 1
    back = np.array([math.erf(v) for v in y[inner]])
    np.testing.assert_allclose(back, x[inner], rtol=0, atol=3e-7)  # erf(erfinv(x)) == x to float32
    assert y[-4] == -np.inf and y[-3] == np.inf and np.isnan(y[-2:]).all()
    # nn.init.trunc_normal_ samples through it (PyTorch's inverse-CDF method)
    kn.manual_seed(0)
    t = tonp(kn.nn.init.trunc_normal_(kn.empty(200_000, device=device), mean=0.0, std=1.0, a=-0.5, b=1.0))
    assert t.min() >= -0.5 and t.max() <= 1.0
    # the truncated normal's mean and std on [-0.5, 1]: 0.2064 and 0.4158
    assert abs(t.mean() - 0.2064) < 0.005 and abs(t.std() - 0.4158) < 0.005


def test_isnan_isinf_isfinite_allclose(device):
    a = np.array([1.0, np.nan, np.inf, -np.inf, 0.0])
    t = make(a, device)
    close(kn.isnan(t), np.isnan(a))
    close(kn.isinf(t), np.isinf(a))
    close(kn.isfinite(t), np.isfinite(a))
    x = make(arr(5), device)
    assert kn.allclose(x, x + 1e-7)
    assert not kn.allclose(x, x + 1e-2)
    assert kn.equal(x, x.clone()) and not kn.equal(x, x[:4])


# ------------------------------------------------------------------ unary math
def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _np_erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


UNARY = {
    "exp": (kn.exp, np.exp, "randn"), "log": (kn.log, np.log, "pos"), "tanh": (kn.tanh, np.tanh, "randn"),
    "sigmoid": (kn.sigmoid, _np_sigmoid, "randn"), "relu": (kn.relu, lambda x: np.maximum(x, 0), "randn"),
    "sqrt": (kn.sqrt, np.sqrt, "pos"), "abs": (kn.abs, np.abs, "randn"), "neg": (kn.neg, np.negative, "randn"),
    "rsqrt": (kn.rsqrt, lambda x: 1 / np.sqrt(x), "pos"), "sin": (kn.sin, np.sin, "randn"),
    "cos": (kn.cos, np.cos, "randn"), "reciprocal": (kn.reciprocal, np.reciprocal, "away"),
    "square": (kn.square, np.square, "randn"), "log1p": (kn.log1p, np.log1p, "pos"),
    "expm1": (kn.expm1, np.expm1, "randn"), "floor": (kn.floor, np.floor, "randn"),
    "ceil": (kn.ceil, np.ceil, "randn"), "round": (kn.round, np.round, "randn"),
    "sign": (kn.sign, np.sign, "randn"), "log2": (kn.log2, np.log2, "pos"),
    "log10": (kn.log10, np.log10, "pos"), "exp2": (kn.exp2, np.exp2, "randn"),
    "silu": (kn.silu, lambda x: x * _np_sigmoid(x), "randn"), "erf": (kn.erf, _np_erf, "randn"),
    "pow3": (lambda t: t ** 3, lambda x: x ** 3, "randn"), "pow_half": (lambda t: t ** 0.5, np.sqrt, "pos"),
    "pow_neg": (lambda t: kn.pow(t, -1.5), lambda x: x ** -1.5, "pos"),
    "clamp": (lambda t: kn.clamp(t, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), "randn"),
    "clamp_min": (lambda t: t.clamp(min=0.1), lambda x: np.maximum(x, 0.1), "randn"),
    "clamp_max": (lambda t: t.clamp(max=0.1), lambda x: np.minimum(x, 0.1), "randn"),
    "leaky_relu": (lambda t: kn.leaky_relu(t, 0.1), lambda x: np.where(x > 0, x, 0.1 * x), "randn"),
    "elu": (kn.elu, lambda x: np.where(x > 0, x, np.expm1(x)), "randn"),
    "softplus": (kn.softplus, lambda x: np.log1p(np.exp(x)), "randn"),
    "gelu": (kn.gelu, lambda x: 0.5 * x * (1 + _np_erf(x / np.sqrt(2))), "randn"),
    "gelu_tanh": (lambda t: kn.gelu(t, approximate="tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))), "randn"),
}


@pytest.mark.parametrize("name", list(UNARY))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_unary(name, layout, device):
    f, ref, kind = UNARY[name]
    for shape in [(3, 5), (1, 7), (2, 0)] if layout != "contig" else [(3, 5), (17,), (1,), (0,), ()]:
        a = arr(*shape, kind=kind)
        if name == "round":
            a = a + 0.013  # keep clear of .5 ties (NumPy and PyTorch both round half to even)
        t = make(a, device, layout)
        y = f(t)
        assert y.dtype is kn.float32
        close(y, ref(a), tol=2e-5)


def test_unary_on_int_promotes_to_float(device):
    t = kn.tensor([1, 4, 9], device=device)
    close(kn.sqrt(t), [1.0, 2.0, 3.0])
    close(kn.exp(kn.tensor([0, 1])), [1.0, math.e])


def test_special_values(device):
    t = make(np.array([0.0, -1.0, np.inf, -np.inf, 88.0, -88.0]), device)
    with np.errstate(all="ignore"):
        close(kn.log(t), np.log(np.array([0.0, -1.0, np.inf, -np.inf, 88.0, -88.0])))
        close(kn.sigmoid(t), _np_sigmoid(np.array([0.0, -1.0, np.inf, -np.inf, 88.0, -88.0])))
        close(kn.tanh(t), np.tanh(np.array([0.0, -1.0, np.inf, -np.inf, 88.0, -88.0])))


def test_where_lerp_masked_fill(device):
    c = arr(3, 4, kind="bool")
    a, b = arr(3, 4), arr(4)
    close(kn.where(make(c, device), make(a, device, "T"), make(b, device)), np.where(c, a, b))
    close(kn.where(make(c, device), make(a, device), 0.0), np.where(c, a, 0.0))
    close(kn.where(make(c, device), 1, 2), np.where(c, 1, 2))
    close(kn.lerp(make(a, device), make(b, device), 0.3), a + (b - a) * 0.3, tol=1e-5)
    close(make(a, device).masked_fill(make(c, device), -1.0), np.where(c, -1.0, a))
    m = arr(4, kind="bool")
    close(make(a, device, "T").masked_fill(make(m, device), 9), np.where(m, 9.0, a))
    # where(cond) -> nonzero tuple
    nz = kn.where(make(c, device))
    for got, ref in zip(nz, np.nonzero(c)):
        close(got, ref)


def test_int64_arithmetic_wraps_and_never_traps(device):
    """int64 ops wrap as PyTorch (two's complement); INT64_MIN // -1 trapped (SIGFPE killed the
    process) and pow went through a double (3**39 off by 11)."""
    lo = -2 ** 63
    t = kn.tensor([lo, 7, -7, lo], device=device)
    d = kn.tensor([-1, -1, 2, 3], device=device)
    assert (t // d).tolist() == [lo, -7, -4, lo // 3]
    assert (t % d).tolist() == [0, 0, 1, lo % 3]
    assert kn.div(t, d, rounding_mode="floor").tolist() == [lo, -7, -4, lo // 3]
    assert (kn.tensor([2 ** 63 - 1], device=device) + 1).tolist() == [lo]
    assert (kn.tensor([2 ** 62], device=device) * 4).tolist() == [0]
    assert (kn.tensor([3], device=device) ** 39).tolist() == [3 ** 39]
    e = kn.tensor([39, 3, 2, 0, 63], device=device)
    b = kn.tensor([3, -3, 2 ** 40, 0, 2], device=device)
    want = [(x ** y + 2 ** 63) % 2 ** 64 - 2 ** 63 for x, y in zip(b.tolist(), e.tolist())]
    assert (b ** e).tolist() == want


def test_float_modulo_and_floor_division_are_pytorchs(device):
    """%, fmod and // on floats are computed from fmod as PyTorch does: floor(a / b) rounds the
    quotient first (1.0 // 0.1 gave 10, 1e10 % 3 gave 0, 123456789 % 7 gave 8, x % inf NaN)."""
    t = lambda v: kn.tensor(v, device=device)  # noqa: E731
    inf = float("inf")
    assert (t([1e10]) % 3.0).item() == 1.0 and (t([123456789.0]) % 7.0).item() == 4.0
    assert (t([5.0, -5.0]) % inf).tolist() == [5.0, inf]
    assert kn.fmod(t([1e10, -1e10]), 3.0).tolist() == [1.0, -1.0] and kn.fmod(t([5.0]), inf).tolist() == [5.0]
    q = (t([1.0, 7.0, -7.0, -5.0]) // t([0.1, 2.0, 2.0, inf])).tolist()
    assert q == [9.0, 3.0, -4.0, -1.0]
    assert math.isnan((t([inf]) // 2.0).item())
    assert kn.div(t([1.0]), 0.1, rounding_mode="floor").item() == 9.0
    rng = np.random.default_rng(5)
    a = (rng.standard_normal(2000) * 10).astype(np.float32)
    b = (rng.standard_normal(2000) * 3).astype(np.float32)
    # float64 references of the float32 operands, rounded to float32 (fmod is exact in any precision)
    ref_fmod = np.fmod(a.astype(np.float64), b.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(tonp(kn.fmod(t(a), t(b))), ref_fmod)
    np.testing.assert_array_equal(tonp(t(a) % t(b)), np.where((ref_fmod != 0) & ((ref_fmod < 0) != (b < 0)),
                                                             ref_fmod + b, ref_fmod))
    # int64: exact, trunc keeps int64, division by zero raises, unknown rounding modes are refused
    ia, ib = t([7, -7, 7, -7, 2 ** 40 + 3]), t([2, 2, -2, -2, 7])
    assert kn.div(ia, ib, rounding_mode="trunc").tolist() == [3, -3, -3, 3, (2 ** 40 + 3) // 7]
    assert kn.div(ia, ib, rounding_mode="trunc").dtype is kn.int64
    assert kn.fmod(ia, ib).tolist() == [1, -1, 1, -1, (2 ** 40 + 3) % 7]
    with pytest.raises(ZeroDivisionError):
        ia % t([1, 1, 0, 1, 1])
    with pytest.raises(RuntimeError, match="rounding_mode"):
        kn.div(ia, ib, rounding_mode="round")


def test_modulo_gradients_match_torch():
    torch = pytest.importorskip("torch")
    a, b = np.array([1.5, -2.5, 7.25], np.float32), np.array([0.7, 0.3, -2.0], np.float32)
    for name in ("remainder", "fmod"):
        ka, kb = kn.tensor(a, requires_grad=True), kn.tensor(b, requires_grad=True)
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        getattr(kn, name)(ka, kb).sum().backward()
        getattr(torch, name)(ta, tb).sum().backward()
        close(ka.grad, ta.grad.numpy())
        close(kb.grad, tb.grad.numpy())
    x = kn.tensor([1.5], requires_grad=True)
    with pytest.raises(RuntimeError, match="floor_divide"):
        (x // 1.0).sum().backward()


def test_isclose_with_infinities_and_nans(device):
    inf, nan = float("inf"), float("nan")
    a = kn.tensor([1.0, inf, inf, -inf, nan, 1.0], device=device)
    b = kn.tensor([inf, inf, -inf, -inf, nan, 1.000001], device=device)
    assert kn.isclose(a, b).tolist() == [False, True, False, True, False, True]
    assert kn.isclose(a, b, equal_nan=True).tolist()[4] is True
    assert not kn.allclose(kn.tensor([1.0]), kn.tensor([inf])) and kn.allclose(kn.tensor([inf]), kn.tensor([inf]))
    assert kn.isclose(kn.tensor([1.0]), kn.tensor([1.0 + 1e-7]), rtol=0, atol=0).tolist() == [False]


def test_augmented_assignment_is_in_place(device):
    """//=, %=, **= write into the tensor (a view's base changes), as +=, -=, *=, /= do."""
    t = kn.tensor([5.0, 7.0], device=device)
    v = t[:]
    v //= 2
    u = kn.tensor([5, 7], device=device)
    w = u[:]
    w %= 3
    p = kn.tensor([2.0, 3.0], device=device)
    q = p[:]
    q **= 2
    assert (t.tolist(), u.tolist(), p.tolist()) == ([2.0, 3.0], [2, 1], [4.0, 9.0])
    i = kn.tensor([5, 7], device=device)
    with pytest.raises(RuntimeError, match="can't be cast"):
        i //= 2.5  # a float result into an int64 tensor: refused, as PyTorch


def test_clamp_edge_cases_as_pytorch(device):
    t = lambda v: kn.tensor(v, device=device)  # noqa: E731
    nan = float("nan")
    assert kn.clamp(t([0.0, 5.0, 10.0]), min=6.0, max=3.0).tolist() == [3.0, 3.0, 3.0]  # min > max: max
    assert kn.clamp(t([0, 5, 10]), min=6, max=3).tolist() == [3, 3, 3]
    r = kn.clamp(t([-3, 1, 5]), min=0.5, max=2.5)  # float bounds promote an int64 tensor
    assert r.dtype is kn.float32 and r.tolist() == [0.5, 1.0, 2.5]
    assert kn.clamp(t([True, False]), 0, 1).dtype is kn.int64
    assert all(math.isnan(v) for v in kn.clamp(t([1.0, -2.0]), min=nan).tolist())
    assert all(math.isnan(v) for v in kn.clamp(t([1.0, -2.0]), min=kn.tensor(nan, device=device)).tolist())
    r = kn.clamp(t([1.0, nan]), 0.0, 0.5).tolist()
    assert r[0] == 0.5 and math.isnan(r[1])
    with pytest.raises(RuntimeError, match="can't be cast"):
        t([-3, 1, 5]).clamp_(min=0.5)
    x = kn.tensor([0.0, 5.0, 10.0], device=device, requires_grad=True)
    kn.clamp(x, min=6.0, max=3.0).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]


def test_narrow_norm_and_scalar_edge_cases(device):
    a = kn.arange(5, device=device)
    assert a.narrow(0, -2, 2).tolist() == [3, 4]
    with pytest.raises(RuntimeError, match="exceeds"):
        a.narrow(0, 3, 4)
    with pytest.raises(RuntimeError, match="non-negative"):
        a.narrow(0, 1, -1)
    v = kn.tensor([[3.0, 5.0], [0.5, 2.0]], device=device)
    assert v.norm(p=float("-inf"), dim=1).tolist() == [3.0, 0.5]
    assert kn.tensor([1.0, 0.0, 4.0], device=device).norm(p=0).item() == 2.0
    x = kn.arange(6.0, device=device).reshape(2, 3)
    x[kn.tensor(1)][0] = 100.0  # a 0-d int tensor indexes like an int: a view, written through
    x[kn.tensor(0), kn.tensor(2)] = -1.0
    assert x.tolist() == [[0.0, 1.0, -1.0], [100.0, 4.0, 5.0]]
    g = kn.tensor([1.0, 2.0], device=device, requires_grad=True)
    r = np.float32(2.0) * g  # NumPy defers to the tensor (__array_priority__)
    assert isinstance(r, kn.Tensor) and r.requires_grad and r.tolist() == [2.0, 4.0]
    for bad in ([2 ** 63], np.array([2 ** 63], np.uint64)):
        with pytest.raises(RuntimeError, match="int64 without overflow"):
            kn.tensor(bad, device=device)
    with pytest.raises(RuntimeError, match="int64 without overflow"):
        kn.tensor([float("nan")], dtype=kn.int64, device=device)
    assert kn.tensor([1.5, -2.7], dtype=kn.int64, device=device).tolist() == [1, -2]


def test_edge_gradients_alpha_and_bool_masks():
    torch = pytest.importorskip("torch")
    for M, out in ((kn, []), (torch, [])):
        x = M.tensor([0.0, 2.0], requires_grad=True)
        e = M.tensor([0.0, 2.0], requires_grad=True)
        (x ** e).sum().backward()
        a = M.tensor([-2.0, 2.0], requires_grad=True)
        f = M.tensor([2.0, 2.0], requires_grad=True)
        (a ** f).sum().backward()
        z = M.zeros(3, requires_grad=True)
        z.norm(p=3).backward()
        out += [x.grad.tolist(), e.grad.tolist(), a.grad.tolist(), f.grad.tolist(), z.grad.tolist()]
        out += [M.add(M.tensor([True]), M.tensor([True]), alpha=2).tolist(),
                M.add(M.tensor([1.0]), M.tensor([2 ** 62]), alpha=2).item()]
        if M is kn:
            kn_out = out
        else:
            for got, want in zip(kn_out[:5], out[:5]):  # NaN where torch has NaN
                np.testing.assert_allclose(got, want, rtol=1e-6)
            assert kn_out[5:] == out[5:]
    with pytest.raises(RuntimeError, match="alpha"):
        kn.sub(kn.tensor([1, 2]), kn.tensor([1, 1]), alpha=0.5)
    x, m = kn.arange(3.0), kn.tensor([1, 0, 1])
    for f in (lambda: x.masked_select(m), lambda: x.masked_fill(m, -1.0), lambda: kn.where(m, x, 0.0)):
        with pytest.raises(RuntimeError, match="bool"):
            f()


def test_factory_forms_and_argument_checks():
    """PyTorch's call forms (randint(high, size), size=), and the refusals it makes."""
    assert tuple(kn.randint(10, (3,)).shape) == (3,)
    assert tuple(kn.zeros(size=(2, 3)).shape) == (2, 3) and tuple(kn.randn(size=(2,)).shape) == (2,)
    with pytest.raises(TypeError, match="dtpye"):
        kn.zeros(2, dtpye=kn.int64)
    with pytest.raises(TypeError, match="ints"):
        kn.zeros(2.5)  # int() would truncate it
    for f in (lambda: kn.randint(5, 5, (3,)), lambda: kn.mv(kn.ones(2, 3), kn.ones(3, 1)),
              lambda: kn.outer(kn.ones(2, 3), kn.ones(3)), lambda: kn.arange(0, 5, -1)):
        with pytest.raises(RuntimeError):
            f()
    with pytest.raises(ValueError, match="nonzero"):
        kn.arange(0, 2.5, 0.5, dtype=kn.int64)
    assert kn.arange(5, 0, -2).tolist() == [5, 3, 1]
    x = kn.arange(6.0).reshape(2, 3)
    assert tuple(x.index_select(0, kn.tensor(1)).shape) == (1, 3)
    with pytest.raises(IndexError, match="vector"):
        x.index_select(0, kn.tensor([[1]]))
    assert (kn.tensor([1, 2]) + np.array([1, 2])).tolist() == [2, 4]
    assert (7 % kn.tensor([2, 4])).tolist() == [1, 3]
    assert 2 in kn.tensor([[1, 2], [3, 4]]) and 5 not in kn.tensor([[1, 2], [3, 4]])


def test_bitwise_operators(device):
    """& | ^ ~ are bitwise on int64 (they were logical: 6 & 3 gave True), logical on bool, and
    refused on float32, as in PyTorch."""
    t = lambda v: kn.tensor(v, device=device)  # noqa: E731
    rng = np.random.default_rng(3)
    a, b = rng.integers(-2 ** 40, 2 ** 40, 50), rng.integers(-2 ** 40, 2 ** 40, 50)
    assert (t(a) & t(b)).tolist() == (a & b).tolist()
    assert (t(a) | t(b)).tolist() == (a | b).tolist()
    assert (t(a) ^ t(b)).tolist() == (a ^ b).tolist()
    assert (~t(a)).tolist() == (~a).tolist()
    assert (t([6]) | 1).tolist() == [7] and (1 ^ t([3])).tolist() == [2]
    m = t([True, False, True])
    assert (~m).tolist() == [False, True, False] and (True & m).tolist() == [True, False, True]
    assert (m & t([True, True, False])).dtype is kn.bool
    x = t([12, 10])
    x &= 6
    assert x.tolist() == [4, 2]
    with pytest.raises(RuntimeError, match="float32"):
        t([0.5]) & t([2.0])
    with pytest.raises(RuntimeError, match="float32"):
        ~t([0.5])


def test_bool_arithmetic_and_empty_edge_cases_as_pytorch(device):
    m = kn.tensor([True, False], device=device)
    for f in (lambda: m - 1, lambda: 1 - m, lambda: -m, lambda: +m, lambda: kn.abs(m), lambda: kn.floor(m),
              lambda: kn.relu(m)):
        with pytest.raises(RuntimeError, match="bool"):
            f()
    assert kn.sign(m).dtype is kn.bool and kn.square(m).dtype is kn.int64 and kn.square(m).tolist() == [1, 0]
    assert (m + 1).tolist() == [2, 1] and (m * 2).tolist() == [2, 0]
    assert (-kn.tensor([2 ** 40 + 1], device=device)).tolist() == [-(2 ** 40 + 1)]
    assert len(kn.zeros(0, device=device).chunk(2)) == 2
    assert kn.cat([kn.tensor([1, 2], device=device), kn.zeros(0, device=device)]).dtype is kn.float32
    assert tuple(kn.tensor(3.0, device=device).nonzero().shape) == (1, 0)
    assert tuple(kn.tensor(0.0, device=device).nonzero().shape) == (0, 0)
    assert kn.logsumexp(kn.zeros(2, 0, device=device), 1).tolist() == [float("-inf")] * 2


def test_in_place_into_expanded_memory_is_refused_and_addmm_beta_zero(device):
    x = kn.zeros(1, device=device).expand(3)
    for f in (lambda: x.add_(1), lambda: x.fill_(1), lambda: x.clamp_(0, 1), lambda: x.copy_(kn.ones(3))):
        with pytest.raises(RuntimeError, match="single memory location"):
            f()
    nan = kn.full((1, 2), float("nan"), device=device)
    r = kn.addmm(nan, kn.ones(1, 3, device=device), kn.ones(3, 2, device=device), beta=0)
    assert r.tolist() == [[3.0, 3.0]]  # beta = 0 ignores input, NaN included (PyTorch, BLAS)


def test_fill_values_convert_as_pytorch(device):
    """Fill values are converted as PyTorch converts them: bool by truth, int64 exactly past 2**53
    (the kernels take a double) or truncated from a float, refusing what int64 cannot hold."""
    big = 2 ** 60 + 1
    assert kn.full((2,), big, device=device).tolist() == [big, big]
    assert kn.zeros(3, dtype=kn.int64, device=device).fill_(-big).tolist() == [-big] * 3
    assert (kn.tensor([big], device=device) + big).tolist() == [2 * big]
    assert kn.full((2,), -7.9, dtype=kn.int64, device=device).tolist() == [-7, -7]
    assert kn.full((3,), 0.5, dtype=kn.bool, device=device).tolist() == [True] * 3
    assert kn.full((1,), float("nan"), dtype=kn.bool, device=device).tolist() == [True]
    assert kn.full((1,), -0.0, dtype=kn.bool, device=device).tolist() == [False]
    assert kn.ones(2, device=device).fill_(kn.tensor(2.5)).tolist() == [2.5, 2.5]
    for bad in (float("inf"), float("nan"), 2 ** 63, -(2 ** 63) - 1, 1e19):
        with pytest.raises(RuntimeError, match="int64 without overflow"):
            kn.full((1,), bad, dtype=kn.int64, device=device)
    assert kn.full((1,), -(2 ** 63), dtype=kn.int64, device=device).tolist() == [-(2 ** 63)]


def test_masked_fill_keeps_the_tensors_dtype(device):
    x = kn.tensor([1, 2, 3], device=device)
    m = kn.tensor([True, False, True], device=device)
    for v, want in [(2.5, [2, 2, 2]), (kn.tensor(2.5), [2, 2, 2]), (kn.tensor(4), [4, 2, 4]),
                    (2 ** 60 + 1, [2 ** 60 + 1, 2, 2 ** 60 + 1])]:
        r = x.masked_fill(m, v.to(device) if isinstance(v, kn.Tensor) else v)
        assert r.dtype is kn.int64 and r.tolist() == want
    y = x.clone()
    y.masked_fill_(m, kn.tensor(1.5, device=device))  # as PyTorch: truncated, not refused
    assert y.tolist() == [1, 2, 1]
    b = kn.tensor([True, False], device=device).masked_fill(kn.tensor([False, True], device=device), 0.5)
    assert b.dtype is kn.bool and b.tolist() == [True, True]
    with pytest.raises(RuntimeError, match="0-dimensional value tensor"):
        x.masked_fill(m, kn.tensor([1, 2, 3], device=device))
    # a float 0-d value that requires grad still gets its gradient (the sum over the mask)
    f = kn.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    v = kn.tensor(5.0, device=device, requires_grad=True)
    f.masked_fill(m, v).sum().backward()
    assert v.grad.item() == 2.0 and f.grad.tolist() == [0.0, 1.0, 0.0]


# ------------------------------------------------------------------ reductions
RED_DIMS = [None, 0, -1, 1, (0, 2), (0, 1, 2), (2, 0), (-1, -2), (1,)]


@pytest.mark.parametrize("name,ref", [("sum", np.sum), ("mean", np.mean), ("amax", np.max),
                                      ("amin", np.min), ("prod", np.prod)])
@pytest.mark.parametrize("dim", RED_DIMS)
@pytest.mark.parametrize("keepdim", [False, True])
def test_reduce_over_dims(name, ref, dim, keepdim, device):
    a = arr(3, 4, 5, kind="pos" if name == "prod" else "randn")
    for layout in ["contig", "T"]:
        t = make(a, device, layout)
        npdim = tuple(dim) if isinstance(dim, tuple) else dim
        got = getattr(t, name)(dim=dim, keepdim=keepdim) if dim is not None else getattr(t, name)()
        want = ref(a, axis=npdim, keepdims=keepdim) if dim is not None else ref(a)
        close(got, want, tol=1e-5)


_SIMD_ORDER = ["portable", "avx2", "avx512"]
SIMD_PATHS = _SIMD_ORDER[: _SIMD_ORDER.index(kn._cpu.simd_detected()) + 1]


@pytest.mark.parametrize("shape,dim", [((300001,), None), ((3, 200003), 1), ((200003, 3), 0), ((5, 70001, 4), 1),
                                       ((4100, 300), 0), ((16, 9, 33, 35), (0, 2, 3))],
                         ids=["long-vector", "long-rows", "tall-narrow-columns", "tall-middle", "tall-wide-columns",
                              "channels"])
@pytest.mark.parametrize("simd", SIMD_PATHS)
def test_long_sums_are_accurate_and_independent_of_threads(shape, dim, simd, device):
    """Sums and means long enough to be cut into work items (csrc/cpu/reduce.cpp: rows longer than
    a chunk, columns taller than a row block), on every CPU SIMD path (reduce_sum.h): within float
    rounding of float64, with a large offset that a float running sum would lose, and
    bit-identical on 1 and 2 threads (the chunking does not depend on the thread count)."""
    if device != "cpu" and simd != SIMD_PATHS[-1]:
        pytest.skip("the SIMD path is a CPU setting")
    a = (RNG.standard_normal(shape) + 1000.0).astype(np.float32)
    a.flat[::7] -= 2000.0  # mixed signs
    ref = a.astype(np.float64).sum(axis=dim)
    old, old_simd = kn.get_num_threads(), kn._cpu.simd_active()
    got = {}
    try:
        kn._cpu.set_simd(simd)
        for nt in (1, 2):
            kn.set_num_threads(nt)
            t = make(a, device)
            got[nt] = (tonp(t.sum(dim) if dim is not None else t.sum()), tonp(t.mean(dim) if dim is not None else t.mean()))
    finally:
        kn.set_num_threads(old)
        kn._cpu.set_simd(old_simd)
    n = a.size // np.size(ref)
    np.testing.assert_allclose(got[1][0], ref, rtol=3e-6, atol=1e-6 * np.abs(a).sum() / np.size(ref))
    np.testing.assert_allclose(got[1][1], ref / n, rtol=3e-6, atol=1e-6 * np.abs(a).sum() / a.size)
    if device == "cpu":
        np.testing.assert_array_equal(got[1][0], got[2][0])
        np.testing.assert_array_equal(got[1][1], got[2][1])


@pytest.mark.parametrize("simd", SIMD_PATHS)
def test_sums_of_every_width_on_every_simd_path(simd):
    """Row and column sums whose widths end inside a vector (the AVX-512 column loop holds 64
    columns in 4 registers with masked tails; rows end in masked or scalar tails)."""
    old = kn._cpu.simd_active()
    try:
        kn._cpu.set_simd(simd)
        for shape in [(37, 1), (37, 5), (100, 17), (70, 64), (33, 65), (9, 200), (5, 256), (3, 300), (2, 1000)]:
            a = RNG.standard_normal(shape).astype(np.float32)
            for dim in (0, 1, None):
                got = kn.tensor(a).sum(dim) if dim is not None else kn.tensor(a).sum()
                close(got, a.astype(np.float64).sum(axis=dim), tol=1e-5)
    finally:
        kn._cpu.set_simd(old)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_argmax_argmin(dim, keepdim, device):
    a = arr(4, 7)
    t = make(a, device, "T")
    v, i = t.max(dim, keepdim=keepdim)
    close(v, np.max(a, axis=dim, keepdims=keepdim))
    close(i, np.argmax(a, axis=dim, keepdims=keepdim) if keepdim else np.argmax(a, axis=dim))
    v, i = t.min(dim=dim, keepdim=keepdim)
    close(v, np.min(a, axis=dim, keepdims=keepdim))
    close(i, np.expand_dims(np.argmin(a, axis=dim), dim) if keepdim else np.argmin(a, axis=dim))
    close(t.argmax(dim), np.argmax(a, axis=dim))
    close(t.argmin(dim), np.argmin(a, axis=dim))
    close(t.argmax(), np.argmax(a))
    close(t.argmin(), np.argmin(a))
    close(t.max(), np.max(a))
    close(t.min(), np.min(a))
    # first index of ties (PyTorch and NumPy agree)
    ties = make(np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]]), device)
    close(ties.argmax(1), [1, 0])
    close(ties.argmin(1), [3, 0])
    # integer max
    ia = arr(3, 5, kind="int")
    close(make(ia, device).max(1).values, ia.max(1))
    close(make(ia, device).argmax(0), ia.argmax(0))


@pytest.mark.parametrize("dim", [None, 0, 1, (0, 2), -1])
@pytest.mark.parametrize("unbiased", [True, False])
def test_var_std(dim, unbiased, device):
    a = arr(3, 4, 5)
    t = make(a, device, "step")
    ddof = 1 if unbiased else 0
    ax = dim if not isinstance(dim, list) else tuple(dim)
    close(t.var(dim, unbiased=unbiased), np.var(a, axis=ax, ddof=ddof), tol=1e-5)
    close(t.std(dim, unbiased=unbiased), np.std(a, axis=ax, ddof=ddof), tol=1e-5)
    close(t.var(dim, keepdim=True), np.var(a, axis=ax, ddof=1, keepdims=True), tol=1e-5)
    close(kn.var(t, dim, correction=0), np.var(a, axis=ax), tol=1e-5)


@pytest.mark.parametrize("dim", [0, 1, (0, 1), -1])
def test_logsumexp_norm(dim, device):
    a = arr(4, 6) * 10
    t = make(a, device, "T")
    ax = dim
    m = np.max(a, axis=ax, keepdims=True)
    ref = np.log(np.sum(np.exp(a - m), axis=ax, keepdims=True)) + m
    close(kn.logsumexp(t, dim), np.squeeze(ref, axis=ax), tol=1e-5)
    close(t.logsumexp(dim, keepdim=True), ref, tol=1e-5)
    close(t.norm(), np.linalg.norm(a), tol=1e-5)
    close(t.norm(dim=dim), np.sqrt(np.sum(a * a, axis=ax)), tol=1e-5)
    close(t.norm(p=1, dim=dim), np.sum(np.abs(a), axis=ax), tol=1e-5)


def test_any_all_count(device):
    b = arr(3, 5, kind="bool")
    t = make(b, device, "T")
    close(t.any(), b.any())
    close(t.all(), b.all())
    close(t.any(0), b.any(0))
    close(t.all(1, keepdim=True), b.all(1, keepdims=True))
    close(kn.count_nonzero(make(b, device)), np.count_nonzero(b))
    close(make(arr(3, 4), device).any(1), np.ones(3, bool))


def test_integer_and_bool_reductions(device):
    ia = arr(3, 5, kind="int")
    t = make(ia, device)
    assert t.sum().dtype is kn.int64
    close(t.sum(), ia.sum())
    close(t.sum(1), ia.sum(1))
    close(t.prod(0), ia.prod(0))
    b = arr(4, 5, kind="bool")
    assert make(b, device).sum().dtype is kn.int64
    close(make(b, device).sum(0), b.sum(0))
    close(t.float().mean(), ia.mean())


def test_empty_reductions(device):
    z = kn.zeros(0, 3, device=device)
    close(z.sum(), 0.0)
    close(z.sum(0), np.zeros(3))
    close(z.prod(0), np.ones(3))
    assert tuple(z.sum(1).shape) == (0,)
    assert np.isnan(z.mean().item())
    close(z.any(0), np.zeros(3, bool))
    close(z.all(0), np.ones(3, bool))
    v, i = z.max(1)  # reducing a non-empty dim of an empty tensor is fine
    assert tuple(v.shape) == (0,) and tuple(i.shape) == (0,)


def test_zero_dim_reductions(device):
    t = kn.tensor(2.5, device=device)
    close(t.sum(), 2.5)
    close(t.mean(), 2.5)
    close(t.max(), 2.5)
    close(t.argmax(), 0)
    close(t.sum(0), 2.5)
    close(t.sum(dim=-1, keepdim=True), 2.5)


def test_sum_with_empty_dim_list_reduces_everything(device):
    a = arr(3, 4)
    close(make(a, device).sum(dim=()), a.sum())
    close(make(a, device).mean(dim=[]), a.mean())


# ------------------------------------------------------------------ matmul / linear
MATMUL = [((3, 4), (4, 5)), ((1, 4), (4, 1)), ((4,), (4, 3)), ((3, 4), (4,)), ((5,), (5,)),
          ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((2, 3, 4), (4,)),
          ((4,), (2, 4, 3)), ((0, 4), (4, 3)), ((3, 0), (0, 2)), ((2, 3, 4), (2, 4, 6)), ((7, 9), (9, 11))]


@pytest.mark.parametrize("sa,sb", MATMUL)
def test_matmul(sa, sb, device):
    a, b = arr(*sa), arr(*sb)
    for la, lb in [("contig", "contig"), ("T", "T"), ("step", "T"), ("T", "step")]:
        close(make(a, device, la) @ make(b, device, lb), np.matmul(a, b), tol=1e-5)


def test_matmul_transposed_views(device):
    a, b = arr(5, 3), arr(4, 5)
    ta, tb = make(a, device), make(b, device)
    close(ta.T @ tb.T, a.T @ b.T, tol=1e-5)
    close(kn.mm(ta.t(), tb.t()), a.T @ b.T, tol=1e-5)
    x = arr(2, 5, 3)
    w5 = arr(5, 2)
    close(make(x, device).transpose(1, 2) @ make(w5, device), np.swapaxes(x, 1, 2) @ w5, tol=1e-5)
    y = arr(3, 5, 4)
    close(make(y, device).permute(0, 2, 1) @ make(y, device), np.swapaxes(y, 1, 2) @ y, tol=1e-5)
    z = arr(2, 3, 4)
    close(kn.bmm(make(x, device), make(z, device)), x @ z, tol=1e-5)
    v = arr(6)
    close(kn.dot(make(v, device), make(v, device)), v @ v, tol=1e-5)
    p, q = arr(3), arr(4)
    close(kn.outer(make(p, device), make(q, device)), np.outer(p, q), tol=1e-5)
    m = arr(3, 6)
    close(kn.mv(make(m, device), make(v, device)), m @ v, tol=1e-5)


@pytest.mark.parametrize("xshape", [(5, 4), (2, 3, 4), (1, 4), (0, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(xshape, bias, device):
    x, w, b = arr(*xshape), arr(3, 4), arr(3)
    got = kn.linear(make(x, device), make(w, device, "T"), make(b, device) if bias else None)
    close(got, x @ w.T + (b if bias else 0), tol=1e-5)


# ------------------------------------------------------------------ copies and conversions
def test_contiguous_clone_to(device):
    a = arr(3, 4)
    t = make(a, device, "T")
    assert not t.is_contiguous()
    c = t.contiguous()
    assert c.is_contiguous()
    close(c, a)
    assert t.contiguous().data_ptr() != t.data_ptr()
    u = make(a, device)
    assert u.contiguous() is u
    cl = u.clone()
    assert cl.data_ptr() != u.data_ptr()
    close(cl, a)
    close(t.to(kn.int64), np.trunc(a).astype(np.int64))
    close(t.to(kn.bool), a != 0)
    ia = np.array([3, -2, 0])
    close(make(ia, device).float(), ia.astype(np.float64))
    close(make(ia, device).bool(), ia != 0)
    close(make(np.array([True, False]), device).long(), [1, 0])
    assert u.to(kn.float32) is u
    assert u.to("cpu" if device == "cpu" else "cuda") is u
    assert u.to(device, kn.int64).dtype is kn.int64
    assert u.to(dtype=kn.int64).dtype is kn.int64
    assert u.to(kn.zeros(1, dtype=kn.bool)).dtype is kn.bool


def test_inplace_methods(device):
    a = arr(3, 4)
    t = make(a.copy(), device)
    t.add_(1.0)
    t.mul_(2)
    t.sub_(make(np.ones(4), device))
    t.div_(4.0)
    close(t, ((a + 1) * 2 - 1) / 4, tol=1e-6)
    t.clamp_(-0.2, 0.2)
    close(t, np.clip(((a + 1) * 2 - 1) / 4, -0.2, 0.2), tol=1e-6)
    t.zero_()
    close(t, np.zeros((3, 4)))
    t.fill_(3)
    close(t, np.full((3, 4), 3.0))
    v = make(a.copy(), device, "T")  # non-contiguous in-place
    v += 1
    close(v, a + 1, tol=1e-6)
    v.fill_(0.5)
    close(v, np.full((3, 4), 0.5))
    v.copy_(make(a, device))
    close(v, a)
    v.masked_fill_(v > 0, 0.0)
    close(v, np.where(a > 0, 0.0, a))


def test_inplace_arithmetic_fast_path_matches_the_general_one(device):
    """add_/sub_/mul_/div_ write self with one kernel where that is what out-of-place + copy gives
    (methods.py, elementwise.binary_into_self); everything else keeps the general path. Each case
    against NumPy, including the ones that must leave the fast path."""
    a, r, c = arr(3, 4), arr(4), arr(3, 1)
    t = make(a.copy(), device)
    t.add_(make(r, device))            # broadcast row
    t.mul_(make(c, device))            # broadcast column
    t.sub_(2)                          # int scalar into float32
    t /= 0.5                           # operator, float scalar
    close(t, (((a + r) * c) - 2) / 0.5, tol=1e-5)
    u = make(a.copy(), device)
    u.add_(u)                          # other shares self's storage: general path
    close(u, 2 * a, tol=1e-6)
    w = make(arr(4, 4), device)
    w0 = tonp(w).copy()
    w.add_(w.T)                        # overlapping transposed view: must not read updated values
    close(w, w0 + w0.T, tol=1e-6)
    n = kn.zeros((), dtype=kn.int64, device=device)
    for _ in range(3):
        n.add_(1)                      # BatchNorm's num_batches_tracked
    assert n.item() == 3 and n.dtype is kn.int64
    i = kn.tensor([1, 2, 3], device=device)
    i.mul_(2)
    close(i, [2, 4, 6])
    assert i.dtype is kn.int64
    with pytest.raises(RuntimeError):
        i.add_(make(np.ones(3, np.float32), device))  # float into int64: refused, as in PyTorch
    with pytest.raises((RuntimeError, ValueError)):
        make(arr(4), device).add_(make(arr(3, 4), device))  # result larger than self
    p = make(arr(3), device, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        p.add_(1.0)
    with kn.no_grad():
        p.sub_(make(np.full(3, 0.5, np.float32), device))  # a manual SGD step
    assert p.requires_grad and p.grad_fn is None


def test_scalar_operands_keep_dtype_and_the_sign_of_zero(device):
    """Python numbers join a tensor as cached 0-d tensors keyed by type and the sign of zero."""
    x = make(np.array([1.0, -2.0], np.float32), device)
    np.testing.assert_array_equal(np.signbit(tonp(x * 0.0)), [False, True])
    np.testing.assert_array_equal(np.signbit(tonp(x * -0.0)), [True, False])
    np.testing.assert_array_equal(np.signbit(tonp(0.0 - x * 0.0)), [False, False])
    k = kn.tensor([3, 4], device=device)
    assert (k * 2).dtype is kn.int64 and (k * 2.0).dtype is kn.float32  # int stays int; float promotes
    close(k * 2.5, [7.5, 10.0])
    close(1 - x, [0.0, 3.0])
    close(x / 2, [0.5, -1.0])
    # values that change every call (a decaying factor) cycle through the cache; results stay right
    from kernelnet.ops import elementwise as ew
    for i in range(ew._SCALARS_MAX + 100):
        assert (x * (1.0 + i)).tolist() == [1.0 + i, -2.0 * (1.0 + i)]
    assert len(ew._SCALARS) <= ew._SCALARS_MAX
    last = 1.0 + ew._SCALARS_MAX + 99
    assert any(k[0] == last and k[1] is float for k in ew._SCALARS)  # still caching after it filled up
    close(x * 0.0, [0.0, 0.0])


def test_bool_arithmetic_stays_boolean(device):
    b = kn.tensor([True, False, True], device=device)
    c = kn.tensor([True, True, False], device=device)
    s = b + c
    assert s.dtype is kn.bool
    close(s, [True, True, True])
    close(s == kn.tensor([True, True, True], device=device), [True, True, True])  # stored as 1, not 2
    close(b * c, [True, False, False])
    close(kn.maximum(b, c), [True, True, True])
    with pytest.raises(RuntimeError, match="bool"):
        b - c


def test_integer_division_by_zero_raises(device):
    with pytest.raises(ZeroDivisionError, match="floor_divide"):
        kn.tensor([1, 2], device=device) // kn.tensor([1, 0], device=device)
    close(kn.tensor([1, 2], device=device) / 0, [np.inf, np.inf])  # true division: float, like torch


def test_fmod_vs_remainder_signs(device):
    a = np.array([-3.0, 3.0, -3.5, 4.0, 0.0])
    b = np.array([2.0, -2.0, 2.0, 2.0, 3.0])
    close(kn.fmod(make(a, device), make(b, device)), np.fmod(a, b))
    close(kn.remainder(make(a, device), make(b, device)), np.mod(a, b))
    ia, ib = np.array([-7, 7, -6]), np.array([2, -2, 4])
    close(kn.fmod(make(ia, device), make(ib, device)), np.fmod(ia, ib))
    close(make(ia, device) % make(ib, device), np.mod(ia, ib))


def test_logsumexp_infinities(device):
    t = make(np.array([[-np.inf, -np.inf], [np.inf, 1.0], [0.0, 1.0]]), device)
    close(t.logsumexp(1), [-np.inf, np.inf, np.log(np.exp(0.0) + np.exp(1.0))])


def test_int_pow(device):
    close(kn.tensor([2, 3], device=device) ** 2, [4, 9])
    assert (kn.tensor([2, 3], device=device) ** 2).dtype is kn.int64
    with pytest.raises(RuntimeError, match="negative integer powers"):
        kn.tensor([2], device=device) ** -1
    # a tensor of exponents is computed, as PyTorch: 1 and -1 have integer powers, others give 0
    t = kn.tensor([2, 1, -1, 0], device=device) ** kn.tensor([-1, -2, -3, -1], device=device)
    assert t.tolist() == [0, 1, -1, 0]
    assert (2 ** kn.tensor([-1, 2], device=device)).tolist() == [0, 4]


def test_inplace_ops_that_keep_an_integer_dtype_are_not_refused():
    # PyTorch: these in-place results have self's dtype (only a promoted result type is refused)
    for name in ["neg_", "relu_", "floor_", "ceil_", "round_", "sign_", "square_", "abs_"]:
        x = kn.tensor([1, -2, 0, 3])
        getattr(x, name)()
        assert x.dtype is kn.int64
    x = kn.tensor([1, -2, 0, 3])
    assert x.neg_().tolist() == [-1, 2, 0, -3]
    assert kn.tensor([1, -3, 5]).div_(2, rounding_mode="trunc").tolist() == [0, -1, 2]
    assert kn.tensor([1, -2]).masked_fill_(kn.tensor([True, False]), kn.tensor(7.5)).tolist() == [7, -2]
    assert kn.tensor([True, False]).masked_fill_(kn.tensor([False, True]), kn.tensor(1)).tolist() == [True, True]
    with pytest.raises(RuntimeError, match="can't be cast"):
        kn.tensor([1, 2]).div_(2.5, rounding_mode="floor")
    with pytest.raises(RuntimeError, match="can't be cast"):
        kn.tensor([1, 2]).exp_()


def test_integer_unary_ops_keep_int64_exactly(device):
    """neg, relu, floor, ceil, round, sign, square (and abs) of an int64 tensor are int64, as in
    PyTorch, and exact beyond float32's 2**24 (the unary kernels compute in float32)."""
    vals = [1, -2, 3, 2**40 + 1, -(2**40 + 3), 0]
    x = kn.tensor(vals, device=device)
    expect = {"neg": [-v for v in vals], "abs": [abs(v) for v in vals], "relu": [max(v, 0) for v in vals],
              "floor": vals, "ceil": vals, "round": vals, "sign": [(v > 0) - (v < 0) for v in vals],
              "square": [(v * v + 2**63) % 2**64 - 2**63 for v in vals]}  # int64 wraps, as in PyTorch
    for name, want in expect.items():
        got = getattr(x, name)()
        assert got.dtype is kn.int64, name
        assert got.tolist() == want, name
    xs = kn.tensor([[1, -2], [3, -4]], device=device).T  # non-contiguous
    assert xs.neg().tolist() == [[-1, -3], [2, 4]]
    assert kn.tensor([5, -6], device=device).neg_().tolist() == [-5, 6]
