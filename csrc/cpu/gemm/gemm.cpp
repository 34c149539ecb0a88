// Placeholder GEMM: straightforward and correct, to be replaced by the packed, blocked GEMM.
#include "cpu/gemm/gemm.h"

#include <algorithm>
#include <vector>

#include "common/kn.h"
#include "common/ops.h"
#include "cpu/parallel.h"

namespace kn {

void sgemm(i64 batch, bool ta, bool tb, i64 M, i64 N, i64 K, float alpha, const float* A, i64 lda,
           i64 sa, const float* B, i64 ldb, i64 sb, float beta, float* C, i64 ldc, i64 sc,
           const GemmEpilogue& ep) {
  parallel_for(batch * M, 4, [&](i64 b0, i64 b1) {
    std::vector<float> row(N);
    for (i64 bm = b0; bm < b1; ++bm) {
      i64 b = bm / M, m = bm % M;
      const float* a = A + b * sa;
      const float* bb = B + b * sb;
      float* c = C + b * sc + m * ldc;
      std::fill(row.begin(), row.end(), 0.f);
      for (i64 k = 0; k < K; ++k) {
        float av = ta ? a[k * lda + m] : a[m * lda + k];
        if (av == 0.f) continue;
        if (!tb) {
          const float* br = bb + k * ldb;
          for (i64 n = 0; n < N; ++n) row[n] += av * br[n];
        } else {
          for (i64 n = 0; n < N; ++n) row[n] += av * bb[n * ldb + k];
        }
      }
      for (i64 n = 0; n < N; ++n) {
        float v = alpha * row[n] + (beta == 0.f ? 0.f : beta * c[n]);
        if (ep.bias_mode == BIAS_COL) v += ep.bias[n];
        if (ep.bias_mode == BIAS_ROW) v += ep.bias[m];
        if (ep.act == ACT_RELU) v = v > 0.f ? v : 0.f;
        c[n] = v;
      }
    }
  });
}

}  // namespace kn

KN_BIND(gemm) {
  m.def(
      "sgemm",
      [](kn::i64 batch, bool ta, bool tb, kn::i64 M, kn::i64 N, kn::i64 K, float alpha, kn::uptr A,
         kn::i64 lda, kn::i64 sa, kn::uptr B, kn::i64 ldb, kn::i64 sb, float beta, kn::uptr C,
         kn::i64 ldc, kn::i64 sc, kn::uptr bias, int bias_mode, int act) {
        KN_CHECK(batch >= 0 && M >= 0 && N >= 0 && K >= 0, "sgemm: negative size");
        kn::GemmEpilogue ep{kn::ptr<const float>(bias), bias_mode, act};
        kn::sgemm(batch, ta, tb, M, N, K, alpha, kn::ptr<const float>(A), lda, sa,
                  kn::ptr<const float>(B), ldb, sb, beta, kn::ptr<float>(C), ldc, sc, ep);
      },
      KN_NOGIL);
}
