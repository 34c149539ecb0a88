"""Sum reductions on the CPU: kernelnet vs PyTorch, each in its own process, alternating.

    python bench/reduce.py [--procs 5] [--threads 2] [--baseline DIR] [--out FILE]

Per case a worker times x.sum(...) as users call it (Python layer included; the result's shape
as PyTorch gives it): the fastest call of 0.2 s of calls (at most 1000; _common.time_best) after
0.1 s of warm-up, on shapes from training steps: a loss summed to a scalar, bias gradients (column
sums), row sums, a long vector, and BatchNorm-style channel sums over (N, H, W). The table shows
the median over processes and torch_time / kernelnet_time (> 1: kernelnet faster). --baseline DIR
adds a third library, "before": the kernelnet package found in DIR (e.g. a copy of an older tree),
for before/after comparisons in the same run. Results go to bench/results/reduce-cpu-<date>.json.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import compare_cases, compare_parser, load_library, time_best, write_compare_results  # noqa: E402

CASES = [  # (name, shape, dims: None = all)
    ("sum all 4096x128", (4096, 128), None),
    ("cols 4096x128 (dim 0)", (4096, 128), 0),
    ("rows 4096x128 (dim 1)", (4096, 128), 1),
    ("sum all 4M", (1 << 22,), None),
    ("channels 32x64x24x24 (0,2,3)", (32, 64, 24, 24), (0, 2, 3)),
    ("sum all 64K (small loss)", (256, 256), None),
]


def worker(lib, threads, baseline):
    L = load_library(lib, threads, baseline)
    rng = np.random.default_rng(0)
    res = {}
    for name, shape, dims in CASES:
        x = L.tensor(rng.standard_normal(shape).astype(np.float32))

        def call():
            return x.sum() if dims is None else x.sum(dims)
        res[name] = time_best(call)
    return res


def main():
    a = compare_parser(threads=2).parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.threads, a.baseline)))
        return
    shapes = {name: (shape, dims) for name, shape, dims in CASES}
    rows, errors = compare_cases(__file__, list(shapes), ["--threads", str(a.threads)], a.procs, a.baseline,
                                 width=30, extra=lambda n: {"shape": list(shapes[n][0]), "dims": shapes[n][1]})
    write_compare_results(a.out, "reduce-cpu", "reduce", "cpu", a.threads, a.procs,
                          "median over processes of the fastest call of 0.2 s (at most 1000 calls)", rows, errors)


if __name__ == "__main__":
    main()
