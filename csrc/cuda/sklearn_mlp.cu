// CUDA twins of csrc/cpu/sklearn_mlp.cpp (same names, same signatures, same semantics): the fused
// pieces of kernelnet.sklearn's MLP training step. See the CPU file for the contract.
// Self-contained (only common/kn.h): grid-stride loops on the legacy default stream, like every
// kernelnet CUDA kernel; scalar results (loss, ||W||^2) are reduced per block and atomically added
// into a zeroed device float, so nothing synchronises with the host.
#include <cuda_runtime.h>

#include <cmath>

#include "common/kn.h"
#include "cuda/cuda_check.h"

namespace kn {
namespace {

constexpr int kThreads = 256;

unsigned sk_grid(i64 n) {
  i64 g = (n + kThreads - 1) / kThreads;
  if (g > 4096) g = 4096;
  return (unsigned)(g < 1 ? 1 : g);
}

// Block-wide sum of v, added to *out by thread 0 (out may be null).
__device__ void block_add(float v, float* out) {
  __shared__ float sh[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0 && out) atomicAdd(out, v);
  }
}

__global__ void k_act_forward(int act, float* z, i64 n) {
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    float x = z[i];
    z[i] = act == 1 ? 1.f / (1.f + expf(-x)) : act == 2 ? tanhf(x) : (x > 0.f ? x : 0.f);
  }
}

__global__ void k_act_backward(int act, const float* z, float* d, i64 n) {
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    float zi = z[i];
    d[i] = act == 1 ? d[i] * zi * (1.f - zi) : act == 2 ? d[i] * (1.f - zi * zi) : (zi == 0.f ? 0.f : d[i]);
  }
}

// One thread per row (the output layer is narrow: classes or targets).
__global__ void k_output_loss(int kind, float* z, const float* y, const float* sw, float* d, i64 rows, i64 cols,
                              double log_eps, double log_1m_eps, float* loss_out) {
  float acc = 0.f;
  for (i64 r = (i64)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += (i64)gridDim.x * blockDim.x) {
    float* zr = z + r * cols;
    const float* yr = y ? y + r * cols : nullptr;
    double loss = 0.0;
    if (kind == 0) {
      if (yr)
        for (i64 c = 0; c < cols; ++c) {
          double diff = (double)zr[c] - yr[c];
          loss += diff * diff;
        }
      loss /= 2.0 * cols;
    } else if (kind == 3) {
      for (i64 c = 0; c < cols; ++c) {
        double p = exp((double)zr[c]);
        if (yr) loss += (yr[c] > 0 ? yr[c] * log(yr[c] / p) : 0.0) - yr[c] + p;
        zr[c] = (float)p;
      }
    } else if (kind == 1) {
      for (i64 c = 0; c < cols; ++c) {
        double x = zr[c];
        double sp_neg = x < 0 ? -x + log1p(exp(x)) : log1p(exp(-x));
        double sp_pos = sp_neg + x;
        if (yr) loss -= yr[c] * fmin(fmax(-sp_neg, log_eps), log_1m_eps) +
                        (1.0 - yr[c]) * fmin(fmax(-sp_pos, log_eps), log_1m_eps);
        zr[c] = (float)(1.0 / (1.0 + exp(-x)));
      }
    } else {
      float m = zr[0];
      for (i64 c = 1; c < cols; ++c) m = fmaxf(m, zr[c]);
      double s = 0.0;
      for (i64 c = 0; c < cols; ++c) s += exp((double)zr[c] - m);
      double lse = log(s);
      for (i64 c = 0; c < cols; ++c) {
        double lp = (double)zr[c] - m - lse;
        if (yr && yr[c] != 0.f) loss -= yr[c] * fmin(fmax(lp, log_eps), log_1m_eps);
        zr[c] = (float)exp(lp);
      }
    }
    if (!yr) continue;
    const float w = sw ? sw[r] : 1.f;
    if (d)
      for (i64 c = 0; c < cols; ++c) d[r * cols + c] = (zr[c] - yr[c]) * w;
    acc += (float)(loss * w);
  }
  block_add(acc, loss_out);
}

__global__ void k_adam(float* p, const float* g, float* m, float* v, i64 n, i64 n_decay, float gs, float wd, float lr,
                       float b1, float b2, float eps, float* sq_out) {
  float acc = 0.f;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    float pi = p[i], gi = g[i] * gs;
    if (i < n_decay) {
      gi += wd * pi;
      acc += pi * pi;
    }
    float mi = b1 * m[i] + (1.f - b1) * gi;
    float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - lr * mi / (sqrtf(vi) + eps);
  }
  block_add(acc, sq_out);
}

