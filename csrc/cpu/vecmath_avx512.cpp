// Sigmoid and tanh over arrays, AVX-512: the exp polynomial of vecmath.cpp on 16 lanes with FMA,
// tails through masked loads and stores (no scalar remainder loop).
#include "cpu/vecmath.h"

#if defined(__AVX512F__)
#include <immintrin.h>

namespace kn {
namespace {

using i64 = std::int64_t;

inline __m512 kexp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.f)), _mm512_set1_ps(88.f));
  const __m512 fn = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fmadd_ps(fn, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.f));
  const __m512i n = _mm512_cvtps_epi32(fn);
  const __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23));
  return _mm512_mul_ps(p, scale);
}

// 1 / d for d >= 1 (both callers divide by 1 + exp(.)): the 14-bit reciprocal estimate and one
// Newton step (within about an ulp of the quotient), instead of vdivps, whose throughput of
// one per ~10 cycles made the divisions a large part of an LSTM cell's cost.
inline __m512 reciprocal16(__m512 d) {
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.f)));
}

inline __mmask16 tail_mask(i64 left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

void sigmoid_of_sum16(const float* a, const float* b, float* y, i64 n) {
  const __m512 one = _mm512_set1_ps(1.f);
  for (i64 j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + j), _mm512_maskz_loadu_ps(m, b + j));
    const __m512 e = kexp16(_mm512_sub_ps(_mm512_setzero_ps(), v));
    _mm512_mask_storeu_ps(y + j, m, reciprocal16(_mm512_add_ps(one, e)));
  }
}

void tanh_of_sum16(const float* a, const float* b, float* y, i64 n) {
  const __m512 one = _mm512_set1_ps(1.f), two = _mm512_set1_ps(2.f);
  for (i64 j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    __m512 v = _mm512_maskz_loadu_ps(m, a + j);
    if (b) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + j));
    const __m512 e = kexp16(_mm512_mul_ps(two, v));
    _mm512_mask_storeu_ps(y + j, m, _mm512_fnmadd_ps(two, reciprocal16(_mm512_add_ps(e, one)), one));
  }
}

const VecMath kAvx512{&sigmoid_of_sum16, &tanh_of_sum16};

}  // namespace

const VecMath* vecmath_avx512() { return &kAvx512; }

}  // namespace kn

#else  // not compiled for AVX-512 (non-x86 build)

namespace kn {
const VecMath* vecmath_avx512() { return nullptr; }
}  // namespace kn

#endif
