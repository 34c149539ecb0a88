// philox_words64 for AVX-512: the 16 blocks' counters live in four zmm registers (c0..c3, one
// 32-bit lane per block) and each round is two pairs of vpmuludq (even and odd lanes) plus xors.
// The 4 x 16 words are then transposed so block b's four words are contiguous (w[4b .. 4b+3]).
#include "cpu/philox_batch.h"

#if defined(__AVX512F__)
#include <immintrin.h>

namespace kn {
namespace {

// hi and lo 32 bits of m * c in every 32-bit lane.
inline void mulhilo16(__m512i m, __m512i c, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(c, m);                         // lanes 0, 2, ...
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);  // lanes 1, 3, ...
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

void words64(std::uint64_t counter, std::uint64_t seed, std::uint32_t w[64]) {
  // counters counter + b, b = 0..15; the high word changes only if the low word wraps
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const std::uint32_t lo0 = (std::uint32_t)counter, hi0 = (std::uint32_t)(counter >> 32);
  __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32((int)lo0), lanes);
  const __mmask16 wrapped = _mm512_cmplt_epu32_mask(c0, _mm512_set1_epi32((int)lo0));
  __m512i c1 = _mm512_mask_add_epi32(_mm512_set1_epi32((int)hi0), wrapped,
                                     _mm512_set1_epi32((int)hi0), _mm512_set1_epi32(1));
  __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
  const __m512i m0 = _mm512_set1_epi64(0xD2511F53u), m1 = _mm512_set1_epi64(0xCD9E8D57u);
  std::uint32_t k0 = (std::uint32_t)seed, k1 = (std::uint32_t)(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    __m512i hi_0, lo_0, hi_1, lo_1;
    mulhilo16(m0, c0, hi_0, lo_0);
    mulhilo16(m1, c2, hi_1, lo_1);
    c0 = _mm512_xor_si512(_mm512_xor_si512(hi_1, c1), _mm512_set1_epi32((int)k0));
    c2 = _mm512_xor_si512(_mm512_xor_si512(hi_0, c3), _mm512_set1_epi32((int)k1));
    c1 = lo_1;
    c3 = lo_0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  // Transpose: within each 128-bit lane L, u_j holds block 4L + j as (c0, c1, c2, c3).
  const __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpackhi_epi32(c0, c1);
  const __m512i t2 = _mm512_unpacklo_epi32(c2, c3), t3 = _mm512_unpackhi_epi32(c2, c3);
  const __m512i u[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                        _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
  for (int j = 0; j < 4; ++j) {
    __m128i* out = reinterpret_cast<__m128i*>(w);
    _mm_storeu_si128(out + 0 + j, _mm512_extracti32x4_epi32(u[j], 0));
    _mm_storeu_si128(out + 4 + j, _mm512_extracti32x4_epi32(u[j], 1));
    _mm_storeu_si128(out + 8 + j, _mm512_extracti32x4_epi32(u[j], 2));
    _mm_storeu_si128(out + 12 + j, _mm512_extracti32x4_epi32(u[j], 3));
  }
}

}  // namespace

PhiloxWords64Fn philox_words64_avx512() { return &words64; }

}  // namespace kn

#else  // not compiled for AVX-512 (non-x86 build)

namespace kn {
PhiloxWords64Fn philox_words64_avx512() { return nullptr; }
}  // namespace kn

#endif
