// Fused softmax + cross-entropy and NLL losses on the GPU: the CUDA twins of the loss functions in
// csrc/cpu/softmax_loss.cpp, with the same bindings and arguments (see that file for the formulas):
//   cross_entropy_forward(logits, target, weight, loss, lse, row_weight, rows, cols, ignore_index,
//                         label_smoothing)
//   cross_entropy_backward(logits, target, weight, lse, grad, grad_stride, dlogits, rows, cols,
//                          ignore_index, label_smoothing)
//   nll_loss_forward(logp, target, weight, loss, row_weight, rows, cols, ignore_index)
//   nll_loss_backward(target, weight, grad, grad_stride, dlogp, rows, cols, ignore_index)
// (softmax_forward / log_softmax_forward and their backward are part 1's csrc/cuda/softmax.cu.)
//
// One warp per row: classification heads have few classes (10 for the course), so a warp covers
// a row in one or a few strided passes, and the row max / sum-of-exp are warp shuffles with no
// shared memory and no barrier. The cross-entropy backward recomputes p = exp(z - lse) from the
// saved lse, so forward never writes the softmax matrix.
//
// Targets live in device memory, so unlike the CPU backend they cannot be range-checked before the
// launch without a device-to-host copy and a synchronisation (which would also break CUDA-graph
// capture). Out-of-range targets never cause an out-of-bounds access: their rows get loss = NaN
// (forward) and a NaN gradient row (backward), so the error is visible at the next loss.item().
// The Python layer may check the range itself where it can afford the sync.
#include <cmath>

#include "common/kn.h"
#include "cuda/layer_common.cuh"

namespace kn {
namespace loss_cuda {

constexpr int kWarpsPerBlock = 8;

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, d));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
}

// log-sum-exp of one row by one warp (all lanes return it). All -inf -> -inf; any +inf -> +inf;
// NaN propagates (fmaxf drops NaN, so the sum step re-introduces it via exp(NaN)).
__device__ __forceinline__ float row_lse(const float* zr, int cols, int lane) {
  float m = -INFINITY;
  for (int c = lane; c < cols; c += 32) m = fmaxf(m, zr[c]);
  m = warp_max(m);
  if (isinf(m)) return m;
  float s = 0.f;
  for (int c = lane; c < cols; c += 32) s += expf(zr[c] - m);
  s = warp_sum(s);
  return m + logf(s);
}

__device__ __forceinline__ float weight_sum(const float* w, int cols, int lane) {
  if (!w) return (float)cols;
  float s = 0.f;
  for (int c = lane; c < cols; c += 32) s += w[c];
  return warp_sum(s);
}

__global__ void k_ce_fwd(const float* __restrict__ z, const i64* __restrict__ t,
                         const float* __restrict__ w, float* __restrict__ loss,
                         float* __restrict__ lse_out, float* __restrict__ roww, i64 rows, int cols,
                         i64 ignore, float eps) {
  const int lane = threadIdx.x & 31;
  const i64 warps = (i64)gridDim.x * (blockDim.x >> 5);
  const float wsum = eps != 0.f ? weight_sum(w, cols, lane) : 0.f;  // once, by every warp's lanes
  for (i64 r = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    const float* zr = z + r * cols;
    const float lse = row_lse(zr, cols, lane);
    const i64 tr = t[r];
    float l = 0.f, wt = 0.f;
    if (tr != ignore) {
      if (tr < 0 || tr >= cols) {
        l = NAN;  // bad label: see the file comment
        wt = NAN;
      } else {
        wt = w ? w[tr] : 1.f;
        l = (1.f - eps) * wt * (lse - zr[tr]);
        if (eps != 0.f) {
          float wz = 0.f;
          for (int c = lane; c < cols; c += 32) wz += (w ? w[c] : 1.f) * zr[c];
          wz = warp_sum(wz);
          l += eps / (float)cols * (wsum * lse - wz);
        }
      }
    }
    if (lane == 0) {
      loss[r] = l;
      if (lse_out) lse_out[r] = lse;
      if (roww) roww[r] = wt;
    }
  }
}

