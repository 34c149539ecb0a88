// Softmax / log-softmax over the last axis of a contiguous [rows, cols] float32 array, forward and
// backward, with the CPU backend's names and arguments (csrc/cpu/softmax_loss.cpp):
//   softmax_forward(x, y, rows, cols)            y = exp(x - lse(x))
//   log_softmax_forward(x, y, rows, cols)        y = x - lse(x)
//   softmax_backward(y, dy, dx, rows, cols)      dx = y * (dy - sum(dy * y))
//   log_softmax_backward(y, dy, dx, rows, cols)  dx = dy - exp(y) * sum(dy)
// A warp per row (or the power-of-two part of a warp >= cols for very short rows) up to 1024
// columns, a 256-thread block per row otherwise. Rows are read three times (max, sum, write); the second and third reads hit
// L1/L2 for the row sizes of classification heads.
#include <cfloat>

#include "cuda/cuda_check.h"

namespace kn {
namespace {

// Reduces over a group of `group` lanes (a power of two <= 32, aligned inside the warp, so xor
// partners stay in the group) or over the whole block (group > 32); every lane gets the result.
template <bool MAX>
__device__ __forceinline__ float group_reduce(float v, int group, float* sh) {
  for (int d = (group < 32 ? group : 32) >> 1; d > 0; d >>= 1) {
    float o = __shfl_xor_sync(0xffffffffu, v, d);
    v = MAX ? fmaxf(v, o) : v + o;
  }
  if (group > 32) {
    int w = threadIdx.x / 32, nw = blockDim.x / 32;
    __syncthreads();  // sh may still be read from the previous reduction
    if ((threadIdx.x & 31) == 0) sh[w] = v;
    __syncthreads();
    v = sh[0];
    for (int k = 1; k < nw; ++k) v = MAX ? fmaxf(v, sh[k]) : v + sh[k];
  }
  return v;
}

template <bool LOG>
__global__ void k_softmax_fwd(const float* __restrict__ x, float* __restrict__ y, i64 rows, i64 cols, int group) {
  __shared__ float sh[32];
  i64 row = (i64)blockIdx.x * (blockDim.x / group) + threadIdx.x / group;
  int lane = threadIdx.x % group;
  bool live = row < rows;  // (dead warps still take part in block-wide barriers)
  const float* xr = x + (live ? row : 0) * cols;
  float m = -INFINITY;
  if (live)
    for (i64 c = lane; c < cols; c += group) m = fmaxf(m, xr[c]);
  m = group_reduce<true>(m, group, sh);
  if (m == -INFINITY) m = 0.f;  // a row of -inf: avoid (-inf) - (-inf)
  float s = 0.f;
  if (live)
    for (i64 c = lane; c < cols; c += group) s += expf(xr[c] - m);
  s = group_reduce<false>(s, group, sh);
  if (!live) return;
  float* yr = y + row * cols;
  if (LOG) {
    float lse = m + logf(s);
    for (i64 c = lane; c < cols; c += group) yr[c] = xr[c] - lse;
  } else {
    float inv = 1.f / s;
    for (i64 c = lane; c < cols; c += group) yr[c] = expf(xr[c] - m) * inv;
  }
}

template <bool LOG>
__global__ void k_softmax_bwd(const float* __restrict__ y, const float* __restrict__ dy, float* __restrict__ dx,
                              i64 rows, i64 cols, int group) {
  __shared__ float sh[32];
  i64 row = (i64)blockIdx.x * (blockDim.x / group) + threadIdx.x / group;
  int lane = threadIdx.x % group;
  bool live = row < rows;
  i64 base = (live ? row : 0) * cols;
  float s = 0.f;
  if (live)
    for (i64 c = lane; c < cols; c += group) s += LOG ? dy[base + c] : dy[base + c] * y[base + c];
  s = group_reduce<false>(s, group, sh);
  if (!live) return;
  for (i64 c = lane; c < cols; c += group) {
    float g = dy[base + c], v = y[base + c];
    dx[base + c] = LOG ? g - expf(v) * s : v * (g - s);
  }
}

void launch_rows(const char* op, i64 rows, i64 cols, int* group, unsigned* blocks) {
  KN_CHECK(rows >= 0 && cols >= 0, op, ": negative size (", rows, ", ", cols, ")");
  int g = 1;  // short rows (class scores): the power of two >= cols, up to a warp
  while (g < 32 && g < cols) g *= 2;
  *group = cols <= 1024 ? g : 256;
  i64 per_block = 256 / *group;
  i64 nb = (rows + per_block - 1) / per_block;
  KN_CHECK(nb < (i64(1) << 31), op, ": too many rows");
  *blocks = (unsigned)nb;
}

template <bool LOG>
void softmax_forward(uptr x, uptr y, i64 rows, i64 cols) {
  const char* op = LOG ? "log_softmax_forward" : "softmax_forward";
  int group;
  unsigned blocks;
  launch_rows(op, rows, cols, &group, &blocks);
  if (rows == 0 || cols == 0) return;
  k_softmax_fwd<LOG><<<blocks, 256, 0, kStream>>>(ptr<const float>(x), ptr<float>(y), rows, cols, group);
  KN_LAUNCH_CHECK(op);
}

template <bool LOG>
void softmax_backward(uptr y, uptr dy, uptr dx, i64 rows, i64 cols) {
  const char* op = LOG ? "log_softmax_backward" : "softmax_backward";
  int group;
  unsigned blocks;
  launch_rows(op, rows, cols, &group, &blocks);
  if (rows == 0 || cols == 0) return;
  k_softmax_bwd<LOG><<<blocks, 256, 0, kStream>>>(ptr<const float>(y), ptr<const float>(dy), ptr<float>(dx),
                                                 rows, cols, group);
  KN_LAUNCH_CHECK(op);
}

}  // namespace
}  // namespace kn

KN_BIND(softmax) {
  using namespace kn;
  m.def("softmax_forward", &softmax_forward<false>, py::arg("x"), py::arg("y"), py::arg("rows"),
        py::arg("cols"), KN_NOGIL);
  m.def("log_softmax_forward", &softmax_forward<true>, py::arg("x"), py::arg("y"), py::arg("rows"),
        py::arg("cols"), KN_NOGIL);
  m.def("softmax_backward", &softmax_backward<false>, py::arg("y"), py::arg("dy"), py::arg("dx"),
        py::arg("rows"), py::arg("cols"), KN_NOGIL);
  m.def("log_softmax_backward", &softmax_backward<true>, py::arg("y"), py::arg("dy"), py::arg("dx"),
        py::arg("rows"), py::arg("cols"), KN_NOGIL);
}
