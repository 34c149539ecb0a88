#!/usr/bin/env bash
# Device check for kernelnet.sklearn on a GPU machine: build with CUDA, run the sklearn tests
# (CUDA cases included) and time MLPClassifier((100,)) on Fashion-MNIST-shaped data on cpu vs cuda.
set -uo pipefail
export PYTHONUNBUFFERED=1
KN_CUDA=ON JOBS=${JOBS:-16} tools/dev_build.sh 2>&1 | tail -3
PYTHONPATH=python python3 -c "import sklearn, kernelnet; print('sklearn', sklearn.__version__); kernelnet.info()"
PYTHONPATH=python python3 -m pytest -q -x tests/test_sklearn_mlp.py -k "cuda or retraces or early" 2>&1 | tail -15
PYTHONPATH=python python3 - <<'PY'
import time, warnings, numpy as np
warnings.simplefilter("ignore")
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from kernelnet.sklearn import MLPClassifier
rng = np.random.RandomState(0)
X = rng.rand(60000, 784); y = (X[:, :10].argmax(1))
for dev in ("cuda", "cpu", "cuda"):
    m = MLPClassifier((100,), max_iter=3, random_state=0, device=dev)
    t = time.perf_counter(); m.fit(X, y); print(dev, "fmnist-shaped (100,) 3 epochs fit %.2f s" % (time.perf_counter() - t), "train acc %.4f" % m.score(X[:5000], y[:5000]))
Xd, yd = load_digits(return_X_y=True)
accs = []
for s in range(5):
    a, b, c, d = train_test_split(Xd, yd, random_state=s)
    accs.append(MLPClassifier((64, 32, 16), random_state=s, device="cuda").fit(a, c).score(b, d))
print("course listing on cuda, seeds 0-4:", np.round(accs, 4), "mean", np.mean(accs))
PY
