#!/usr/bin/env bash
# GPU check, run on a machine with an NVIDIA GPU (no network needed): build + install kernelnet
# with the CUDA backend, run the CUDA kernel tests, the GPU benchmarks, then the whole test suite.
#
#   OUT=/some/dir KN_COMMIT=<sha> bash bench/gpu_check.sh
#
# Writes into $OUT (default ./gpu_check_out), at most 8 files, no subfolders:
#   env.txt (date, commit, nvidia-smi, nvcc, torch), build.log, tests_cuda.log, bench.log,
#   tests.log, bench_json.tar (bench/results/cuda_*.json), summary.txt, and diag.log only when a
#   C++ exception crashes a probe process
# Budget: KN_TOTAL_BUDGET seconds for everything (default 470, under 8 minutes); each stage also
# has its own cap (seconds, override by env), and never runs past the total:
#   KN_BUILD_TIMEOUT=240 KN_CUDA_TEST_TIMEOUT=90 KN_LAYERS_TEST_TIMEOUT=90 KN_BENCH_TIMEOUT=170
#   KN_SUITE_TIMEOUT=(what is left)
# KN_CUDA_ARCH (default: the local GPU's, e.g. 90) keeps the build to one architecture.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUT"
cd "$ROOT"
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
TOTAL=${KN_TOTAL_BUDGET:-470}
# cap <seconds>: the stage cap, or what is left of the total budget (minus 5 s to pack up)
cap() { local left=$(( TOTAL - $(elapsed) - 5 )); [ "$1" -lt "$left" ] && echo "$1" || echo $(( left > 1 ? left : 1 )); }
COMMIT=${KN_COMMIT:-$(git -C "$ROOT" log -1 --format=%H 2>/dev/null)}
COMMIT=${COMMIT:-unknown}
export KN_COMMIT=$COMMIT PYTHONUNBUFFERED=1
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
say() { echo "[$(elapsed)s] $*" | tee -a "$SUMMARY"; }

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $COMMIT"
  echo "host: $(hostname) cpus: $(nproc)"
  nvidia-smi 2>&1
  nvidia-smi --query-gpu=name,compute_cap,memory.total,clocks.max.sm --format=csv 2>&1
  nvcc --version 2>&1
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" 2>&1
  python -c "import numpy, pybind11; print('numpy', numpy.__version__, 'pybind11', pybind11.__version__)" 2>&1
} > "$OUT/env.txt"
say "device: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), commit $COMMIT"

