// Single-precision GEMM, row-major:  C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b]  (+ bias, act)
//   op(A) is M x K (A stored K x M when trans_a), op(B) is K x N (B stored N x K when trans_b).
//   Strides between batch items are in elements (0 broadcasts one operand across the batch).
//   The epilogue (bias, then activation) is applied to the final values of C.
#pragma once
#include <cstdint>

namespace kn {
namespace gemm {
struct MicroKernel;
}

struct GemmEpilogue {
  const float* bias = nullptr;  // BIAS_COL: length N; BIAS_ROW: length M
  int bias_mode = 0;            // BiasMode in common/ops.h
  int act = 0;                  // Activation in common/ops.h
};

void sgemm(std::int64_t batch, bool trans_a, bool trans_b, std::int64_t M, std::int64_t N,
           std::int64_t K, float alpha, const float* A, std::int64_t lda, std::int64_t stride_a,
           const float* B, std::int64_t ldb, std::int64_t stride_b, float beta, float* C,
           std::int64_t ldc, std::int64_t stride_c, const GemmEpilogue& ep = GemmEpilogue());

// op(B) (K x N) packed once into the micro-kernel's panel layout, for many products with
// different A on the same B: an RNN's recurrent weight, used at every time step (sgemm would pack
// it again on every call). Products run on the calling thread only, so several threads can share
// one PackedB, each multiplying its own rows.
class PackedB {
 public:
  PackedB(bool trans_b, const float* B, std::int64_t ldb, std::int64_t K, std::int64_t N);
  ~PackedB();
  PackedB(const PackedB&) = delete;
  PackedB& operator=(const PackedB&) = delete;

  // C = A @ op(B) + beta * C, then + bias[j] on column j (bias may be null). A is M x K, row-major.
  void multiply(std::int64_t M, const float* A, std::int64_t lda, float beta, float* C,
                std::int64_t ldc, const float* bias) const;

 private:
  const gemm::MicroKernel* uk_;
  std::int64_t K_, N_, kc_, panels_;  // K blocks of kc_ rows, each panels_ panels of kc x NR
  float* data_;
};

}  // namespace kn
