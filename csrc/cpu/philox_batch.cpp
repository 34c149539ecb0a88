// philox_words64 (see philox_batch.h): the dispatcher and the portable path, which runs the
// 16 blocks lane by lane (the reference the AVX-512 path is tested against).
#include "cpu/philox_batch.h"

#include "cpu/cpu_features.h"

namespace kn {
namespace {

void words64_portable(std::uint64_t counter, std::uint64_t seed, std::uint32_t* w) {
  constexpr int L = 16;
  std::uint32_t c0[L], c1[L], c2[L], c3[L];
  for (int b = 0; b < L; ++b) {
    const std::uint64_t c = counter + (std::uint64_t)b;
    c0[b] = (std::uint32_t)c;
    c1[b] = (std::uint32_t)(c >> 32);
    c2[b] = 0;
    c3[b] = 0;
  }
  std::uint32_t k0 = (std::uint32_t)seed, k1 = (std::uint32_t)(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    for (int b = 0; b < L; ++b) {  // the round of philox4x32_10, lane by lane
      const std::uint64_t p0 = (std::uint64_t)0xD2511F53u * c0[b];
      const std::uint64_t p1 = (std::uint64_t)0xCD9E8D57u * c2[b];
      const std::uint32_t n0 = (std::uint32_t)(p1 >> 32) ^ c1[b] ^ k0;
      const std::uint32_t n2 = (std::uint32_t)(p0 >> 32) ^ c3[b] ^ k1;
      c1[b] = (std::uint32_t)p1;
      c3[b] = (std::uint32_t)p0;
      c0[b] = n0;
      c2[b] = n2;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  for (int b = 0; b < L; ++b) {
    w[4 * b + 0] = c0[b];
    w[4 * b + 1] = c1[b];
    w[4 * b + 2] = c2[b];
    w[4 * b + 3] = c3[b];
  }
}

}  // namespace

void philox_words64(std::uint64_t counter, std::uint64_t seed, std::uint32_t w[64]) {
  static const PhiloxWords64Fn avx512 = philox_words64_avx512();
  if (avx512 && active_simd() == Simd::Avx512) return avx512(counter, seed, w);
  words64_portable(counter, seed, w);
}

}  // namespace kn