# ---------------------------------------------------------------- build + install
ARCH=${KN_CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')}
ARCH=${ARCH:-90}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
export CMAKE_ARGS="${CMAKE_ARGS:-} -DCMAKE_CUDA_ARCHITECTURES=$ARCH -DKN_CUDA=ON"
rm -rf build/  # a stale build directory from another machine would confuse CMake
timeout "$(cap "${KN_BUILD_TIMEOUT:-240}")" python -m pip install --no-build-isolation --no-deps -v . > "$OUT/build.log" 2>&1
RC=$?
say "build+install rc=$RC (sm_$ARCH)"
if [ $RC -ne 0 ]; then
  tail -40 "$OUT/build.log" | tee -a "$SUMMARY"
  exit 1
fi
# run everything from outside the source tree so the installed package (with _cuda) is imported
cd /tmp
python -c "import kernelnet, kernelnet._cuda as g; print('kernelnet from', kernelnet.__file__); print('cuda families', g.__families__, 'devices', g.device_count(), g.device_name(0))" 2>&1 | tee -a "$SUMMARY"

# ---------------------------------------------------------------- do exceptions cross the boundary?
# The first H100 run crashed with SIGSEGV wherever _cuda raised (out-of-memory test; a gather given a
# host index). Each probe runs in its own process; together they tell the causes apart:
#   cpu_value_error fails             -> the process's unwinder / C++ runtime (or pybind11) is foreign
#   cuda_value_error fails, cpu passes -> something in _cuda's build (LTO, host compiler, runtime)
#   only cuda_value_error_after_init fails -> a live CUDA context is the trigger
#   cuda_standalone passes where cuda_value_error fails -> translation through _cpu's (shared) pybind11
#   the *_torch variants alone fail   -> pybind11 internals shared with torch's copy
PROBE_FAILED=""
probe() {
  local name=$1 code=$2
  local out rc
  out=$(timeout 60 python -c "$code" 2>&1)
  rc=$?
  say "probe $name rc=$rc: $(echo "$out" | tail -2 | tr '\n' ' ' | cut -c1-300)"
  if [ $rc -ne 0 ] && [ -z "$PROBE_FAILED" ]; then PROBE_FAILED=$name; PROBE_FAILED_CODE=$code; fi
}
probe cpu_value_error "import kernelnet._cpu as c
try: c.set_num_threads(-3)
except ValueError as e: print('OK ValueError', e)"
probe cuda_value_error "import kernelnet._cuda as g
try: g.binary(99, 0, 0, 0, [1], 0, [1], [1])
except ValueError as e: print('OK ValueError', e)"
probe cuda_value_error_after_init "import kernelnet._cuda as g
b = g.Buffer(1024); g.synchronize()
try: g.binary(99, 0, 0, 0, [1], 0, [1], [1])
except ValueError as e: print('OK ValueError', e)"
probe cuda_standalone "import importlib.util as u, importlib.machinery as m
path = u.find_spec('kernelnet._cuda').origin
spec = u.spec_from_file_location('_cuda', path, loader=m.ExtensionFileLoader('_cuda', path))
g = u.module_from_spec(spec); spec.loader.exec_module(g)
try: g.binary(99, 0, 0, 0, [1], 0, [1], [1])
except ValueError as e: print('OK ValueError without _cpu loaded', e)"
probe cuda_value_error_torch "import torch, kernelnet._cuda as g
try: g.binary(99, 0, 0, 0, [1], 0, [1], [1])
except ValueError as e: print('OK ValueError with torch', e)"
probe cuda_oom "import kernelnet._cuda as g
try: g.Buffer(1 << 50)
except MemoryError as e: print('OK MemoryError', e)"
probe cuda_runtime_error "import kernelnet._cuda as g
try: g.memcpy_dtod(8, 16, 16); g.synchronize()
except RuntimeError as e: print('OK RuntimeError', e)"

# When a probe crashed, find out why before anything else: the environment, which library the
# unwinder binds to, a native backtrace (cuda-gdb runs host programs; there is no gdb there), then
# the same probe on builds without LTO and with a static C++ runtime (both modules, this GPU's arch
# only). Each answer goes to summary.txt / diag.log. The suite below runs under pytest-xdist when
# the machine has it, so a crashing test takes down one worker, not the whole run.
if [ -n "$PROBE_FAILED" ]; then
  DIAG=$OUT/diag.log
  SO=$(python -c "import importlib.util as u; print(u.find_spec('kernelnet._cpu').origin)" 2>/dev/null)
  SOG=$(python -c "import importlib.util as u; print(u.find_spec('kernelnet._cuda').origin)" 2>/dev/null)
  { echo "== first failing probe: $PROBE_FAILED"; echo "== LD_* environment"; env | grep '^LD_';
    echo "== python: $(readlink -f "$(command -v python)")"
    nm -D --defined-only "$(readlink -f "$(command -v python)")" 2>/dev/null | grep -E '_Unwind|__cxa|personality' | head
    python -c "import builtins; print('pybind11 internals:', [k for k in vars(builtins) if 'pybind11' in k])"
    python -c "import torch, builtins; print('with torch:', [k for k in vars(builtins) if 'pybind11' in k])"
    echo "== _cpu: $SO"; ldd "$SO"; echo "== _cuda: $SOG"; ldd "$SOG"
    echo "== unwinder bindings"
    LD_DEBUG=bindings timeout 60 python -c "$PROBE_FAILED_CODE" 2>&1 \
      | grep -E "_Unwind_RaiseException|__cxa_throw|__gxx_personality_v0|_Unwind_Find_FDE" | head -20
    echo "== cuda-gdb backtrace"
    timeout 90 cuda-gdb -q -batch -ex run -ex bt -ex "info sharedlibrary" --args python -c "$PROBE_FAILED_CODE" 2>&1 | tail -60
  } > "$DIAG" 2>&1
  say "probe $PROBE_FAILED failed: diagnostics in diag.log ($(grep -c . "$DIAG") lines)"
  for variant in "noLTO:-DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF" "static-runtime:-DKN_STATIC_RUNTIME=ON"; do
    name=${variant%%:*}; flags=${variant#*:}
    rm -rf "/tmp/kn_$name" "$ROOT/build"
    (cd "$ROOT" && CMAKE_ARGS="-DKN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$ARCH $flags" timeout "$(cap 150)" \
      python -m pip install --no-build-isolation --no-deps --target "/tmp/kn_$name" . >> "$DIAG" 2>&1)
    rc=$(PYTHONPATH=/tmp/kn_$name timeout 60 python -c "$PROBE_FAILED_CODE" > /dev/null 2>&1; echo $?)
    say "probe $PROBE_FAILED on a $name build: rc=$rc (0 = the exception arrived as a Python exception)"
  done
  rm -rf "$ROOT/build"
fi
XDIST=""
python -c "import xdist" 2>/dev/null && XDIST="-n 4"
say "pytest-xdist: ${XDIST:-not installed (tests run in one process)}"

# ---------------------------------------------------------------- CUDA kernel tests first
timeout "$(cap "${KN_CUDA_TEST_TIMEOUT:-90}")" python -m pytest -q -p no:cacheprovider $XDIST --rootdir="$ROOT" \
  "$ROOT/tests/test_cuda_kernels.py" > "$OUT/tests_cuda.log" 2>&1
say "tests/test_cuda_kernels.py rc=$? : $(tail -1 "$OUT/tests_cuda.log")"

# ---- BEGIN cuda part 2 (layer kernels: conv, pooling, losses, dropout, optimizers, GPU loader, recurrent layers) ----
# Run before the benchmarks so they report even if the whole suite later runs out of budget.
# (bench/cuda/conv.py and bench/cuda/train_step.py are picked up by the benchmark loop below.)
# test_cuda_rnn.py (the newest kernels) goes last: a kernel fault poisons the CUDA context for
# every later test in the process.
timeout "$(cap "${KN_LAYERS_TEST_TIMEOUT:-90}")" python -m pytest -q -p no:cacheprovider $XDIST --rootdir="$ROOT" \
  "$ROOT/tests/test_cuda_layers.py" "$ROOT/tests/test_gpu_loader.py" "$ROOT/tests/test_norm.py" "$ROOT/tests/test_graphs.py" "$ROOT/tests/test_graph_islands.py" "$ROOT/tests/test_cuda_rnn.py" \
  >> "$OUT/tests_cuda.log" 2>&1
say "tests/test_cuda_layers.py + test_gpu_loader.py + test_norm.py + test_graphs.py + test_cuda_rnn.py rc=$? : $(tail -1 "$OUT/tests_cuda.log")"
# ---- END cuda part 2 ----

# ---------------------------------------------------------------- benchmarks
export KN_BENCH_OUT=$OUT/json
mkdir -p "$KN_BENCH_OUT"
: > "$OUT/bench.log"
BENCH_BUDGET=$(cap "${KN_BENCH_TIMEOUT:-170}")
BENCH_END=$(( $(date +%s) + BENCH_BUDGET ))
# the issues' headline figures first (SGEMM, the training step with and without graphs, conv), so a
# budget cut falls on the rest
for b in sgemm train_step conv $(cd "$ROOT/bench/cuda" && ls *.py | grep -v -E '^(_lab|sgemm|train_step|conv)\.py$' | sed 's/\.py$//'); do
  left=$(( BENCH_END - $(date +%s) ))
  [ $left -le 5 ] && { say "bench $b skipped (budget)"; continue; }
  echo "=== bench/cuda/$b.py" >> "$OUT/bench.log"
  (cd "$ROOT/bench/cuda" && timeout $left python "$b.py" ${KN_BENCH_ARGS:-}) >> "$OUT/bench.log" 2>&1
  say "bench $b rc=$?"
done
(cd "$OUT" && tar cf bench_json.tar json && rm -rf json)

# ---------------------------------------------------------------- whole test suite
timeout "$(cap "${KN_SUITE_TIMEOUT:-100000}")" python -m pytest -q -p no:cacheprovider $XDIST --rootdir="$ROOT" \
  "$ROOT/tests" > "$OUT/tests.log" 2>&1
say "whole test suite rc=$? : $(tail -1 "$OUT/tests.log")"
say "done"
