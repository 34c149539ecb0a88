// 2-D pooling (NCHW, float32, contiguous): max, average, adaptive average; forward and backward.
//
// Bindings (pointers as ints, sizes int64). The caller passes the output size P x Q it allocated
// (pool2d_output_size below gives PyTorch's rule, ceil_mode included); windows are clipped to the
// input, so any P, Q >= 1 is memory-safe.
//   pool2d_output_size(H, k, stride, pad, dil, ceil_mode) -> P
//   max_pool2d_forward(x, y, indices, N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw)
//       indices (int64, may be 0 = not needed): flat index ih*W + iw of the max inside its
//       H x W plane (PyTorch's convention); ties: the first. NaN wins, like PyTorch.
//   max_pool2d_backward(dy, indices, dx, N, C, H, W, P, Q)            dx overwritten
//   avg_pool2d_forward(x, y, N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, count_include_pad,
//                      divisor_override)                              divisor_override 0 = none
//   avg_pool2d_backward(dy, dx, N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, count_include_pad,
//                       divisor_override)                             dx overwritten
//   adaptive_avg_pool2d_forward(x, y, N, C, H, W, P, Q)
//       window p covers rows [floor(p H / P), ceil((p+1) H / P)), likewise for columns
//   adaptive_avg_pool2d_backward(dy, dx, N, C, H, W, P, Q)            dx overwritten
//
// Threads split the N*C planes: a plane's backward scatter then touches only its own plane, so
// no atomics are needed. Planes are small (the course CNN: 24x24), so whole-plane work per
// thread keeps each plane in L1.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/kn.h"
#include "common/layer_geometry.h"
#include "cpu/parallel.h"

