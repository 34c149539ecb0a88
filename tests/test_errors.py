"""Bad input raises a Python exception whose message names the op and the offending shapes,
dtypes or devices; nothing crashes the interpreter."""
import subprocess
import sys

import numpy as np
import pytest

import kernelnet as kn
from kernelnet.ops._util import check_same_device

ERRORS = (ValueError, RuntimeError, IndexError, TypeError)


def _raises(fn, *words, exc=ERRORS):
    with pytest.raises(exc) as ei:
        fn()
    msg = str(ei.value)
    for w in words:
        assert w in msg, f"{w!r} not in message {msg!r}"
    return msg


def test_shape_mismatch_messages(device):
    a = kn.ones(3, 4, device=device)
    _raises(lambda: a + kn.ones(5, device=device), "add", "(3, 4)", "(5,)")
    _raises(lambda: a * kn.ones(2, 4, device=device), "mul", "(3, 4)", "(2, 4)")
    _raises(lambda: kn.where(kn.ones(2, dtype=kn.bool, device=device), a, 0.0), "where")
    _raises(lambda: a @ kn.ones(5, 2, device=device), "matmul", "(3, 4)", "(5, 2)")
    _raises(lambda: a @ kn.ones(3, device=device), "matmul", "(3,)")
    _raises(lambda: kn.ones(2, 3, 4, device=device) @ kn.ones(3, 5, 6, device=device), "matmul")
    _raises(lambda: kn.bmm(kn.ones(2, 3, 4, device=device), kn.ones(3, 4, 5, device=device)), "bmm", "(2, 3, 4)", "(3, 4, 5)")
    _raises(lambda: kn.cat([a, kn.ones(2, 5, device=device)]), "cat", "(3, 4)", "(2, 5)")
    _raises(lambda: kn.stack([a, kn.ones(4, 3, device=device)]), "stack", "(3, 4)", "(4, 3)")
    _raises(lambda: a.reshape(5, 3), "reshape", "(5, 3)", "12")
    _raises(lambda: a.view(7, -1), "view", "12")
    _raises(lambda: a.reshape(-1, -1), "reshape")
    _raises(lambda: a.T.view(12), "view", "(4, 3)")
    _raises(lambda: a.expand(3, 5), "expand", "5", "4")
    _raises(lambda: a.permute(0, 0), "permute")
    _raises(lambda: a.split([1, 1]), "split")
    _raises(lambda: kn.linear(a, kn.ones(2, 5, device=device)), "linear", "(2, 5)")
    _raises(lambda: kn.linear(a, kn.ones(2, 4, device=device), kn.ones(3, device=device)), "linear", "bias", "(3,)")
    _raises(lambda: a.copy_(kn.ones(2, device=device)), "copy_", "(2,)", "(3, 4)")
    _raises(lambda: a.__setitem__(slice(None), kn.ones(5, device=device)), "(5,)", "(3, 4)")
    _raises(lambda: a.gather(1, kn.zeros(3, dtype=kn.int64, device=device)), "gather")
    _raises(lambda: a.scatter_add(1, kn.zeros(2, 1, dtype=kn.int64, device=device), kn.ones(2, 1, device=device)), "scatter_add", "(2, 1)", "(3, 4)")
    _raises(lambda: a.scatter_add(1, kn.zeros(3, 2, dtype=kn.int64, device=device), kn.ones(3, 1, device=device)), "scatter_add", "(3, 2)", "(3, 1)")
    _raises(lambda: a[kn.ones(2, 2, dtype=kn.bool, device=device)], "mask", "(2, 2)")
    _raises(lambda: a[kn.tensor([0, 1], device=device), kn.tensor([0, 1, 2], device=device)], "(2,)", "(3,)")


def test_wrong_dtype_messages(device):
    i = kn.ones(2, 2, dtype=kn.int64, device=device)
    f = kn.ones(2, 2, device=device)
    _raises(lambda: i @ i, "matmul", "int64")
    _raises(lambda: kn.linear(f, i), "linear", "int64")
    _raises(lambda: f[kn.tensor([0.5], device=device)], "indices", "long")
    _raises(lambda: f[np.array([0.5])], "indices")
    _raises(lambda: f.gather(0, kn.zeros(2, 2, device=device)), "gather", "int64")
    _raises(lambda: kn.zeros(3, dtype=kn.int64, device=device).scatter_add(0, kn.tensor([0, 1], device=device), kn.ones(2, device=device)), "scatter_add", "int64")
    _raises(lambda: f.scatter_add(0, kn.zeros(2, 2, device=device), f), "scatter_add", "int64")
    _raises(lambda: kn.one_hot(f), "one_hot", "int64")
    _raises(lambda: i.mean(), "mean", "int64")
    _raises(lambda: i.requires_grad_(), "floating point")
    _raises(lambda: kn.zeros(2, dtype="complex64"), "complex64")
    _raises(lambda: kn.tensor(np.array(["a", "b"])), "dtype")
    _raises(lambda: kn.randn(2, dtype=kn.int64), "float32")
    _raises(lambda: f[1.5], "index")


