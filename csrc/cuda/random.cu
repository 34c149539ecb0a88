// Philox random draws on the GPU. Each thread computes ONE Philox block and writes the elements
// that block feeds (4 uniforms / masks or 2 normals), with the stream layout of
// csrc/common/philox.h, so the numbers equal the CPU backend's for the same (seed, offset)
// (uniform/bernoulli bit for bit; normal up to the last-bit rounding of logf/cosf/sqrtf).
#include "common/philox.h"
#include "cuda/cuda_check.h"

namespace kn {
namespace {

constexpr int kThreads = 256;

// kind 0: uniform low + span * u; kind 1: mask (u < p_keep) ? scale : 0
__global__ void k_philox_u(float* out, i64 n, uint64_t seed, uint64_t offset, float a, float b, int kind) {
  i64 nb = (n + 3) / 4, stride = (i64)gridDim.x * blockDim.x;
  for (i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x; t < nb; t += stride) {
    Philox4 r = philox4x32_10(offset + (uint64_t)t, seed);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      i64 i = t * 4 + w;
      if (i < n) {
        float u = philox_u01(r.v[w]);
        // __fmul_rn/__fadd_rn: nvcc would contract a + b*u into one FMA (one rounding); the CPU
        // rounds the product and the sum separately, and the streams must agree bit for bit
        out[i] = kind == 0 ? __fadd_rn(a, __fmul_rn(b, u)) : (u < a ? b : 0.f);
      }
    }
  }
}

__global__ void k_philox_normal(float* out, i64 n, uint64_t seed, uint64_t offset, float mean, float sd) {
  i64 nb = (n + 1) / 2, stride = (i64)gridDim.x * blockDim.x;
  for (i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x; t < nb; t += stride) {
    Philox4 r = philox4x32_10(offset + (uint64_t)t, seed);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      i64 i = t * 2 + h;
      if (i < n) {
        float u1 = philox_u01_open0(r.v[2 * h]);
        float u2 = philox_u01(r.v[2 * h + 1]);
        out[i] = __fadd_rn(mean, __fmul_rn(sd, sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864769f * u2)));
      }
    }
  }
}

unsigned grid(i64 work) { return grid_for(work, kThreads, (i64)num_sms() * 16); }

void philox_uniform(uptr out, i64 n, uint64_t seed, uint64_t offset, double low, double high) {
  KN_CHECK(n >= 0, "philox_uniform: negative size ", n);
  if (n == 0) return;
  k_philox_u<<<grid((n + 3) / 4), kThreads, 0, kStream>>>(ptr<float>(out), n, seed, offset, (float)low,
                                                          (float)(high - low), 0);
  KN_LAUNCH_CHECK("philox_uniform");
}

void philox_normal(uptr out, i64 n, uint64_t seed, uint64_t offset, double mean, double sd) {
  KN_CHECK(n >= 0, "philox_normal: negative size ", n);
  if (n == 0) return;
  k_philox_normal<<<grid((n + 1) / 2), kThreads, 0, kStream>>>(ptr<float>(out), n, seed, offset,
                                                               (float)mean, (float)sd);
  KN_LAUNCH_CHECK("philox_normal");
}

void philox_bernoulli_mask(uptr out, i64 n, uint64_t seed, uint64_t offset, double p_keep, double scale) {
  KN_CHECK(n >= 0, "philox_bernoulli_mask: negative size ", n);
  if (n == 0) return;
  k_philox_u<<<grid((n + 3) / 4), kThreads, 0, kStream>>>(ptr<float>(out), n, seed, offset,
                                                          (float)p_keep, (float)scale, 1);
  KN_LAUNCH_CHECK("philox_bernoulli_mask");
}

}  // namespace
}  // namespace kn

KN_BIND(random) {
  using namespace kn;
  m.def("philox_uniform", &philox_uniform, py::arg("out"), py::arg("n"), py::arg("seed"),
        py::arg("offset"), py::arg("low"), py::arg("high"), KN_NOGIL);
  m.def("philox_normal", &philox_normal, py::arg("out"), py::arg("n"), py::arg("seed"),
        py::arg("offset"), py::arg("mean"), py::arg("std"), KN_NOGIL);
  m.def("philox_bernoulli_mask", &philox_bernoulli_mask, py::arg("out"), py::arg("n"), py::arg("seed"),
        py::arg("offset"), py::arg("p_keep"), py::arg("scale"), KN_NOGIL);
}
