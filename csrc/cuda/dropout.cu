// Dropout on the GPU (float32, contiguous): the CUDA twin of csrc/cpu/dropout.cpp, same bindings:
//   dropout_forward(x, y, mask, n, p, seed, offset)    keep element i iff u_i < 1 - p, with
//       u_i = philox_uniform_at(seed, offset, i); kept elements scaled by 1 / (1 - p); mask (may be
//       0) receives the scale or 0. p = 0 copies x (mask all ones); p = 1 zeroes y and mask.
//   rng_state (optional, default 0): DEVICE address of two uint64 [seed, base]; the kernel then
//       uses (rng_state[0], rng_state[1] + offset), read on the GPU when it runs, so a replayed CUDA
//       graph draws fresh masks after Python rewrites the pair (kernelnet.graphed).
//   dropout_backward(dy, mask, dx, n)                   dx = dy * mask
// The mask is bit-identical to the CPU backend's for the same (seed, offset): both evaluate the
// same Philox4x32-10 block (offset + i/4) from common/philox.h and the same float comparison.
// One thread per Philox block: it produces 4 words, used for elements 4b .. 4b+3.
#include "common/kn.h"
#include "common/philox.h"
#include "cuda/layer_common.cuh"

namespace kn {
namespace dropout_cuda {

constexpr int kThreads = 256;

__global__ void k_dropout_fwd(const float* __restrict__ x, float* __restrict__ y,
                              float* __restrict__ mask, i64 n, float keep, float scale,
                              std::uint64_t seed, std::uint64_t offset,
                              const std::uint64_t* __restrict__ rng_state) {
  if (rng_state) {
    seed = rng_state[0];
    offset += rng_state[1];
  }
  const i64 blocks = (n + 3) >> 2, stride = (i64)gridDim.x * blockDim.x;
  for (i64 b = (i64)blockIdx.x * blockDim.x + threadIdx.x; b < blocks; b += stride) {
    const Philox4 r = philox4x32_10(offset + (std::uint64_t)b, seed);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const i64 i = 4 * b + j;
      if (i < n) {
        const float m = philox_u01(r.v[j]) < keep ? scale : 0.f;
        y[i] = x[i] * m;
        if (mask) mask[i] = m;
      }
    }
  }
}

__global__ void k_fill_one(float* __restrict__ p, i64 n) {
  const i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) p[i] = 1.f;
}

__global__ void k_mul(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ c,
                      i64 n) {
  const i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) c[i] = a[i] * b[i];
}

}  // namespace dropout_cuda
}  // namespace kn

KN_BIND(dropout_cuda) {
  using kn::i64;
  using kn::uptr;
  using kn::ptr;
  namespace dc = kn::dropout_cuda;
  using kn::layer::blocks_for;
  m.def(
      "dropout_forward",
      [](uptr x, uptr y, uptr mask, i64 n, double p, std::uint64_t seed, std::uint64_t offset,
         uptr rng_state) {
        const char* op = "dropout_forward";
        KN_CHECK(n >= 0, op, ": negative n=", n);
        KN_CHECK(p >= 0.0 && p <= 1.0, op, ": p must be in [0, 1], got ", p);
        KN_CHECK(x && y, op, ": null pointer");
        if (n == 0) return;
        if (p == 0.0) {  // exact identity, as on the CPU
          if (x != y)
            KN_CUDA_CHECK(cudaMemcpyAsync(ptr<float>(y), ptr<const float>(x), sizeof(float) * n,
                                          cudaMemcpyDeviceToDevice, kn::kStream), op);
          if (mask) {
            dc::k_fill_one<<<blocks_for(n, dc::kThreads), dc::kThreads, 0, kn::kStream>>>(ptr<float>(mask), n);
            KN_LAUNCH_CHECK(op);
          }
          return;
        }
        // keep and scale rounded exactly as the CPU backend does (double, then float once)
        const float keep = (float)(1.0 - p);
        const float scale = p >= 1.0 ? 0.f : (float)(1.0 / (1.0 - p));
        dc::k_dropout_fwd<<<blocks_for((n + 3) / 4, dc::kThreads), dc::kThreads, 0, kn::kStream>>>(
            ptr<const float>(x), ptr<float>(y), ptr<float>(mask), n, keep, scale, seed, offset,
            ptr<const std::uint64_t>(rng_state));
        KN_LAUNCH_CHECK(op);
      },
      kn::py::arg("x"), kn::py::arg("y"), kn::py::arg("mask"), kn::py::arg("n"), kn::py::arg("p"), kn::py::arg("seed"), kn::py::arg("offset"),
      kn::py::arg("rng_state") = 0, KN_NOGIL);
  m.def(
      "dropout_backward",
      [](uptr dy, uptr mask, uptr dx, i64 n) {
        const char* op = "dropout_backward";
        KN_CHECK(n >= 0, op, ": negative n=", n);
        KN_CHECK(dy && mask && dx, op, ": null pointer (the mask is required)");
        if (n == 0) return;
        dc::k_mul<<<blocks_for(n, dc::kThreads), dc::kThreads, 0, kn::kStream>>>(
            ptr<const float>(dy), ptr<const float>(mask), ptr<float>(dx), n);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
}