def test_out_of_range_indices(device):
    a = kn.ones(3, 4, device=device)
    _raises(lambda: a[3], "index 3", "size 3", exc=IndexError)
    _raises(lambda: a[-4], "index -4", exc=IndexError)
    _raises(lambda: a[0, 4], "index 4", "dimension 1", "size 4", exc=IndexError)
    _raises(lambda: a[kn.tensor([0, 3], device=device)], "index 3", "size 3", exc=IndexError)
    _raises(lambda: a[kn.tensor([-5], device=device)], "index -5", exc=IndexError)
    _raises(lambda: a[:, kn.tensor([[1], [9]], device=device)], "index 9", "size 4", exc=IndexError)
    _raises(lambda: a.index_select(0, kn.tensor([7], device=device)), "index 7", exc=IndexError)
    _raises(lambda: a.gather(1, kn.tensor([[0], [4], [1]], device=device)), "index 4", exc=IndexError)
    _raises(lambda: a.scatter_add(0, kn.tensor([[3, 0, 0, 0]], device=device), kn.ones(1, 4, device=device)), "index 3", exc=IndexError)
    _raises(lambda: a[0, 0, 0], "too many indices", exc=IndexError)
    _raises(lambda: a[..., ...], "ellipsis", exc=IndexError)
    _raises(lambda: a.__setitem__(5, 1.0), "index 5", exc=IndexError)
    _raises(lambda: a.__setitem__(kn.tensor([0, 8], device=device), 1.0), "8", exc=IndexError)
    _raises(lambda: kn.one_hot(kn.tensor([0, 3], device=device), 3), "one_hot")


def test_empty_tensor_reductions(device):
    e = kn.zeros(0, device=device)
    _raises(lambda: e.max(), "max", "numel() == 0", "(0,)")
    _raises(lambda: e.min(), "min", "(0,)")
    _raises(lambda: e.argmax(), "argmax", "(0,)")
    _raises(lambda: kn.zeros(0, 3, device=device).max(0), "max", "(0, 3)")
    _raises(lambda: kn.zeros(0, 3, device=device).amax(0), "max", "(0, 3)")
    _raises(lambda: kn.zeros(2, 0, device=device).argmin(1), "argmin", "(2, 0)")
    _raises(lambda: e.item(), "0 elements")
    _raises(lambda: bool(kn.ones(2, device=device)), "ambiguous")


def test_bad_dims(device):
    a = kn.ones(3, 4, device=device)
    _raises(lambda: a.sum(2), "sum", "2", exc=IndexError)
    _raises(lambda: a.sum(-3), "sum", "-3", exc=IndexError)
    _raises(lambda: a.mean((0, 0)), "mean", "more than once")
    _raises(lambda: a.max(5), "max", exc=IndexError)
    _raises(lambda: a.argmax(-3), "argmax", exc=IndexError)
    _raises(lambda: a.transpose(0, 2), "Dimension out of range", exc=IndexError)
    _raises(lambda: a.unsqueeze(3), "Dimension out of range", exc=IndexError)
    _raises(lambda: a.squeeze(4), "squeeze", exc=IndexError)
    _raises(lambda: kn.cat([a, a], dim=2), "Dimension out of range", exc=IndexError)
    _raises(lambda: a.flatten(1, 0), "flatten")
    _raises(lambda: kn.zeros(-1), "negative dimension")
    _raises(lambda: a.sum(1.5), "dim")


def test_devices():
    _raises(lambda: kn.device("tpu"), "unknown device", "tpu")
    _raises(lambda: kn.zeros(2, device="gpu"), "unknown device", "gpu")
    _raises(lambda: kn.device("cuda:x"), "cuda:x")


def test_cuda_tensor_without_gpu_is_a_clear_error():
    if kn.cuda.is_available():
        pytest.skip("a GPU is available here")
    msg = _raises(lambda: kn.zeros(2, device="cuda"), "cuda", "cpu", exc=RuntimeError)
    assert "AttributeError" not in msg
    _raises(lambda: kn.ones(3).to("cuda"), "cuda", exc=RuntimeError)
    _raises(lambda: kn.ones(3).cuda(), "cuda", exc=RuntimeError)


def test_mixing_devices_message():
    # a real second device needs a GPU; the check itself is what every op calls
    class FakeCuda:
        device = kn.device("cuda:1")

    a = kn.ones(2)
    fake = kn.ones(2)
    object.__setattr__(fake, "device", kn.device("cuda:1"))  # metadata only; never run a kernel
    msg = _raises(lambda: check_same_device("add", a, fake), "add", "cpu", "cuda:1", exc=RuntimeError)
    assert "same device" in msg
    for op in [lambda: a + fake, lambda: a @ fake.reshape(2, 1), lambda: kn.cat([a, fake]),
               lambda: kn.where(a > 0, a, fake), lambda: a.scatter_add(0, kn.tensor([0, 1]), fake)]:
        _raises(op, "cpu", "cuda:1", exc=RuntimeError)


