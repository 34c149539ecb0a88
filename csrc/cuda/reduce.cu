// reduce(op, dtype, out, inp, outer, R, inner): inp viewed as [outer, R, inner] -> out [outer, inner].
//
// Strategies (chosen on the host from the shape):
//   inner == 1 ("row reduce"): a group of threads per row: the power of two >= R up to 32 (part
//     of a warp: rows of 10 classes keep 16 lanes busy, not 32) for rows up to 1024, else 256
//     (a block); lanes stride over the row so a warp's loads are coalesced, then
//     warp shuffles and, for blocks, shared memory combine the partial results.
//   inner > 1 ("column reduce"): 32 threads across consecutive inner indices (coalesced 128-byte
//     rows) x 8 threads splitting R; shared memory combines the 8 partial results.
//   Few long rows / columns (not enough blocks to fill the GPU): R is split into chunks, pass 1
//     writes one accumulator per chunk into a workspace, pass 2 reduces the chunks (same kernels,
//     reading accumulators). Deterministic: no atomics, fixed combine order.
// Semantics as the CPU backend: SUM/PROD of i64/bool -> i64; ARGMAX/ARGMIN -> i64, the FIRST index
// of the extremum (ties resolved towards the smaller index whatever the combine order); NaN is
// propagated by MAX/MIN and counts as the extremum for ARGMAX/ARGMIN (like PyTorch); ANY/ALL -> bool.
#include <cfloat>
#include <climits>

#include "common/ops.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"

