"""Memory an autograd graph holds between forward and backward: the course CNN (conv 1->32,
conv 32->64, max pool, dropout, fc 9216->128->10, cross-entropy) after its forward pass.

    python bench/graph_memory.py [--batch 32 128] [--baseline DIR]

kernelnet: the CPU caching allocator's allocated bytes after the forward minus before (tensors of
64 KiB and more, which is every activation here). PyTorch: the bytes of the distinct storages its
autograd saved (torch.autograd.graph.saved_tensors_hooks), which is what its graph keeps alive,
the saved weights included (fc1's alone is 4.7 MB; kernelnet's count starts after they exist).
The two are measured differently, so compare them as orders of magnitude; --baseline DIR adds the
kernelnet package found in DIR, measured the same way as this one, for before/after comparisons.
Each library runs in its own process. Results go to bench/results/graph_memory-<date>.json.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import course_cnn, results_path, write_json_atomic  # noqa: E402


def worker(lib, batch, path):
    if path:
        sys.path.insert(0, path)
    if lib == "torch":
        import torch as L
    else:
        import kernelnet as L
    L.manual_seed(0)
    model = course_cnn(L)
    x, y = L.randn(batch, 1, 28, 28), L.randint(0, 10, (batch,))
    if lib == "torch":
        saved = {}

        def pack(t):
            st = t.untyped_storage()
            saved[st.data_ptr()] = st.nbytes()
            return t
        with L.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = L.nn.functional.cross_entropy(model(x), y)
        held = sum(saved.values())
    else:
        before = L.cpu.memory_stats()["allocated_bytes"]
        loss = L.nn.functional.cross_entropy(model(x), y)
        held = L.cpu.memory_stats()["allocated_bytes"] - before
    loss.backward()  # the graph is usable (and freed)
    return held


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--baseline", help="a directory holding an older kernelnet package")
    ap.add_argument("--out")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        lib, batch, path = a.worker
        print(json.dumps(worker(lib, int(batch), path if path != "-" else None)))
        return
    here_pkg = os.path.join(os.path.dirname(HERE), "python")
    libs = [("kernelnet", here_pkg), ("torch", "-")] + ([("before", a.baseline)] if a.baseline else [])
    rows = []
    for batch in a.batch:
        row = {"batch": batch}
        for name, path in libs:
            lib = "torch" if name == "torch" else "kernelnet"
            out = subprocess.run([sys.executable, __file__, "--worker", lib, str(batch), path],
                                 capture_output=True, text=True, check=True).stdout
            row[name] = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        print(f"batch {batch:4d}  " + "  ".join(f"{n} {row[n] / 2**20:6.1f} MiB" for n, _ in libs))
    out = results_path(a.out, "graph_memory")
    write_json_atomic(out, {"what": "bytes an autograd graph holds after the course CNN's forward", "rows": rows})
    print("wrote", out)


if __name__ == "__main__":
    main()
