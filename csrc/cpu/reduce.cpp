// Reductions over the middle axis of a contiguous [outer, R, inner] view. Any set of adjacent
// dimensions maps onto this shape without a copy; the Python layer reduces non-adjacent dims one
// after another. inner == 1 is a row reduction (sum of each row); inner > 1 reduces down columns,
// where the loop over `inner` is the contiguous, vectorisable one. Sums and means (the common
// reductions: losses, bias gradients, statistics) have their own paths, sum_rows / sum_columns.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/kn.h"
#include "common/ops.h"
#include "cpu/cpu_features.h"
#include "cpu/parallel.h"
#include "cpu/reduce_sum.h"

namespace kn {
namespace {

using u8 = std::uint8_t;

// Sums of float runs, the baseline path (cpu/reduce_sum.h; AVX-512's is reduce_sum_avx512.cpp).
// 32 float lanes (eight 4-wide vectors: GCC/Clang vector types, SSE on the x86-64 baseline, NEON on
// aarch64; eight independent add chains, so the adds overlap instead of waiting on each other's
// latency) flushed into a double every kSumBlock values, so a million-element sum keeps ~1e-7
// relative error instead of drifting.
// Long reductions are cut into work items of kSumChunk values (rows of a row sum, row blocks of a
// column sum), summed in parallel and added in item order: the chunking does not depend on the
// thread count, so neither does the result.
constexpr i64 kSumChunk = 1 << 16;

typedef float f4 __attribute__((vector_size(16)));
inline f4 load4(const float* p) {
  f4 v;
  std::memcpy(&v, p, sizeof v);  // rows need not be 16-byte aligned
  return v;
}

double sum_run_base(const float* x, i64 n) {
  double total = 0.0;
  for (i64 i = 0; i < n; i += kSumBlock) {
    const i64 e = std::min(n, i + kSumBlock);
    f4 a[8] = {};
    i64 j = i;
    for (; j + 32 <= e; j += 32)
      for (int k = 0; k < 8; ++k) a[k] += load4(x + j + 4 * k);
    float tail = 0.f;
    for (; j < e; ++j) tail += x[j];
    const f4 t = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    total += (double)(((t[0] + t[1]) + (t[2] + t[3])) + tail);
  }
  return total;
}

// Column block sums: each row's w columns go into float lanes (the contiguous, vectorised loop),
// which go into the double totals every kColFlush rows.
void columns_base(const float* x, i64 ld, i64 w, i64 rows, double* acc) {
  float accf[kColBlock];
  for (i64 i = 0; i < w; ++i) acc[i] = 0.0;
  for (i64 f0 = 0; f0 < rows; f0 += kColFlush) {
    for (i64 i = 0; i < w; ++i) accf[i] = 0.f;
    for (i64 r = f0, f1 = std::min(rows, f0 + kColFlush); r < f1; ++r) {
      const float* __restrict xr = x + r * ld;
      for (i64 i = 0; i < w; ++i) accf[i] += xr[i];
    }
    for (i64 i = 0; i < w; ++i) acc[i] += accf[i];
  }
}

const SumKernels kSumBase{&sum_run_base, &columns_base};

const SumKernels& sums() {
  static const SumKernels* avx512 = sum_kernels_avx512();
  return avx512 && active_simd() == Simd::Avx512 ? *avx512 : kSumBase;
}

// out[o] = sum of row o (R values), scaled: rows longer than kSumChunk are split into chunks that
// run in parallel with the other rows' chunks.
void sum_rows(float* out, const float* in, i64 outer, i64 R, double scale) {
  const i64 chunks = (R + kSumChunk - 1) / kSumChunk;
  const SumKernels& kern = sums();
  if (chunks <= 1) {
    parallel_for(outer, 1 + (1 << 14) / std::max<i64>(R, 1), [&](i64 b, i64 e) {
      for (i64 o = b; o < e; ++o) out[o] = (float)(kern.run(in + o * R, R) * scale);
    });
    return;
  }
  std::vector<double> part((size_t)(outer * chunks));
  parallel_for(outer * chunks, 1, [&](i64 b, i64 e) {
    for (i64 t = b; t < e; ++t) {
      const i64 o = t / chunks, r0 = (t % chunks) * kSumChunk;
      part[(size_t)t] = kern.run(in + o * R + r0, std::min(kSumChunk, R - r0));
    }
  });
  for (i64 o = 0; o < outer; ++o) {
    double total = 0.0;
    for (i64 k = 0; k < chunks; ++k) total += part[(size_t)(o * chunks + k)];
    out[o] = (float)(total * scale);
  }
}

// out[o, i] = sum over r of in[o, r, i], scaled (inner > 1). Work items are (o, a block of kColBlock
// columns[, a block of rows]), each summed by SumKernels::columns. Columns taller than an item of
// about kSumChunk values are cut into row blocks, so a tall [R, inner] sum runs on every thread;
// their partial sums are added in row-block order.
void sum_columns(float* out, const float* in, i64 outer, i64 R, i64 inner, double scale) {
  const i64 n_iblk = (inner + kColBlock - 1) / kColBlock;
  const i64 rows_per = std::max<i64>(kColFlush, kSumChunk / std::min(inner, kColBlock) / kColFlush * kColFlush);
  const i64 n_rblk = (R + rows_per - 1) / rows_per;
  // Rows [r0, r1) of columns [i0, i0 + w) of slice o, summed into acc[0, w).
  const SumKernels& kern = sums();
  auto add_rows = [&](i64 o, i64 i0, i64 w, i64 r0, i64 r1, double* acc) {
    kern.columns(in + (o * R + r0) * inner + i0, inner, w, r1 - r0, acc);
  };
  if (n_rblk == 1) {  // each (slice, column block) item writes its outputs
    parallel_for(outer * n_iblk, std::max<i64>(1, (1 << 14) / std::max<i64>(R * kColBlock, 1)), [&](i64 b, i64 e) {
      double acc[kColBlock];
      for (i64 t = b; t < e; ++t) {
        const i64 o = t / n_iblk, i0 = (t % n_iblk) * kColBlock, w = std::min(inner, i0 + kColBlock) - i0;
        add_rows(o, i0, w, 0, R, acc);
        for (i64 i = 0; i < w; ++i) out[o * inner + i0 + i] = (float)(acc[i] * scale);
      }
    });
    return;
  }
  // tall: items (slice, row block, column block); partial sums laid out [outer, n_rblk, inner]
  std::vector<double> part((size_t)(outer * n_rblk * inner));
  parallel_for(outer * n_rblk * n_iblk, 1, [&](i64 b, i64 e) {
    for (i64 t = b; t < e; ++t) {
      const i64 ib = t % n_iblk, orb = t / n_iblk, rb = orb % n_rblk, o = orb / n_rblk;
      const i64 i0 = ib * kColBlock, w = std::min(inner, i0 + kColBlock) - i0, r0 = rb * rows_per;
      add_rows(o, i0, w, r0, std::min(R, r0 + rows_per), part.data() + (size_t)(orb * inner + i0));
    }
  });
  parallel_for(outer * inner, 1 << 12, [&](i64 b, i64 e) {
    for (i64 t = b; t < e; ++t) {
      const i64 o = t / inner, i = t % inner;
      double total = 0.0;
      for (i64 k = 0; k < n_rblk; ++k) total += part[(size_t)((o * n_rblk + k) * inner + i)];
      out[t] = (float)(total * scale);
    }
  });
}

template <typename T>
void reduce_float_like(int op, float* out, const float* in, i64 outer, i64 R, i64 inner) {
  // f32 input, f32 output (sum, mean, max, min, prod)
  const i64 n_out = outer * inner;
  if (op == R_SUM || op == R_MEAN) {
    const double scale = op == R_MEAN ? 1.0 / (double)R : 1.0;
    if (inner == 1) sum_rows(out, in, outer, R, scale);
    else sum_columns(out, in, outer, R, inner, scale);
    return;
  }
  if (inner == 1) {
    parallel_for(outer, 1 + (1 << 14) / std::max<i64>(R, 1), [&](i64 b, i64 e) {
      for (i64 o = b; o < e; ++o) {
        const float* x = in + o * R;
        float r;
        switch (op) {
          case R_PROD: {
            double p = 1.0;
            for (i64 j = 0; j < R; ++j) p *= x[j];
            r = (float)p;
            break;
          }
          case R_MAX: {
            float m = -std::numeric_limits<float>::infinity();
            bool nan = false;
            for (i64 j = 0; j < R; ++j) { m = x[j] > m ? x[j] : m; nan |= std::isnan(x[j]); }
            r = nan ? std::numeric_limits<float>::quiet_NaN() : m;
            break;
          }
          case R_MIN: {
            float m = std::numeric_limits<float>::infinity();
            bool nan = false;
            for (i64 j = 0; j < R; ++j) { m = x[j] < m ? x[j] : m; nan |= std::isnan(x[j]); }
            r = nan ? std::numeric_limits<float>::quiet_NaN() : m;
            break;
          }
          default: throw ArgError(str_cat("reduce: op ", op, " not valid for float32 output"));
        }
        out[o] = r;
      }
    });
    return;
  }
  // column reduction: out[o, i] = reduce_r in[o, r, i]; threads take slices of (o, i-block)
  const i64 IB = 256;
  const i64 n_iblk = (inner + IB - 1) / IB;
  parallel_for(outer * n_iblk, std::max<i64>(1, (1 << 14) / std::max<i64>(R * IB, 1)), [&](i64 b, i64 e) {
    double accd[IB];
    float accf[IB];
    for (i64 t = b; t < e; ++t) {
      i64 o = t / n_iblk, i0 = (t % n_iblk) * IB, i1 = std::min(inner, i0 + IB), w = i1 - i0;
      const float* x = in + o * R * inner + i0;
      float* y = out + o * inner + i0;
      if (op == R_PROD) {
        for (i64 i = 0; i < w; ++i) accd[i] = 1.0;
        for (i64 r = 0; r < R; ++r) {
          const float* xr = x + r * inner;
          for (i64 i = 0; i < w; ++i) accd[i] *= xr[i];
        }
        for (i64 i = 0; i < w; ++i) y[i] = (float)accd[i];
      } else if (op == R_MAX || op == R_MIN) {
        bool is_max = op == R_MAX;
        for (i64 i = 0; i < w; ++i) accf[i] = is_max ? -INFINITY : INFINITY;
        for (i64 r = 0; r < R; ++r) {
          const float* xr = x + r * inner;
          for (i64 i = 0; i < w; ++i) {
            float v = xr[i];
            if (std::isnan(v) || std::isnan(accf[i])) accf[i] = NAN;
            else accf[i] = is_max ? (v > accf[i] ? v : accf[i]) : (v < accf[i] ? v : accf[i]);
          }
        }
        for (i64 i = 0; i < w; ++i) y[i] = accf[i];
      } else {
        throw ArgError(str_cat("reduce: op ", op, " not valid for float32 output"));
      }
    }
  });
  (void)n_out;
}

// argmax/argmin: first index of the extremum (NaN counts as the extremum, like PyTorch)
template <typename T>
void reduce_arg(bool is_max, i64* out, const T* in, i64 outer, i64 R, i64 inner) {
  parallel_for(outer * inner, 1 + (1 << 14) / std::max<i64>(R, 1), [&](i64 b, i64 e) {
    for (i64 t = b; t < e; ++t) {
      i64 o = t / inner, i = t % inner;
      const T* x = in + o * R * inner + i;
      i64 best = 0;
      T bv = x[0];
      for (i64 r = 1; r < R; ++r) {
        T v = x[r * inner];
        if constexpr (std::is_floating_point_v<T>) {
          if (std::isnan(bv)) break;
          if (std::isnan(v)) { best = r; bv = v; break; }
        }
        if (is_max ? v > bv : v < bv) { best = r; bv = v; }
      }
      out[t] = best;
    }
  });
}

// integer and bool inputs: sum/prod -> i64, max/min -> same dtype, any/all -> bool
template <typename T>
void reduce_int(int op, uptr out, const T* in, i64 outer, i64 R, i64 inner) {
  parallel_for(outer * inner, 1 + (1 << 14) / std::max<i64>(R, 1), [&](i64 b, i64 e) {
    for (i64 t = b; t < e; ++t) {
      i64 o = t / inner, i = t % inner;
      const T* x = in + o * R * inner + i;
      switch (op) {
        case R_SUM: {
          i64 s = 0;
          for (i64 r = 0; r < R; ++r) s += (i64)x[r * inner];
          ptr<i64>(out)[t] = s;
          break;
        }
        case R_PROD: {
          i64 s = 1;
          for (i64 r = 0; r < R; ++r) s *= (i64)x[r * inner];
          ptr<i64>(out)[t] = s;
          break;
        }
        case R_MAX:
        case R_MIN: {
          T m = x[0];
          for (i64 r = 1; r < R; ++r) {
            T v = x[r * inner];
            m = op == R_MAX ? (v > m ? v : m) : (v < m ? v : m);
          }
          ptr<T>(out)[t] = m;
          break;
        }
        case R_ANY:
        case R_ALL: {
          bool any = false, all = true;
          for (i64 r = 0; r < R; ++r) { bool v = x[r * inner] != 0; any |= v; all &= v; }
          ptr<u8>(out)[t] = op == R_ANY ? any : all;
          break;
        }
        default: throw ArgError(str_cat("reduce: op ", op, " not valid for integer input"));
      }
    }
  });
}

void reduce(int op, int dtype, uptr out, uptr inp, i64 outer, i64 R, i64 inner) {
  KN_CHECK(outer >= 0 && inner >= 0 && R >= 0, "reduce: negative size");
  if (outer * inner == 0) return;
  if ((op == R_MAX || op == R_MIN || op == R_ARGMAX || op == R_ARGMIN))
    KN_CHECK(R > 0, "reduce: max/min/argmax/argmin of an empty dimension");
  if (op == R_ARGMAX || op == R_ARGMIN) {
    bool is_max = op == R_ARGMAX;
    if (dtype == F32) reduce_arg<float>(is_max, ptr<i64>(out), ptr<const float>(inp), outer, R, inner);
    else if (dtype == I64) reduce_arg<i64>(is_max, ptr<i64>(out), ptr<const i64>(inp), outer, R, inner);
    else reduce_arg<u8>(is_max, ptr<i64>(out), ptr<const u8>(inp), outer, R, inner);
    return;
  }
  if (dtype == F32 && op != R_ANY && op != R_ALL) {
    reduce_float_like<float>(op, ptr<float>(out), ptr<const float>(inp), outer, R, inner);
  } else if (dtype == F32) {
    reduce_int<float>(op, out, ptr<const float>(inp), outer, R, inner);
  } else if (dtype == I64) {
    reduce_int<i64>(op, out, ptr<const i64>(inp), outer, R, inner);
  } else if (dtype == BOOL) {
    reduce_int<u8>(op, out, ptr<const u8>(inp), outer, R, inner);
  } else {
    throw ArgError(str_cat("reduce: unknown dtype code ", dtype));
  }
}

}  // namespace
}  // namespace kn

KN_BIND(reduce) { m.def("reduce", &kn::reduce, KN_NOGIL); }
