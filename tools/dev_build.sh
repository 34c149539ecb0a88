#!/usr/bin/env bash
# Development build: compiles the extension modules straight into python/kernelnet so that
# `PYTHONPATH=python pytest` runs the tree you are editing without a pip install.
# Usage: tools/dev_build.sh [extra cmake -D options]   (KN_CUDA=OFF skips the CUDA module)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build-dev}
cmake -S . -B "$BUILD" -G Ninja -DKN_DEV_INPLACE=ON -DCMAKE_BUILD_TYPE=Release \
  -DPython_EXECUTABLE="$(command -v python3)" -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" \
  -DKN_CUDA="${KN_CUDA:-AUTO}" "$@" >/dev/null
cmake --build "$BUILD" -j"${JOBS:-2}"
