// CUDA error handling and launch helpers shared by every kernelnet._cuda source file.
//
// Errors never exit the process (darknet's assert(0) on a CUDA error killed users' sessions):
//   KN_CUDA_CHECK(call, "op")  -> throws kn::CudaError (RuntimeError in Python) naming op, call,
//                                 file and line; cudaErrorMemoryAllocation -> kn::CudaOOM
//                                 (kernelnet._cuda.OutOfMemoryError, a MemoryError).
//   KN_LAUNCH_CHECK("op")      -> after every kernel launch: cudaGetLastError() catches bad launch
//                                 configurations at once instead of at the next synchronise.
//
// Stream: every kernel and copy in kernelnet runs on ONE stream, the legacy default stream
// (stream 0). PyTorch and CuPy also use it by default, so tensors exchanged through DLPack need no
// extra synchronisation, and blocks freed to the caching allocator can be reused at once (all later
// work is ordered after the work that used them). The one exception: while a thread captures a
// CUDA graph (graph.cpp), kStream is that thread's capture stream, so the same launch code records
// into the graph; replays are ordered against stream 0 with events.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "common/kn.h"

namespace kn {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct CudaOOM : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The stream every launch and async copy uses (see above): 0, or the capture stream of this thread.
inline thread_local cudaStream_t kStream = nullptr;

[[noreturn]] inline void cuda_fail(cudaError_t e, const char* op, const char* what, const char* file,
                                   int line) {
  std::string msg = str_cat(op, ": CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                            ") in ", what, " at ", file, ":", line);
  if (e == cudaErrorMemoryAllocation) throw CudaOOM(msg);
  throw CudaError(msg);
}

}  // namespace kn

#define KN_CUDA_CHECK(call, op)                                                 \
  do {                                                                          \
    cudaError_t kn_err_ = (call);                                               \
    if (kn_err_ != cudaSuccess) {                                               \
      cudaGetLastError(); /* clear non-sticky errors so later calls work */     \
      ::kn::cuda_fail(kn_err_, op, #call, __FILE__, __LINE__);                  \
    }                                                                           \
  } while (0)

#define KN_LAUNCH_CHECK(op) KN_CUDA_CHECK(cudaGetLastError(), op)

namespace kn {
// Grid size for grid-stride loops: enough blocks to fill the GPU several times, never more than
// the work needs (and never 0: callers return early for empty inputs).
inline unsigned grid_for(i64 n, int threads, i64 max_blocks = 65536) {
  i64 b = (n + threads - 1) / threads;
  if (b > max_blocks) b = max_blocks;
  if (b < 1) b = 1;
  return (unsigned)b;
}
// An attribute of the current device, or `fallback` when it cannot be read (allocator.cpp).
int device_attribute(cudaDeviceAttr attr, int fallback);
int num_sms();          // multiprocessor count of the current device (cached), allocator.cpp
int device_cc_major();  // compute capability major of the current device (cached; 0 unknown)

// ValueError when p is ordinary (pageable) host memory: a kernel reading it would fault and poison
// the CUDA context. Used for index tensors, which Python code easily leaves on the CPU. ~1 us.
inline void check_device_ptr(const char* op, const char* what, const void* p) {
  if (!p) return;
  cudaPointerAttributes a;
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return;  // unknown to the runtime: let the kernel run (it reports its own errors)
  }
  KN_CHECK(a.type != cudaMemoryTypeUnregistered, op, ": ", what,
           " is host (CPU) memory; move it to the GPU first (e.g. index.to('cuda'))");
}
}  // namespace kn