namespace kn {
namespace {


// Grain: planes per thread chunk, so tiny tensors stay on one thread.
i64 plane_grain(i64 plane_elems) { return std::max<i64>(1, 16384 / std::max<i64>(1, plane_elems)); }

// Window of output position o along one axis: start (may be negative) and the kernel taps
// [t0, t1) that land inside the input. Precomputed once per call: integer divisions per output
// element made the forward pass several times slower than its memory traffic.
struct Span {
  i64 start, t0, t1;
};

std::vector<Span> window_spans(i64 out, i64 in, i64 k, i64 s, i64 p, i64 d) {
  std::vector<Span> v((size_t)out);
  for (i64 o = 0; o < out; ++o) {
    i64 st = o * s - p;
    i64 t0 = st < 0 ? (-st + d - 1) / d : 0;
    i64 t1 = std::min(k, (in - st + d - 1) / d);
    v[(size_t)o] = Span{st, t0, std::max(t0, t1)};
  }
  return v;
}

// The max of one window and the flat index of its first maximum (NaN wins, like PyTorch).
// Two branch-free passes over the (small) window: the max (NaN noted on the side), then the
// first tap equal to it, scanning backwards with a select. On random data a `v > best` branch
// is a coin flip; mispredictions cost more than the loads.
inline void max_window(const PoolGeom& g, const float* xp, const Span& rw, const Span& cw,
                       float& best_out, i64& index_out) {
  float best = -std::numeric_limits<float>::infinity();
  bool nan = false;
  for (i64 r = rw.t0; r < rw.t1; ++r) {
    const float* row = xp + (rw.start + r * g.dh) * g.W + cw.start;
    for (i64 s = cw.t0; s < cw.t1; ++s) {
      const float v = row[s * g.dw];
      best = std::max(best, v);
      nan |= v != v;
    }
  }
  if (nan) best = std::numeric_limits<float>::quiet_NaN();
  // a window entirely in the padding (only with unusual P, Q) reports its clipped corner
  i64 bi = std::min(std::max<i64>(rw.start + rw.t0 * g.dh, 0), g.H - 1) * g.W +
           std::min(std::max<i64>(cw.start + cw.t0 * g.dw, 0), g.W - 1);
  for (i64 r = rw.t1 - 1; r >= rw.t0; --r) {
    const i64 base = (rw.start + r * g.dh) * g.W + cw.start;
    for (i64 s = cw.t1 - 1; s >= cw.t0; --s) {
      const float v = xp[base + s * g.dw];
      // the first maximum, as PyTorch; with NaNs the first NaN (PyTorch takes the last: the value
      // is NaN either way, only where the gradient goes differs)
      const bool hit = nan ? v != v : v == best;
      bi = hit ? base + s * g.dw : bi;
    }
  }
  best_out = best;
  index_out = bi;
}

// The 2x2, stride 2, unpadded window (the course CNN's pooling, and most CNNs'): four loads, a
// max tree and a select chain for the first maximum, with no window bookkeeping. Returns false
// when the row met a NaN; the caller then redoes that row with max_window's NaN rules.
inline bool max_row_2x2(const float* xp, i64 W, i64 p, i64 Q, float* yrow, i64* irow) {
  const float* r0 = xp + 2 * p * W;
  const float* r1 = r0 + W;
  bool nan = false;
  for (i64 q = 0; q < Q; ++q) {
    const float a = r0[2 * q], b = r0[2 * q + 1], c = r1[2 * q], d = r1[2 * q + 1];
    const float m = std::max(std::max(a, b), std::max(c, d));
    nan |= (a != a) | (b != b) | (c != c) | (d != d);
    yrow[q] = m;
    if (irow) {
      // The first of a, b, c, d equal to the max, in integer arithmetic: a select chain here
      // compiled to branches that mispredict on random data and cost twice the whole max.
      const int ia = a == m, ib = b == m, ic = c == m;
      const i64 row = !ia & !ib;          // the max is c or d
      const i64 col = !ia & (ib | !ic);   // the max is b or d
      irow[q] = (2 * p + row) * W + 2 * q + col;
    }
  }
  return !nan;
}

void max_pool_forward(const PoolGeom& g, const float* x, float* y, i64* ind) {
  const i64 HW = g.H * g.W, PQ = g.P * g.Q;
  const std::vector<Span> rows = window_spans(g.P, g.H, g.kh, g.sh, g.ph, g.dh);
  const std::vector<Span> cols = window_spans(g.Q, g.W, g.kw, g.sw, g.pw, g.dw);
  const bool k2s2 = g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 &&
                    g.dh == 1 && g.dw == 1 && 2 * g.P <= g.H && 2 * g.Q <= g.W;
  parallel_for(g.N * g.C, plane_grain(HW), [&](i64 c0, i64 c1) {
    for (i64 c = c0; c < c1; ++c) {
      const float* xp = x + c * HW;
      float* yp = y + c * PQ;
      i64* ip = ind ? ind + c * PQ : nullptr;
      for (i64 p = 0; p < g.P; ++p) {
        if (k2s2 && max_row_2x2(xp, g.W, p, g.Q, yp + p * g.Q, ip ? ip + p * g.Q : nullptr))
          continue;
        for (i64 q = 0; q < g.Q; ++q) {
          float best;
          i64 bi;
          max_window(g, xp, rows[(size_t)p], cols[(size_t)q], best, bi);
          yp[p * g.Q + q] = best;
          if (ip) ip[p * g.Q + q] = bi;
        }
      }
    }
  });
}

void max_pool_backward(const PoolGeom& g, const float* dy, const i64* ind, float* dx) {
  const i64 HW = g.H * g.W, PQ = g.P * g.Q;
  parallel_for(g.N * g.C, plane_grain(HW), [&](i64 c0, i64 c1) {
    for (i64 c = c0; c < c1; ++c) {
      float* dxp = dx + c * HW;
      const float* dyp = dy + c * PQ;
      const i64* ip = ind + c * PQ;
      std::memset(dxp, 0, sizeof(float) * HW);
      for (i64 j = 0; j < PQ; ++j) {
        i64 k = ip[j];
        if (k >= 0 && k < HW) dxp[k] += dyp[j];  // indices come from forward; stay safe anyway
      }
    }
  });
}

// The averaging window of output (p, q): clipped bounds and PyTorch's divisor.
struct AvgWin {
  i64 h0, h1, w0, w1;
  float inv;
};

inline AvgWin avg_window(const PoolGeom& g, i64 p, i64 q, bool include_pad, i64 div_override) {
  i64 h0 = p * g.sh - g.ph, w0 = q * g.sw - g.pw;
  i64 h1 = std::min(h0 + g.kh, g.H + g.ph), w1 = std::min(w0 + g.kw, g.W + g.pw);
  i64 padded = (h1 - h0) * (w1 - w0);  // window clipped to the padded input
  h0 = std::max<i64>(h0, 0);
  w0 = std::max<i64>(w0, 0);
  h1 = std::min(h1, g.H);
  w1 = std::min(w1, g.W);
  i64 div = div_override ? div_override : include_pad ? padded : (h1 - h0) * (w1 - w0);
  return AvgWin{h0, h1, w0, w1, div > 0 ? 1.f / (float)div : 0.f};
}

void avg_pool_forward(const PoolGeom& g, const float* x, float* y, bool include_pad, i64 divo) {
  const i64 HW = g.H * g.W, PQ = g.P * g.Q;
  parallel_for(g.N * g.C, plane_grain(HW), [&](i64 c0, i64 c1) {
    for (i64 c = c0; c < c1; ++c) {
      const float* xp = x + c * HW;
      float* yp = y + c * PQ;
      for (i64 p = 0; p < g.P; ++p)
        for (i64 q = 0; q < g.Q; ++q) {
          AvgWin a = avg_window(g, p, q, include_pad, divo);
          float s = 0.f;
          for (i64 ih = a.h0; ih < a.h1; ++ih)
            for (i64 iw = a.w0; iw < a.w1; ++iw) s += xp[ih * g.W + iw];
          yp[p * g.Q + q] = s * a.inv;
        }
    }
  });
}

void avg_pool_backward(const PoolGeom& g, const float* dy, float* dx, bool include_pad, i64 divo) {
  const i64 HW = g.H * g.W, PQ = g.P * g.Q;
  parallel_for(g.N * g.C, plane_grain(HW), [&](i64 c0, i64 c1) {
    for (i64 c = c0; c < c1; ++c) {
      float* dxp = dx + c * HW;
      const float* dyp = dy + c * PQ;
      std::memset(dxp, 0, sizeof(float) * HW);
      for (i64 p = 0; p < g.P; ++p)
        for (i64 q = 0; q < g.Q; ++q) {
          AvgWin a = avg_window(g, p, q, include_pad, divo);
          float v = dyp[p * g.Q + q] * a.inv;
          for (i64 ih = a.h0; ih < a.h1; ++ih)
            for (i64 iw = a.w0; iw < a.w1; ++iw) dxp[ih * g.W + iw] += v;
        }
    }
  });
}

inline i64 adaptive_start(i64 p, i64 H, i64 P) { return (p * H) / P; }
inline i64 adaptive_end(i64 p, i64 H, i64 P) { return ((p + 1) * H + P - 1) / P; }

template <bool Backward>
void adaptive_avg(i64 NC, i64 H, i64 W, i64 P, i64 Q, const float* in, float* out) {
  const i64 HW = H * W, PQ = P * Q;
  parallel_for(NC, plane_grain(HW), [&](i64 c0, i64 c1) {
    for (i64 c = c0; c < c1; ++c) {
      if (Backward) std::memset(out + c * HW, 0, sizeof(float) * HW);
      for (i64 p = 0; p < P; ++p) {
        i64 h0 = adaptive_start(p, H, P), h1 = adaptive_end(p, H, P);
        for (i64 q = 0; q < Q; ++q) {
          i64 w0 = adaptive_start(q, W, Q), w1 = adaptive_end(q, W, Q);
          float inv = 1.f / (float)((h1 - h0) * (w1 - w0));
          if (!Backward) {
            const float* xp = in + c * HW;
            float s = 0.f;
            for (i64 ih = h0; ih < h1; ++ih)
              for (i64 iw = w0; iw < w1; ++iw) s += xp[ih * W + iw];
            out[c * PQ + p * Q + q] = s * inv;
          } else {
            float* dxp = out + c * HW;
            float v = in[c * PQ + p * Q + q] * inv;
            for (i64 ih = h0; ih < h1; ++ih)
              for (i64 iw = w0; iw < w1; ++iw) dxp[ih * W + iw] += v;
          }
        }
      }
    }
  });
}

}  // namespace
}  // namespace kn

