// The CUDA SGEMM (gemm.cu) as a C++ entry for other kernel files that need a matrix product
// inside a larger operation (rnn_sequence.cu: the hidden projection of every time step), so they
// reuse the tuned kernels instead of carrying their own.
//
// Row-major C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b], then bias (BIAS_COL: bias[n], BIAS_ROW:
// bias[m]) and ReLU (common/ops.h codes). op(A) is M x K (A stored K x M when trans_a), op(B) is
// K x N (B stored N x K when trans_b); strides between batch items in elements, 0 broadcasts.
// beta == 0 never reads C. Runs asynchronously on kStream (cuda_check.h); bad arguments throw
// ArgError naming "sgemm", launch errors CudaError.
#pragma once
#include "common/kn.h"
#include "common/ops.h"

namespace kn {

void sgemm_device(i64 batch, bool trans_a, bool trans_b, i64 M, i64 N, i64 K, float alpha,
                  const float* A, i64 lda, i64 stride_a, const float* B, i64 ldb, i64 stride_b,
                  float beta, float* C, i64 ldc, i64 stride_c, const float* bias = nullptr,
                  int bias_mode = BIAS_NONE, int act = ACT_NONE);

}  // namespace kn