__global__ void k_sgd(float* p, const float* g, float* vel, i64 n, i64 n_decay, float gs, float wd, float lr, float mu,
                      bool nesterov, float* sq_out) {
  float acc = 0.f;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    float pi = p[i], gi = g[i] * gs;
    if (i < n_decay) {
      gi += wd * pi;
      acc += pi * pi;
    }
    float vi = mu * vel[i] - lr * gi;
    vel[i] = vi;
    p[i] = pi + (nesterov ? mu * vi - lr * gi : vi);
  }
  block_add(acc, sq_out);
}

void zero_scalar(uptr p, const char* op) {
  if (p) KN_CUDA_CHECK(cudaMemsetAsync(ptr<float>(p), 0, sizeof(float), kStream), op);
}

void act_forward(int act, uptr z, i64 n) {
  KN_CHECK(n >= 0, "sk_act_forward: negative size");
  KN_CHECK(act >= 0 && act <= 3, "sk_act_forward: unknown activation code ", act);
  if (act == 0 || n == 0) return;
  k_act_forward<<<sk_grid(n), kThreads, 0, kStream>>>(act, ptr<float>(z), n);
  KN_LAUNCH_CHECK("sk_act_forward");
}

void act_backward(int act, uptr z, uptr d, i64 n) {
  KN_CHECK(n >= 0, "sk_act_backward: negative size");
  KN_CHECK(act >= 0 && act <= 3, "sk_act_backward: unknown activation code ", act);
  if (act == 0 || n == 0) return;
  k_act_backward<<<sk_grid(n), kThreads, 0, kStream>>>(act, ptr<const float>(z), ptr<float>(d), n);
  KN_LAUNCH_CHECK("sk_act_backward");
}

void output_loss(int kind, uptr z, uptr y, uptr sw, uptr d, i64 rows, i64 cols, double eps, uptr loss_out) {
  KN_CHECK(rows >= 0 && cols > 0, "sk_output_loss: bad shape ", rows, "x", cols);
  KN_CHECK(kind >= 0 && kind <= 3, "sk_output_loss: unknown output kind ", kind);
  zero_scalar(loss_out, "sk_output_loss");
  if (rows == 0) return;
  k_output_loss<<<sk_grid(rows), kThreads, 0, kStream>>>(kind, ptr<float>(z), ptr<const float>(y), ptr<const float>(sw),
                                               ptr<float>(d), rows, cols, std::log(eps), std::log1p(-eps),
                                               ptr<float>(loss_out));
  KN_LAUNCH_CHECK("sk_output_loss");
}

void adam_step(uptr p, uptr g, uptr m, uptr v, i64 n, i64 n_decay, double gscale, double l2, double lr, double b1,
               double b2, double eps, uptr sq_out) {
  KN_CHECK(n >= 0 && n_decay >= 0 && n_decay <= n, "sk_adam_step: bad sizes n=", n, " n_decay=", n_decay);
  zero_scalar(sq_out, "sk_adam_step");
  if (n == 0) return;
  k_adam<<<sk_grid(n), kThreads, 0, kStream>>>(ptr<float>(p), ptr<const float>(g), ptr<float>(m), ptr<float>(v), n, n_decay,
                                     (float)gscale, (float)l2, (float)lr, (float)b1, (float)b2, (float)eps,
                                     ptr<float>(sq_out));
  KN_LAUNCH_CHECK("sk_adam_step");
}

void sgd_step(uptr p, uptr g, uptr vel, i64 n, i64 n_decay, double gscale, double l2, double lr, double momentum,
              bool nesterov, uptr sq_out) {
  KN_CHECK(n >= 0 && n_decay >= 0 && n_decay <= n, "sk_sgd_step: bad sizes n=", n, " n_decay=", n_decay);
  zero_scalar(sq_out, "sk_sgd_step");
  if (n == 0) return;
  k_sgd<<<sk_grid(n), kThreads, 0, kStream>>>(ptr<float>(p), ptr<const float>(g), ptr<float>(vel), n, n_decay, (float)gscale,
                                    (float)l2, (float)lr, (float)momentum, nesterov, ptr<float>(sq_out));
  KN_LAUNCH_CHECK("sk_sgd_step");
}

}  // namespace
}  // namespace kn

KN_BIND(sklearn_mlp) {
  using namespace kn;
  m.def("sk_act_forward", &act_forward, KN_NOGIL);
  m.def("sk_act_backward", &act_backward, KN_NOGIL);
  m.def("sk_output_loss", &output_loss, KN_NOGIL);
  m.def("sk_adam_step", &adam_step, KN_NOGIL);
  m.def("sk_sgd_step", &sgd_step, KN_NOGIL);
}
