// 2-D pooling on the GPU (NCHW, float32, contiguous): the CUDA twin of csrc/cpu/pool.cpp, with the
// same bindings, arguments and conventions (PyTorch's: indices are ih*W + iw inside the plane,
// NaN wins the max, windows clipped to the input, the same avg divisors).
//   pool2d_output_size(H, k, stride, pad, dil, ceil_mode) -> P
//   max_pool2d_forward(x, y, indices, N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw)
//   max_pool2d_backward(dy, indices, dx, N, C, H, W, P, Q)
//   avg_pool2d_forward(x, y, N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override)
//   avg_pool2d_backward(dy, dx, ...same...)
//   adaptive_avg_pool2d_forward(x, y, N, C, H, W, P, Q) / adaptive_avg_pool2d_backward(dy, dx, ...)
//
// Forward: one thread per output element (grid-stride), reads its window (L1/L2 serve the
// overlap). Backward: dx is zeroed, then one thread per output element adds its share into dx with
// atomicAdd: for the usual non-overlapping windows (2x2 stride 2) no two threads touch the same
// address, so the atomics never contend; overlapping windows stay correct.
#include <algorithm>
#include <cmath>

#include "common/kn.h"
#include "common/layer_geometry.h"
#include "cuda/layer_common.cuh"

namespace kn {
namespace pool_cuda {

// The CPU backend's checks and messages (common/layer_geometry.h), plus the 32-bit index limits.
PoolGeom check_pool_cuda(const char* op, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q, i64 kh, i64 kw,
                         i64 sh, i64 sw, i64 ph, i64 pw, i64 dh, i64 dw) {
  const PoolGeom g = check_pool(op, N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw);
  KN_CHECK(H * W < layer::kIntMax && P * Q < layer::kIntMax && kh * dh < layer::kIntMax / 4 &&
               kw * dw < layer::kIntMax / 4 && P * sh < layer::kIntMax / 2 && Q * sw < layer::kIntMax / 2 &&
               ph < layer::kIntMax / 4 && pw < layer::kIntMax / 4,
           op, ": plane too large for CUDA pooling (H=", H, " W=", W, " P=", P, " Q=", Q, ")");
  return g;
}

// Plane geometry in int for the kernels (planes < 2^31 elements; the plane count is i64).
struct G32 {
  int H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw;
};
G32 g32(const PoolGeom& g) {
  return G32{(int)g.H, (int)g.W, (int)g.P, (int)g.Q, (int)g.kh, (int)g.kw,
             (int)g.sh, (int)g.sw, (int)g.ph, (int)g.pw, (int)g.dh, (int)g.dw};
}

constexpr int kThreads = 256;

__global__ void k_max_fwd(const float* __restrict__ x, float* __restrict__ y, i64* __restrict__ ind,
                          i64 total, G32 g) {
  const i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 o = (i64)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += stride) {
    const int PQ = g.P * g.Q;
    const i64 plane = o / PQ;
    const int pq = (int)(o - plane * PQ), p = pq / g.Q, q = pq - p * g.Q;
    const float* xp = x + plane * g.H * g.W;
    const int h0 = p * g.sh - g.ph, w0 = q * g.sw - g.pw;
    // first/last kernel taps inside the input (dilation skips rows/columns)
    const int r0 = h0 < 0 ? (-h0 + g.dh - 1) / g.dh : 0;
    const int r1 = min(g.kh, (g.H - h0 + g.dh - 1) / g.dh);
    const int s0 = w0 < 0 ? (-w0 + g.dw - 1) / g.dw : 0;
    const int s1 = min(g.kw, (g.W - w0 + g.dw - 1) / g.dw);
    float best = -INFINITY;
    int bi = min(max(h0 + r0 * g.dh, 0), g.H - 1) * g.W + min(max(w0 + s0 * g.dw, 0), g.W - 1);
    bool nan = false;
    for (int r = r0; r < r1 && !nan; ++r) {
      const int ih = h0 + r * g.dh;
      for (int s = s0; s < s1; ++s) {
        const int iw = w0 + s * g.dw;
        const float v = __ldg(xp + ih * g.W + iw);
        if (v > best || isnan(v)) {
          best = v;
          bi = ih * g.W + iw;
          if (isnan(v)) { nan = true; break; }  // NaN propagates: nothing beats it
        }
      }
    }
    y[o] = best;
    if (ind) ind[o] = bi;
  }
}

__global__ void k_max_bwd(const float* __restrict__ dy, const i64* __restrict__ ind, float* dx,
                          i64 total, int PQ, int HW) {
  const i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 o = (i64)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += stride) {
    const i64 plane = o / PQ;
    const i64 k = ind[o];
    if (k >= 0 && k < HW) atomicAdd(dx + plane * HW + k, dy[o]);  // indices come from forward
  }
}

