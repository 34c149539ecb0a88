// Helpers shared by the CUDA layer kernels (conv.cu, pool.cu, softmax_loss.cu, dropout.cu,
// optim.cu): error checking, the stream, launch sizing and a fast integer divider.
//
// Error checking and the stream come from cuda/cuda_check.h (KN_CUDA_CHECK, KN_LAUNCH_CHECK,
// kStream): errors never abort the process, they become Python exceptions naming the op, the
// call, the file and the line.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "common/kn.h"

#include "cuda/cuda_check.h"

namespace kn {
namespace layer {

// Multiprocessor count of the current device, cached (sizes split-K and grid-stride grids).
inline int sm_count() { return num_sms(); }

// Blocks for a grid-stride loop over n items: enough to fill the GPU, never 0.
inline unsigned blocks_for(i64 n, int threads, i64 per_sm = 16) {
  i64 b = (n + threads - 1) / threads;
  i64 cap = (i64)sm_count() * per_sm;
  if (b > cap) b = cap;
  if (b < 1) b = 1;
  return (unsigned)b;
}

// Division by a run-time constant without the ~20-instruction integer divide: n / d as a
// multiply-high and a shift (Granlund-Montgomery, as in PyTorch's IntDivider). Valid for
// 0 <= n < 2^31 and 1 <= d < 2^31, which the host code checks (all conv tensors < 2^31 elements).
struct FastDiv {
  std::uint32_t d = 1, m = 0, s = 0;
  FastDiv() = default;
  explicit FastDiv(std::uint32_t divisor) : d(divisor) {
    for (s = 0; s < 32; ++s)
      if ((std::uint32_t(1) << s) >= d) break;
    std::uint64_t one = 1;
    m = (std::uint32_t)(((one << 32) * ((one << s) - d)) / d + 1);
  }
  __device__ __forceinline__ int div(int n) const {
    std::uint32_t t = __umulhi((std::uint32_t)n, m);
    return (int)((t + (std::uint32_t)n) >> s);
  }
};

// i64 sizes arrive from Python; the kernels index with int. Checked once on the host.
inline constexpr i64 kIntMax = 2147483647;

}  // namespace layer
}  // namespace kn
