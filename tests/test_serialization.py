"""kernelnet.save / load: exact round trips of state dicts and nested optimizer state, no code on
load, atomic writes, clear errors on corrupted, truncated or foreign files."""
import io
import os
import zipfile

import numpy as np
import pytest

import kernelnet as kn
import kernelnet.nn as nn
import kernelnet.optim as optim
from kernelnet.serialization import SerializationError


def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_state_dict_round_trip_exact(tmp_path):
    m = _model()
    m(kn.randn(5, 3))  # moves BatchNorm running stats, num_batches_tracked (int64)
    p = tmp_path / "m.kn"
    kn.save(m.state_dict(), p)
    sd = kn.load(p)
    assert list(sd.keys()) == list(m.state_dict().keys())
    for k, v in m.state_dict().items():
        assert sd[k].dtype == v.dtype and tuple(sd[k].shape) == tuple(v.shape)
        assert np.array_equal(sd[k].numpy(), v.numpy())
    m2 = _model()
    m2.load_state_dict(sd)
    x = kn.randn(2, 3)
    m.eval(), m2.eval()
    assert np.array_equal(m(x).detach().numpy(), m2(x).detach().numpy())


def test_nested_objects_and_scalars(tmp_path):
    t = kn.arange(6).reshape(2, 3)
    obj = {"a": [1, 2.5, True, None, "s", (kn.ones(2), float("inf"))], 3: {"t": t, "t_again": t},
           "bools": kn.tensor([True, False]), "scalar": kn.from_numpy(np.array(1.5, np.float32)), "empty": kn.zeros(0, 4)}
    buf = io.BytesIO()
    kn.save(obj, buf)
    buf.seek(0)
    out = kn.load(buf)
    assert out["a"][:5] == [1, 2.5, True, None, "s"] and isinstance(out["a"][5], tuple)
    assert out["a"][5][1] == float("inf") and np.array_equal(out["a"][5][0].numpy(), [1.0, 1.0])
    assert 3 in out and out[3]["t"] is out[3]["t_again"]  # shared tensors stay shared
    assert out[3]["t"].dtype == kn.int64 and np.array_equal(out[3]["t"].numpy(), t.numpy())
    assert out["bools"].dtype == kn.bool and tuple(out["scalar"].shape) == () and tuple(out["empty"].shape) == (0, 4)


def test_optimizer_state_round_trip(tmp_path):
    m = _model()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(kn.randn(4, 3)).sum().backward()
    opt.step()
    kn.save(opt.state_dict(), tmp_path / "o.kn")
    sd = kn.load(tmp_path / "o.kn")
    ref = opt.state_dict()
    assert sd["param_groups"] == ref["param_groups"]
    for k in ref["state"]:
        assert np.array_equal(sd["state"][k]["momentum_buffer"].numpy(), ref["state"][k]["momentum_buffer"].numpy())


def test_atomic_write_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "ck.kn"
    kn.save({"x": kn.ones(3)}, p)
    with pytest.raises(TypeError, match="cannot save object of type"):
        kn.save({"x": kn.zeros(3), "bad": object()}, p)
    assert np.array_equal(kn.load(p)["x"].numpy(), np.ones(3))  # old file intact
    assert os.listdir(tmp_path) == ["ck.kn"]


def test_corrupted_truncated_and_foreign_files(tmp_path):
    p = tmp_path / "ck.kn"
    kn.save({"w": kn.randn(100, 100)}, p)
    data = p.read_bytes()
    (tmp_path / "trunc.kn").write_bytes(data[: len(data) // 2])
    with pytest.raises(SerializationError, match="corrupted or truncated"):
        kn.load(tmp_path / "trunc.kn")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # inside the tensor's bytes: zip CRC catches it
    (tmp_path / "flip.kn").write_bytes(bytes(flipped))
    with pytest.raises(SerializationError, match="corrupted"):
        kn.load(tmp_path / "flip.kn")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(SerializationError, match="not a file written by kernelnet.save"):
        kn.load(tmp_path / "plain.npz")
    (tmp_path / "text.kn").write_text("hello")
    with pytest.raises(SerializationError):
        kn.load(tmp_path / "text.kn")
    with pytest.raises(FileNotFoundError):
        kn.load(tmp_path / "missing.kn")


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_load_never_unpickles(tmp_path):
    """A zip that smuggles a pickled object array is refused, not executed."""
    p = tmp_path / "evil.kn"
    kn.save({"w": kn.ones(2)}, p)
    with zipfile.ZipFile(p, "a") as z:
        buf = io.BytesIO()
        np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
        z.writestr("t0.npy", buf.getvalue())  # shadows the real tensor entry
    with pytest.raises((SerializationError, ValueError)):
        kn.load(p)


def test_model_load_errors_from_mismatched_checkpoint(tmp_path):
    kn.save(nn.Linear(3, 5).state_dict(), tmp_path / "lin.kn")
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        nn.Linear(3, 4).load_state_dict(kn.load(tmp_path / "lin.kn"))
