// Per-thread scratch memory that only grows: kernels that need a temporary buffer per call (an
// im2col band, a row of tanh(c)) reuse it, so the steady state allocates nothing.
// Each use names its own Tag type and so gets its own buffer: two kernels (or a kernel and the
// GEMM it calls) never hand out the same memory.
#pragma once
#include <cstdint>
#include <vector>

namespace kn {

template <typename Tag>
float* thread_scratch(std::int64_t n) {
  static thread_local std::vector<float> buf;
  if ((std::int64_t)buf.size() < n) buf.resize((size_t)n);
  return buf.data();
}

}  // namespace kn
