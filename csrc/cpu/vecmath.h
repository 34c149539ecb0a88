// Sigmoid and tanh over arrays at SIMD speed, for the fused recurrent cells.
//
// Both are built on one exp (Cephes expf: range reduction to [-ln2/2, ln2/2], a degree-6
// polynomial, scaling by 2^n through the exponent bits; ~1 ulp on the clamped range [-87, 88]).
// libm's expf/tanhf are scalar calls that made the cells 3x slower than PyTorch's; the
// transcendentals are most of a cell's time, so each SIMD path (cpu/cpu_features.h) has its own
// copy of the polynomial: SSE2 (the x86-64 baseline) or scalar here, AVX-512 in vecmath_avx512.cpp.
// Every path computes the same formula; FMA contraction on AVX-512 moves results by ~1 ulp.
#pragma once
#include <cstdint>

namespace kn {

// y[j] = sigmoid(a[j] + b[j]) for j in [0, n). y may be a or b.
void sigmoid_of_sum(const float* a, const float* b, float* y, std::int64_t n);
// y[j] = tanh(a[j] + b[j]) for j in [0, n); b == nullptr means tanh(a[j]). y may be a or b.
// Computed as 1 - 2 / (exp(2x) + 1): absolute error ~1e-7.
void tanh_of_sum(const float* a, const float* b, float* y, std::int64_t n);

using VecMathFn = void (*)(const float* a, const float* b, float* y, std::int64_t n);
struct VecMath {
  VecMathFn sigmoid_of_sum;
  VecMathFn tanh_of_sum;
};
const VecMath* vecmath_avx512();  // nullptr where not compiled (non-x86 builds)

}  // namespace kn
