"""BatchNorm / LayerNorm forward + backward on the GPU, kernelnet vs PyTorch (cuDNN): bench/norm.py
with --device cuda, run by bench/gpu_check.sh with the other GPU benchmarks."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":
    out = os.path.join(os.environ.get("KN_BENCH_OUT") or os.path.join(HERE, "..", "results"), "cuda_norm.json")
    sys.exit(subprocess.call([sys.executable, os.path.join(HERE, "..", "norm.py"), "--device", "cuda", "--procs", "2",
                              "--out", out, *sys.argv[1:]]))