// The averaging window of output (p, q): clipped bounds and PyTorch's divisor (as on the CPU).
struct AvgWin {
  int h0, h1, w0, w1;
  float inv;
};
__device__ __forceinline__ AvgWin avg_window(const G32& g, int p, int q, bool include_pad, i64 divo) {
  int h0 = p * g.sh - g.ph, w0 = q * g.sw - g.pw;
  int h1 = min(h0 + g.kh, g.H + g.ph), w1 = min(w0 + g.kw, g.W + g.pw);
  i64 padded = (i64)(h1 - h0) * (w1 - w0);
  h0 = max(h0, 0);
  w0 = max(w0, 0);
  h1 = min(h1, g.H);
  w1 = min(w1, g.W);
  i64 div = divo ? divo : include_pad ? padded : (i64)(h1 - h0) * (w1 - w0);
  return AvgWin{h0, h1, w0, w1, div > 0 ? 1.f / (float)div : 0.f};
}

__global__ void k_avg_fwd(const float* __restrict__ x, float* __restrict__ y, i64 total, G32 g,
                          bool include_pad, i64 divo) {
  const i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 o = (i64)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += stride) {
    const int PQ = g.P * g.Q;
    const i64 plane = o / PQ;
    const int pq = (int)(o - plane * PQ), p = pq / g.Q, q = pq - p * g.Q;
    const float* xp = x + plane * g.H * g.W;
    AvgWin a = avg_window(g, p, q, include_pad, divo);
    float s = 0.f;
    for (int ih = a.h0; ih < a.h1; ++ih)
      for (int iw = a.w0; iw < a.w1; ++iw) s += __ldg(xp + ih * g.W + iw);
    y[o] = s * a.inv;
  }
}

__global__ void k_avg_bwd(const float* __restrict__ dy, float* dx, i64 total, G32 g,
                          bool include_pad, i64 divo) {
  const i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 o = (i64)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += stride) {
    const int PQ = g.P * g.Q;
    const i64 plane = o / PQ;
    const int pq = (int)(o - plane * PQ), p = pq / g.Q, q = pq - p * g.Q;
    float* dxp = dx + plane * g.H * g.W;
    AvgWin a = avg_window(g, p, q, include_pad, divo);
    const float v = dy[o] * a.inv;
    for (int ih = a.h0; ih < a.h1; ++ih)
      for (int iw = a.w0; iw < a.w1; ++iw) atomicAdd(dxp + ih * g.W + iw, v);
  }
}

__device__ __forceinline__ int adaptive_start(int p, int H, int P) { return (int)(((i64)p * H) / P); }
__device__ __forceinline__ int adaptive_end(int p, int H, int P) {
  return (int)(((i64)(p + 1) * H + P - 1) / P);
}

template <bool Backward>
__global__ void k_adaptive(const float* __restrict__ in, float* out, i64 total, int H, int W, int P,
                           int Q) {
  const i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 o = (i64)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += stride) {
    const int PQ = P * Q;
    const i64 plane = o / PQ;
    const int pq = (int)(o - plane * PQ), p = pq / Q, q = pq - p * Q;
    const int h0 = adaptive_start(p, H, P), h1 = adaptive_end(p, H, P);
    const int w0 = adaptive_start(q, W, Q), w1 = adaptive_end(q, W, Q);
    const float inv = 1.f / (float)((h1 - h0) * (w1 - w0));
    if (!Backward) {
      const float* xp = in + plane * H * W;
      float s = 0.f;
      for (int ih = h0; ih < h1; ++ih)
        for (int iw = w0; iw < w1; ++iw) s += __ldg(xp + ih * W + iw);
      out[o] = s * inv;
    } else {
      float* dxp = out + plane * H * W;
      const float v = in[o] * inv;
      for (int ih = h0; ih < h1; ++ih)
        for (int iw = w0; iw < w1; ++iw) atomicAdd(dxp + ih * W + iw, v);
    }
  }
}

void zero(float* p, i64 n, const char* op) {
  if (n > 0) KN_CUDA_CHECK(cudaMemsetAsync(p, 0, sizeof(float) * n, kStream), op);
}

}  // namespace pool_cuda
}  // namespace kn

