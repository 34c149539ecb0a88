// Helpers shared by the CUDA layer kernels (conv.cu, pool.cu, softmax_loss.cu, dropout.cu,
// optim.cu): error checking, the stream, launch sizing and a fast integer divider.
//
// Error checking and the stream come from part 1's cuda/cuda_check.h (KN_CUDA_CHECK,
// KN_LAUNCH_CHECK, kStream) when it is in the tree; the fallback below defines the same names with
// the same behaviour so that these files build on their own as well. Errors never abort the
// process: they become Python exceptions naming the op, the call, the file and the line.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "common/kn.h"

#if __has_include("cuda/cuda_check.h")
#include "cuda/cuda_check.h"
#else
namespace kn {
struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
constexpr cudaStream_t kStream = 0;  // one stream for all of kernelnet (legacy default stream)
[[noreturn]] inline void cuda_fail(cudaError_t e, const char* op, const char* what, const char* file,
                                   int line) {
  throw CudaError(str_cat(op, ": CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                          ") in ", what, " at ", file, ":", line));
}
}  // namespace kn
#define KN_CUDA_CHECK(call, op)                                  \
  do {                                                           \
    cudaError_t kn_err_ = (call);                                \
    if (kn_err_ != cudaSuccess) {                                \
      cudaGetLastError();                                        \
      ::kn::cuda_fail(kn_err_, op, #call, __FILE__, __LINE__);   \
    }                                                            \
  } while (0)
#define KN_LAUNCH_CHECK(op) KN_CUDA_CHECK(cudaGetLastError(), op)
#endif

namespace kn {
namespace layer {

// Multiprocessor count of the current device, cached (sizes split-K and grid-stride grids).
inline int sm_count() {
  static int n = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      return 80;
    }
    return v;
  }();
  return n;
}

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