namespace kn {
namespace {

template <typename T>
struct ArgAcc {
  T v;
  int64_t i;
};

__device__ __forceinline__ float shfl_down(float v, int d) { return __shfl_down_sync(0xffffffffu, v, d); }
__device__ __forceinline__ int64_t shfl_down(int64_t v, int d) { return __shfl_down_sync(0xffffffffu, (long long)v, d); }
__device__ __forceinline__ uint8_t shfl_down(uint8_t v, int d) { return (uint8_t)__shfl_down_sync(0xffffffffu, (int)v, d); }
template <typename T>
__device__ __forceinline__ ArgAcc<T> shfl_down(ArgAcc<T> a, int d) {
  return ArgAcc<T>{shfl_down(a.v, d), shfl_down(a.i, d)};
}

template <typename T> __device__ __forceinline__ bool is_nan(T) { return false; }
template <> __device__ __forceinline__ bool is_nan<float>(float v) { return v != v; }

template <typename T> __device__ __forceinline__ T lowest();
template <> __device__ __forceinline__ float lowest<float>() { return -INFINITY; }
template <> __device__ __forceinline__ int64_t lowest<int64_t>() { return LLONG_MIN; }
template <> __device__ __forceinline__ uint8_t lowest<uint8_t>() { return 0; }
template <typename T> __device__ __forceinline__ T highest();
template <> __device__ __forceinline__ float highest<float>() { return INFINITY; }
template <> __device__ __forceinline__ int64_t highest<int64_t>() { return LLONG_MAX; }
template <> __device__ __forceinline__ uint8_t highest<uint8_t>() { return 1; }

// Each reducer: In (element type), Acc, Out; init, step (one element with its index along R),
// combine (two accumulators, any order), finish (accumulator -> output, R = full row length).
template <typename T, typename A, bool MEAN>
struct SumR {
  using In = T; using Acc = A; using Out = A;
  __device__ static Acc init() { return A(0); }
  __device__ static void step(Acc& a, T v, int64_t) { a += (A)v; }
  __device__ static void combine(Acc& a, const Acc& b) { a += b; }
  __device__ static Out finish(const Acc& a, int64_t R) { return MEAN ? (Out)(a / (A)R) : a; }
};
template <typename T, typename A>
struct ProdR {
  using In = T; using Acc = A; using Out = A;
  __device__ static Acc init() { return A(1); }
  __device__ static void step(Acc& a, T v, int64_t) { a *= (A)v; }
  __device__ static void combine(Acc& a, const Acc& b) { a *= b; }
  __device__ static Out finish(const Acc& a, int64_t) { return a; }
};
template <typename T, bool MAX>
struct ExtR {
  using In = T; using Acc = T; using Out = T;
  __device__ static Acc init() { return MAX ? lowest<T>() : highest<T>(); }
  __device__ static void combine(Acc& a, const Acc& b) {
    if (is_nan(a)) return;
    if (is_nan(b) || (MAX ? b > a : b < a)) a = b;
  }
  __device__ static void step(Acc& a, T v, int64_t) { combine(a, v); }
  __device__ static Out finish(const Acc& a, int64_t) { return a; }
};
template <typename T, bool MAX>
struct ArgR {
  using In = T; using Acc = ArgAcc<T>; using Out = int64_t;
  __device__ static Acc init() { return Acc{MAX ? lowest<T>() : highest<T>(), LLONG_MAX}; }
  __device__ static void combine(Acc& a, const Acc& b) {
    bool an = is_nan(a.v), bn = is_nan(b.v);
    bool better;
    if (an || bn) better = bn && (!an || b.i < a.i);
    else better = (MAX ? b.v > a.v : b.v < a.v) || (b.v == a.v && b.i < a.i);
    if (better) a = b;
  }
  __device__ static void step(Acc& a, T v, int64_t i) { combine(a, Acc{v, i}); }
  __device__ static Out finish(const Acc& a, int64_t) { return a.i == LLONG_MAX ? 0 : a.i; }
};
template <typename T, bool ANY>
struct LogicR {
  using In = T; using Acc = uint8_t; using Out = uint8_t;
  __device__ static Acc init() { return ANY ? 0 : 1; }
  __device__ static void step(Acc& a, T v, int64_t) {
    if (ANY) a = a | (v != T(0)); else a = a & (v != T(0));
  }
  __device__ static void combine(Acc& a, const Acc& b) { if (ANY) a = a | b; else a = a & b; }
  __device__ static Out finish(const Acc& a, int64_t) { return a; }
};

// Loads one element into the accumulator: raw input (pass 1) or a partial accumulator (pass 2).
template <class Op, bool FROM_ACC>
struct Loader;
template <class Op>
struct Loader<Op, false> {
  using Src = typename Op::In;
  __device__ static void add(typename Op::Acc& a, const Src* p, int64_t off, int64_t r) { Op::step(a, p[off], r); }
};
template <class Op>
struct Loader<Op, true> {
  using Src = typename Op::Acc;
  __device__ static void add(typename Op::Acc& a, const Src* p, int64_t off, int64_t) { Op::combine(a, p[off]); }
};

// Tree-combines groups of `width` consecutive lanes (a power of two <= 32); lane 0 of each group
// ends with the group's result (shfl_down from a lane past the group only reaches lanes whose
// values lane 0 of the group never reads).
template <class Op>
__device__ __forceinline__ void warp_combine(typename Op::Acc& a, int width = 32) {
  for (int d = width >> 1; d > 0; d >>= 1) Op::combine(a, shfl_down(a, d));
}

// Row reduce: groups of `group` threads (a power of two <= 32, or blockDim.x) per segment. Segment g covers
// row g / S, elements [c * chunk, min(R, (c + 1) * chunk)) with c = g % S.
template <class Op, bool FROM_ACC, bool FINAL>
__global__ void k_reduce_rows(const typename Loader<Op, FROM_ACC>::Src* __restrict__ in, void* out,
                              int64_t nseg, int64_t R, int64_t S, int64_t chunk, int64_t R_total,
                              int group) {
  using Acc = typename Op::Acc;
  __shared__ Acc sh[32];
  int per_block = blockDim.x / group;
  int64_t g = (int64_t)blockIdx.x * per_block + threadIdx.x / group;
  int lane = threadIdx.x % group;
  Acc a = Op::init();
  if (g < nseg) {
    int64_t row = g / S, c = g % S;
    int64_t r0 = c * chunk, r1 = min(R, r0 + chunk);
    const auto* p = in + row * R;
    for (int64_t r = r0 + lane; r < r1; r += group) Loader<Op, FROM_ACC>::add(a, p, r, r);
  }
  warp_combine<Op>(a, group < 32 ? group : 32);
  if (group > 32) {  // one group per block: combine the warps through shared memory
    int w = threadIdx.x / 32;
    if ((threadIdx.x & 31) == 0) sh[w] = a;
    __syncthreads();
    if (w == 0) {
      a = (int)threadIdx.x < (int)(blockDim.x / 32) ? sh[threadIdx.x] : Op::init();
      warp_combine<Op>(a);
    }
  }
  if (lane == 0 && g < nseg) {
    if (FINAL) static_cast<typename Op::Out*>(out)[g] = Op::finish(a, R_total);
    else static_cast<Acc*>(out)[g] = a;
  }
}

// Column reduce: block (32, 8); grid.x = outer * ceil(inner / 32) tiles, grid.y = S chunks of R.
template <class Op, bool FROM_ACC, bool FINAL>
__global__ void k_reduce_cols(const typename Loader<Op, FROM_ACC>::Src* __restrict__ in, void* out,
                              int64_t outer, int64_t R, int64_t inner, int64_t chunk,
                              int64_t R_total) {
  using Acc = typename Op::Acc;
  __shared__ Acc sh[8][33];
  int64_t tiles = (inner + 31) / 32;
  int64_t o = blockIdx.x / tiles, i = (blockIdx.x % tiles) * 32 + threadIdx.x;
  int64_t s = blockIdx.y, S = gridDim.y;
  Acc a = Op::init();
  if (i < inner) {
    int64_t r0 = s * chunk, r1 = min(R, r0 + chunk);
    const auto* p = in + o * R * inner + i;
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) Loader<Op, FROM_ACC>::add(a, p, r * inner, r);
  }
  sh[threadIdx.y][threadIdx.x] = a;
  __syncthreads();
  if (threadIdx.y == 0 && i < inner) {
#pragma unroll
    for (int y = 1; y < 8; ++y) Op::combine(a, sh[y][threadIdx.x]);
    if (FINAL) static_cast<typename Op::Out*>(out)[o * inner + i] = Op::finish(a, R_total);
    else static_cast<Acc*>(out)[(o * S + s) * inner + i] = a;
  }
}

template <class Op>
void run_reduce(uptr out, uptr inp, i64 outer, i64 R, i64 inner) {
  using Acc = typename Op::Acc;
  using In = typename Op::In;
  const In* in = ptr<const In>(inp);
  const i64 sms = num_sms();
  const i64 want_blocks = sms * 4;
  if (inner == 1) {
    if (R <= 1024) {  // a warp per row, or a power-of-two part of a warp for short rows
      int group = 1;
      while (group < 32 && group < R) group *= 2;
      i64 rows_per_block = 256 / group;
      i64 nb = (outer + rows_per_block - 1) / rows_per_block;
      KN_CHECK(nb < (i64(1) << 31), "reduce: too many rows");
      k_reduce_rows<Op, false, true><<<(unsigned)nb, 256, 0, kStream>>>(in, ptr<void>(out), outer, R, 1,
                                                                         R > 0 ? R : 1, R, group);
      KN_LAUNCH_CHECK("reduce");
      return;
    }
    // block per row; split long rows when there are too few rows to fill the GPU
    i64 S = 1;
    if (outer < want_blocks) S = std::min<i64>((want_blocks + outer - 1) / outer, (R + 4095) / 4096);
    if (S <= 1) {
      k_reduce_rows<Op, false, true><<<(unsigned)outer, 256, 0, kStream>>>(in, ptr<void>(out), outer, R, 1,
                                                                            R, R, 256);
      KN_LAUNCH_CHECK("reduce");
      return;
    }
    i64 chunk = (R + S - 1) / S;
    Workspace ws(sizeof(Acc) * outer * S, "reduce");
    k_reduce_rows<Op, false, false><<<(unsigned)(outer * S), 256, 0, kStream>>>(
        in, ws.p, outer * S, R, S, chunk, R, 256);
    KN_LAUNCH_CHECK("reduce");
    k_reduce_rows<Op, true, true><<<(unsigned)((outer + 7) / 8), 256, 0, kStream>>>(
        ws.as<Acc>(), ptr<void>(out), outer, S, 1, S, R, 32);
    KN_LAUNCH_CHECK("reduce");
    return;
  }
  i64 tiles = outer * ((inner + 31) / 32);
  KN_CHECK(tiles < (i64(1) << 31), "reduce: too many output tiles");
  dim3 block(32, 8);
  i64 S = 1;
  if (tiles < want_blocks && R >= 512) S = std::min<i64>((want_blocks + tiles - 1) / tiles, R / 256);
  S = std::min<i64>(S, 65535);
  if (S <= 1) {
    k_reduce_cols<Op, false, true><<<dim3((unsigned)tiles, 1), block, 0, kStream>>>(
        in, ptr<void>(out), outer, R, inner, R > 0 ? R : 1, R);
    KN_LAUNCH_CHECK("reduce");
    return;
  }
  i64 chunk = (R + S - 1) / S;
  Workspace ws(sizeof(Acc) * outer * S * inner, "reduce");
  k_reduce_cols<Op, false, false><<<dim3((unsigned)tiles, (unsigned)S), block, 0, kStream>>>(
      in, ws.p, outer, R, inner, chunk, R);
  KN_LAUNCH_CHECK("reduce");
  k_reduce_cols<Op, true, true><<<dim3((unsigned)tiles, 1), block, 0, kStream>>>(
      ws.as<Acc>(), ptr<void>(out), outer, S, inner, S, R);
  KN_LAUNCH_CHECK("reduce");
}

template <typename T>
void reduce_t(int op, uptr out, uptr inp, i64 outer, i64 R, i64 inner) {
  constexpr bool F = std::is_same<T, float>::value;
  using SumA = typename std::conditional<F, float, int64_t>::type;
  switch (op) {
    case R_SUM: return run_reduce<SumR<T, SumA, false>>(out, inp, outer, R, inner);
    case R_MEAN:
      KN_CHECK(F, "reduce: mean needs a float32 input (cast integer/bool tensors first)");
      return run_reduce<SumR<T, SumA, F>>(out, inp, outer, R, inner);
    case R_PROD: return run_reduce<ProdR<T, SumA>>(out, inp, outer, R, inner);
    case R_MAX: return run_reduce<ExtR<T, true>>(out, inp, outer, R, inner);
    case R_MIN: return run_reduce<ExtR<T, false>>(out, inp, outer, R, inner);
    case R_ARGMAX: return run_reduce<ArgR<T, true>>(out, inp, outer, R, inner);
    case R_ARGMIN: return run_reduce<ArgR<T, false>>(out, inp, outer, R, inner);
    case R_ANY: return run_reduce<LogicR<T, true>>(out, inp, outer, R, inner);
    case R_ALL: return run_reduce<LogicR<T, false>>(out, inp, outer, R, inner);
  }
  KN_CHECK(false, "reduce: unknown op code ", op);
}

void reduce(int op, int dtype, uptr out, uptr inp, i64 outer, i64 R, i64 inner) {
  KN_CHECK(outer >= 0 && R >= 0 && inner >= 0, "reduce: negative size (", outer, ", ", R, ", ",
           inner, ")");
  if (outer == 0 || inner == 0) return;
  KN_CHECK(R > 0 || !(op == R_MAX || op == R_MIN || op == R_ARGMAX || op == R_ARGMIN),
           "reduce: max/min/argmax/argmin of an empty dimension");
  switch (dtype) {
    case F32: return reduce_t<float>(op, out, inp, outer, R, inner);
    case I64: return reduce_t<int64_t>(op, out, inp, outer, R, inner);
    case BOOL: return reduce_t<uint8_t>(op, out, inp, outer, R, inner);
  }
  KN_CHECK(false, "reduce: unknown dtype code ", dtype);
}

}  // namespace
}  // namespace kn

KN_BIND(reduce) {
  using namespace kn;
  m.def("reduce", &reduce, py::arg("op"), py::arg("dtype"), py::arg("out"), py::arg("inp"),
        py::arg("outer"), py::arg("R"), py::arg("inner"), KN_NOGIL);
}
