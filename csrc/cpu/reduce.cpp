// Reductions over the middle axis of a contiguous [outer, R, inner] view. Any set of adjacent
// dimensions maps onto this shape without a copy; the Python layer reduces non-adjacent dims one
// after another. inner == 1 is a row reduction (sum of each row); inner > 1 reduces down columns,
// where the loop over `inner` is the contiguous, vectorisable one.
#include <cmath>
#include <limits>

#include "common/kn.h"
#include "common/ops.h"
#include "cpu/parallel.h"

namespace kn {
namespace {

using u8 = std::uint8_t;

// Sum of a float row: 8 independent float lanes (vectorisable) flushed into a double every 1024
// elements, so a million-element sum keeps ~1e-7 relative error instead of drifting.
double sum_row_f32(const float* x, i64 n, i64 stride) {
  double total = 0.0;
  i64 i = 0;
  while (i < n) {
    i64 e = std::min(n, i + 1024);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (stride == 1) {
      i64 j = i;
      for (; j + 8 <= e; j += 8)
        for (int l = 0; l < 8; ++l) acc[l] += x[j + l];
      for (; j < e; ++j) acc[0] += x[j];
    } else {
      for (i64 j = i; j < e; ++j) acc[0] += x[j * stride];
    }
    total += (double)(((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])));
    i = e;
  }
  return total;
}

template <typename T>
void reduce_float_like(int op, float* out, const float* in, i64 outer, i64 R, i64 inner) {
  // f32 input, f32 output (sum, mean, max, min, prod)
  const i64 n_out = outer * inner;
  if (inner == 1) {
    parallel_for(outer, 1 + (1 << 14) / std::max<i64>(R, 1), [&](i64 b, i64 e) {
      for (i64 o = b; o < e; ++o) {
        const float* x = in + o * R;
        float r;
        switch (op) {
          case R_SUM: r = (float)sum_row_f32(x, R, 1); break;
          case R_MEAN: r = (float)(sum_row_f32(x, R, 1) / (double)R); break;
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
      if (op == R_SUM || op == R_MEAN || op == R_PROD) {
        for (i64 i = 0; i < w; ++i) accd[i] = op == R_PROD ? 1.0 : 0.0;
        for (i64 r = 0; r < R; ++r) {
          const float* xr = x + r * inner;
          if (op == R_PROD)
            for (i64 i = 0; i < w; ++i) accd[i] *= xr[i];
          else
            for (i64 i = 0; i < w; ++i) accd[i] += xr[i];
        }
        double scale = op == R_MEAN ? 1.0 / (double)R : 1.0;
        for (i64 i = 0; i < w; ++i) y[i] = (float)(accd[i] * scale);
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
