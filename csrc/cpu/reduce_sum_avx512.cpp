// The float sums' inner loops (cpu/reduce_sum.h) on 16-lane AVX-512 vectors: a run keeps four
// vectors of partial sums (64 lanes, independent add chains); a column block keeps 64 columns in
// four registers while it walks down the rows (the 4-wide baseline cannot hold a 256-column block
// in its 16 registers, so each row's adds there go through memory). Tails use masked loads, which
// touch no memory in masked-off lanes.
#include "cpu/reduce_sum.h"

#if defined(__AVX512F__)
#include <immintrin.h>

namespace kn {
namespace {

using i64 = std::int64_t;

inline __mmask16 lanes(i64 left) {  // the first `left` lanes (none for left <= 0)
  return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

double sum_run16(const float* x, i64 n) {
  double total = 0.0;
  for (i64 i = 0; i < n; i += kSumBlock) {
    const i64 e = n < i + kSumBlock ? n : i + kSumBlock;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    i64 j = i;
    for (; j + 64 <= e; j += 64) {
      a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + j));
      a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + j + 16));
      a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + j + 32));
      a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + j + 48));
    }
    for (; j < e; j += 16) a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(lanes(e - j), x + j));
    total += (double)_mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  }
  return total;
}

void columns16(const float* x, i64 ld, i64 w, i64 rows, double* acc) {
  for (i64 i = 0; i < w; ++i) acc[i] = 0.0;
  for (i64 c0 = 0; c0 < w; c0 += 64) {
    const __mmask16 m0 = lanes(w - c0), m1 = lanes(w - c0 - 16), m2 = lanes(w - c0 - 32), m3 = lanes(w - c0 - 48);
    const i64 cw = w - c0 < 64 ? w - c0 : 64;
    for (i64 f0 = 0; f0 < rows; f0 += kColFlush) {
      const i64 f1 = rows < f0 + kColFlush ? rows : f0 + kColFlush;
      __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (i64 r = f0; r < f1; ++r) {
        const float* p = x + r * ld + c0;
        a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(m0, p));
        a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(m1, p + 16));
        a2 = _mm512_add_ps(a2, _mm512_maskz_loadu_ps(m2, p + 32));
        a3 = _mm512_add_ps(a3, _mm512_maskz_loadu_ps(m3, p + 48));
      }
      alignas(64) float t[64];
      _mm512_store_ps(t, a0);
      _mm512_store_ps(t + 16, a1);
      _mm512_store_ps(t + 32, a2);
      _mm512_store_ps(t + 48, a3);
      for (i64 k = 0; k < cw; ++k) acc[c0 + k] += t[k];
    }
  }
}

const SumKernels kAvx512{&sum_run16, &columns16};

}  // namespace

const SumKernels* sum_kernels_avx512() { return &kAvx512; }

}  // namespace kn

#else  // not compiled for AVX-512 (non-x86 build)

namespace kn {
const SumKernels* sum_kernels_avx512() { return nullptr; }
}  // namespace kn

#endif
