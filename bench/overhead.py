"""Per-op overhead on the CPU: small ops and small training steps, kernelnet vs PyTorch, each in its
own process, alternating.

    python bench/overhead.py [--procs 5] [--threads 1] [--baseline DIR] [--out FILE]

On small tensors an op's time is mostly the framework's own (Python, dispatch, allocation), not the
kernel's: this is what a student's hand-written training loop or a small model pays per step, and
what a GPU step pays per op on top of its kernels. Cases: single ops on [32, 64] operands as users
write them (a + b, x + bias, relu, a @ w with grad, views, a sum, creation), one backward through
a 3-op graph, and two whole steps of a small MLP: hand-written (forward, loss.backward(), then
`p -= lr * p.grad; p.grad.zero_()` under no_grad, as the course teaches the learning rule) and
nn.Sequential + CrossEntropyLoss + Adam. Each time is the fastest call of 0.2 s of calls after
0.1 s of warm-up (_common.time_best); the table shows the median over processes and
torch_time / kernelnet_time (> 1: kernelnet faster). --baseline DIR adds "before": the kernelnet
package found in DIR, for before/after comparisons in the same run.
Results go to bench/results/overhead-cpu-<date>.json.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import compare_cases, compare_parser, load_library, time_best, write_compare_results  # noqa: E402

CASES = ["a + b", "a * 0.5", "x + bias", "relu", "a @ w (w requires grad)", "view(-1)", "t()", "sum()",
         "zeros(32, 64)", "randn(32, 64)", "(a @ w).relu().sum().backward()", "hand-written MLP step",
         "nn MLP + Adam step"]


def _cases(L):
    nn, optim = L.nn, L.optim
    L.manual_seed(0)
    a, b, bias = L.randn(32, 64), L.randn(32, 64), L.randn(64)
    w = L.randn(64, 64, requires_grad=True)

    def backward3():
        (a @ w).relu().sum().backward()

    # the course's hand-written loop: a 20-32-1 regression MLP, mean squared error, plain SGD
    x, y = L.randn(64, 20), L.randn(64, 1)
    w1 = (L.randn(20, 32) * 0.1).requires_grad_()
    b1 = L.zeros(32, requires_grad=True)
    w2 = (L.randn(32, 1) * 0.1).requires_grad_()
    b2 = L.zeros(1, requires_grad=True)
    params = [w1, b1, w2, b2]

    def manual_step():
        h = (x @ w1 + b1).relu()
        loss = ((h @ w2 + b2 - y) ** 2).mean()
        loss.backward()
        with L.no_grad():
            for p in params:
                p -= 0.01 * p.grad
                p.grad.zero_()

    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    lossf = nn.CrossEntropyLoss()
    xc, yc = L.randn(32, 64), L.randint(0, 10, (32,))

    def nn_step():
        opt.zero_grad()
        lossf(model(xc), yc).backward()
        opt.step()

    return {
        "a + b": lambda: a + b,
        "a * 0.5": lambda: a * 0.5,
        "x + bias": lambda: a + bias,
        "relu": lambda: a.relu(),
        "a @ w (w requires grad)": lambda: a @ w,
        "view(-1)": lambda: a.view(-1),
        "t()": lambda: a.t(),
        "sum()": lambda: a.sum(),
        "zeros(32, 64)": lambda: L.zeros(32, 64),
        "randn(32, 64)": lambda: L.randn(32, 64),
        "(a @ w).relu().sum().backward()": backward3,
        "hand-written MLP step": manual_step,
        "nn MLP + Adam step": nn_step,
    }


def worker(lib, threads, baseline):
    L = load_library(lib, threads, baseline)
    res = {}
    for name, fn in _cases(L).items():
        res[name] = time_best(fn)
    return res


def main():
    a = compare_parser(threads=1).parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.threads, a.baseline)))
        return
    rows, errors = compare_cases(__file__, CASES, ["--threads", str(a.threads)], a.procs, a.baseline)
    write_compare_results(a.out, "overhead-cpu", "overhead", "cpu", a.threads, a.procs,
                          "median over processes of the fastest call of 0.2 s (at most 1000 calls)", rows, errors)


if __name__ == "__main__":
    main()