__global__ void k_ce_bwd(const float* __restrict__ z, const i64* __restrict__ t,
                         const float* __restrict__ w, const float* __restrict__ lse,
                         const float* __restrict__ grad, i64 gstride, float* __restrict__ dz,
                         i64 rows, int cols, i64 ignore, float eps) {
  const int lane = threadIdx.x & 31;
  const i64 warps = (i64)gridDim.x * (blockDim.x >> 5);
  const float wsum = eps != 0.f ? weight_sum(w, cols, lane) : 0.f;  // all lanes of all warps
  for (i64 r = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    const float* zr = z + r * cols;
    float* dr = dz + r * cols;
    const i64 tr = t[r];
    if (tr == ignore) {
      for (int c = lane; c < cols; c += 32) dr[c] = 0.f;
      continue;
    }
    if (tr < 0 || tr >= cols) {
      for (int c = lane; c < cols; c += 32) dr[c] = NAN;
      continue;
    }
    const float g = grad[r * gstride];
    const float wt = w ? w[tr] : 1.f;
    const float lr = lse ? lse[r] : row_lse(zr, cols, lane);
    const float a = g * ((1.f - eps) * wt + eps / (float)cols * wsum);
    const float b = g * eps / (float)cols;
    const float at_t = g * (1.f - eps) * wt;
    for (int c = lane; c < cols; c += 32) {
      const float p = expf(zr[c] - lr);
      float d = a * p - b * (w ? w[c] : 1.f);
      if (c == tr) d -= at_t;
      dr[c] = d;
    }
  }
}

__global__ void k_nll_fwd(const float* __restrict__ lp, const i64* __restrict__ t,
                          const float* __restrict__ w, float* __restrict__ loss,
                          float* __restrict__ roww, i64 rows, int cols, i64 ignore) {
  const i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 r = (i64)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += stride) {
    const i64 tr = t[r];
    float l = 0.f, wt = 0.f;
    if (tr != ignore) {
      if (tr < 0 || tr >= cols) {
        l = wt = NAN;
      } else {
        wt = w ? w[tr] : 1.f;
        l = -wt * lp[r * cols + tr];
      }
    }
    loss[r] = l;
    if (roww) roww[r] = wt;
  }
}

// One thread per element of dlogp (it is overwritten whole: zeros except the target column).
__global__ void k_nll_bwd(const i64* __restrict__ t, const float* __restrict__ w,
                          const float* __restrict__ grad, i64 gstride, float* __restrict__ dlp,
                          i64 rows, int cols, i64 ignore) {
  const i64 total = rows * cols, stride = (i64)gridDim.x * blockDim.x;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    const i64 r = i / cols;
    const int c = (int)(i - r * cols);
    const i64 tr = t[r];
    float d = 0.f;
    if (tr != ignore) {
      if (tr < 0 || tr >= cols) d = NAN;
      else if (c == tr) d = -grad[r * gstride] * (w ? w[tr] : 1.f);
    }
    dlp[i] = d;
  }
}

void check_rc(const char* op, i64 rows, i64 cols) {
  KN_CHECK(rows >= 0 && cols >= 1, op, ": bad sizes rows=", rows, " cols=", cols);
  KN_CHECK(cols < layer::kIntMax, op, ": cols=", cols, " too large");
}

unsigned row_blocks(i64 rows) {
  return layer::blocks_for(rows, kWarpsPerBlock, 32);  // "threads" = warps per block here
}

}  // namespace loss_cuda
}  // namespace kn

