// Counter-based random fills (core contract; identical streams on CPU and CUDA, see
// common/philox.h for the stream layout).
//   philox_uniform(out, n, seed, offset, low, high)          out[i] = low + (high - low) * u_i
//   philox_normal(out, n, seed, offset, mean, std)           out[i] = mean + std * z_i
//   philox_bernoulli_mask(out, n, seed, offset, p_keep, scale)  out[i] = u_i < p_keep ? scale : 0
// u_i = philox_uniform_at(seed, offset, i), z_i = philox_normal_at(seed, offset, i): element i does
// not depend on n or on how the work is split, so a long draw's prefix equals a short draw.
// Threads take contiguous ranges; each Philox block (4 uniforms or 2 normals) is computed once
// per range, not once per element.
#include "common/kn.h"
#include "common/philox.h"
#include "cpu/parallel.h"

namespace kn {

// f(i, u_i) for i in [0, n), threaded; one Philox call per 4 consecutive elements.
template <typename F>
void for_each_uniform(i64 n, std::uint64_t seed, std::uint64_t offset, F&& f) {
  parallel_for(n, 1 << 14, [&](i64 i0, i64 i1) {
    for (i64 i = i0; i < i1;) {
      Philox4 r = philox4x32_10(offset + (std::uint64_t)(i >> 2), seed);
      for (int j = (int)(i & 3); j < 4 && i < i1; ++j, ++i) f(i, philox_u01(r.v[j]));
    }
  });
}

}  // namespace kn

KN_BIND(random) {
  using kn::i64;
  using kn::uptr;
  using u64 = std::uint64_t;
  m.def(
      "philox_uniform",
      [](uptr out, i64 n, u64 seed, u64 offset, float low, float high) {
        KN_CHECK(n >= 0, "philox_uniform: negative n=", n);
        float* o = kn::ptr<float>(out);
        const float span = high - low;
        kn::for_each_uniform(n, seed, offset, [&](i64 i, float u) { o[i] = low + span * u; });
      },
      KN_NOGIL);
  m.def(
      "philox_normal",
      [](uptr out, i64 n, u64 seed, u64 offset, float mean, float std) {
        KN_CHECK(n >= 0, "philox_normal: negative n=", n);
        float* o = kn::ptr<float>(out);
        kn::parallel_for(n, 1 << 13, [&](i64 i0, i64 i1) {
          for (i64 i = i0; i < i1;) {  // one Philox block gives elements 2b and 2b+1
            kn::Philox4 r = kn::philox4x32_10(offset + (u64)(i >> 1), seed);
            for (int j = (int)(i & 1); j < 2 && i < i1; ++j, ++i) {
              // same expression as philox_normal_at, so both agree bit for bit
              float u1 = kn::philox_u01_open0(r.v[2 * j]);
              float u2 = kn::philox_u01(r.v[2 * j + 1]);
              float z = sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864769f * u2);
              o[i] = mean + std * z;
            }
          }
        });
      },
      KN_NOGIL);
  m.def(
      "philox_bernoulli_mask",
      [](uptr out, i64 n, u64 seed, u64 offset, float p_keep, float scale) {
        KN_CHECK(n >= 0, "philox_bernoulli_mask: negative n=", n);
        float* o = kn::ptr<float>(out);
        kn::for_each_uniform(n, seed, offset, [&](i64 i, float u) { o[i] = u < p_keep ? scale : 0.f; });
      },
      KN_NOGIL);
}
