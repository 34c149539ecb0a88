// Batch normalisation and layer normalisation on the GPU (float32, contiguous): the CUDA twin of
// csrc/cpu/norm.cpp, same bindings and arguments (see there for the formulas):
//   batch_norm_forward(x, y, weight, bias, mean, invstd, running_mean, running_var,
//                      outer, C, inner, training, momentum, eps)
//   batch_norm_backward(x, dy, mean, invstd, weight, dx, dweight, dbias, outer, C, inner, training)
//   layer_norm_forward(x, y, weight, bias, mean, rstd, rows, D, eps)
//   layer_norm_backward(x, dy, mean, rstd, weight, dx, dweight, dbias, rows, D)
//
// BatchNorm: one block per channel does the whole job for its channel in one launch: the two
// statistics passes (sum, then centred squares, in double, as on the CPU), the running-statistics
// update, and the affine pass (its re-reads of the channel come from L2). Backward likewise: the
// two sums, then dx. LayerNorm: one block per row, the same shape of work; the weight and bias
// gradients sum columns over blocks of rows and add the blocks' partial sums with float atomics
// when the rows are split (so their last bits depend on block order, like conv's weight gradient).
#include <algorithm>

#include "common/kn.h"
#include "common/norm_args.h"
#include "cuda/layer_common.cuh"

namespace kn {
namespace norm_cuda {

constexpr int kThreads = 256;    // BatchNorm: one block per channel
constexpr int kRowThreads = 128;  // LayerNorm: one block per row

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sums each v[k] over the block; every thread gets the totals (warps added in a fixed order, so
// the result does not depend on scheduling). red: shared double[NV * 32]. blockDim.x % 32 == 0.
template <int NV>
__device__ __forceinline__ void block_sum(double (&v)[NV], double* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
  for (int k = 0; k < NV; ++k) v[k] = warp_sum(v[k]);
  __syncthreads();  // red may still be read by a previous block_sum
  if (lane == 0)
#pragma unroll
    for (int k = 0; k < NV; ++k) red[k * 32 + warp] = v[k];
  __syncthreads();
#pragma unroll
  for (int k = 0; k < NV; ++k) {
    double s = 0.0;
    for (int w = 0; w < nwarps; ++w) s += red[k * 32 + w];
    v[k] = s;
  }
}

// Element i (0 <= i < outer*inner) of channel c in x viewed [outer, C, inner].
struct ChannelIndex {
  int C, inner;
  layer::FastDiv div_inner;
  __device__ __forceinline__ int operator()(int i, int c) const {
    const int o = div_inner.div(i);
    return (o * C + c) * inner + (i - o * inner);
  }
};

__global__ void k_bn_forward(const float* __restrict__ x, float* __restrict__ y,
                             const float* __restrict__ w, const float* __restrict__ b,
                             float* __restrict__ mean, float* __restrict__ invstd,
                             float* __restrict__ run_mean, float* __restrict__ run_var, int n,
                             ChannelIndex at, bool training, double momentum, double eps) {
  __shared__ double red[32];
  const int c = blockIdx.x;
  float mu, is;
  if (training) {
    double s[1] = {0.0};
    for (int i = threadIdx.x; i < n; i += blockDim.x) s[0] += x[at(i, c)];
    block_sum<1>(s, red);
    const double m = s[0] / n;
    double q[1] = {0.0};
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const double d = x[at(i, c)] - m;
      q[0] += d * d;
    }
    block_sum<1>(q, red);
    const double var = q[0] / n;
    mu = (float)m;
    is = (float)(1.0 / sqrt(var + eps));
    if (threadIdx.x == 0) {
      if (run_mean) run_mean[c] = (float)((1.0 - momentum) * run_mean[c] + momentum * m);
      if (run_var) {
        const double unbiased = n > 1 ? q[0] / (n - 1) : var;
        run_var[c] = (float)((1.0 - momentum) * run_var[c] + momentum * unbiased);
      }
    }
  } else {
    mu = run_mean[c];
    is = (float)(1.0 / sqrt((double)run_var[c] + eps));
  }
  if (threadIdx.x == 0) {
    mean[c] = mu;
    invstd[c] = is;
  }
  const float sc = is * (w ? w[c] : 1.f), sh = b ? b[c] : 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int k = at(i, c);
    y[k] = (x[k] - mu) * sc + sh;
  }
}

__global__ void k_bn_backward(const float* __restrict__ x, const float* __restrict__ dy,
                              const float* __restrict__ mean, const float* __restrict__ invstd,
                              const float* __restrict__ w, float* __restrict__ dx,
                              float* __restrict__ dw, float* __restrict__ db, int n, ChannelIndex at,
                              bool training, bool need_sums) {
  __shared__ double red[64];
  const int c = blockIdx.x;
  const float mu = mean[c], is = invstd[c];
  double s[2] = {0.0, 0.0};  // sum(dy), sum(dy (x - mean))
  if (need_sums) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const int k = at(i, c);
      const double g = dy[k];
      s[0] += g;
      s[1] += g * ((double)x[k] - (double)mu);
    }
    block_sum<2>(s, red);
  }
  if (threadIdx.x == 0) {
    if (dw) dw[c] = (float)(s[1] * is);
    if (db) db[c] = (float)s[0];
  }
  if (!dx) return;
  const float kc = (float)((double)is * (w ? w[c] : 1.f));
  const float a = training ? (float)(s[0] / n) : 0.f;
  const float bq = training ? (float)((double)is * is * s[1] / n) : 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int k = at(i, c);
    dx[k] = kc * (dy[k] - a - (x[k] - mu) * bq);
  }
}

