#!/usr/bin/env bash
# CUDA part 2 (layer kernels) GPU checks, called from bench/gpu_check.sh after the build:
# the layer-kernel tests on the GPU, then the conv and training-step benchmarks vs PyTorch.
# Budget: about 3 minutes on an H100. Logs and JSON go to ${OUT:-bench/results}.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
rc=0
timeout 240 $PY -m pytest -q tests/test_cuda_layers.py tests/test_gpu_loader.py 2>&1 | tail -40 | tee "$OUT/cuda_layers_tests.log" || rc=1
timeout 120 $PY bench/cuda/conv.py --procs 2 --out "$OUT/cuda_conv.json" 2>&1 | tee "$OUT/cuda_conv.log" || rc=1
timeout 240 $PY bench/cuda/train_step.py --procs 1 --out "$OUT/cuda_train_step.json" 2>&1 | tee "$OUT/cuda_train_step.log" || rc=1
exit $rc
