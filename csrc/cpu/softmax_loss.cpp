// Softmax, log-softmax and the fused softmax + cross-entropy / NLL losses (float32, rows x cols,
// contiguous, softmax over the last axis; the Python layer moves the class axis last).
//
// Bindings (pointers as ints, sizes int64):
//   softmax_forward(x, y, rows, cols)            y = exp(x - lse(x))
//   log_softmax_forward(x, y, rows, cols)        y = x - lse(x)
//   softmax_backward(y, dy, dx, rows, cols)      dx = y * (dy - sum(dy * y))       (y: softmax output)
//   log_softmax_backward(y, dy, dx, rows, cols)  dx = dy - exp(y) * sum(dy)        (y: log-softmax output)
//   cross_entropy_forward(logits, target, weight, loss, lse, row_weight, rows, cols, ignore_index,
//                         label_smoothing)
//       target int64 [rows]; weight f32 [cols] or 0 (all ones); writes per row:
//         loss[i] = (1-eps) * w[t] * (-logp[t]) + eps/cols * sum_c w[c] * (-logp[c])
//                   (0 where t == ignore_index)
//         lse[i]  = log-sum-exp of the row (saved for backward; may be 0 = not needed)
//         row_weight[i] = w[t] (0 where ignored; may be 0 = not needed)
//       PyTorch's reductions: 'sum' = sum(loss); 'mean' = sum(loss) / sum(row_weight);
//       'none' = loss.
//   cross_entropy_backward(logits, target, weight, lse, grad, grad_stride, dlogits, rows, cols,
//                          ignore_index, label_smoothing)
//       dlogits[i,c] = g_i * ((1-eps) w[t] (p_c - [c==t]) + eps/cols (sum(w) p_c - w[c])),
//       p = softmax(logits[i]) from the saved lse, g_i = grad[i * grad_stride] (grad_stride 0:
//       one scalar for every row, as after 'mean' (pass grad / sum(row_weight)) or 'sum').
//   nll_loss_forward(logp, target, weight, loss, row_weight, rows, cols, ignore_index)
//       loss[i] = -w[t] logp[i, t]  (0 where ignored)
//   nll_loss_backward(target, weight, grad, grad_stride, dlogp, rows, cols, ignore_index)
//       dlogp[i, c] = -g_i w[t] [c == t]  (dlogp overwritten)
//
// Numerics: every row subtracts its maximum before exp (log-sum-exp), so large logits do not
// overflow; the cross-entropy never forms log(softmax) from a rounded softmax. Targets are
// range-checked before any thread starts (a bad label is a ValueError, not a wild write).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/kn.h"
#include "cpu/parallel.h"

