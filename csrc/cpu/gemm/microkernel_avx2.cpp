// AVX2 + FMA micro-kernel: a 6 x 16 tile of C in 12 ymm accumulators.
//
// Why 6 x 16: 16 ymm registers hold 12 accumulators, 2 rows of B and 1 broadcast of A; 12
// independent FMA chains cover the FMA latency on two FMA ports (the classic Haswell/Zen shape of
// BLIS and OpenBLAS). B is read 16 columns at a time without masks, so the driver gives this
// kernel zero-padded packed panels for a ragged right edge; C stores of a ragged tile are masked.
// M tails (mr < 6) run a kernel instantiated for exactly mr rows.
#include "cpu/gemm/microkernel.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>


namespace kn {
namespace gemm {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;

inline __m256i lane_mask(int n) {  // all-ones in the first n (clamped to 0..8) lanes
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), iota);
}

template <int R, bool KMAJOR>
struct Tile {
  static void run(i64 kc, const float* a, i64 rs_a, i64 cs_a, const float* b, i64 rs_b, float* c, i64 ldc,
                  int nr, const TileStore& st) {
  #pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch((const char*)(c + i * ldc + 15), _MM_HINT_T0);
    }
    __m256 c0[R], c1[R];
  #pragma GCC unroll 16
    for (int i = 0; i < R; ++i) c0[i] = c1[i] = _mm256_setzero_ps();

  #pragma GCC unroll 4
    for (i64 k = 0; k < kc; ++k) {
      const __m256 b0 = _mm256_loadu_ps(b);
      const __m256 b1 = _mm256_loadu_ps(b + 8);
  #pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const __m256 ai = _mm256_broadcast_ss(KMAJOR ? a + i : a + i * rs_a + k);
        c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
        c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
      }
      if (KMAJOR) a += cs_a;
      b += rs_b;
    }

    const __m256 va = _mm256_set1_ps(st.alpha), vb = _mm256_set1_ps(st.beta);
    const __m256 zero = _mm256_setzero_ps();
    const bool full = nr == NR;
    const __m256i m0 = lane_mask(nr), m1 = lane_mask(nr - 8);
    __m256 bias0 = zero, bias1 = zero;
    if (st.bias_col) {
      bias0 = _mm256_maskload_ps(st.bias_col, m0);
      bias1 = _mm256_maskload_ps(st.bias_col + 8, m1);
    }
  #pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      __m256 v0 = _mm256_mul_ps(c0[i], va), v1 = _mm256_mul_ps(c1[i], va);
      if (st.beta != 0.f) {
        const __m256 o0 = full ? _mm256_loadu_ps(ci) : _mm256_maskload_ps(ci, m0);
        const __m256 o1 = full ? _mm256_loadu_ps(ci + 8) : _mm256_maskload_ps(ci + 8, m1);
        v0 = _mm256_fmadd_ps(vb, o0, v0);
        v1 = _mm256_fmadd_ps(vb, o1, v1);
      }
      if (st.bias_col) {
        v0 = _mm256_add_ps(v0, bias0);
        v1 = _mm256_add_ps(v1, bias1);
      }
      if (st.bias_row) {
        const __m256 br = _mm256_set1_ps(st.bias_row[i]);
        v0 = _mm256_add_ps(v0, br);
        v1 = _mm256_add_ps(v1, br);
      }
      if (st.relu) {
        v0 = _mm256_max_ps(v0, zero);
        v1 = _mm256_max_ps(v1, zero);
      }
      if (full) {
        _mm256_storeu_ps(ci, v0);
        _mm256_storeu_ps(ci + 8, v1);
      } else {
        _mm256_maskstore_ps(ci, m0, v0);
        _mm256_maskstore_ps(ci + 8, m1, v1);
      }
    }
  }
};

// KC = 256: the 6 x 256 panel of A (6 KiB) stays in a 32 KiB L1 during a sweep over B. NC = 256:
// the packed 256 x 256 block of B (256 KiB) fits a 512 KiB-or-larger L2. MC = 1024: the packed A
// block (1 MiB) lives in L3.
constexpr MicroKernel kAvx2{"avx2", MR, NR, /*reads_b_masked=*/false, 256, 1024, 256,
                            &run_tile<Tile, MR>};

}  // namespace

const MicroKernel* microkernel_avx2() { return &kAvx2; }

}  // namespace gemm
}  // namespace kn

#else  // not compiled for AVX2 (non-x86 build)

namespace kn {
namespace gemm {
const MicroKernel* microkernel_avx2() { return nullptr; }
}  // namespace gemm
}  // namespace kn

#endif
