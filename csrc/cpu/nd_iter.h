// N-d iteration for elementwise kernels. The output is contiguous with `shape`; each input has
// its own element strides (0 = broadcast). The Python side has already coalesced dimensions, so
// most calls arrive as 1-d or 2-d. Work is split over the flat output range; each thread walks
// its range one innermost row segment at a time and hands the segment to `row(...)`, whose loop
// the compiler vectorises when the inner strides are 0 or 1.
#pragma once
#include <array>
#include <vector>

#include "common/kn.h"
#include "cpu/parallel.h"

namespace kn {

constexpr int kMaxDims = 12;

template <int NIn, typename Row>
void for_each_row(const std::vector<i64>& shape_in, const std::array<const std::vector<i64>*, NIn>& strides_in,
                  Row&& row) {
  KN_CHECK(shape_in.size() <= (size_t)kMaxDims, "too many dimensions: ", shape_in.size());
  for (int k = 0; k < NIn; ++k)
    KN_CHECK(strides_in[k]->size() == shape_in.size(), "strides rank ", strides_in[k]->size(),
             " does not match shape rank ", shape_in.size());
  std::vector<i64> shape = shape_in;
  std::array<std::vector<i64>, NIn> strides;
  for (int k = 0; k < NIn; ++k) strides[k] = *strides_in[k];
  if (shape.empty()) {  // a scalar is a 1-element row
    shape.push_back(1);
    for (auto& s : strides) s.push_back(0);
  }
  const int nd = (int)shape.size();
  i64 total = 1;
  for (i64 s : shape) total *= s;
  if (total == 0) return;
  const i64 inner = shape[nd - 1];
  parallel_for(total, 1 << 15, [&](i64 begin, i64 end) {
    i64 idx[kMaxDims];
    i64 rem = begin;
    for (int d = nd - 1; d >= 0; --d) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
    }
    i64 off[NIn];
    for (int k = 0; k < NIn; ++k) {
      off[k] = 0;
      for (int d = 0; d < nd; ++d) off[k] += idx[d] * strides[k][d];
    }
    i64 pos = begin;
    while (pos < end) {
      i64 len = std::min(inner - idx[nd - 1], end - pos);
      i64 inner_stride[NIn];
      for (int k = 0; k < NIn; ++k) inner_stride[k] = strides[k][nd - 1];
      row(pos, off, inner_stride, len);
      pos += len;
      // advance the multi-index by len along the innermost dim, carrying outward
      idx[nd - 1] += len;
      for (int k = 0; k < NIn; ++k) off[k] += len * strides[k][nd - 1];
      for (int d = nd - 1; d > 0 && idx[d] == shape[d]; --d) {
        for (int k = 0; k < NIn; ++k) off[k] += strides[k][d - 1] - shape[d] * strides[k][d];
        idx[d] = 0;
        idx[d - 1] += 1;
      }
    }
  });
}

}  // namespace kn
