// Indexing kernels for integer/boolean indexing, embedding lookups, gather along a dim, and their
// backward rules (index_add, scatter_add). Indices are int64, already range-checked and wrapped
// (negative -> +n) by the Python layer. Views are [outer, n, inner], contiguous.
#include <cstring>

#include "common/kn.h"
#include "common/ops.h"
#include "cpu/parallel.h"

namespace kn {
namespace {

size_t itemsize(int dtype) {
  switch (dtype) {
    case F32: return 4;
    case I64: return 8;
    case BOOL: return 1;
  }
  throw ArgError(str_cat("unknown dtype code ", dtype));
}

void index_select(int dtype, uptr out, uptr src, i64 outer, i64 n_src, i64 inner, uptr idx_, i64 n_idx) {
  const size_t isz = itemsize(dtype);
  const i64* idx = ptr<const i64>(idx_);
  char* o = ptr<char>(out);
  const char* s = ptr<const char>(src);
  const size_t row = inner * isz;
  parallel_for(outer * n_idx, 1 + (1 << 16) / std::max<i64>(inner, 1), [&](i64 b, i64 e) {
    for (i64 t = b; t < e; ++t) {
      i64 oo = t / n_idx, j = t % n_idx;
      std::memcpy(o + t * row, s + (oo * n_src + idx[j]) * row, row);
    }
  });
}

// out[o, idx[j], i] += src[o, j, i]. Threads own disjoint (o, i) column ranges, so duplicate
// indices never race.
void index_add(uptr out_, uptr src_, i64 outer, i64 n_out, i64 inner, uptr idx_, i64 n_idx) {
  float* out = ptr<float>(out_);
  const float* src = ptr<const float>(src_);
  const i64* idx = ptr<const i64>(idx_);
  if (outer >= 2 || inner < 64) {
    parallel_for(outer, 1, [&](i64 b, i64 e) {
      for (i64 o = b; o < e; ++o)
        for (i64 j = 0; j < n_idx; ++j) {
          float* dst = out + (o * n_out + idx[j]) * inner;
          const float* s = src + (o * n_idx + j) * inner;
          for (i64 i = 0; i < inner; ++i) dst[i] += s[i];
        }
    });
  } else {
    parallel_for(inner, 64, [&](i64 b, i64 e) {
      for (i64 j = 0; j < n_idx; ++j) {
        float* dst = out + idx[j] * inner;
        const float* s = src + j * inner;
        for (i64 i = b; i < e; ++i) dst[i] += s[i];
      }
    });
  }
}

void gather(int dtype, uptr out_, uptr src_, uptr idx_, i64 outer, i64 n_src, i64 inner, i64 n_idx) {
  const i64* idx = ptr<const i64>(idx_);
  auto run = [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* out = ptr<T>(out_);
    const T* src = ptr<const T>(src_);
    parallel_for(outer * n_idx, 1 + (1 << 14) / std::max<i64>(inner, 1), [&](i64 b, i64 e) {
      for (i64 t = b; t < e; ++t) {
        i64 o = t / n_idx;
        for (i64 i = 0; i < inner; ++i) out[t * inner + i] = src[(o * n_src + idx[t * inner + i]) * inner + i];
      }
    });
  };
  if (dtype == F32) run((float*)nullptr);
  else if (dtype == I64) run((i64*)nullptr);
  else if (dtype == BOOL) run((std::uint8_t*)nullptr);
  else throw ArgError(str_cat("gather: unknown dtype code ", dtype));
}

void scatter_add(uptr out_, uptr src_, uptr idx_, i64 outer, i64 n_out, i64 inner, i64 n_idx) {
  float* out = ptr<float>(out_);
  const float* src = ptr<const float>(src_);
  const i64* idx = ptr<const i64>(idx_);
  parallel_for(outer, 1, [&](i64 b, i64 e) {
    for (i64 o = b; o < e; ++o)
      for (i64 j = 0; j < n_idx; ++j)
        for (i64 i = 0; i < inner; ++i) {
          i64 t = (o * n_idx + j) * inner + i;
          out[(o * n_out + idx[t]) * inner + i] += src[t];
        }
  });
}

}  // namespace
}  // namespace kn

KN_BIND(index) {
  using namespace kn;
  m.def("index_select", &index_select, KN_NOGIL);
  m.def("index_add", &index_add, KN_NOGIL);
  m.def("gather", &gather, KN_NOGIL);
  m.def("scatter_add", &scatter_add, KN_NOGIL);
}
