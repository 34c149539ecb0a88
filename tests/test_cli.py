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
    # eval reproduces the test score from the checkpoint alone (same split, same best weights)
    r2 = run_cli("eval", str(out), "--json")
    assert r2.returncode == 0, r2.stderr
    ev = json.loads(r2.stdout)
    assert ev["accuracy"] == pytest.approx(test["accuracy"])
    assert ev["loss"] == pytest.approx(test["loss"], rel=1e-5)
