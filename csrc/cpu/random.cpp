// Random number kernels on the counter-based Philox stream (csrc/common/philox.h): element i of a
// draw depends only on (seed, offset, i), so the result does not depend on the thread count and
// the CUDA backend produces the same numbers.
#include "common/kn.h"
#include "common/philox.h"
#include "cpu/box_muller.h"
#include "cpu/cpu_features.h"
#include "cpu/philox_batch.h"
#include "cpu/parallel.h"

namespace kn {
namespace {

void philox_uniform(uptr out_, i64 n, std::uint64_t seed, std::uint64_t offset, double low, double high) {
  float* out = ptr<float>(out_);
  const float lo = (float)low, span = (float)(high - low);
  parallel_for(n, 1 << 14, [&](i64 b, i64 e) {
    philox_words(seed, offset, b, e, [&](i64 i, const std::uint32_t* w, int count) {
      float* __restrict o = out + i;
      for (int j = 0; j < count; ++j) o[j] = lo + span * philox_u01(w[j]);
    });
  });
}

// Box-Muller on word pairs: element i reads words 2i and 2i + 1 of the word stream, i.e. words
// 2(i & 1) and 2(i & 1) + 1 of block offset + i / 2 (philox_normal_at). Walking the word range
// [2b, 2e) with philox_words gets the blocks 16 at a time in vector registers instead of one
// scalar ten-round block per element (which computed each block twice). Runs start at even word
// indices (2b, or a multiple of 64) and have even lengths. The transform is box_muller_run's
// vectorised polynomials (cpu/box_muller.h): the same bits on every SIMD path.
void philox_normal(uptr out_, i64 n, std::uint64_t seed, std::uint64_t offset, double mean, double std_) {
  float* out = ptr<float>(out_);
  const float m = (float)mean, s = (float)std_;
  static const BoxMullerFn avx512 = box_muller_avx512();
  const BoxMullerFn run = avx512 && active_simd() == Simd::Avx512 ? avx512 : &box_muller_run;
  parallel_for(n, 1 << 13, [&](i64 b, i64 e) {
    philox_words(seed, offset, 2 * b, 2 * e, [&](i64 j, const std::uint32_t* w, int count) {
      run(w, count / 2, m, s, out + j / 2);
    });
  });
}

void philox_bernoulli_mask(uptr out_, i64 n, std::uint64_t seed, std::uint64_t offset, double p_keep, double scale) {
  float* out = ptr<float>(out_);
  const float pk = (float)p_keep, sc = (float)scale;
  const std::int32_t thr = philox_threshold(pk);  // kept iff philox_u01(w) < pk
  parallel_for(n, 1 << 14, [&](i64 b, i64 e) {
    philox_words(seed, offset, b, e, [&](i64 i, const std::uint32_t* w, int count) {
      float* __restrict o = out + i;
      for (int j = 0; j < count; ++j) o[j] = sc * (float)((std::int32_t)(w[j] >> 8) < thr);
    });
  });
}

}  // namespace
}  // namespace kn

KN_BIND(random) {
  m.def("philox_uniform", &kn::philox_uniform, KN_NOGIL);
  m.def("philox_normal", &kn::philox_normal, KN_NOGIL);
  m.def("philox_bernoulli_mask", &kn::philox_bernoulli_mask, KN_NOGIL);
}
