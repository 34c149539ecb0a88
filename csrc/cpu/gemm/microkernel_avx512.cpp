// AVX-512 micro-kernel: a 12 x 32 tile of C in 24 zmm accumulators.
//
// Why 12 x 32: each k step loads one 32-wide row of B (two zmm) and broadcasts 12 values of A
// straight from memory into the FMAs, so 24 FMAs share 2 vector loads. 24 accumulators + 2 B
// registers fit the 32 zmm registers, and 24 independent FMA chains cover the FMA latency (4
// cycles) on both FMA ports. N = 32 also divides every channel count of the course CNN (32, 64,
// 128, 288 = 9 * 32, 9216), so tails are rare; when they occur the B loads and C stores are masked,
// which lets the driver hand the caller's B to the kernel without packing it.
// M tails (mr < 12) run a kernel instantiated for exactly mr rows: no wasted FMAs on padding.
#include "cpu/gemm/microkernel.h"

#if defined(__AVX512F__)
#include <immintrin.h>


namespace kn {
namespace gemm {
namespace {

constexpr int MR = 12;
constexpr int NR = 32;

// The K loop: c0/c1[i] += A(i,k) * B(k, 0:16) / B(k, 16:32).
template <int R, bool KMAJOR, bool MASKED>
inline __attribute__((always_inline)) void accumulate(i64 kc, const float* a, i64 rs_a, i64 cs_a,
                                                      const float* b, i64 rs_b, __mmask16 m0,
                                                      __mmask16 m1, __m512* c0, __m512* c1) {
#pragma GCC unroll 4
  for (i64 k = 0; k < kc; ++k) {
    const __m512 b0 = MASKED ? _mm512_maskz_loadu_ps(m0, b) : _mm512_loadu_ps(b);
    const __m512 b1 = MASKED ? _mm512_maskz_loadu_ps(m1, b + 16) : _mm512_loadu_ps(b + 16);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512 ai = _mm512_set1_ps(KMAJOR ? a[i] : a[i * rs_a + k]);
      c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
    }
    if (KMAJOR) a += cs_a;
    b += rs_b;
  }
}

// R rows x 32 columns. KMAJOR: A(i,k) = a[i + k*cs_a]; otherwise A(i,k) = a[i*rs_a + k].
template <int R, bool KMAJOR>
struct Tile {
  static void run(i64 kc, const float* a, i64 rs_a, i64 cs_a, const float* b, i64 rs_b, float* c, i64 ldc,
                  int nr, const TileStore& st) {
    const __mmask16 m0 = lane_mask16(nr), m1 = lane_mask16(nr - 16);
    // Start pulling the C tile in now; it is needed only after the K loop (and only when its old
    // values are read: with beta == 0 the tile is overwritten).
    for (int i = 0; st.beta != 0.f && i < R; ++i) {
      _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch((const char*)(c + i * ldc + 31), _MM_HINT_T0);
    }
    __m512 c0[R], c1[R];
  #pragma GCC unroll 16
    for (int i = 0; i < R; ++i) c0[i] = c1[i] = _mm512_setzero_ps();

    // Full tiles load B unmasked (masked loads of a full row measured ~25 % slower here), and so do
    // tails on packed panels (zero-padded to NR): the lanes past nr only feed accumulators that are
    // never stored. Masked loads in the K loop made a 28-column product (an LSTM's input gradient)
    // 2.4x slower than a 32-column one.
    if (nr == NR || st.b_padded)
      accumulate<R, KMAJOR, false>(kc, a, rs_a, cs_a, b, rs_b, m0, m1, c0, c1);
    else
      accumulate<R, KMAJOR, true>(kc, a, rs_a, cs_a, b, rs_b, m0, m1, c0, c1);

    // The single write of this tile for this K block: alpha, beta*C, bias, ReLU while in registers.
    // The two plain cases (first K block: C = sum; later blocks: C += sum) skip the per-row option
    // tests, which cost ~40 cycles a tile (a third of a K = 9 tile).
    if (st.alpha == 1.f && !st.bias_col && !st.bias_row && !st.relu && (st.beta == 0.f || st.beta == 1.f)) {
      if (st.beta == 0.f) {
  #pragma GCC unroll 16
        for (int i = 0; i < R; ++i) {
          _mm512_mask_storeu_ps(c + i * ldc, m0, c0[i]);
          _mm512_mask_storeu_ps(c + i * ldc + 16, m1, c1[i]);
        }
      } else {
  #pragma GCC unroll 16
        for (int i = 0; i < R; ++i) {
          float* ci = c + i * ldc;
          _mm512_mask_storeu_ps(ci, m0, _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, ci)));
          _mm512_mask_storeu_ps(ci + 16, m1, _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, ci + 16)));
        }
      }
      return;
    }
    const __m512 va = _mm512_set1_ps(st.alpha), vb = _mm512_set1_ps(st.beta);
    const __m512 zero = _mm512_setzero_ps();
    __m512 bias0 = zero, bias1 = zero;
    if (st.bias_col) {
      bias0 = _mm512_maskz_loadu_ps(m0, st.bias_col);
      bias1 = _mm512_maskz_loadu_ps(m1, st.bias_col + 16);
    }
  #pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      // alpha == 1 (nearly every call) skips the multiply: on short K blocks (K = 9 for a 3x3
      // single-channel convolution) these 24 multiplies are a tenth of the tile's FMA-port time
      __m512 v0 = c0[i], v1 = c1[i];
      if (st.alpha != 1.f) v0 = _mm512_mul_ps(v0, va), v1 = _mm512_mul_ps(v1, va);
      if (st.beta == 1.f) {
        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ci));
        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, ci + 16));
      } else if (st.beta != 0.f) {
        v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), v0);
        v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), v1);
      }
      if (st.bias_col) {
        v0 = _mm512_add_ps(v0, bias0);
        v1 = _mm512_add_ps(v1, bias1);
      }
      if (st.bias_row) {
        const __m512 br = _mm512_set1_ps(st.bias_row[i]);
        v0 = _mm512_add_ps(v0, br);
        v1 = _mm512_add_ps(v1, br);
      }
      if (st.relu) {
        v0 = _mm512_max_ps(v0, zero);
        v1 = _mm512_max_ps(v1, zero);
      }
      _mm512_mask_storeu_ps(ci, m0, v0);
      _mm512_mask_storeu_ps(ci + 16, m1, v1);
    }
  }
};

// KC = 384: the 12 x 384 panel of A (18 KiB) stays in the 48 KiB L1 during a sweep over B; a
// long K block also means fewer reloads of each C tile. NC = 512: the packed 384 x 512 block of B
// (768 KiB) stays in the 2 MiB L2 while all A panels pass. MC = 2048: the packed A block (3 MiB)
// lives in L3 and is read once per B block.
constexpr MicroKernel kAvx512{"avx512", MR, NR, /*reads_b_masked=*/true, 384, 2048, 512,
                              &run_tile<Tile, MR>};

}  // namespace

const MicroKernel* microkernel_avx512() { return &kAvx512; }

}  // namespace gemm
}  // namespace kn

#else  // not compiled for AVX-512 (non-x86 build)

namespace kn {
namespace gemm {
const MicroKernel* microkernel_avx512() { return nullptr; }
}  // namespace gemm
}  // namespace kn

#endif
