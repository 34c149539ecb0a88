// Strided n-d indexing for elementwise kernels.
//
// The Python side coalesces dimensions before calling, but kernels do it again (cheap, host side):
// size-1 dimensions are dropped and neighbouring dimensions merged when every operand walks them
// as one, so most "strided" calls become contiguous or 1-2 dimensional. At most 8 dimensions remain.
// Offsets are computed in 32-bit arithmetic when every index and offset fits (integer division is
// several times cheaper than 64-bit), else in 64-bit.
#pragma once
#include <cstdint>
#include <vector>

#include "common/kn.h"

namespace kn {

constexpr int kMaxDims = 8;

template <int NOP>
struct Layout {  // host side description after coalescing
  int nd = 0;
  i64 shape[kMaxDims];
  i64 st[NOP][kMaxDims];
  i64 numel = 1;
  bool contiguous[NOP];  // operand k is dense row-major over the shape
  bool scalar[NOP];      // operand k has all strides 0
  bool fits32 = true;
};

template <int NOP>
Layout<NOP> make_layout(const char* op, const std::vector<i64>& shape,
                        const std::vector<i64>* strides[NOP]) {
  int nd = (int)shape.size();
  for (int k = 0; k < NOP; ++k)
    KN_CHECK((int)strides[k]->size() == nd, op, ": strides have ", strides[k]->size(),
             " entries for a shape of ", nd, " dims");
  Layout<NOP> L;
  i64 numel = 1;
  for (int d = 0; d < nd; ++d) {
    KN_CHECK(shape[d] >= 0, op, ": negative dimension ", shape[d]);
    numel *= shape[d];
  }
  L.numel = numel;
  // drop size-1 dims, merge mergeable neighbours (walk from the innermost dim outwards)
  std::vector<i64> sh;
  std::vector<std::vector<i64>> st(NOP);
  for (int d = 0; d < nd; ++d) {
    if (shape[d] == 1) continue;
    sh.push_back(shape[d]);
    for (int k = 0; k < NOP; ++k) st[k].push_back((*strides[k])[d]);
  }
  std::vector<i64> csh;
  std::vector<std::vector<i64>> cst(NOP);
  for (size_t d = 0; d < sh.size(); ++d) {
    bool merge = !csh.empty();
    for (int k = 0; k < NOP && merge; ++k) merge = cst[k].back() == st[k][d] * sh[d];
    if (merge) {
      csh.back() *= sh[d];
      for (int k = 0; k < NOP; ++k) cst[k].back() = st[k][d];
    } else {
      csh.push_back(sh[d]);
      for (int k = 0; k < NOP; ++k) cst[k].push_back(st[k][d]);
    }
  }
  L.nd = (int)csh.size();
  KN_CHECK(L.nd <= kMaxDims, op, ": more than ", kMaxDims, " dimensions after coalescing (", L.nd,
           ")");
  i64 span[NOP] = {};
  for (int k = 0; k < NOP; ++k) {
    L.contiguous[k] = true;
    L.scalar[k] = true;
    i64 expect = 1;
    for (int d = L.nd - 1; d >= 0; --d) {
      L.shape[d] = csh[d];
      L.st[k][d] = cst[k][d];
      if (cst[k][d] != expect) L.contiguous[k] = false;
      if (cst[k][d] != 0) L.scalar[k] = false;
      expect *= csh[d];
      span[k] += (csh[d] - 1) * (cst[k][d] < 0 ? -cst[k][d] : cst[k][d]);
    }
    if (span[k] >= (i64(1) << 31)) L.fits32 = false;
  }
  if (numel >= (i64(1) << 31)) L.fits32 = false;
  return L;
}

// Device side: offsets of NOP operands for a linear index into the (contiguous) output.
template <int NOP, typename I>
struct NdOffsets {
  int nd;
  I shape[kMaxDims];
  I st[NOP][kMaxDims];
  explicit NdOffsets(const Layout<NOP>& L) : nd(L.nd) {
    for (int d = 0; d < kMaxDims; ++d) {
      shape[d] = d < L.nd ? (I)L.shape[d] : 1;
      for (int k = 0; k < NOP; ++k) st[k][d] = d < L.nd ? (I)L.st[k][d] : 0;
    }
  }
#if defined(__CUDACC__)
  __device__ __forceinline__ void get(I lin, I (&off)[NOP]) const {
#pragma unroll
    for (int k = 0; k < NOP; ++k) off[k] = 0;
#pragma unroll
    for (int d = kMaxDims - 1; d >= 0; --d) {
      if (d < nd) {
        I c = lin % shape[d];
        lin /= shape[d];
#pragma unroll
        for (int k = 0; k < NOP; ++k) off[k] += c * st[k][d];
      }
    }
  }
#endif
};

}  // namespace kn
