// Box-Muller for the CPU's normal draws (randn, normal_) on polynomial log and cosine.
//
// philox_normal_at (common/philox.h) defines element i as sqrt(-2 log u1) cos(2 pi u2) from two
// Philox words; the CUDA kernel evaluates it with logf/cosf. On the CPU those are scalar libm calls,
// 17 ns an element, 4x PyTorch's whole randn. box_muller_run evaluates the same formula as straight
// float arithmetic the compiler vectorises: Cephes' logf and sinf/cosf minimax polynomials (~1 ulp),
// with argument reductions done exactly in integers from the words' 24 random bits:
//   u1 = (k1 + 1) 2^-24 = mant 2^e with mant in [sqrt(1/2), sqrt(2)): log u1 = log mant + e log 2
//   u2 = k2 2^-24: 4 u2 = q + t 2^2 with q the nearest integer, so 2 pi u2 = q pi/2 + r with
//   r = 2 pi t, |r| <= pi/4, and cos(2 pi u2) is +-cos r or +-sin r by q mod 4.
// The loop has no calls or branches (selects only): it runs 4 lanes wide in the baseline SSE2 build
// (random.cpp) and 16 in box_muller_avx512.cpp. Both files are compiled with -ffp-contract=off and
// every operation is IEEE-rounded, so all paths give the same bits (tested); CUDA's logf/cosf agree
// to a few ulps.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace kn {
// Internal linkage on purpose: this header is compiled with different target flags in two files,
// and an inline function with external linkage would be one symbol, the linker keeping either
// copy for both (ARCHITECTURE.md: SIMD files and the one-definition rule).
namespace {

inline float bm_bits_to_float(std::uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

inline std::uint32_t bm_float_to_bits(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// out[k] = mean + stdev * normal(w[2k], w[2k + 1]) for k in [0, pairs).
inline void box_muller_run(const std::uint32_t* __restrict w, int pairs, float mean, float stdev,
                           float* __restrict out) {
  for (int k = 0; k < pairs; ++k) {
    // ---- log(u1), u1 = (k1 + 1) / 2^24 in (0, 1]
    const std::int32_t k1 = (std::int32_t)(w[2 * k] >> 8) + 1;  // 1 .. 2^24, exact in float
    const std::uint32_t bits = bm_float_to_bits((float)k1);
    std::int32_t e = (std::int32_t)(bits >> 23) - 126 - 24;       // k1 = m 2^(e + 24), m in [0.5, 1)
    float m = bm_bits_to_float((bits & 0x007FFFFFu) | 0x3F000000u);
    const bool low = m < 0.707106781186547524f;                   // to [sqrt(1/2), sqrt(2))
    e -= low ? 1 : 0;
    const float x = low ? (m + m) - 1.0f : m - 1.0f;
    const float z = x * x;
    float p = 7.0376836292e-2f;
    p = p * x - 1.1514610310e-1f;
    p = p * x + 1.1676998740e-1f;
    p = p * x - 1.2420140846e-1f;
    p = p * x + 1.4249322787e-1f;
    p = p * x - 1.6668057665e-1f;
    p = p * x + 2.0000714765e-1f;
    p = p * x - 2.4999993993e-1f;
    p = p * x + 3.3333331174e-1f;
    const float fe = (float)e;
    float y = p * x * z;
    y = y + fe * -2.12194440e-4f;
    y = y - 0.5f * z;
    const float log_u1 = (x + y) + fe * 0.693359375f;

    // ---- cos(2 pi u2), u2 = k2 / 2^24 in [0, 1)
    const std::int32_t k2 = (std::int32_t)(w[2 * k + 1] >> 8);
    const std::int32_t q = (k2 + (1 << 21)) >> 22;                 // nearest integer to 4 u2: 0 .. 4
    const float t = (float)(k2 - (q << 22)) * (1.0f / 16777216.0f);  // u2 - q / 4, exact
    const float r = t * 6.28318530717958647692f;                  // |r| <= pi / 4
    const float rr = r * r;
    float s = -1.9515295891e-4f;
    s = s * rr + 8.3321608736e-3f;
    s = s * rr - 1.6666654611e-1f;
    s = s * rr * r + r;
    float c = 2.443315711809948e-5f;
    c = c * rr - 1.388731625493765e-3f;
    c = c * rr + 4.166664568298827e-2f;
    c = c * rr * rr - 0.5f * rr + 1.0f;
    const float v = (q & 1) ? s : c;                               // q = 1, 3: sin; 0, 2, 4: cos
    const float cos_u2 = bm_bits_to_float(bm_float_to_bits(v) ^ ((std::uint32_t)((q + 1) & 2) << 30));

    out[k] = mean + stdev * (std::sqrt(-2.0f * log_u1) * cos_u2);
  }
}

}  // namespace

// The AVX-512 compile of box_muller_run (nullptr where not compiled: non-x86 builds).
using BoxMullerFn = void (*)(const std::uint32_t*, int, float, float, float*);
BoxMullerFn box_muller_avx512();

}  // namespace kn