KN_BIND(pool_cuda) {
  using kn::i64;
  using kn::uptr;
  using kn::ptr;
  namespace py = kn::py;
  namespace pc = kn::pool_cuda;
  using kn::layer::blocks_for;
  m.def("pool2d_output_size", &kn::pool_out, "PyTorch's pooling output size (ceil_mode included)",
        py::arg("H"), py::arg("k"), py::arg("stride"), py::arg("pad"), py::arg("dil"),
        py::arg("ceil_mode"));
  m.def(
      "max_pool2d_forward",
      [](uptr x, uptr y, uptr ind, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q, i64 kh, i64 kw, i64 sh,
         i64 sw, i64 ph, i64 pw, i64 dh, i64 dw) {
        const char* op = "max_pool2d_forward";
        auto g = pc::check_pool_cuda(op, N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw);
        KN_CHECK(x && y, op, ": null pointer");
        const i64 total = N * C * P * Q;
        if (total == 0) return;
        pc::k_max_fwd<<<blocks_for(total, pc::kThreads), pc::kThreads, 0, kn::kStream>>>(
            ptr<const float>(x), ptr<float>(y), ptr<i64>(ind), total, pc::g32(g));
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
  m.def(
      "max_pool2d_backward",
      [](uptr dy, uptr ind, uptr dx, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q) {
        const char* op = "max_pool2d_backward";
        pc::check_pool_cuda(op, N, C, H, W, P, Q, 1, 1, 1, 1, 0, 0, 1, 1);
        KN_CHECK(dy && ind && dx, op, ": null pointer (indices are required)");
        kn::check_device_ptr(op, "indices", ptr<const void>(ind));
        pc::zero(ptr<float>(dx), N * C * H * W, op);
        const i64 total = N * C * P * Q;
        if (total == 0) return;
        pc::k_max_bwd<<<blocks_for(total, pc::kThreads), pc::kThreads, 0, kn::kStream>>>(
            ptr<const float>(dy), ptr<const i64>(ind), ptr<float>(dx), total, (int)(P * Q), (int)(H * W));
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
  m.def(
      "avg_pool2d_forward",
      [](uptr x, uptr y, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q, i64 kh, i64 kw, i64 sh, i64 sw,
         i64 ph, i64 pw, bool include_pad, i64 divo) {
        const char* op = "avg_pool2d_forward";
        auto g = pc::check_pool_cuda(op, N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, 1, 1);
        KN_CHECK(divo >= 0, op, ": divisor_override must be positive, got ", divo);
        KN_CHECK(x && y, op, ": null pointer");
        const i64 total = N * C * P * Q;
        if (total == 0) return;
        pc::k_avg_fwd<<<blocks_for(total, pc::kThreads), pc::kThreads, 0, kn::kStream>>>(
            ptr<const float>(x), ptr<float>(y), total, pc::g32(g), include_pad, divo);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
  m.def(
      "avg_pool2d_backward",
      [](uptr dy, uptr dx, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q, i64 kh, i64 kw, i64 sh, i64 sw,
         i64 ph, i64 pw, bool include_pad, i64 divo) {
        const char* op = "avg_pool2d_backward";
        auto g = pc::check_pool_cuda(op, N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, 1, 1);
        KN_CHECK(divo >= 0, op, ": divisor_override must be positive, got ", divo);
        KN_CHECK(dy && dx, op, ": null pointer");
        pc::zero(ptr<float>(dx), N * C * H * W, op);
        const i64 total = N * C * P * Q;
        if (total == 0) return;
        pc::k_avg_bwd<<<blocks_for(total, pc::kThreads), pc::kThreads, 0, kn::kStream>>>(
            ptr<const float>(dy), ptr<float>(dx), total, pc::g32(g), include_pad, divo);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
  m.def(
      "adaptive_avg_pool2d_forward",
      [](uptr x, uptr y, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q) {
        const char* op = "adaptive_avg_pool2d_forward";
        pc::check_pool_cuda(op, N, C, H, W, P, Q, 1, 1, 1, 1, 0, 0, 1, 1);
        KN_CHECK(x && y, op, ": null pointer");
        const i64 total = N * C * P * Q;
        if (total == 0) return;
        pc::k_adaptive<false><<<blocks_for(total, pc::kThreads), pc::kThreads, 0, kn::kStream>>>(
            ptr<const float>(x), ptr<float>(y), total, (int)H, (int)W, (int)P, (int)Q);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
  m.def(
      "adaptive_avg_pool2d_backward",
      [](uptr dy, uptr dx, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q) {
        const char* op = "adaptive_avg_pool2d_backward";
        pc::check_pool_cuda(op, N, C, H, W, P, Q, 1, 1, 1, 1, 0, 0, 1, 1);
        KN_CHECK(dy && dx, op, ": null pointer");
        pc::zero(ptr<float>(dx), N * C * H * W, op);
        const i64 total = N * C * P * Q;
        if (total == 0) return;
        pc::k_adaptive<true><<<blocks_for(total, pc::kThreads), pc::kThreads, 0, kn::kStream>>>(
            ptr<const float>(dy), ptr<float>(dx), total, (int)H, (int)W, (int)P, (int)Q);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
}
