"""Interop (NumPy memory sharing, DLPack with NumPy and PyTorch, tolist/item/repr), devices and
their environment overrides, info(), and reproducible random streams."""
import os
import subprocess
import sys

import numpy as np
import pytest

import kernelnet as kn
from _coreutil import close, torch

ROOT_PY = os.path.dirname(os.path.dirname(kn.__file__))


# ------------------------------------------------------------------ NumPy
def test_numpy_shares_memory_write_through():
    t = kn.zeros(2, 3)
    a = t.numpy()
    assert a.ctypes.data == t.data_ptr()
    a[1, 2] = 5.0
    assert t.tolist()[1][2] == 5.0
    t[0, 0] = -1.0
    assert a[0, 0] == -1.0
    # views export their strides without copying
    v = t.T[1:]
    av = v.numpy()
    assert av.shape == (2, 2) and np.shares_memory(av, a)
    close(av, a.T[1:])


def test_from_numpy_shares_memory():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = kn.from_numpy(a)
    assert t.data_ptr() == a.ctypes.data
    a[0, 1] = 42
    assert t[0, 1].item() == 42
    t.add_(1)
    assert a[0, 1] == 43
    b = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]
    tb = kn.from_numpy(b)
    assert tb.data_ptr() == b.ctypes.data and tuple(tb.stride()) == (4, 2)
    b[2, 1] = -7
    assert tb[2, 1].item() == -7
    m = np.array([True, False])
    assert kn.from_numpy(m).data_ptr() == m.ctypes.data
    # float64 cannot be shared (kernelnet is float32): documented copy
    d = np.ones(3)
    assert kn.from_numpy(d).dtype is kn.float32


def test_numpy_array_protocol():
    t = kn.arange(4).reshape(2, 2)
    assert np.asarray(t).tolist() == [[0, 1], [2, 3]]
    assert np.array(kn.ones(2, requires_grad=True)).tolist() == [1.0, 1.0]


# ------------------------------------------------------------------ DLPack
def test_dlpack_numpy_roundtrip_without_copy():
    t = kn.randn(3, 4)
    a = np.from_dlpack(t)
    assert a.ctypes.data == t.data_ptr()
    a[0, 0] = 123.0
    assert t[0, 0].item() == 123.0
    back = kn.from_dlpack(a)
    assert back.data_ptr() == t.data_ptr()
    tv = t.T
    av = np.from_dlpack(tv)
    assert av.ctypes.data == tv.data_ptr() and av.strides == (4, 16)
    assert t.__dlpack_device__() == (1, 0)
    ti = kn.arange(5)
    assert np.from_dlpack(ti).dtype == np.int64


