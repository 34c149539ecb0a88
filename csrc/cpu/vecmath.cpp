// Sigmoid and tanh over arrays: the portable/SSE2 path and the dispatch (see vecmath.h).
#include "cpu/vecmath.h"

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "cpu/cpu_features.h"

namespace kn {
namespace {

using i64 = std::int64_t;

inline float kexp(float x) {
  x = x < -87.f ? -87.f : (x > 88.f ? 88.f : x);
  float t = x * 1.44269504088896341f;
  int n = (int)(t + (t >= 0.f ? 0.5f : -0.5f));
  float fn = (float)n;
  float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  std::int32_t bits = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

#if defined(__SSE2__)
// The same exp, four lanes at a time (gcc does not auto-vectorize the scalar version).
inline __m128 kexp4(__m128 x) {
  x = _mm_min_ps(_mm_max_ps(x, _mm_set1_ps(-87.f)), _mm_set1_ps(88.f));
  __m128i n = _mm_cvtps_epi32(_mm_mul_ps(x, _mm_set1_ps(1.44269504088896341f)));  // round to nearest
  __m128 fn = _mm_cvtepi32_ps(n);
  __m128 r = _mm_add_ps(_mm_sub_ps(x, _mm_mul_ps(fn, _mm_set1_ps(0.693359375f))),
                        _mm_mul_ps(fn, _mm_set1_ps(2.12194440e-4f)));
  __m128 p = _mm_set1_ps(1.9875691500e-4f);
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.3981999507e-3f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(8.3334519073e-3f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(4.1665795894e-2f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.6666665459e-1f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(5.0000001201e-1f));
  p = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_mul_ps(p, r), r), r), _mm_set1_ps(1.f));
  __m128 scale = _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(n, _mm_set1_epi32(127)), 23));
  return _mm_mul_ps(p, scale);
}
#endif

void sigmoid_of_sum_base(const float* a, const float* b, float* y, i64 n) {
  i64 j = 0;
#if defined(__SSE2__)
  const __m128 one = _mm_set1_ps(1.f);
  for (; j + 4 <= n; j += 4) {
    __m128 v = _mm_add_ps(_mm_loadu_ps(a + j), _mm_loadu_ps(b + j));
    __m128 e = kexp4(_mm_sub_ps(_mm_setzero_ps(), v));
    _mm_storeu_ps(y + j, _mm_div_ps(one, _mm_add_ps(one, e)));
  }
#endif
  for (; j < n; ++j) y[j] = 1.f / (1.f + kexp(-(a[j] + b[j])));
}

void tanh_of_sum_base(const float* a, const float* b, float* y, i64 n) {
  i64 j = 0;
#if defined(__SSE2__)
  const __m128 one = _mm_set1_ps(1.f), two = _mm_set1_ps(2.f);
  for (; j + 4 <= n; j += 4) {
    __m128 v = _mm_add_ps(_mm_loadu_ps(a + j), b ? _mm_loadu_ps(b + j) : _mm_setzero_ps());
    __m128 e = kexp4(_mm_mul_ps(two, v));
    _mm_storeu_ps(y + j, _mm_sub_ps(one, _mm_div_ps(two, _mm_add_ps(e, one))));
  }
#endif
  for (; j < n; ++j) y[j] = 1.f - 2.f / (kexp(2.f * (a[j] + (b ? b[j] : 0.f))) + 1.f);
}

const VecMath kBase{&sigmoid_of_sum_base, &tanh_of_sum_base};

const VecMath& active() {
  static const VecMath* avx512 = vecmath_avx512();
  return avx512 && active_simd() == Simd::Avx512 ? *avx512 : kBase;
}

}  // namespace

void sigmoid_of_sum(const float* a, const float* b, float* y, i64 n) { active().sigmoid_of_sum(a, b, y, n); }
void tanh_of_sum(const float* a, const float* b, float* y, i64 n) { active().tanh_of_sum(a, b, y, n); }

}  // namespace kn
