"""The kernelnet command: info, train (default run and a 2-D .npz), eval, and one-line errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import kernelnet as kn
from kernelnet import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd=None, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(kn.__file__))] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-m", "kernelnet", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def one_line_error(r, code=None):
    assert r.returncode != 0
    if code is not None:
        assert r.returncode == code
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("kernelnet: error:")
    assert "Traceback" not in r.stderr
    return lines[0]


def test_info():
    r = run_cli("info")
    assert r.returncode == 0, r.stderr
    assert "kernelnet" in r.stdout and "CPU backend" in r.stdout


def test_console_script():
    """`pip install` makes a `kernelnet` command (pyproject: kernelnet = "kernelnet.cli:main")."""
    import shutil
    exe = shutil.which("kernelnet")
    if exe is None:
        pytest.skip("kernelnet is not pip-installed here (development tree on PYTHONPATH)")
    r = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "CPU backend" in r.stdout
    r = subprocess.run([exe, "train", "--bogus"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,needle", [
    (["train", "--epochs", "zero"], "--epochs"),
    (["train", "--epochs", "0"], "positive"),
    (["train", "--optimizer", "lbfgs"], "--optimizer"),
    (["train", "--model", "resnet"], "--model"),
    (["train", "--frobnicate"], "unrecognized"),
    (["train", "--valid-fraction", "1.5"], "fraction"),
    (["fly"], "invalid choice"),
])
def test_bad_flags_one_line(args, needle, capsys):
    with pytest.raises(SystemExit) as ex:
        cli.main(args)
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_unknown_dataset_one_line(tmp_path, capsys):
    assert cli.main(["train", "--dataset", "imagenet", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown dataset 'imagenet'" in err[0]
    bad = tmp_path / "x.npz"
    np.savez(bad, A=np.zeros(3))
    assert cli.main(["train", "--dataset", str(bad), "--out", str(tmp_path)]) == 1
    assert "needs arrays 'X' and 'y'" in capsys.readouterr().err


def test_missing_idx_files_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("kernelnet.datasets")
    import kernelnet.datasets as D
    monkeypatch.setattr(D.MNIST, "debian_dirs", (str(tmp_path / "nowhere"),))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.main(["train", "--dataset", "mnist", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "IDX files not found" in err[0] and "nowhere" in err[0], err
    (tmp_path / "empty").mkdir()
    assert cli.main(["train", "--dataset", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 1
    assert "no IDX training files" in capsys.readouterr().err


def test_unreadable_checkpoint_one_line(tmp_path):
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    line = one_line_error(run_cli("eval", str(bad)), 1)
    assert "broken.ckpt" in line
    line = one_line_error(run_cli("eval", str(tmp_path / "nothing.ckpt")), 1)
    assert "no such file" in line


def test_resume_needs_out(capsys):
    assert cli.main(["train", "--resume"]) == 2
    assert "--out" in capsys.readouterr().err


def _require_nn():
    pytest.importorskip("kernelnet.nn")
    pytest.importorskip("kernelnet.optim")


@pytest.mark.slow
def test_npz_2d_dataset_trains_and_draws_the_boundary(tmp_path):
    _require_nn()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 2)).astype(np.float32)
    y = ((X[:, 0] ** 2 + X[:, 1] ** 2) > 1.0).astype(np.int64)  # a circle: the MLP's figure
    np.savez(tmp_path / "circle.npz", X=X, y=y)
    out = tmp_path / "run"
    r = run_cli("train", "--dataset", str(tmp_path / "circle.npz"), "--model", "mlp", "--epochs", "3",
                "--lr", "0.01", "--out", str(out))
    assert r.returncode == 0, r.stderr
    for f in ("history.json", "checkpoint.ckpt", "best.kn", "command.txt", "learning_curves.png",
              "confusion_matrix.png", "decision_boundary.png"):
        assert (out / f).exists(), f
    assert not (out / "misclassified.png").exists()  # tabular data: no images to show
    # --resume continues the run to 4 epochs; command.txt keeps both command lines
    r = run_cli("train", "--dataset", str(tmp_path / "circle.npz"), "--model", "mlp", "--epochs", "4",
                "--lr", "0.01", "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout and "epoch 4/4" in r.stdout
    assert len(json.loads((out / "history.json").read_text())["history"]) == 4
    assert len((out / "command.txt").read_text().strip().splitlines()) == 2
    r = run_cli("train", "--dataset", str(tmp_path / "circle.npz"), "--model", "cnn", "--out", str(out))
    assert "image inputs" in one_line_error(r, 1)


@pytest.mark.slow
def test_default_train_then_eval(tmp_path):
    """`kernelnet train` with no arguments (the course MLP on digits) writes the whole run folder."""
    _require_nn()
    pytest.importorskip("sklearn")
    r = run_cli("train", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    runs = os.listdir(tmp_path / "kernelnet-runs")
    assert len(runs) == 1
    out = tmp_path / "kernelnet-runs" / runs[0]
    files = set(os.listdir(out))
    assert {"history.json", "checkpoint.ckpt", "best.kn", "command.txt", "config.json", "learning_curves.png",
            "confusion_matrix.png", "misclassified.png"} <= files
    assert (out / "command.txt").read_text().strip() == "kernelnet train"
    h = json.loads((out / "history.json").read_text())
    assert len(h["history"]) == 30 and h["config"]["model"] == "mlp" and h["config"]["dataset"] == "digits"
    test = h["test"]
    assert test["accuracy"] > 0.9
    assert test["accuracy"] > test["baselines"]["majority class"]["accuracy"] + 0.5
    assert "random guess" in r.stdout and "majority class" in r.stdout
    assert "\r" not in r.stdout and "\033" not in r.stdout  # not a terminal: plain lines, no redraws
    assert r.stdout.count("epoch ") >= 30
    # eval reproduces the test score from the checkpoint alone (same split, same best weights)
    r2 = run_cli("eval", str(out), "--json")
    assert r2.returncode == 0, r2.stderr
    ev = json.loads(r2.stdout)
    assert ev["accuracy"] == pytest.approx(test["accuracy"])
    assert ev["loss"] == pytest.approx(test["loss"], rel=1e-5)


def _write_idx(path, arr):
    import gzip
    import struct
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    data = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as fh:
        fh.write(data)


def test_idx_folder_and_npz_sources(tmp_path):
    pytest.importorskip("kernelnet.datasets")
    from kernelnet.train import load_data
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (20, 6, 6))
    labels = np.arange(20) % 4
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs[:8])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:8])
    src = load_data(str(tmp_path))
    assert len(src.train) == 20 and len(src.test) == 8 and src.num_classes == 4
    assert src.input_shape == (1, 6, 6) and src.image_shape == (6, 6)
    x, y = src.train[3]
    np.testing.assert_allclose(x.numpy(), imgs[3][None] / 255.0, rtol=1e-6)
    assert int(y) == 3
    # .npz with string labels and its own test split
    np.savez(tmp_path / "d.npz", X=rng.standard_normal((10, 3)), y=np.array(list("abcab") * 2),
             X_test=rng.standard_normal((4, 3)), y_test=np.array(list("cbaa")))
    src = load_data(str(tmp_path / "d.npz"))
    assert src.class_names == ["a", "b", "c"] and src.input_shape == (3,) and src.image_shape is None
    assert [int(src.test[i][1]) for i in range(4)] == [2, 1, 0, 0]
    # a truncated IDX file is one clear error
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00")
    _write_idx(tmp_path / "bad" / "train-labels-idx1-ubyte", labels)
    from kernelnet.train import DataError
    with pytest.raises(DataError):
        load_data(str(tmp_path / "bad"))


def test_graphed_flag_trains_the_same_as_eager(tmp_path):
    """--graphed reaches the Trainer and gives the eager run's history (CPU: bit for bit)."""
    _require_nn()
    hist = []
    for flag in ([], ["--graphed"]):
        out = tmp_path / ("g" if flag else "e")
        assert cli.main(["train", "--model", "mlp", "--epochs", "2", "--limit", "300", "--no-plots", "--quiet",
                         "--out", str(out), *flag]) == 0
        h = json.loads((out / "history.json").read_text())
        assert h["config"]["graphed"] == bool(flag)
        hist.append([(e["train_loss"], e["val_loss"]) for e in h["history"]])
    assert hist[0] == hist[1]