def test_dlpack_torch_roundtrip_without_copy():
    if torch is None:
        pytest.skip("torch is not installed")
    t = kn.randn(3, 4)
    tt = torch.from_dlpack(t)
    assert tt.data_ptr() == t.data_ptr() and tt.dtype == torch.float32
    tt[1, 1] = 7.0
    assert t[1, 1].item() == 7.0
    tv = torch.from_dlpack(t.T)
    assert tv.stride() == (1, 4) and tv.data_ptr() == t.data_ptr()
    te = torch.from_dlpack(kn.ones(3, 1).expand(3, 4))
    assert te.shape == (3, 4)
    src = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    k = kn.from_dlpack(src)
    assert k.data_ptr() == src.data_ptr() and tuple(k.shape) == (3, 4)
    src[0, 0] = -1
    assert k[0, 0].item() == -1
    kt = kn.from_dlpack(src.T)
    assert kt.data_ptr() == src.data_ptr() and tuple(kt.stride()) == (1, 4)
    close(kt, src.T.numpy())
    assert kn.from_dlpack(torch.tensor([1, 2])).dtype is kn.int64
    assert kn.from_dlpack(torch.tensor([True])).dtype is kn.bool
    with pytest.raises(TypeError, match="float64"):
        kn.from_dlpack(torch.zeros(2, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="detach"):
        torch.from_dlpack(kn.ones(2, requires_grad=True))
    # the consumer keeps the memory alive after the producer is gone
    t2 = kn.arange(5).float()
    tt2 = torch.from_dlpack(t2)
    del t2
    assert tt2.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_torch_tensor_as_data():
    if torch is None:
        pytest.skip("torch is not installed")
    close(kn.tensor(torch.arange(3.0)), [0.0, 1.0, 2.0])


# ------------------------------------------------------------------ scalars, lists, repr
def test_tolist_item():
    assert kn.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
    assert kn.tensor(2.5).tolist() == 2.5
    assert kn.tensor([[1.0, 2.0]]).T.tolist() == [[1.0], [2.0]]
    assert kn.tensor(7).item() == 7 and isinstance(kn.tensor(7).item(), int)
    assert isinstance(kn.tensor(1.5).item(), float)
    assert kn.tensor(True).item() is True
    assert kn.tensor([[3.0]]).item() == 3.0
    assert float(kn.tensor([2.0])) == 2.0 and int(kn.tensor(3)) == 3
    assert [3, 4, 5][kn.tensor(1)] == 4  # __index__
    assert len(kn.zeros(4, 2)) == 4
    assert [r.tolist() for r in kn.arange(4).reshape(2, 2)] == [[0, 1], [2, 3]]
    assert f"{kn.tensor(0.25):.2f}" == "0.25"


def test_repr_readable():
    r = repr(kn.tensor([[1.5, 2.0], [3.0, 4.0]]))
    assert r.startswith("tensor([[1.5000, 2.0000],") and r.endswith("]])")
    assert repr(kn.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(kn.arange(3)) == "tensor([0, 1, 2])"
    assert repr(kn.tensor([True, False])) == "tensor([True, False])"
    assert repr(kn.tensor(2.5)) == "tensor(2.5000)"
    assert "requires_grad=True" in repr(kn.ones(2, requires_grad=True))
    assert "grad_fn=<" in repr(kn.ones(2, requires_grad=True) * 2)
    assert repr(kn.zeros(0, 3)) == "tensor([], size=(0, 3))"
    assert "dtype=kernelnet.int64" in repr(kn.zeros(0, dtype=kn.int64))
    big = repr(kn.arange(10000).float())
    assert "..." in big and len(big) < 300
    assert repr(kn.float32) == "kernelnet.float32"
    assert repr(kn.zeros(2, 3).shape) == "kernelnet.Size([2, 3])"
    assert str(kn.device("cpu")) == "cpu"
    # comparable to torch's formatting for the common case
    if torch is not None:
        assert repr(kn.tensor([[1.5, 2.0], [3.0, 4.0]])) == repr(torch.tensor([[1.5, 2.0], [3.0, 4.0]]))
        assert repr(kn.arange(3)) == repr(torch.arange(3))


def test_pickle_and_deepcopy():
    import copy
    import pickle
    t = kn.randn(2, 3).T
    u = pickle.loads(pickle.dumps(t))
    close(u, t.numpy())
    p = kn.ones(2, requires_grad=True)
    q = copy.deepcopy(p)
    assert q.requires_grad and q.data_ptr() != p.data_ptr()


# ------------------------------------------------------------------ devices
def _run(code, **env):
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT_PY + os.pathsep + e.get("PYTHONPATH", "")
    for k, v in env.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)


def test_device_auto_falls_back_to_cpu():
    d = kn.device("auto")
    if not kn.cuda.is_available():
        assert d.type == "cpu"
        assert kn.zeros(2, device="auto").device.type == "cpu"
    else:
        assert d.type == "cuda"
    assert kn.device("cpu") == "cpu" and kn.device("cuda:1").index == 1
    assert kn.device(kn.device("cpu")) == kn.device("cpu")


def test_env_forces_cpu():
    r = _run("import kernelnet as kn; print(kn.device('auto'), kn.zeros(1, device='auto').device)",
             KERNELNET_DEVICE="cpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["cpu", "cpu"]


def test_env_forcing_cuda_without_gpu_imports_then_errors_clearly():
    code = ("import kernelnet as kn\n"
            "print('IMPORTED', kn.cuda.is_available(), kn.device('auto'))\n"
            "try:\n"
            "    kn.zeros(2, device='auto')\n"
            "    print('CREATED')\n"
            "except RuntimeError as e:\n"
            "    print('ERROR', e)\n")
    r = _run(code, KERNELNET_DEVICE="cuda")
    assert r.returncode == 0, r.stderr
    assert "IMPORTED" in r.stdout
    if "IMPORTED True" in r.stdout:
        assert "CREATED" in r.stdout
    else:
        assert "ERROR cannot use device 'cuda" in r.stdout and "cpu" in r.stdout.split("ERROR", 1)[1]


def test_info_prints_backend_simd_threads(capsys):
    kn.info()
    out = capsys.readouterr().out
    assert "CPU backend" in out and "SIMD path" in out and "threads" in out and "CUDA backend" in out
    d = kn.info(as_dict=True)
    assert d["threads"] == kn.get_num_threads() >= 1
    assert d["simd_active"] in ("avx512", "avx2", "portable")
    r = _run("import kernelnet as kn; kn.info()", KERNELNET_NUM_THREADS="1", KERNELNET_SIMD="portable")
    assert r.returncode == 0, r.stderr
    assert "portable" in r.stdout and "threads   : 1" in r.stdout


# ------------------------------------------------------------------ random
def test_manual_seed_reproducible():
    kn.manual_seed(1234)
    a, b = kn.randn(5, 7), kn.rand(3)
    kn.manual_seed(1234)
    a2, b2 = kn.randn(5, 7), kn.rand(3)
    assert np.array_equal(a.numpy(), a2.numpy()) and np.array_equal(b.numpy(), b2.numpy())
    c = kn.randn(5, 7)
    assert not np.array_equal(a.numpy(), c.numpy())  # the stream moves on
    kn.manual_seed(99)
    assert not np.array_equal(kn.randn(5, 7).numpy(), a.numpy())
    g = kn.Generator().manual_seed(5)
    x = kn.randn(4, generator=g)
    g.manual_seed(5)
    assert np.array_equal(kn.randn(4, generator=g).numpy(), x.numpy())
    state = kn.get_rng_state()
    y = kn.rand(6)
    kn.set_rng_state(state)
    assert np.array_equal(kn.rand(6).numpy(), y.numpy())


def test_random_independent_of_thread_count():
    old = kn.get_num_threads()
    try:
        out = []
        for n in (1, 2, 3):
            kn.set_num_threads(n)
            kn.manual_seed(7)
            out.append((kn.randn(100003).numpy().copy(), kn.rand(4097).numpy().copy(),
                        kn.randint(0, 10, (999,)).numpy().copy()))
        for o in out[1:]:
            for x, y in zip(out[0], o):
                assert np.array_equal(x, y)
    finally:
        kn.set_num_threads(old)
