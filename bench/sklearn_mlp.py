"""kernelnet.sklearn vs scikit-learn: fit time and test accuracy, same data, same settings.

    python bench/sklearn_mlp.py [--rounds 3] [--cases course fmnist100 fmnist256 perceptron]
                                [--threads N] [--out bench/results/sklearn-mlp.json]

Cases
  course      the course listing (MLPClassifier((64, 32, 16), relu), defaults) on digits, split and
              estimator random_state = 0..4 (the raw 0..16 pixels, as the slide does)
  fmnist100   MLPClassifier((100,), max_iter=10, random_state=0) on Fashion-MNIST (pixels / 255),
              60k train / 10k test
  fmnist256   MLPClassifier((256, 128, 100), max_iter=10, random_state=0), same data
  perceptron  Perceptron(random_state=s) on digits, split random_state = 0..4

Each library lives in its own persistent subprocess (data loaded once); requests alternate
kernelnet, scikit-learn, kernelnet, ... so machine noise hits both alike. Fit time is the median
over rounds; accuracy is deterministic per seed (the per-seed values are kept in the JSON).
ConvergenceWarnings are silenced (max_iter=10 is deliberate).
"""
import argparse
import datetime
import gzip
import os
import struct
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _common import Worker, cpu_name, load_average, median, serve, write_json_atomic  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


def load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion():
    Xtr = load_idx(f"{FMNIST}/train-images-idx3-ubyte.gz").reshape(60000, -1) / 255.0
    ytr = load_idx(f"{FMNIST}/train-labels-idx1-ubyte.gz").astype(np.int64)
    Xte = load_idx(f"{FMNIST}/t10k-images-idx3-ubyte.gz").reshape(10000, -1) / 255.0
    yte = load_idx(f"{FMNIST}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return Xtr, ytr, Xte, yte


# ----------------------------------------------------------------------------- worker side
def worker(lib, threads):
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    if lib == "kernelnet":
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import kernelnet
        from kernelnet.sklearn import MLPClassifier, Perceptron
        if threads:
            kernelnet.set_num_threads(threads)
        extra = {"device": "cpu"}
    else:
        from sklearn.linear_model import Perceptron
        from sklearn.neural_network import MLPClassifier
        extra = {}
    warnings.simplefilter("ignore", ConvergenceWarning)
    if threads:
        # numpy (and its OpenBLAS) is already imported, so environment variables are too late:
        # limit every BLAS/OpenMP pool at run time, after the imports that load them
        import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS so that it is limited too)
        from threadpoolctl import threadpool_limits
        _limits = threadpool_limits(threads)  # noqa: F841  (kept alive for the worker's life)
    digits = load_digits(return_X_y=True)
    cache = {}

    def handle(req):
        case, seed = req["case"], req["seed"]
        if case in ("course", "perceptron"):
            X, y = digits
            Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=seed)
            if case == "course":
                est = MLPClassifier(hidden_layer_sizes=(64, 32, 16), activation="relu", random_state=seed, **extra)
            else:
                est = Perceptron(random_state=seed)
        else:
            if "f" not in cache:
                cache["f"] = fashion()
            Xtr, ytr, Xte, yte = cache["f"]
            hidden = (100,) if case == "fmnist100" else (256, 128, 100)
            est = MLPClassifier(hidden_layer_sizes=hidden, max_iter=10, random_state=seed, **extra)
        t = time.perf_counter()
        est.fit(Xtr, ytr)
        fit_s = time.perf_counter() - t
        acc = float(est.score(Xte, yte))
        from threadpoolctl import threadpool_info
        nthr = max((p["num_threads"] for p in threadpool_info()), default=0)
        if lib == "kernelnet":
            import kernelnet
            nthr = kernelnet.get_num_threads()
        return {"fit_s": fit_s, "acc": acc, "n_iter": int(getattr(est, "n_iter_", 0)), "threads": nthr}

    serve(handle)


# ----------------------------------------------------------------------------- driver
SEEDS = {"course": [0, 1, 2, 3, 4], "perceptron": [0, 1, 2, 3, 4], "fmnist100": [0], "fmnist256": [0]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rounds-fmnist", type=int, default=2, help="rounds for the Fashion-MNIST cases")
    ap.add_argument("--cases", nargs="+", default=["course", "perceptron", "fmnist100", "fmnist256"])
    ap.add_argument("--threads", type=int, default=0, help="threads per library (0: library default)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "sklearn-mlp.json"))
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker, a.threads)
    libs = ["kernelnet", "sklearn"]
    workers = {lib: Worker([sys.executable, __file__, "--worker", lib, "--threads", str(a.threads)]) for lib in libs}
    load_before = load_average()
    results = {}
    try:
        for case in a.cases:
            runs = {lib: {s: [] for s in SEEDS[case]} for lib in libs}
            # digits cases: every round fits every seed; the fit time of a round is the sum over seeds
            rounds = a.rounds_fmnist if case.startswith("fmnist") else a.rounds
            for r in range(rounds):
                for seed in SEEDS[case]:
                    order = libs if (r + seed) % 2 == 0 else libs[::-1]
                    for lib in order:
                        runs[lib][seed].append(workers[lib].ask({"case": case, "seed": seed}))
            row = {}
            for lib in libs:
                per_seed_fit = {s: median([x["fit_s"] for x in runs[lib][s]]) for s in SEEDS[case]}
                accs = {s: runs[lib][s][0]["acc"] for s in SEEDS[case]}
                row[lib] = {"fit_s_median_per_seed": per_seed_fit,
                            "fit_s_mean_over_seeds": float(np.mean(list(per_seed_fit.values()))),
                            "acc_per_seed": accs, "acc_mean": float(np.mean(list(accs.values()))),
                            "acc_min": float(np.min(list(accs.values()))),
                            "n_iter_per_seed": {s: runs[lib][s][0]["n_iter"] for s in SEEDS[case]},
                            "threads_seen": runs[lib][SEEDS[case][0]][0]["threads"], "rounds": rounds}
            row["speedup_fit"] = row["sklearn"]["fit_s_mean_over_seeds"] / row["kernelnet"]["fit_s_mean_over_seeds"]
            row["acc_diff_points"] = 100 * (row["kernelnet"]["acc_mean"] - row["sklearn"]["acc_mean"])
            results[case] = row
            k, s = row["kernelnet"], row["sklearn"]
            print(f"{case:11s} fit kernelnet {k['fit_s_mean_over_seeds']:7.3f} s  sklearn {s['fit_s_mean_over_seeds']:7.3f} s"
                  f"  speedup {row['speedup_fit']:5.2f}x | acc kernelnet {100 * k['acc_mean']:6.2f} "
                  f"(min {100 * k['acc_min']:6.2f})  sklearn {100 * s['acc_mean']:6.2f} (min {100 * s['acc_min']:6.2f})",
                  flush=True)
    finally:
        for w in workers.values():
            w.close()
    import sklearn
    doc = {"bench": "sklearn_mlp", "date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
           "cpu": cpu_name(), "cores": os.cpu_count(), "threads": a.threads or "library default",
           "rounds": a.rounds, "sklearn_version": sklearn.__version__,
           "load_average_before": load_before, "load_average_after": load_average(),
           "note": "fit time: median over rounds per seed, then mean over seeds; each library in its own "
                   "process, requests alternating", "results": results}
    write_json_atomic(a.out, doc)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
