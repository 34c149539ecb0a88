// Batch normalisation and layer normalisation, forward and backward (float32, contiguous).
//
// Bindings (pointers as ints, 0 = absent; sizes int64):
//   batch_norm_forward(x, y, weight, bias, mean, invstd, running_mean, running_var,
//                      outer, C, inner, training, momentum, eps)
//       x, y viewed [outer, C, inner] (NCHW: outer = N, inner = H*W; [N, C]: inner = 1).
//       training: mean[c] and invstd[c] = 1/sqrt(var[c] + eps) from the batch (biased variance);
//         running_mean/var (if given) move by momentum toward the batch mean and the UNBIASED
//         variance, as PyTorch does: r = (1 - momentum) r + momentum v.
//       eval: mean = running_mean, invstd = 1/sqrt(running_var + eps) (both required).
//       y = (x - mean[c]) * invstd[c] * weight[c] + bias[c]; mean/invstd are written for backward.
//   batch_norm_backward(x, dy, mean, invstd, weight, dx, dweight, dbias, outer, C, inner, training)
//       n = outer * inner, xhat = (x - mean) invstd, per channel sdy = sum(dy), sdyx = sum(dy xhat):
//       training: dx = w invstd (dy - sdy / n - xhat sdyx / n)   (the batch statistics depend on x)
//       eval:     dx = w invstd dy
//       dweight[c] = sdyx, dbias[c] = sdy. Any of dx, dweight, dbias may be 0 (not wanted).
//   layer_norm_forward(x, y, weight, bias, mean, rstd, rows, D, eps)
//       per row of x [rows, D]: mean, rstd = 1/sqrt(biased var + eps); y = xhat * weight + bias
//       (weight, bias [D] or 0).
//   layer_norm_backward(x, dy, mean, rstd, weight, dx, dweight, dbias, rows, D)
//       g = dy * weight; dx = rstd (g - mean(g) - xhat mean(g xhat)) per row;
//       dweight[d] = sum over rows of dy xhat, dbias[d] = sum over rows of dy.
//
// Numerics: two passes, mean first and then the centred squares (no E[x^2] - E[x]^2 cancellation).
// Each pass adds blocks of 256 values in float SIMD lanes and the block totals in double; the
// first pass adds deviations from a pivot (sum_d) and the second deviations from float(mean), so
// the float rounding scales with the spread of the values, not their mean: a constant row has
// its exact mean and variance 0, and a large mean with a small spread keeps its digits.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/kn.h"
#include "common/norm_args.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"

