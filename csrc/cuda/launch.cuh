// Generic launchers for elementwise "map" kernels over up to 3 input operands.
//
// A functor F has  __device__ void operator()(i64 out_index, const I* in_offsets)  and is launched
// over a Layout (nd_index.cuh): when every input is contiguous or a broadcast scalar the flat
// kernel runs (no index arithmetic), else the n-d kernel computes offsets with 32-bit arithmetic
// when they fit. Grid-stride loops: the grid is sized to fill the GPU, not to the element count.
#pragma once
#include "cuda/cuda_check.h"
#include "cuda/nd_index.cuh"

namespace kn {

constexpr int kMapThreads = 256;

template <int NOP, typename F>
__global__ void k_map_flat(F f, i64 n, unsigned scalar_mask) {
  i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    i64 off[NOP];
#pragma unroll
    for (int k = 0; k < NOP; ++k) off[k] = (scalar_mask >> k) & 1 ? 0 : i;
    f(i, off);
  }
}

template <int NOP, typename I, typename F>
__global__ void k_map_nd(F f, I n, NdOffsets<NOP, I> nd) {
  // The counter is 64-bit even when the offsets are 32-bit: with n just under 2^31 the last
  // i + stride would pass INT32_MAX, wrap negative and index out of bounds.
  const i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)n; i += stride) {
    I off[NOP];
    nd.get((I)i, off);
    f(i, off);
  }
}

inline unsigned map_grid(i64 n) { return grid_for(n, kMapThreads, (i64)num_sms() * 16); }

template <int NOP>
bool layout_flat(const Layout<NOP>& L, unsigned* mask) {
  *mask = 0;
  for (int k = 0; k < NOP; ++k) {
    if (L.scalar[k]) *mask |= 1u << k;
    else if (!L.contiguous[k]) return false;
  }
  return true;
}

template <int NOP, typename F>
void launch_map(const char* op, const F& f, const Layout<NOP>& L) {
  i64 n = L.numel;
  if (n == 0) return;
  unsigned mask;
  unsigned grid = map_grid(n);
  if (layout_flat(L, &mask)) {
    k_map_flat<NOP><<<grid, kMapThreads, 0, kStream>>>(f, n, mask);
  } else if (L.fits32) {
    k_map_nd<NOP, int32_t><<<grid, kMapThreads, 0, kStream>>>(f, (int32_t)n, NdOffsets<NOP, int32_t>(L));
  } else {
    k_map_nd<NOP, i64><<<grid, kMapThreads, 0, kStream>>>(f, n, NdOffsets<NOP, i64>(L));
  }
  KN_LAUNCH_CHECK(op);
}

inline bool aligned16(const void* p) { return ((uptr)p & 15) == 0; }

}  // namespace kn
