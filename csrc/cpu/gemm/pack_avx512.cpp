// The transposing pack on AVX-512: element (k, x) = src[x*ld + k] goes to dst[k*W + x].
//
// Both packers need it for one of their layouts (row-major A into k-major panels; B^T into
// row panels), and it is the expensive one: the portable loop moves one float per store, 12-32
// strided stores per k. Here 16 source rows x 16 k are loaded as 16 vectors, transposed in
// registers (4 shuffle stages, 64 shuffles), and each k row is written as one masked store.
// Measured on the course CNN's input-gradient product (A = 18432 x 64): the portable pack of A
// took ~11 % of the product's time.
#include "cpu/gemm/pack.h"

#include "cpu/gemm/microkernel.h"

#if defined(__AVX512F__)
#include <immintrin.h>

namespace kn {
namespace gemm {
namespace {

using i64 = std::int64_t;

// r[i] holds row i (16 floats); on return r[j] holds column j (element i = old r[i][j]).
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // 128-bit lane L of r[4i + j]: rows 4i..4i+3 of column 4L + j
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int j = 0; j < 4; ++j) {  // gather lanes (0, 2) and (1, 3) of row groups 0|1 and 2|3
    t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
    t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
    t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);            // columns 0..3
    r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);   // columns 4..7
    r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);        // columns 8..11
    r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xdd);  // columns 12..15
  }
}

// Rows x in [x0, x0 + 16) of the panel (those >= w are zero) for all kc.
void pack_16_rows(const float* src, i64 ld, i64 kc, int w, int W, int x0, float* dst) {
  const int rows = w - x0 < 16 ? w - x0 : 16;  // real source rows in this group (may be <= 0)
  const __mmask16 store = lane_mask16(W - x0);
  __m512 r[16];
  for (i64 k = 0; k < kc; k += 16) {
    const int kn = kc - k < 16 ? (int)(kc - k) : 16;
    const __mmask16 load = lane_mask16(kn);
    for (int i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_maskz_loadu_ps(load, src + (x0 + i) * ld + k) : _mm512_setzero_ps();
    transpose16(r);
    for (int j = 0; j < kn; ++j) _mm512_mask_storeu_ps(dst + (k + j) * W + x0, store, r[j]);
  }
}

void pack_transposed(const float* src, i64 ld, i64 kc, int w, int W, float* dst) {
  for (int x0 = 0; x0 < W; x0 += 16) pack_16_rows(src, ld, kc, w, W, x0, dst);
}

}  // namespace

PackTransposedFn pack_transposed_avx512() { return &pack_transposed; }

}  // namespace gemm
}  // namespace kn

#else  // not compiled for AVX-512 (non-x86 build)

namespace kn {
namespace gemm {
PackTransposedFn pack_transposed_avx512() { return nullptr; }
}  // namespace gemm
}  // namespace kn

#endif