KN_BIND(softmax_loss_cuda) {
  using kn::i64;
  using kn::uptr;
  using kn::ptr;
  namespace lc = kn::loss_cuda;
  constexpr int TPB = lc::kWarpsPerBlock * 32;
  m.def(
      "cross_entropy_forward",
      [](uptr z, uptr t, uptr w, uptr loss, uptr lse, uptr roww, i64 rows, i64 cols, i64 ignore,
         float eps) {
        const char* op = "cross_entropy_forward";
        lc::check_rc(op, rows, cols);
        KN_CHECK(eps >= 0.f && eps <= 1.f, op, ": label_smoothing must be in [0, 1], got ", eps);
        KN_CHECK(z && t && loss, op, ": null pointer");
        kn::check_device_ptr(op, "target", ptr<const void>(t));
        kn::check_device_ptr(op, "weight", ptr<const void>(w));
        if (rows == 0) return;
        lc::k_ce_fwd<<<lc::row_blocks(rows), TPB, 0, kn::kStream>>>(
            ptr<const float>(z), ptr<const i64>(t), ptr<const float>(w), ptr<float>(loss),
            ptr<float>(lse), ptr<float>(roww), rows, (int)cols, ignore, eps);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
  m.def(
      "cross_entropy_backward",
      [](uptr z, uptr t, uptr w, uptr lse, uptr grad, i64 gstride, uptr dz, i64 rows, i64 cols,
         i64 ignore, float eps) {
        const char* op = "cross_entropy_backward";
        lc::check_rc(op, rows, cols);
        KN_CHECK(gstride == 0 || gstride == 1, op, ": grad_stride must be 0 or 1");
        KN_CHECK(z && t && grad && dz, op, ": null pointer");
        kn::check_device_ptr(op, "target", ptr<const void>(t));
        kn::check_device_ptr(op, "weight", ptr<const void>(w));
        kn::check_device_ptr(op, "grad", ptr<const void>(grad));
        if (rows == 0) return;
        lc::k_ce_bwd<<<lc::row_blocks(rows), TPB, 0, kn::kStream>>>(
            ptr<const float>(z), ptr<const i64>(t), ptr<const float>(w), ptr<const float>(lse),
            ptr<const float>(grad), gstride, ptr<float>(dz), rows, (int)cols, ignore, eps);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
  m.def(
      "nll_loss_forward",
      [](uptr lp, uptr t, uptr w, uptr loss, uptr roww, i64 rows, i64 cols, i64 ignore) {
        const char* op = "nll_loss_forward";
        lc::check_rc(op, rows, cols);
        KN_CHECK(lp && t && loss, op, ": null pointer");
        kn::check_device_ptr(op, "target", ptr<const void>(t));
        kn::check_device_ptr(op, "weight", ptr<const void>(w));
        if (rows == 0) return;
        lc::k_nll_fwd<<<kn::layer::blocks_for(rows, 256), 256, 0, kn::kStream>>>(
            ptr<const float>(lp), ptr<const i64>(t), ptr<const float>(w), ptr<float>(loss),
            ptr<float>(roww), rows, (int)cols, ignore);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
  m.def(
      "nll_loss_backward",
      [](uptr t, uptr w, uptr grad, i64 gstride, uptr dlp, i64 rows, i64 cols, i64 ignore) {
        const char* op = "nll_loss_backward";
        lc::check_rc(op, rows, cols);
        KN_CHECK(gstride == 0 || gstride == 1, op, ": grad_stride must be 0 or 1");
        KN_CHECK(t && grad && dlp, op, ": null pointer");
        kn::check_device_ptr(op, "target", ptr<const void>(t));
        kn::check_device_ptr(op, "weight", ptr<const void>(w));
        kn::check_device_ptr(op, "grad", ptr<const void>(grad));
        if (rows == 0) return;
        lc::k_nll_bwd<<<kn::layer::blocks_for(rows * cols, 256), 256, 0, kn::kStream>>>(
            ptr<const i64>(t), ptr<const float>(w), ptr<const float>(grad), gstride, ptr<float>(dlp),
            rows, (int)cols, ignore);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
}