KN_BIND(pool) {
  using kn::i64;
  using kn::uptr;
  namespace py = kn::py;
  m.def("pool2d_output_size", &kn::pool_out, "PyTorch's pooling output size (ceil_mode included)",
        py::arg("H"), py::arg("k"), py::arg("stride"), py::arg("pad"), py::arg("dil"),
        py::arg("ceil_mode"));
  m.def(
      "max_pool2d_forward",
      [](uptr x, uptr y, uptr ind, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q, i64 kh, i64 kw, i64 sh,
         i64 sw, i64 ph, i64 pw, i64 dh, i64 dw) {
        auto g = kn::check_pool("max_pool2d_forward", N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw);
        KN_CHECK(x && y, "max_pool2d_forward: null pointer");
        kn::max_pool_forward(g, kn::ptr<const float>(x), kn::ptr<float>(y), kn::ptr<i64>(ind));
      },
      KN_NOGIL);
  m.def(
      "max_pool2d_backward",
      [](uptr dy, uptr ind, uptr dx, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q) {
        auto g = kn::check_pool("max_pool2d_backward", N, C, H, W, P, Q, 1, 1, 1, 1, 0, 0, 1, 1);
        KN_CHECK(dy && ind && dx, "max_pool2d_backward: null pointer (indices are required)");
        kn::max_pool_backward(g, kn::ptr<const float>(dy), kn::ptr<const i64>(ind), kn::ptr<float>(dx));
      },
      KN_NOGIL);
  m.def(
      "avg_pool2d_forward",
      [](uptr x, uptr y, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q, i64 kh, i64 kw, i64 sh, i64 sw,
         i64 ph, i64 pw, bool include_pad, i64 divo) {
        auto g = kn::check_pool("avg_pool2d_forward", N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, 1, 1);
        KN_CHECK(divo >= 0, "avg_pool2d_forward: divisor_override must be positive, got ", divo);
        KN_CHECK(x && y, "avg_pool2d_forward: null pointer");
        kn::avg_pool_forward(g, kn::ptr<const float>(x), kn::ptr<float>(y), include_pad, divo);
      },
      KN_NOGIL);
  m.def(
      "avg_pool2d_backward",
      [](uptr dy, uptr dx, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q, i64 kh, i64 kw, i64 sh, i64 sw,
         i64 ph, i64 pw, bool include_pad, i64 divo) {
        auto g = kn::check_pool("avg_pool2d_backward", N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, 1, 1);
        KN_CHECK(divo >= 0, "avg_pool2d_backward: divisor_override must be positive, got ", divo);
        KN_CHECK(dy && dx, "avg_pool2d_backward: null pointer");
        kn::avg_pool_backward(g, kn::ptr<const float>(dy), kn::ptr<float>(dx), include_pad, divo);
      },
      KN_NOGIL);
  m.def(
      "adaptive_avg_pool2d_forward",
      [](uptr x, uptr y, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q) {
        kn::check_pool("adaptive_avg_pool2d_forward", N, C, H, W, P, Q, 1, 1, 1, 1, 0, 0, 1, 1);
        KN_CHECK(x && y, "adaptive_avg_pool2d_forward: null pointer");
        kn::adaptive_avg<false>(N * C, H, W, P, Q, kn::ptr<const float>(x), kn::ptr<float>(y));
      },
      KN_NOGIL);
  m.def(
      "adaptive_avg_pool2d_backward",
      [](uptr dy, uptr dx, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q) {
        kn::check_pool("adaptive_avg_pool2d_backward", N, C, H, W, P, Q, 1, 1, 1, 1, 0, 0, 1, 1);
        KN_CHECK(dy && dx, "adaptive_avg_pool2d_backward: null pointer");
        kn::adaptive_avg<true>(N * C, H, W, P, Q, kn::ptr<const float>(dy), kn::ptr<float>(dx));
      },
      KN_NOGIL);
}
