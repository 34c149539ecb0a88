// Packing: copy a block of op(A) or op(B) into the contiguous, zero-padded panel layout the
// micro-kernel streams through. Packing is where transposes are absorbed (callers never copy a
// transposed operand), and it turns large-stride rows (power-of-two leading dimensions thrash L1
// sets and the TLB) into sequential reads.
#pragma once
#include <cstdint>

namespace kn {
namespace gemm {

// Rows [i0, i0+mc) x k [k0, k0+kc) of op(A) -> ceil(mc/MR) panels of kc x MR (k-major), rows past
// mc zero. op(A)(i,k) = A[i*lda + k], or A[k*lda + i] when trans_a.
void pack_a(bool trans_a, const float* A, std::int64_t lda, std::int64_t i0, std::int64_t k0,
            std::int64_t mc, std::int64_t kc, int MR, float* out);

// k [k0, k0+kc) x columns [j0, j0+nc) of op(B) -> ceil(nc/NR) panels of kc x NR, columns past nc
// zero. op(B)(k,j) = B[k*ldb + j], or B[j*ldb + k] when trans_b.
void pack_b(bool trans_b, const float* B, std::int64_t ldb, std::int64_t k0, std::int64_t j0,
            std::int64_t kc, std::int64_t nc, int NR, float* out);

// The transposing copy (element (k, x) = src[x*ld + k] -> dst[k*W + x], rows x >= w zero), SIMD
// version: nullptr where not compiled. pack_a/pack_b use it when the AVX-512 path is active.
using PackTransposedFn = void (*)(const float* src, std::int64_t ld, std::int64_t kc, int w, int W,
                                  float* dst);
PackTransposedFn pack_transposed_avx512();

}  // namespace gemm
}  // namespace kn