namespace kn {
namespace {

i64 row_grain(i64 cols) { return std::max<i64>(1, 8192 / std::max<i64>(1, cols)); }

inline float row_max(const float* x, i64 n) {
  float m = -std::numeric_limits<float>::infinity();
  for (i64 i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

// log(sum(exp(x))) computed stably. A row of all -inf gives -inf (softmax then yields NaN, as
// PyTorch does).
inline float row_lse(const float* x, i64 n) {
  float m = row_max(x, n);
  if (std::isinf(m)) return m;  // all -inf -> -inf; any +inf -> +inf
  float s = 0.f;
  for (i64 i = 0; i < n; ++i) s += std::exp(x[i] - m);
  return m + std::log(s);
}

template <bool Log>
void softmax_fwd(const float* x, float* y, i64 rows, i64 cols) {
  parallel_for(rows, row_grain(cols), [&](i64 r0, i64 r1) {
    for (i64 r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      float m = row_max(xr, cols);
      float s = 0.f;
      for (i64 i = 0; i < cols; ++i) {  // one exp per element: y holds exp(x - m) meanwhile
        float e = std::exp(xr[i] - m);
        if (!Log) yr[i] = e;
        s += e;
      }
      if (Log) {
        float lse = m + std::log(s);
        for (i64 i = 0; i < cols; ++i) yr[i] = xr[i] - lse;
      } else {
        float inv = 1.f / s;
        for (i64 i = 0; i < cols; ++i) yr[i] *= inv;
      }
    }
  });
}

template <bool Log>
void softmax_bwd(const float* y, const float* dy, float* dx, i64 rows, i64 cols) {
  parallel_for(rows, row_grain(cols), [&](i64 r0, i64 r1) {
    for (i64 r = r0; r < r1; ++r) {
      const float *yr = y + r * cols, *gr = dy + r * cols;
      float* dr = dx + r * cols;
      float s = 0.f;
      if (Log) {
        for (i64 i = 0; i < cols; ++i) s += gr[i];
        for (i64 i = 0; i < cols; ++i) dr[i] = gr[i] - std::exp(yr[i]) * s;
      } else {
        for (i64 i = 0; i < cols; ++i) s += gr[i] * yr[i];
        for (i64 i = 0; i < cols; ++i) dr[i] = yr[i] * (gr[i] - s);
      }
    }
  });
}

void check_targets(const char* op, const i64* t, i64 rows, i64 cols, i64 ignore) {
  for (i64 i = 0; i < rows; ++i)
    KN_CHECK(t[i] == ignore || (t[i] >= 0 && t[i] < cols), op, ": target ", t[i], " at position ",
             i, " is out of range for ", cols, " classes (ignore_index=", ignore, ")");
}

void cross_entropy_fwd(const float* z, const i64* t, const float* w, float* loss, float* lse_out,
                       float* roww, i64 rows, i64 cols, i64 ignore, float eps) {
  float wsum = 0.f;  // sum_c w[c], used by the smoothing term
  if (w)
    for (i64 c = 0; c < cols; ++c) wsum += w[c];
  else
    wsum = (float)cols;
  parallel_for(rows, row_grain(cols), [&](i64 r0, i64 r1) {
    for (i64 r = r0; r < r1; ++r) {
      const float* zr = z + r * cols;
      const float lse = row_lse(zr, cols);
      if (lse_out) lse_out[r] = lse;
      if (t[r] == ignore) {
        loss[r] = 0.f;
        if (roww) roww[r] = 0.f;
        continue;
      }
      const float wt = w ? w[t[r]] : 1.f;
      float l = (1.f - eps) * wt * (lse - zr[t[r]]);
      if (eps != 0.f) {
        // sum_c w[c] * (-logp[c]) = wsum * lse - sum_c w[c] z[c]
        float wz = 0.f;
        if (w)
          for (i64 c = 0; c < cols; ++c) wz += w[c] * zr[c];
        else
          for (i64 c = 0; c < cols; ++c) wz += zr[c];
        l += eps / (float)cols * (wsum * lse - wz);
      }
      loss[r] = l;
      if (roww) roww[r] = wt;
    }
  });
}

void cross_entropy_bwd(const float* z, const i64* t, const float* w, const float* lse,
                       const float* grad, i64 gstride, float* dz, i64 rows, i64 cols, i64 ignore,
                       float eps) {
  float wsum = 0.f;
  if (w)
    for (i64 c = 0; c < cols; ++c) wsum += w[c];
  else
    wsum = (float)cols;
  parallel_for(rows, row_grain(cols), [&](i64 r0, i64 r1) {
    for (i64 r = r0; r < r1; ++r) {
      const float* zr = z + r * cols;
      float* dr = dz + r * cols;
      if (t[r] == ignore) {
        std::memset(dr, 0, sizeof(float) * cols);
        continue;
      }
      const float g = grad[r * gstride];
      const float wt = w ? w[t[r]] : 1.f;
      const float lr = lse ? lse[r] : row_lse(zr, cols);
      // p_c * (coefficient of p) - (per-class constant)
      const float a = g * ((1.f - eps) * wt + eps / (float)cols * wsum);
      const float b = g * eps / (float)cols;
      for (i64 c = 0; c < cols; ++c) {
        float p = std::exp(zr[c] - lr);
        dr[c] = a * p - b * (w ? w[c] : 1.f);
      }
      dr[t[r]] -= g * (1.f - eps) * wt;
    }
  });
}

void nll_fwd(const float* lp, const i64* t, const float* w, float* loss, float* roww, i64 rows,
             i64 cols, i64 ignore) {
  for (i64 r = 0; r < rows; ++r) {  // one gather per row: not worth threads
    if (t[r] == ignore) {
      loss[r] = 0.f;
      if (roww) roww[r] = 0.f;
      continue;
    }
    const float wt = w ? w[t[r]] : 1.f;
    loss[r] = -wt * lp[r * cols + t[r]];
    if (roww) roww[r] = wt;
  }
}

void nll_bwd(const i64* t, const float* w, const float* grad, i64 gstride, float* dlp, i64 rows,
             i64 cols, i64 ignore) {
  parallel_for(rows, row_grain(cols), [&](i64 r0, i64 r1) {
    for (i64 r = r0; r < r1; ++r) {
      float* dr = dlp + r * cols;
      std::memset(dr, 0, sizeof(float) * cols);
      if (t[r] != ignore) dr[t[r]] = -grad[r * gstride] * (w ? w[t[r]] : 1.f);
    }
  });
}

void check_rc(const char* op, i64 rows, i64 cols) {
  KN_CHECK(rows >= 0 && cols >= 1, op, ": bad sizes rows=", rows, " cols=", cols);
}

}  // namespace
}  // namespace kn

KN_BIND(softmax_loss) {
  using kn::i64;
  using kn::uptr;
  using kn::ptr;
  m.def(
      "softmax_forward",
      [](uptr x, uptr y, i64 rows, i64 cols) {
        kn::check_rc("softmax_forward", rows, cols);
        kn::softmax_fwd<false>(ptr<const float>(x), ptr<float>(y), rows, cols);
      },
      KN_NOGIL);
  m.def(
      "log_softmax_forward",
      [](uptr x, uptr y, i64 rows, i64 cols) {
        kn::check_rc("log_softmax_forward", rows, cols);
        kn::softmax_fwd<true>(ptr<const float>(x), ptr<float>(y), rows, cols);
      },
      KN_NOGIL);
  m.def(
      "softmax_backward",
      [](uptr y, uptr dy, uptr dx, i64 rows, i64 cols) {
        kn::check_rc("softmax_backward", rows, cols);
        kn::softmax_bwd<false>(ptr<const float>(y), ptr<const float>(dy), ptr<float>(dx), rows, cols);
      },
      KN_NOGIL);
  m.def(
      "log_softmax_backward",
      [](uptr y, uptr dy, uptr dx, i64 rows, i64 cols) {
        kn::check_rc("log_softmax_backward", rows, cols);
        kn::softmax_bwd<true>(ptr<const float>(y), ptr<const float>(dy), ptr<float>(dx), rows, cols);
      },
      KN_NOGIL);
  m.def(
      "cross_entropy_forward",
      [](uptr z, uptr t, uptr w, uptr loss, uptr lse, uptr roww, i64 rows, i64 cols, i64 ignore,
         float eps) {
        kn::check_rc("cross_entropy_forward", rows, cols);
        KN_CHECK(eps >= 0.f && eps <= 1.f, "cross_entropy_forward: label_smoothing must be in [0, 1], got ", eps);
        KN_CHECK(z && t && loss, "cross_entropy_forward: null pointer");
        kn::check_targets("cross_entropy_forward", ptr<const i64>(t), rows, cols, ignore);
        kn::cross_entropy_fwd(ptr<const float>(z), ptr<const i64>(t), ptr<const float>(w),
                              ptr<float>(loss), ptr<float>(lse), ptr<float>(roww), rows, cols,
                              ignore, eps);
      },
      KN_NOGIL);
  m.def(
      "cross_entropy_backward",
      [](uptr z, uptr t, uptr w, uptr lse, uptr grad, i64 gstride, uptr dz, i64 rows, i64 cols,
         i64 ignore, float eps) {
        kn::check_rc("cross_entropy_backward", rows, cols);
        KN_CHECK(gstride == 0 || gstride == 1, "cross_entropy_backward: grad_stride must be 0 or 1");
        KN_CHECK(z && t && grad && dz, "cross_entropy_backward: null pointer");
        kn::check_targets("cross_entropy_backward", ptr<const i64>(t), rows, cols, ignore);
        kn::cross_entropy_bwd(ptr<const float>(z), ptr<const i64>(t), ptr<const float>(w),
                              ptr<const float>(lse), ptr<const float>(grad), gstride, ptr<float>(dz),
                              rows, cols, ignore, eps);
      },
      KN_NOGIL);
  m.def(
      "nll_loss_forward",
      [](uptr lp, uptr t, uptr w, uptr loss, uptr roww, i64 rows, i64 cols, i64 ignore) {
        kn::check_rc("nll_loss_forward", rows, cols);
        KN_CHECK(lp && t && loss, "nll_loss_forward: null pointer");
        kn::check_targets("nll_loss_forward", ptr<const i64>(t), rows, cols, ignore);
        kn::nll_fwd(ptr<const float>(lp), ptr<const i64>(t), ptr<const float>(w), ptr<float>(loss),
                    ptr<float>(roww), rows, cols, ignore);
      },
      KN_NOGIL);
  m.def(
      "nll_loss_backward",
      [](uptr t, uptr w, uptr grad, i64 gstride, uptr dlp, i64 rows, i64 cols, i64 ignore) {
        kn::check_rc("nll_loss_backward", rows, cols);
        KN_CHECK(gstride == 0 || gstride == 1, "nll_loss_backward: grad_stride must be 0 or 1");
        KN_CHECK(t && grad && dlp, "nll_loss_backward: null pointer");
        kn::check_targets("nll_loss_backward", ptr<const i64>(t), rows, cols, ignore);
        kn::nll_bwd(ptr<const i64>(t), ptr<const float>(w), ptr<const float>(grad), gstride,
                    ptr<float>(dlp), rows, cols, ignore);
      },
      KN_NOGIL);
}
