// The inner loops of the float sums in reduce.cpp, one set per SIMD path: the baseline's (4-wide
// vectors: SSE, NEON) in reduce.cpp, AVX-512's in reduce_sum_avx512.cpp. Both add the same values in
// float lanes and flush them into doubles at the same points; a column sum adds each column's rows
// in row order on both paths, a run's lanes differ in number (so its rounding differs slightly).
#pragma once
#include <cstdint>

namespace kn {

constexpr std::int64_t kSumBlock = 1024;  // a run's float lanes go into a double every kSumBlock values
constexpr std::int64_t kColBlock = 256;   // the widest column block `columns` is given
constexpr std::int64_t kColFlush = 32;    // a column block's float lanes go into doubles every kColFlush rows

struct SumKernels {
  // sum of x[0, n)
  double (*run)(const float* x, std::int64_t n);
  // acc[i] = sum over r < rows of x[r * ld + i], for i < w <= kColBlock
  void (*columns)(const float* x, std::int64_t ld, std::int64_t w, std::int64_t rows, double* acc);
};

const SumKernels* sum_kernels_avx512();  // nullptr where not compiled (non-x86 builds)

}  // namespace kn