__global__ void k_ln_forward(const float* __restrict__ x, float* __restrict__ y,
                             const float* __restrict__ w, const float* __restrict__ b,
                             float* __restrict__ mean, float* __restrict__ rstd, i64 D, double eps) {
  __shared__ double red[32];
  const i64 r = blockIdx.x;
  const float* xr = x + r * D;
  float* yr = y + r * D;
  double s[1] = {0.0};
  for (i64 d = threadIdx.x; d < D; d += blockDim.x) s[0] += xr[d];
  block_sum<1>(s, red);
  const double m = s[0] / D;
  double q[1] = {0.0};
  for (i64 d = threadIdx.x; d < D; d += blockDim.x) {
    const double t = xr[d] - m;
    q[0] += t * t;
  }
  block_sum<1>(q, red);
  const float mu = (float)m, rs = (float)(1.0 / sqrt(q[0] / D + eps));
  if (threadIdx.x == 0) {
    mean[r] = mu;
    rstd[r] = rs;
  }
  for (i64 d = threadIdx.x; d < D; d += blockDim.x) {
    float v = (xr[d] - mu) * rs;
    if (w) v *= w[d];
    if (b) v += b[d];
    yr[d] = v;
  }
}

__global__ void k_ln_backward_input(const float* __restrict__ x, const float* __restrict__ dy,
                                    const float* __restrict__ mean, const float* __restrict__ rstd,
                                    const float* __restrict__ w, float* __restrict__ dx, i64 D) {
  __shared__ double red[64];
  const i64 r = blockIdx.x;
  const float* xr = x + r * D;
  const float* gr = dy + r * D;
  float* dr = dx + r * D;
  const float mu = mean[r], rs = rstd[r];
  double s[2] = {0.0, 0.0};  // sum(g), sum(g (x - mean)) with g = dy * w
  for (i64 d = threadIdx.x; d < D; d += blockDim.x) {
    const double g = (double)(w ? gr[d] * w[d] : gr[d]);
    s[0] += g;
    s[1] += g * ((double)xr[d] - (double)mu);
  }
  block_sum<2>(s, red);
  const float a = (float)(s[0] / D), bq = (float)(s[1] * rs / D);
  for (i64 d = threadIdx.x; d < D; d += blockDim.x) {
    const float g = w ? gr[d] * w[d] : gr[d];
    const float xh = (xr[d] - mu) * rs;
    dr[d] = rs * (g - a - xh * bq);
  }
}