def test_mixing_devices_on_gpu():
    if not kn.cuda.is_available():
        pytest.skip("CUDA not available: needs a GPU")
    a, b = kn.ones(2), kn.ones(2, device="cuda")
    _raises(lambda: a + kn.ones(3, 2, device="cuda"), "cpu", "cuda", exc=RuntimeError)
    _raises(lambda: a.reshape(1, 2) @ b.reshape(2, 1), "cpu", "cuda", exc=RuntimeError)
    _raises(lambda: kn.cat([a, b]), "cpu", "cuda", exc=RuntimeError)
    # kernelnet runs on cuda:0 only: another index is refused before any memory is taken from cuda:0
    _raises(lambda: kn.ones(2, device="cuda:1"), "cuda:1", "one GPU", exc=RuntimeError)


def test_numpy_and_conversion_errors():
    t = kn.ones(2, requires_grad=True)
    _raises(lambda: t.numpy(), "requires grad", "detach", exc=RuntimeError)
    _raises(lambda: kn.from_numpy(np.ones(2, dtype=np.complex64)), "complex64", exc=TypeError)
    _raises(lambda: kn.ones(3).tolist() and int(kn.ones(3)), "3 elements", exc=RuntimeError)
    _raises(lambda: kn.ones(2) + "a", "str", exc=TypeError)
    _raises(lambda: len(kn.tensor(1.0)), "0-d", exc=TypeError)
    _raises(lambda: kn.exp([1.0, 2.0]), "exp", "list", exc=TypeError)


NATIVE_SCRIPT = r"""
import numpy as np
from kernelnet import _cpu
a = np.ones(4, np.float32); o = np.zeros(4, np.float32)
calls = [lambda: _cpu.fill(7, o.ctypes.data, 1, 0.0),                          # unknown dtype code
         lambda: _cpu.reduce(99, 0, o.ctypes.data, a.ctypes.data, 1, 4, 1),    # unknown op code
         lambda: _cpu.copy_strided(0, o.ctypes.data, a.ctypes.data, [4], [1, 2]),  # rank mismatch
         lambda: _cpu.fill(1, o.ctypes.data, 1, 1e30),                         # no int64 holds it
         lambda: _cpu.fill(1, o.ctypes.data, 1, float("nan"))]
n = 0
for f in calls:
    try:
        f()
    except (ValueError, RuntimeError, TypeError):
        n += 1
print("RAISED", n, len(calls))
"""


def test_native_checks_raise_value_error_not_crash():
    # kernels validate what they rely on (KN_CHECK -> ValueError) even when called directly; run
    # in a subprocess so that a crash in the C++ -> Python error translation fails this test only
    r = subprocess.run([sys.executable, "-c", NATIVE_SCRIPT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"a native error crashed the interpreter (rc={r.returncode}): {r.stderr[-2000:]}"
    assert "RAISED 5 5" in r.stdout, r.stdout


BAD_INPUT_SCRIPT = r"""
import kernelnet as kn, numpy as np
a = kn.ones(3, 4)
bad = [
    lambda: a[kn.tensor([100000000])],
    lambda: a.gather(1, kn.tensor([[10**9]] * 3)),
    lambda: a.scatter_add(1, kn.tensor([[10**9]] * 3), kn.ones(3, 1)),
    lambda: a.scatter_add(1, kn.tensor([[0]]), kn.ones(1, 1)),
    lambda: a.index_select(0, kn.tensor([-10**9])),
    lambda: a[kn.tensor([True] * 7)],
    lambda: kn.ones(2, 3) @ kn.ones(2, 3),
    lambda: kn.zeros(0).max(),
    lambda: a.view(-1, 5),
    lambda: kn.cat([]),
    lambda: kn.stack([]),
    lambda: a.T.view(12),
]
n = 0
for f in bad:
    try:
        f()
    except (ValueError, RuntimeError, IndexError, TypeError, NotImplementedError):
        n += 1
print("RAISED", n, len(bad))
"""


def test_bad_inputs_never_crash_the_interpreter():
    r = subprocess.run([sys.executable, "-c", BAD_INPUT_SCRIPT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"interpreter died (rc={r.returncode}): {r.stderr[-2000:]}"
    assert "RAISED 12 12" in r.stdout, r.stdout


def test_cat_split_edge_errors(device):
    _raises(lambda: kn.cat([kn.tensor(1.0, device=device)]), "cat", "zero-dimensional")
    _raises(lambda: kn.ones(3, device=device).split(0), "split", "0", "3")
    assert len(kn.zeros(0, device=device).split(0)) == 1
