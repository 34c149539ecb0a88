// Dropout (float32, contiguous, n elements), with the counter-based Philox stream of
// common/philox.h so CPU and CUDA drop the same elements for the same (seed, offset).
//   dropout_forward(x, y, mask, n, p, seed, offset)
//       element i is kept iff u_i < 1 - p, u_i = philox_uniform_at(seed, offset, i) (the same rule
//       as philox_bernoulli_mask with p_keep = 1 - p); kept elements are scaled by 1 / (1 - p).
//       mask (f32, may be 0 = not stored) receives 1/(1-p) or 0, so backward is one multiply.
//       p = 0 copies x (mask all 1); p = 1 zeroes y and mask (PyTorch's convention).
//   rng_state (optional, default 0): address of two uint64 [seed, base]; when given, the stream is
//       (rng_state[0], rng_state[1] + offset), read when the kernel runs. A replayed graph
//       (kernelnet.graphed) draws fresh masks this way: Python rewrites the pair before each replay.
//   dropout_backward(dy, mask, dx, n)           dx = dy * mask
// The Python generator advances offset past the blocks used (n/4 rounded up, or simply n).
#include <cstring>

#include "common/kn.h"
#include "common/philox.h"
#include "cpu/philox_batch.h"
#include "cpu/parallel.h"

namespace kn {
namespace {

void dropout_fwd(const float* x, float* y, float* mask, i64 n, double p, std::uint64_t seed,
                 std::uint64_t offset) {
  // in double, then rounded once: p = 0.9 gives exactly 10.0f, not 1 / 0.100000024f
  const float keep = (float)(1.0 - p);
  const float scale = p >= 1.0 ? 0.f : (float)(1.0 / (1.0 - p));
  const std::int32_t thr = philox_threshold(keep);  // kept iff philox_u01(w) < keep
  parallel_for(n, 1 << 14, [&](i64 i0, i64 i1) {
    philox_words(seed, offset, i0, i1, [&](i64 i, const std::uint32_t* w, int count) {
      const float* __restrict xi = x + i;
      float* __restrict yo = y + i;
      if (mask) {
        float* __restrict mo = mask + i;
        for (int j = 0; j < count; ++j) {
          const float m = scale * (float)((std::int32_t)(w[j] >> 8) < thr);
          yo[j] = xi[j] * m;
          mo[j] = m;
        }
      } else {
        for (int j = 0; j < count; ++j)
          yo[j] = xi[j] * (scale * (float)((std::int32_t)(w[j] >> 8) < thr));
      }
    });
  });
}

}  // namespace
}  // namespace kn

KN_BIND(dropout) {
  using kn::i64;
  using kn::uptr;
  m.def(
      "dropout_forward",
      [](uptr x, uptr y, uptr mask, i64 n, double p, std::uint64_t seed, std::uint64_t offset,
         uptr rng_state) {
        KN_CHECK(n >= 0, "dropout_forward: negative n=", n);
        if (rng_state) {
          const std::uint64_t* st = kn::ptr<const std::uint64_t>(rng_state);
          seed = st[0];
          offset += st[1];
        }
        KN_CHECK(p >= 0.0 && p <= 1.0, "dropout_forward: p must be in [0, 1], got ", p);
        KN_CHECK(x && y, "dropout_forward: null pointer");
        if (p == 0.0) {  // exact identity (no rounding through a multiply by 1)
          if (x != y) std::memmove(kn::ptr<float>(y), kn::ptr<const float>(x), sizeof(float) * n);
          float* m = kn::ptr<float>(mask);
          if (m) kn::parallel_for(n, 1 << 16, [&](i64 a, i64 b) { for (i64 i = a; i < b; ++i) m[i] = 1.f; });
          return;
        }
        kn::dropout_fwd(kn::ptr<const float>(x), kn::ptr<float>(y), kn::ptr<float>(mask), n, p,
                        seed, offset);
      },
      kn::py::arg("x"), kn::py::arg("y"), kn::py::arg("mask"), kn::py::arg("n"), kn::py::arg("p"), kn::py::arg("seed"), kn::py::arg("offset"),
      kn::py::arg("rng_state") = 0, KN_NOGIL);
  m.def(
      "dropout_backward",
      [](uptr dy, uptr mask, uptr dx, i64 n) {
        KN_CHECK(n >= 0, "dropout_backward: negative n=", n);
        KN_CHECK(dy && mask && dx, "dropout_backward: null pointer (the mask is required)");
        const float *g = kn::ptr<const float>(dy), *m = kn::ptr<const float>(mask);
        float* d = kn::ptr<float>(dx);
        kn::parallel_for(n, 1 << 15, [&](i64 a, i64 b) { for (i64 i = a; i < b; ++i) d[i] = g[i] * m[i]; });
      },
      KN_NOGIL);
}