// dweight[d] = sum_r dy[r,d] xhat[r,d], dbias[d] = sum_r dy[r,d]. Block (32, 8): 32 columns, 8 row
// lanes; blockIdx.y takes rows [y * rows_per_block, ...). atomic: add into (zeroed) outputs.
__global__ void k_ln_backward_params(const float* __restrict__ x, const float* __restrict__ dy,
                                     const float* __restrict__ mean, const float* __restrict__ rstd,
                                     float* __restrict__ dw, float* __restrict__ db, i64 rows, i64 D,
                                     i64 rows_per_block, bool atomic) {
  __shared__ float sw[8][33], sb[8][33];
  const i64 d = (i64)blockIdx.x * 32 + threadIdx.x;
  const i64 r0 = (i64)blockIdx.y * rows_per_block;
  const i64 r1 = min(rows, r0 + rows_per_block);
  float aw = 0.f, ab = 0.f;
  if (d < D)
    for (i64 r = r0 + threadIdx.y; r < r1; r += 8) {
      const float g = dy[r * D + d];
      aw += g * ((x[r * D + d] - mean[r]) * rstd[r]);
      ab += g;
    }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && d < D) {
    for (int k = 1; k < 8; ++k) {
      aw += sw[k][threadIdx.x];
      ab += sb[k][threadIdx.x];
    }
    if (atomic) {
      if (dw) atomicAdd(dw + d, aw);
      if (db) atomicAdd(db + d, ab);
    } else {
      if (dw) dw[d] = aw;
      if (db) db[d] = ab;
    }
  }
}

ChannelIndex channel_index(const char* op, i64 outer, i64 C, i64 inner) {
  // the BatchNorm loops step an int i by blockDim.x (kThreads): i + kThreads must not pass INT_MAX
  KN_CHECK(outer * C * inner <= layer::kIntMax - kThreads, op,
           ": tensors of 2^31 - 256 elements or more are not supported on CUDA");
  ChannelIndex at;
  at.C = (int)C;
  at.inner = (int)std::max<i64>(inner, 1);
  at.div_inner = layer::FastDiv((std::uint32_t)at.inner);
  return at;
}

}  // namespace norm_cuda
}  // namespace kn