namespace kn {
namespace {

struct LayerNormGradTag {};  // thread_scratch buffer: one row of dy * weight

// Row sums. Each block of up to kBlock values is summed in float over 8 lanes (so the loop
// vectorises; a row shorter than a block too), and the block totals in double: a lane adds at most
// kBlock/8 = 32 values, so float rounding stays ~1e-6 of the block's magnitude, and long rows lose
// nothing to the double total.
constexpr i64 kBlock = 256;

// 4 float lanes as a GCC/Clang vector type: SSE on x86-64's baseline, NEON on aarch64. (GCC left
// eight scalar accumulators unvectorised.) Loads through memcpy: rows need not be 16-byte aligned.
typedef float f4 __attribute__((vector_size(16)));
inline f4 load4(const float* p) {
  f4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline float lanes_total(f4 a, f4 b) {
  const f4 t = a + b;
  return (t[0] + t[1]) + (t[2] + t[3]);
}

// A pivot for sum_d: a finite value of the data (its first), 0 when there is none.
inline float sum_pivot(const float* x, i64 n) { return n > 0 && std::isfinite(x[0]) ? x[0] : 0.f; }

// sum(x) = n p + sum(x - p) for the pivot p: the float lanes add deviations from p (exact where
// x is within a factor 2 of p), so their rounding scales with the spread of x, not its mean, and
// a constant row sums to exactly n p (its mean is exact, its variance 0).
inline double sum_d(const float* x, i64 n) {
  const float p = sum_pivot(x, n);
  const f4 pv = {p, p, p, p};
  double total = 0.0;
  for (i64 i = 0; i < n; i += kBlock) {
    const i64 len = std::min(kBlock, n - i), len8 = len & ~i64(7);
    const float* xb = x + i;
    f4 a = {0, 0, 0, 0}, b = {0, 0, 0, 0};
    for (i64 j = 0; j < len8; j += 8) {
      a += load4(xb + j) - pv;
      b += load4(xb + j + 4) - pv;
    }
    float tail = 0.f;
    for (i64 j = len8; j < len; ++j) tail += xb[j] - p;
    total += lanes_total(a, b) + tail;
  }
  return (double)n * (double)p + total;
}

// sum((x - m)^2) for m = mean(x) (double). The blocks subtract mf = float(m) in float, and the
// shift is corrected exactly: sum((x - m)^2) = sum((x - mf)^2) - n (m - mf)^2, since
// sum(x - mf) = n (m - mf). (x - mf is exact where it matters: x close to mf, Sterbenz.)
inline double centred_sq_d(const float* x, i64 n, double m) {
  const float mf = (float)m;
  const f4 mv = {mf, mf, mf, mf};
  double total = 0.0;
  for (i64 i = 0; i < n; i += kBlock) {
    const i64 len = std::min(kBlock, n - i), len8 = len & ~i64(7);
    const float* xb = x + i;
    f4 a = {0, 0, 0, 0}, b = {0, 0, 0, 0};
    for (i64 j = 0; j < len8; j += 8) {
      const f4 d0 = load4(xb + j) - mv, d1 = load4(xb + j + 4) - mv;
      a += d0 * d0;
      b += d1 * d1;
    }
    float tail = 0.f;
    for (i64 j = len8; j < len; ++j) {
      const float d = xb[j] - mf;
      tail += d * d;
    }
    total += lanes_total(a, b) + tail;
  }
  const double delta = m - (double)mf;
  return std::max(total - (double)n * delta * delta, 0.0);  // (NaN stays NaN)
}

// sum(g) and sum(g (x - m)) in one pass, the same way: sum(g (x - m)) = sum(g (x - mf)) - (m - mf) sum(g).
inline void sum_and_centred_dot_d(const float* g, const float* x, i64 n, double m, double* sg, double* sgx) {
  const float mf = (float)m;
  const f4 mv = {mf, mf, mf, mf};
  double tg = 0.0, tgx = 0.0;
  for (i64 i = 0; i < n; i += kBlock) {
    const i64 len = std::min(kBlock, n - i), len8 = len & ~i64(7);
    const float* gb = g + i;
    const float* xb = x + i;
    f4 a0 = {0, 0, 0, 0}, a1 = {0, 0, 0, 0}, c0 = {0, 0, 0, 0}, c1 = {0, 0, 0, 0};
    for (i64 j = 0; j < len8; j += 8) {
      const f4 g0 = load4(gb + j), g1 = load4(gb + j + 4);
      a0 += g0;
      a1 += g1;
      c0 += g0 * (load4(xb + j) - mv);
      c1 += g1 * (load4(xb + j + 4) - mv);
    }
    float ta = 0.f, tc = 0.f;
    for (i64 j = len8; j < len; ++j) {
      ta += gb[j];
      tc += gb[j] * (xb[j] - mf);
    }
    tg += lanes_total(a0, a1) + ta;
    tgx += lanes_total(c0, c1) + tc;
  }
  *sg = tg;
  *sgx = tgx - (m - (double)mf) * tg;
}

// Per-channel sums over x viewed [outer, C, inner]: the outer*C rows of `inner` contiguous values
// are split into contiguous ranges, one per thread (so [N, C] inputs with inner = 1 read memory in
// order); row(offset, c, acc) adds row (o, c)'s NACC contributions into acc[0..NACC). The per-thread
// partial sums are added in thread order, so a run is deterministic for a given thread count.
template <int NACC, typename Row>
void channel_sums(i64 outer, i64 C, i64 inner, double* out, Row&& row) {
  const i64 rows = outer * C;
  int nt = available_threads();
  const i64 work = rows * std::max<i64>(inner, 1);
  nt = (int)std::max<i64>(1, std::min<i64>(nt, work / 32768));  // small tensors: one thread
  std::vector<double> part((size_t)nt * NACC * C, 0.0);
  parallel_team(nt, [&](int t, int T) {
    double* acc = part.data() + (size_t)t * NACC * C;
    const i64 b = rows * t / T, e = rows * (t + 1) / T;
    i64 c = b % C;
    for (i64 r = b; r < e; ++r) {
      row(r * inner, c, acc + c * NACC);
      if (++c == C) c = 0;
    }
  });
  std::fill(out, out + NACC * C, 0.0);
  for (int t = 0; t < nt; ++t)
    for (i64 k = 0; k < NACC * C; ++k) out[k] += part[(size_t)t * NACC * C + k];
}

// The same for [outer, C] inputs (inner = 1), where a row of the tensor holds one value of every
// channel: threads take contiguous ranges of rows; row(o, acc) adds row o's values channel-wise
// into the planar float acc[k * C + c] (the loop over channels vectorises), which is flushed into
// the thread's double partials every kRowBlock rows. out is interleaved, as above.
struct ChannelBlockTag {};
template <int NACC, typename Row>
void channel_sums_flat(i64 outer, i64 C, double* out, Row&& row) {
  constexpr i64 kRowBlock = 32;
  int nt = available_threads();
  nt = (int)std::max<i64>(1, std::min<i64>(nt, outer * C / 32768));
  std::vector<double> part((size_t)nt * NACC * C, 0.0);
  parallel_team(nt, [&](int t, int T) {
    double* acc = part.data() + (size_t)t * NACC * C;
    float* blk = thread_scratch<ChannelBlockTag>(NACC * C);
    const i64 b0 = outer * t / T, b1 = outer * (t + 1) / T;
    for (i64 o0 = b0; o0 < b1; o0 += kRowBlock) {
      std::fill(blk, blk + NACC * C, 0.f);
      for (i64 o = o0, e = std::min(b1, o0 + kRowBlock); o < e; ++o) row(o, blk);
      for (i64 k = 0; k < NACC * C; ++k) acc[k] += blk[k];
    }
  });
  std::fill(out, out + NACC * C, 0.0);
  for (int t = 0; t < nt; ++t)
    for (int k = 0; k < NACC; ++k)
      for (i64 c = 0; c < C; ++c) out[c * NACC + k] += part[((size_t)t * NACC + k) * C + c];
}

// y (or dx) per element from per-channel constants: f(xr, yr, c, len) over x viewed [outer, C, inner]
template <typename F>
void per_channel_map(i64 outer, i64 C, i64 inner, F&& f) {
  if (inner == 1) {  // rows of C channels
    parallel_for(outer, std::max<i64>(1, 16384 / C), [&](i64 o0, i64 o1) {
      for (i64 o = o0; o < o1; ++o) f(o * C, (i64)-1, C);
    });
    return;
  }
  parallel_for(outer * C, std::max<i64>(1, 16384 / std::max<i64>(inner, 1)), [&](i64 r0, i64 r1) {
    i64 c = r0 % C;
    for (i64 r = r0; r < r1; ++r) {
      f(r * inner, c, inner);
      if (++c == C) c = 0;
    }
  });
}

void batch_norm_fwd(const float* x, float* y, const float* w, const float* b, float* mean,
                    float* invstd, float* run_mean, float* run_var, i64 outer, i64 C, i64 inner,
                    bool training, double momentum, double eps) {
  const i64 n = outer * inner;
  if (training) {
    std::vector<double> s(C), m(C), q(C);
    if (inner == 1) {
      // deviations from a pivot per channel (row 0's value), as in sum_d
      std::vector<float> pv(C);
      for (i64 c = 0; c < C; ++c) pv[c] = sum_pivot(x + c, 1);
      channel_sums_flat<1>(outer, C, s.data(), [&](i64 o, float* acc) {
        const float* xr = x + o * C;
        for (i64 c = 0; c < C; ++c) acc[c] += xr[c] - pv[c];
      });
      for (i64 c = 0; c < C; ++c) s[c] += (double)n * (double)pv[c];
    } else
      channel_sums<1>(outer, C, inner, s.data(),
                      [&](i64 off, i64, double* acc) { acc[0] += sum_d(x + off, inner); });
    for (i64 c = 0; c < C; ++c) m[c] = s[c] / (double)n;
    if (inner == 1) {
      // centred on mf = float(m) in float, corrected as in centred_sq_d
      std::vector<float> mf(C);
      for (i64 c = 0; c < C; ++c) mf[c] = (float)m[c];
      channel_sums_flat<1>(outer, C, q.data(), [&](i64 o, float* acc) {
        const float* xr = x + o * C;
        for (i64 c = 0; c < C; ++c) {
          const float d = xr[c] - mf[c];
          acc[c] += d * d;
        }
      });
      for (i64 c = 0; c < C; ++c) {
        const double delta = m[c] - (double)mf[c];
        q[c] = std::max(q[c] - (double)n * delta * delta, 0.0);  // (NaN stays NaN)
      }
    } else
      channel_sums<1>(outer, C, inner, q.data(), [&](i64 off, i64 c, double* acc) {
        acc[0] += centred_sq_d(x + off, inner, m[c]);
      });
    for (i64 c = 0; c < C; ++c) {
      const double var = q[c] / (double)n;
      mean[c] = (float)m[c];
      invstd[c] = (float)(1.0 / std::sqrt(var + eps));
      if (run_mean) run_mean[c] = (float)((1.0 - momentum) * run_mean[c] + momentum * m[c]);
      if (run_var) {
        const double unbiased = n > 1 ? q[c] / (double)(n - 1) : var;
        run_var[c] = (float)((1.0 - momentum) * run_var[c] + momentum * unbiased);
      }
    }
  } else {
    for (i64 c = 0; c < C; ++c) {
      mean[c] = run_mean[c];
      invstd[c] = (float)(1.0 / std::sqrt((double)run_var[c] + eps));
    }
  }
  // y = (x - mean) * scale + bias with scale = invstd * weight (subtracting first keeps the digits
  // of a channel whose mean is large against its spread)
  std::vector<float> scale(C), shift(C);
  for (i64 c = 0; c < C; ++c) {
    scale[c] = invstd[c] * (w ? w[c] : 1.f);
    shift[c] = b ? b[c] : 0.f;
  }
  per_channel_map(outer, C, inner, [&](i64 off, i64 c, i64 len) {
    const float* xr = x + off;
    float* yr = y + off;
    if (c < 0) {  // a row of C channels
      for (i64 j = 0; j < len; ++j) yr[j] = (xr[j] - mean[j]) * scale[j] + shift[j];
    } else {
      const float mu = mean[c], sc = scale[c], sh = shift[c];
      for (i64 j = 0; j < len; ++j) yr[j] = (xr[j] - mu) * sc + sh;
    }
  });
}

void batch_norm_bwd(const float* x, const float* dy, const float* mean, const float* invstd,
                    const float* w, float* dx, float* dw, float* db, i64 outer, i64 C, i64 inner,
                    bool training) {
  const i64 n = outer * inner;
  std::vector<double> s(2 * C, 0.0);  // per channel: sum(dy), sum(dy (x - mean))
  if ((dw || db || (dx && training)) && inner == 1)
    channel_sums_flat<2>(outer, C, s.data(), [&](i64 o, float* acc) {
      const float* xr = x + o * C;
      const float* gr = dy + o * C;
      float* a1 = acc + C;
      for (i64 c = 0; c < C; ++c) {
        acc[c] += gr[c];
        a1[c] += gr[c] * (xr[c] - mean[c]);
      }
    });
  else if (dw || db || (dx && training))
    channel_sums<2>(outer, C, inner, s.data(), [&](i64 off, i64 c, double* acc) {
      double sg, sgx;
      sum_and_centred_dot_d(dy + off, x + off, inner, mean[c], &sg, &sgx);
      acc[0] += sg;
      acc[1] += sgx;
    });
  for (i64 c = 0; c < C; ++c) {
    if (dw) dw[c] = (float)(s[2 * c + 1] * invstd[c]);
    if (db) db[c] = (float)s[2 * c];
  }
  if (!dx) return;
  // dx = k (dy - a - (x - mean) bq), k = w invstd, a = sdy / n, bq = invstd^2 sum(dy (x-mean)) / n
  std::vector<float> k(C), a(C), bq(C);
  for (i64 c = 0; c < C; ++c) {
    const double is = invstd[c];
    k[c] = (float)(is * (w ? w[c] : 1.f));
    a[c] = training ? (float)(s[2 * c] / (double)n) : 0.f;
    bq[c] = training ? (float)(is * is * s[2 * c + 1] / (double)n) : 0.f;
  }
  per_channel_map(outer, C, inner, [&](i64 off, i64 c, i64 len) {
    const float* xr = x + off;
    const float* gr = dy + off;
    float* dr = dx + off;
    if (c < 0) {  // a row of C channels
      for (i64 j = 0; j < len; ++j) dr[j] = k[j] * (gr[j] - a[j] - (xr[j] - mean[j]) * bq[j]);
    } else {
      const float kc = k[c], ac = a[c], bc = bq[c], mu = mean[c];
      for (i64 j = 0; j < len; ++j) dr[j] = kc * (gr[j] - ac - (xr[j] - mu) * bc);
    }
  });
}

void layer_norm_fwd(const float* x, float* y, const float* w, const float* b, float* mean,
                    float* rstd, i64 rows, i64 D, double eps) {
  parallel_for(rows, std::max<i64>(1, 16384 / D), [&](i64 r0, i64 r1) {
    for (i64 r = r0; r < r1; ++r) {
      const float* xr = x + r * D;
      float* yr = y + r * D;
      const double m = sum_d(xr, D) / (double)D;
      const double var = centred_sq_d(xr, D, m) / (double)D;
      const float mu = (float)m, rs = (float)(1.0 / std::sqrt(var + eps));
      mean[r] = mu;
      rstd[r] = rs;
      if (w && b)
        for (i64 d = 0; d < D; ++d) yr[d] = (xr[d] - mu) * rs * w[d] + b[d];
      else if (w)
        for (i64 d = 0; d < D; ++d) yr[d] = (xr[d] - mu) * rs * w[d];
      else if (b)
        for (i64 d = 0; d < D; ++d) yr[d] = (xr[d] - mu) * rs + b[d];
      else
        for (i64 d = 0; d < D; ++d) yr[d] = (xr[d] - mu) * rs;
    }
  });
}

void layer_norm_bwd(const float* x, const float* dy, const float* mean, const float* rstd,
                    const float* w, float* dx, float* dw, float* db, i64 rows, i64 D) {
  // One pass over the rows: each row's dx, and its share of the column sums dweight/dbias, which
  // a thread adds in float over blocks of kRowBlock rows and then into its double partials.
  constexpr i64 kRowBlock = 32;
  const bool cols = dw || db;
  int nt = available_threads();
  nt = (int)std::max<i64>(1, std::min<i64>(nt, rows * D / 32768));
  std::vector<double> part(cols ? (size_t)nt * 2 * D : 0, 0.0);
  parallel_team(nt, [&](int t, int T) {
    float* g = thread_scratch<LayerNormGradTag>(3 * D);  // dy * w, then the block's column sums
    float* fw = g + D;
    float* fb = g + 2 * D;
    double* pw = cols ? part.data() + (size_t)t * 2 * D : nullptr;
    double* pb = cols ? pw + D : nullptr;
    const i64 b0 = rows * t / T, b1 = rows * (t + 1) / T;
    for (i64 r0 = b0; r0 < b1; r0 += kRowBlock) {
      const i64 r1 = std::min(b1, r0 + kRowBlock);
      if (cols) std::fill(fw, fw + 2 * D, 0.f);
      for (i64 r = r0; r < r1; ++r) {
        const float* xr = x + r * D;
        const float* gr = dy + r * D;
        const float muf = mean[r], rsf = rstd[r];
        if (cols)
          for (i64 d = 0; d < D; ++d) {
            fw[d] += gr[d] * ((xr[d] - muf) * rsf);
            fb[d] += gr[d];
          }
        if (!dx) continue;
        const float* gw = gr;
        if (w) {
          for (i64 d = 0; d < D; ++d) g[d] = gr[d] * w[d];
          gw = g;
        }
        double sg, sgx;
        sum_and_centred_dot_d(gw, xr, D, muf, &sg, &sgx);
        const float a = (float)(sg / (double)D), bq = (float)(sgx * rsf / (double)D);
        float* dr = dx + r * D;
        for (i64 d = 0; d < D; ++d) {
          const float xh = (xr[d] - muf) * rsf;
          dr[d] = rsf * (gw[d] - a - xh * bq);
        }
      }
      if (cols)
        for (i64 d = 0; d < D; ++d) {
          pw[d] += fw[d];
          pb[d] += fb[d];
        }
    }
  });
  if (!cols) return;
  for (i64 d = 0; d < D; ++d) {
    double sw = 0, sb = 0;
    for (int t = 0; t < nt; ++t) {
      sw += part[(size_t)t * 2 * D + d];
      sb += part[(size_t)t * 2 * D + D + d];
    }
    if (dw) dw[d] = (float)sw;
    if (db) db[d] = (float)sb;
  }
}

}  // namespace
}  // namespace kn

KN_BIND(norm) {
  using kn::i64;
  using kn::ptr;
  using kn::uptr;
  m.def(
      "batch_norm_forward",
      [](uptr x, uptr y, uptr w, uptr b, uptr mean, uptr invstd, uptr rmean, uptr rvar, i64 outer,
         i64 C, i64 inner, bool training, double momentum, double eps) {
        const char* op = "batch_norm_forward";
        kn::check_batch_norm_forward(op, x, y, mean, invstd, rmean, rvar, outer, C, inner, training, momentum, eps);
        kn::batch_norm_fwd(ptr<const float>(x), ptr<float>(y), ptr<const float>(w), ptr<const float>(b),
                           ptr<float>(mean), ptr<float>(invstd), ptr<float>(rmean), ptr<float>(rvar),
                           outer, C, inner, training, momentum, eps);
      },
      KN_NOGIL);
  m.def(
      "batch_norm_backward",
      [](uptr x, uptr dy, uptr mean, uptr invstd, uptr w, uptr dx, uptr dw, uptr db, i64 outer, i64 C,
         i64 inner, bool training) {
        const char* op = "batch_norm_backward";
        kn::check_batch_norm_backward(op, x, dy, mean, invstd, outer, C, inner);
        kn::batch_norm_bwd(ptr<const float>(x), ptr<const float>(dy), ptr<const float>(mean),
                           ptr<const float>(invstd), ptr<const float>(w), ptr<float>(dx), ptr<float>(dw),
                           ptr<float>(db), outer, C, inner, training);
      },
      KN_NOGIL);
  m.def(
      "layer_norm_forward",
      [](uptr x, uptr y, uptr w, uptr b, uptr mean, uptr rstd, i64 rows, i64 D, double eps) {
        const char* op = "layer_norm_forward";
        kn::check_layer_norm_forward(op, x, y, mean, rstd, rows, D, eps);
        kn::layer_norm_fwd(ptr<const float>(x), ptr<float>(y), ptr<const float>(w), ptr<const float>(b),
                           ptr<float>(mean), ptr<float>(rstd), rows, D, eps);
      },
      KN_NOGIL);
  m.def(
      "layer_norm_backward",
      [](uptr x, uptr dy, uptr mean, uptr rstd, uptr w, uptr dx, uptr dw, uptr db, i64 rows, i64 D) {
        const char* op = "layer_norm_backward";
        kn::check_layer_norm_backward(op, x, dy, mean, rstd, rows, D);
        kn::layer_norm_bwd(ptr<const float>(x), ptr<const float>(dy), ptr<const float>(mean),
                           ptr<const float>(rstd), ptr<const float>(w), ptr<float>(dx), ptr<float>(dw),
                           ptr<float>(db), rows, D);
      },
      KN_NOGIL);
}
