// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
// Counter-based: value i of a stream depends only on (seed, offset, i), so the CPU and the GPU
// produce identical random numbers and any thread can compute any element without shared state.
//
// Stream layout (the same in every backend):
//   uniform / bernoulli element i : block (offset + i/4), word i%4
//   normal element i              : block (offset + i/2), words (0,1) if i even else (2,3), Box-Muller
// The Python generator advances `offset` by n after each draw of n elements, so draws never overlap.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/hd.h"

namespace kn {

struct Philox4 {
  std::uint32_t v[4];
};

KN_HD void philox_mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  std::uint64_t p = (std::uint64_t)a * b;
  hi = (std::uint32_t)(p >> 32);
  lo = (std::uint32_t)p;
}

KN_HD Philox4 philox4x32_10(std::uint64_t counter, std::uint64_t seed) {
  std::uint32_t c0 = (std::uint32_t)counter, c1 = (std::uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  std::uint32_t k0 = (std::uint32_t)seed, k1 = (std::uint32_t)(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    std::uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    std::uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// 24 random bits -> float in [0, 1)
KN_HD float philox_u01(std::uint32_t w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }
// -> float in (0, 1], safe for log()
KN_HD float philox_u01_open0(std::uint32_t w) { return ((float)(w >> 8) + 1.0f) * (1.0f / 16777216.0f); }

KN_HD float philox_uniform_at(std::uint64_t seed, std::uint64_t offset, std::int64_t i) {
  Philox4 r = philox4x32_10(offset + (std::uint64_t)(i >> 2), seed);
  return philox_u01(r.v[i & 3]);
}

// One standard normal from two words (Box-Muller, cosine branch). Float math on both backends, so
// CPU and CUDA draws match to the rounding of logf/sqrtf/cosf.
KN_HD float philox_box_muller(std::uint32_t w1, std::uint32_t w2) {
  const float u1 = philox_u01_open0(w1);
  const float u2 = philox_u01(w2);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864769f * u2);
}

KN_HD float philox_normal_at(std::uint64_t seed, std::uint64_t offset, std::int64_t i) {
  Philox4 r = philox4x32_10(offset + (std::uint64_t)(i >> 1), seed);
  int w = (int)(i & 1) * 2;
  return philox_box_muller(r.v[w], r.v[w + 1]);
}

}  // namespace kn