KN_BIND(norm_cuda) {
  using kn::i64;
  using kn::ptr;
  using kn::uptr;
  namespace nc = kn::norm_cuda;
  m.def(
      "batch_norm_forward",
      [](uptr x, uptr y, uptr w, uptr b, uptr mean, uptr invstd, uptr rmean, uptr rvar, i64 outer,
         i64 C, i64 inner, bool training, double momentum, double eps) {
        const char* op = "batch_norm_forward";
        kn::check_batch_norm_forward(op, x, y, mean, invstd, rmean, rvar, outer, C, inner, training, momentum, eps);
        KN_CHECK(C <= kn::layer::kIntMax, op, ": too many channels");
        const nc::ChannelIndex at = nc::channel_index(op, outer, C, inner);
        nc::k_bn_forward<<<(unsigned)C, nc::kThreads, 0, kn::kStream>>>(
            ptr<const float>(x), ptr<float>(y), ptr<const float>(w), ptr<const float>(b), ptr<float>(mean),
            ptr<float>(invstd), ptr<float>(rmean), ptr<float>(rvar), (int)(outer * inner), at, training,
            momentum, eps);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
  m.def(
      "batch_norm_backward",
      [](uptr x, uptr dy, uptr mean, uptr invstd, uptr w, uptr dx, uptr dw, uptr db, i64 outer, i64 C,
         i64 inner, bool training) {
        const char* op = "batch_norm_backward";
        kn::check_batch_norm_backward(op, x, dy, mean, invstd, outer, C, inner);
        KN_CHECK(C <= kn::layer::kIntMax, op, ": too many channels");
        if (!dx && !dw && !db) return;
        const nc::ChannelIndex at = nc::channel_index(op, outer, C, inner);
        const bool need_sums = dw || db || (dx && training);
        nc::k_bn_backward<<<(unsigned)C, nc::kThreads, 0, kn::kStream>>>(
            ptr<const float>(x), ptr<const float>(dy), ptr<const float>(mean), ptr<const float>(invstd),
            ptr<const float>(w), ptr<float>(dx), ptr<float>(dw), ptr<float>(db), (int)(outer * inner), at,
            training, need_sums);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
  m.def(
      "layer_norm_forward",
      [](uptr x, uptr y, uptr w, uptr b, uptr mean, uptr rstd, i64 rows, i64 D, double eps) {
        const char* op = "layer_norm_forward";
        kn::check_layer_norm_forward(op, x, y, mean, rstd, rows, D, eps);
        KN_CHECK(rows <= kn::layer::kIntMax, op, ": too many rows for one launch");
        if (rows == 0) return;
        nc::k_ln_forward<<<(unsigned)rows, nc::kRowThreads, 0, kn::kStream>>>(
            ptr<const float>(x), ptr<float>(y), ptr<const float>(w), ptr<const float>(b), ptr<float>(mean),
            ptr<float>(rstd), D, eps);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
  m.def(
      "layer_norm_backward",
      [](uptr x, uptr dy, uptr mean, uptr rstd, uptr w, uptr dx, uptr dw, uptr db, i64 rows, i64 D) {
        const char* op = "layer_norm_backward";
        kn::check_layer_norm_backward(op, x, dy, mean, rstd, rows, D);
        KN_CHECK(rows <= kn::layer::kIntMax, op, ": too many rows for one launch");
        if (dx && rows > 0) {
          nc::k_ln_backward_input<<<(unsigned)rows, nc::kRowThreads, 0, kn::kStream>>>(
              ptr<const float>(x), ptr<const float>(dy), ptr<const float>(mean), ptr<const float>(rstd),
              ptr<const float>(w), ptr<float>(dx), D);
          KN_LAUNCH_CHECK(op);
        }
        if (!dw && !db) return;
        // enough blocks of rows to fill the GPU about four times over, at least 64 rows each
        const i64 col_blocks = (D + 31) / 32;
        KN_CHECK(col_blocks <= kn::layer::kIntMax, op, ": D too large");
        i64 row_blocks = std::max<i64>(1, (i64)kn::layer::sm_count() * 4 / col_blocks);
        row_blocks = std::min<i64>({row_blocks, (rows + 63) / 64, (i64)65535});
        row_blocks = std::max<i64>(row_blocks, 1);
        const i64 per_block = (rows + row_blocks - 1) / row_blocks;
        const bool atomic = row_blocks > 1;
        if (atomic) {
          if (dw) KN_CUDA_CHECK(cudaMemsetAsync(ptr<float>(dw), 0, sizeof(float) * D, kn::kStream), op);
          if (db) KN_CUDA_CHECK(cudaMemsetAsync(ptr<float>(db), 0, sizeof(float) * D, kn::kStream), op);
        }
        nc::k_ln_backward_params<<<dim3((unsigned)col_blocks, (unsigned)row_blocks), dim3(32, 8), 0, kn::kStream>>>(
            ptr<const float>(x), ptr<const float>(dy), ptr<const float>(mean), ptr<const float>(rstd), ptr<float>(dw),
            ptr<float>(db), rows, D, per_block, atomic);
        KN_LAUNCH_CHECK(op);
      },
      KN_NOGIL);
}
