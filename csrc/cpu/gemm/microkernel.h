// The register-tiled inner kernel of the GEMM: one MR x NR tile of C, kept in registers across a
// whole K block, then written once (scaled, blended with the old C, bias, ReLU).
//
// Each SIMD path (microkernel_avx512.cpp, microkernel_avx2.cpp, microkernel_portable.cpp) provides
// one MicroKernel; gemm.cpp (blocking, packing, threading) is shared and only calls through the
// function pointer, so no code compiled with AVX flags is ever reached on a CPU without them.
//
// Operand addressing (the driver packs operands, or passes them in place when that is cheaper):
//   A(i, k) = a[i + k * cs_a]   when rs_a == 1   ("k-major": packed panels, cs_a = MR; or A^T)
//   A(i, k) = a[i * rs_a + k]   otherwise, cs_a == 1 ("row-major": the caller's A, unpacked)
//   B(k, j) = b[k * rs_b + j]   (packed panels: rs_b = NR; or the caller's row-major B)
// Rows i >= mr are never touched in C. Columns j >= nr: kernels with `reads_b_masked` never read
// them (so B may be the caller's matrix with a ragged right edge); the others read NR columns of B
// (the driver gives them zero-padded packed panels for tails).
#pragma once
#include <array>
#include <cstdint>
#include <utility>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace kn {
namespace gemm {

#if defined(__AVX512F__)
// The first n (clamped to 0..16) lanes of a 16-float vector: tails of the AVX-512 micro-kernel
// and of the AVX-512 pack (only files compiled for AVX-512 see this).
inline __mmask16 lane_mask16(int n) {
  return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}
#endif

using i64 = std::int64_t;

// What happens when the accumulators are written to C.
struct TileStore {
  float alpha;
  float beta;             // 0: C is write-only (it may hold garbage or NaN); 1: accumulate
  const float* bias_col;  // bias for this tile's first column (nullptr: none), indexed by j
  const float* bias_row;  // bias for this tile's first row (nullptr: none), indexed by i
  bool relu;
  bool b_padded = false;  // B is packed panels, zero beyond nr: a kernel may read all NR columns
};

using MicroKernelFn = void (*)(i64 kc, const float* a, i64 rs_a, i64 cs_a, const float* b,
                               i64 rs_b, float* c, i64 ldc, int mr, int nr, const TileStore& st);

struct MicroKernel {
  const char* name;
  int mr, nr;           // register tile
  bool reads_b_masked;  // never reads B beyond column nr: B may be used in place
  // Cache blocking, in elements (see gemm.cpp for how each level is used).
  int kc;  // K block: a KC x NR panel of B stays in L1 while the kernel sweeps the A block
  int mc;  // M block: the packed MC x KC block of A stays in L2
  int nc;  // N block: the packed KC x NC block of B stays in L3 (or L2 on small shapes)
  MicroKernelFn fn;
};

// MicroKernel::fn for a kernel file whose tiles are Tile<R, KMAJOR>::run (R rows, 1 <= R <= MR; A
// k-major or row-major): the row count and A's layout pick a compiled instantiation at run time, so
// M tails run a kernel for exactly their rows. Instantiated inside each kernel file, with its ISA.
using TileFn = void (*)(i64 kc, const float* a, i64 rs_a, i64 cs_a, const float* b, i64 rs_b, float* c,
                        i64 ldc, int nr, const TileStore& st);

template <template <int, bool> class Tile, bool KMAJOR, int... Rs>
constexpr std::array<TileFn, sizeof...(Rs)> tile_table(std::integer_sequence<int, Rs...>) {
  return {&Tile<Rs + 1, KMAJOR>::run...};
}

template <template <int, bool> class Tile, int MR>
void run_tile(i64 kc, const float* a, i64 rs_a, i64 cs_a, const float* b, i64 rs_b, float* c, i64 ldc,
              int mr, int nr, const TileStore& st) {
  static constexpr auto kmajor = tile_table<Tile, true>(std::make_integer_sequence<int, MR>{});
  static constexpr auto rowmajor = tile_table<Tile, false>(std::make_integer_sequence<int, MR>{});
  (rs_a == 1 ? kmajor : rowmajor)[mr - 1](kc, a, rs_a, cs_a, b, rs_b, c, ldc, nr, st);
}

// nullptr when the file was compiled without the ISA (non-x86 builds).
const MicroKernel* microkernel_avx512();
const MicroKernel* microkernel_avx2();
const MicroKernel* microkernel_portable();

}  // namespace gemm
}  // namespace kn
