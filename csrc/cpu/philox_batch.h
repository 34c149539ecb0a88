// Philox4x32-10 words in bulk for the CPU kernels (dropout, rand, bernoulli masks).
//
// The stream is the one of common/philox.h: element i reads word i % 4 of block offset + i / 4.
// Computing one block per element (or even per 4 elements) runs the ten rounds with scalar 32x32
// multiplies, ~10 ns an element. philox_words64 computes 16 blocks at once, the rounds as 16-lane vector
// multiplies (vpmuludq) on AVX-512; philox_words walks any element
// range with it, scalar only at the unaligned ends. The words are bit-identical to philox4x32_10,
// so CPU and CUDA still draw the same numbers.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/kn.h"
#include "common/philox.h"

namespace kn {

// w[4 * b + k] = word k of block (counter + b), for b in [0, 16). Runs the SIMD path that
// KERNELNET_SIMD / CPUID selects (cpu/cpu_features.h); every path gives the same words.
void philox_words64(std::uint64_t counter, std::uint64_t seed, std::uint32_t w[64]);

using PhiloxWords64Fn = void (*)(std::uint64_t, std::uint64_t, std::uint32_t*);
PhiloxWords64Fn philox_words64_avx512();  // nullptr where not compiled (non-x86)

// philox_u01(w) < p  <=>  (w >> 8) < philox_threshold(p), exactly: u01 is the 24-bit integer
// w >> 8 scaled by 2^-24. Kernels compare integers (a vector compare and a mask) where a float
// compare and select compiled to a branch that mispredicts at random keep rates.
inline std::int32_t philox_threshold(float p) {
  const double t = std::ceil((double)p * 16777216.0);
  return (std::int32_t)std::max(0.0, std::min(t, 16777216.0));
}

// Walks [i0, i1) in runs of consecutive elements: f(i, w, count) gets words w[0..count) for
// elements i .. i + count - 1 (word of element i = word i % 4 of block offset + i / 4). Runs are
// 64 long except at unaligned ends, so f's loop over a run can vectorise.
template <typename F>
inline void philox_words(std::uint64_t seed, std::uint64_t offset, i64 i0, i64 i1, F&& f) {
  i64 i = i0;
  while (i < i1 && (i & 63)) {  // unaligned head, one block at a time
    Philox4 r = philox4x32_10(offset + (std::uint64_t)(i >> 2), seed);
    const int k = (int)(i & 3), count = (int)std::min<i64>(4 - k, i1 - i);
    f(i, r.v + k, count);
    i += count;
  }
  alignas(64) std::uint32_t w[64];
  for (; i + 64 <= i1; i += 64) {
    philox_words64(offset + (std::uint64_t)(i >> 2), seed, w);
    f(i, (const std::uint32_t*)w, 64);
  }
  while (i < i1) {  // tail
    Philox4 r = philox4x32_10(offset + (std::uint64_t)(i >> 2), seed);
    const int count = (int)std::min<i64>(4, i1 - i);
    f(i, (const std::uint32_t*)r.v, count);
    i += count;
  }
}

}  // namespace kn
