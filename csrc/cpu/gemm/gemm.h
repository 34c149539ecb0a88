// Single-precision GEMM, row-major:  C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b]  (+ bias, act)
//   op(A) is M x K (A stored K x M when trans_a), op(B) is K x N (B stored N x K when trans_b).
//   Strides between batch items are in elements (0 broadcasts one operand across the batch).
//   The epilogue (bias, then activation) is applied to the final values of C.
#pragma once
#include <cstdint>

namespace kn {

struct GemmEpilogue {
  const float* bias = nullptr;  // BIAS_COL: length N; BIAS_ROW: length M
  int bias_mode = 0;            // BiasMode in common/ops.h
  int act = 0;                  // Activation in common/ops.h
};

void sgemm(std::int64_t batch, bool trans_a, bool trans_b, std::int64_t M, std::int64_t N,
           std::int64_t K, float alpha, const float* A, std::int64_t lda, std::int64_t stride_a,
           const float* B, std::int64_t ldb, std::int64_t stride_b, float beta, float* C,
           std::int64_t ldc, std::int64_t stride_c, const GemmEpilogue& ep = GemmEpilogue());

}  // namespace kn
