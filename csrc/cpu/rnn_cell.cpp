// Fused recurrent cells (float32, contiguous row-major, one time step, threaded over the batch).
//
// The Python layer computes the input projection of every time step as one GEMM (xg, [T, B, G*H],
// b_ih folded in) and, per step, the hidden projection hg = h_prev @ W_hh^T + b_hh (one GEMM,
// [B, G*H]). These kernels do everything pointwise that follows: gate activations, the state
// update, and what backward needs. Gate order is PyTorch's (LSTM i,f,g,o; GRU r,z,n).
//
// Variable-length batches: `lengths` (int64[B], 0 = all rows full length) and the time index `t`.
// A row with t >= lengths[b] is past its end: it carries its state unchanged (h_out = h_prev,
// c_out = c_prev), and backward passes dh/dc straight through with zero gate gradients. The
// reverse direction of a bidirectional layer therefore starts each row at its own last element.
//
//   lstm_cell_forward(xg, hg, h_prev, c_prev, h_out, c_out, gates, B, H, lengths, t)
//       gates [B,4H] receives the activated (i, f, g, o), saved for backward.
//   lstm_cell_backward(dh, dc, gates, c_prev, c, dgates, dh_prev, dc_prev, B, H, lengths, t)
//       dh, dc: gradient w.r.t. h_t and c_t. dgates [B,4H]: gradient w.r.t. the pre-activation
//       gates (same for xg and hg). dh_prev gets only the part that bypasses W_hh (0, or dh for
//       finished rows); the caller adds dgates @ W_hh with a beta=1 GEMM.
//   gru_cell_forward(xg, hg, h_prev, h_out, saved, B, H, lengths, t)
//       r = s(xr + hr), z = s(xz + hz), n = tanh(xn + r * hn), h = (1 - z) * n + z * h_prev,
//       where hn includes b_hn (PyTorch's GRU: the reset gate multiplies the hidden projection).
//       saved [B,4H] receives (r, z, n, hn).
//   gru_cell_backward(dh, saved, h_prev, dxg, dhg, dh_prev, B, H, lengths, t)
//       dxg, dhg [B,3H]: gradients w.r.t. xg and hg (they differ in the n block);
//       dh_prev = dh * z (+ dhg @ W_hh added by the caller).
//   rnn_cell_forward(xg, hg, h_prev, h_out, B, H, act, lengths, t)    act 0 tanh, 1 relu
//   rnn_cell_backward(dh, h, dgates, dh_prev, B, H, act, lengths, t)  h = this step's output
#include "cpu/rnn_cell.h"

#include <algorithm>
#include <cstring>

#include "common/kn.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"
#include "cpu/vecmath.h"

namespace kn {
namespace {

// rows per thread chunk: at least ~32K gate elements, since an OpenMP region per time step costs
// more than a small cell (B=64, H=128 runs serial; the GEMMs around it are threaded anyway)
inline i64 row_grain(i64 H) { return std::max<i64>(1, 32768 / std::max<i64>(1, 4 * H)); }

}  // namespace

void lstm_fwd_rows(const CellLayout& L, const float* xg, const float* hg, const float* hp, const float* cp,
                   float* ho, float* co, float* gates, const i64* len, i64 t, i64 b0, i64 b1) {
  const i64 n = L.n;
  for (i64 b = b0; b < b1; ++b) {
    const float* x = xg + b * L.ld_x;
    const float* h = hg + b * L.ld_hg;
    float* g = gates + b * L.ld_s;
    float* hrow = ho + b * L.ld_h;
    float* crow = co + b * L.ld_h;
    if (past_end(len, b, t)) {
      std::memcpy(hrow, hp + b * L.ld_h, sizeof(float) * n);
      std::memcpy(crow, cp + b * L.ld_h, sizeof(float) * n);
      for (int k = 0; k < 4; ++k) std::memset(g + k * L.gs_s, 0, sizeof(float) * n);
      continue;
    }
    const float* __restrict cprev = cp + b * L.ld_h;
    sigmoid_of_sum(x, h, g, n);                                              // i
    sigmoid_of_sum(x + L.gs_x, h + L.gs_hg, g + L.gs_s, n);                  // f
    tanh_of_sum(x + 2 * L.gs_x, h + 2 * L.gs_hg, g + 2 * L.gs_s, n);         // g
    sigmoid_of_sum(x + 3 * L.gs_x, h + 3 * L.gs_hg, g + 3 * L.gs_s, n);      // o
    {
      // restrict views: without them the compiler must assume the stores alias the gates
      // and keeps these loops scalar
      const float* __restrict gi = g;
      const float* __restrict gf = g + L.gs_s;
      const float* __restrict gg = g + 2 * L.gs_s;
      float* __restrict c = crow;
      for (i64 j = 0; j < n; ++j) c[j] = gf[j] * cprev[j] + gi[j] * gg[j];
    }
    tanh_of_sum(crow, nullptr, hrow, n);
    {
      const float* __restrict go = g + 3 * L.gs_s;
      float* __restrict hr = hrow;
      for (i64 j = 0; j < n; ++j) hr[j] *= go[j];
    }
  }
}

namespace {
struct TanhCRow {};  // per-thread scratch (cpu/scratch.h): tanh(c) of one row, LSTM backward
}  // namespace

void lstm_bwd_rows(const CellLayout& L, const float* dh, const float* dc, const float* gates, const float* cp,
                   const float* cc, float* dg, float* dhp, float* dcp, const i64* len, i64 t, i64 b0, i64 b1) {
  const i64 n = L.n;
  for (i64 b = b0; b < b1; ++b) {
    float* d = dg + b * L.ld_x;
    const i64 r = b * L.ld_h;  // this row in the state arrays
    if (past_end(len, b, t)) {
      std::memcpy(dhp + r, dh + r, sizeof(float) * n);
      std::memcpy(dcp + r, dc + r, sizeof(float) * n);
      for (int k = 0; k < 4; ++k) std::memset(d + k * L.gs_x, 0, sizeof(float) * n);
      continue;
    }
    // tanh(c) for the row with the vectorised exp, then one branch-free loop over restrict
    // pointers (it vectorises; the scalar tanh per element made this cell 3x the forward)
    float* __restrict tc = thread_scratch<TanhCRow>(n);
    tanh_of_sum(cc + r, nullptr, tc, n);
    const float* __restrict gi = gates + b * L.ld_s;
    const float* __restrict gf = gi + L.gs_s;
    const float* __restrict gg = gi + 2 * L.gs_s;
    const float* __restrict go = gi + 3 * L.gs_s;
    const float* __restrict dhr = dh + r;
    const float* __restrict dcr = dc + r;
    const float* __restrict cpr = cp + r;
    float* __restrict di = d;
    float* __restrict df = d + L.gs_x;
    float* __restrict dgg = d + 2 * L.gs_x;
    float* __restrict dgo = d + 3 * L.gs_x;
    float* __restrict dcpr = dcp + r;
    float* __restrict dhpr = dhp + r;
    for (i64 j = 0; j < n; ++j) {
      const float i = gi[j], f = gf[j], g = gg[j], o = go[j], t = tc[j], dhj = dhr[j];
      const float dct = dcr[j] + dhj * o * (1.f - t * t);
      di[j] = dct * g * i * (1.f - i);
      df[j] = dct * cpr[j] * f * (1.f - f);
      dgg[j] = dct * i * (1.f - g * g);
      dgo[j] = dhj * t * o * (1.f - o);
      dcpr[j] = dct * f;
      dhpr[j] = 0.f;
    }
  }
}

void gru_fwd_rows(const CellLayout& L, const float* xg, const float* hg, const float* hp, float* ho,
                  float* saved, const i64* len, i64 t, i64 b0, i64 b1) {
  const i64 n = L.n;
  for (i64 b = b0; b < b1; ++b) {
    const float* x = xg + b * L.ld_x;
    const float* h = hg + b * L.ld_hg;
    const float* hprev = hp + b * L.ld_h;
    float* s = saved + b * L.ld_s;
    float* hrow = ho + b * L.ld_h;
    if (past_end(len, b, t)) {
      std::memcpy(hrow, hprev, sizeof(float) * n);
      for (int k = 0; k < 4; ++k) std::memset(s + k * L.gs_s, 0, sizeof(float) * n);
      continue;
    }
    sigmoid_of_sum(x, h, s, n);                          // r
    sigmoid_of_sum(x + L.gs_x, h + L.gs_hg, s + L.gs_s, n);  // z
    float* sn = s + 2 * L.gs_s;
    float* shn = s + 3 * L.gs_s;
    for (i64 j = 0; j < n; ++j) {
      shn[j] = h[2 * L.gs_hg + j];                     // hn (includes b_hn)
      sn[j] = x[2 * L.gs_x + j] + s[j] * h[2 * L.gs_hg + j];  // n pre-activation
    }
    tanh_of_sum(sn, nullptr, sn, n);
    const float* z = s + L.gs_s;
    for (i64 j = 0; j < n; ++j) hrow[j] = (1.f - z[j]) * sn[j] + z[j] * hprev[j];
  }
}

void gru_bwd_rows(const CellLayout& L, const float* dh, const float* saved, const float* hp, float* dxg,
                  float* dhg, float* dhp, const i64* len, i64 t, i64 b0, i64 b1) {
  const i64 n = L.n;
  for (i64 b = b0; b < b1; ++b) {
    float* dx = dxg + b * L.ld_x;
    float* dhh = dhg + b * L.ld_hg;
    const i64 r = b * L.ld_h;
    if (past_end(len, b, t)) {
      std::memcpy(dhp + r, dh + r, sizeof(float) * n);
      for (int k = 0; k < 3; ++k) {
        std::memset(dx + k * L.gs_x, 0, sizeof(float) * n);
        std::memset(dhh + k * L.gs_hg, 0, sizeof(float) * n);
      }
      continue;
    }
    const float* s = saved + b * L.ld_s;
    for (i64 j = 0; j < n; ++j) {
      float rg = s[j], z = s[L.gs_s + j], ng = s[2 * L.gs_s + j], hn = s[3 * L.gs_s + j];
      float d = dh[r + j];
      float dn = d * (1.f - z) * (1.f - ng * ng);  // through tanh
      float dz = d * (hp[r + j] - ng) * z * (1.f - z);
      float dr = dn * hn * rg * (1.f - rg);
      dx[j] = dr;
      dx[L.gs_x + j] = dz;
      dx[2 * L.gs_x + j] = dn;
      dhh[j] = dr;
      dhh[L.gs_hg + j] = dz;
      dhh[2 * L.gs_hg + j] = dn * rg;
      dhp[r + j] = d * z;
    }
  }
}

void rnn_fwd_rows(const CellLayout& L, const float* xg, const float* hg, const float* hp, float* ho, int act,
                  const i64* len, i64 t, i64 b0, i64 b1) {
  const i64 n = L.n;
  for (i64 b = b0; b < b1; ++b) {
    const float* x = xg + b * L.ld_x;
    const float* h = hg + b * L.ld_hg;
    float* o = ho + b * L.ld_h;
    if (past_end(len, b, t)) {
      std::memcpy(o, hp + b * L.ld_h, sizeof(float) * n);
      continue;
    }
    if (act == 0) {
      tanh_of_sum(x, h, o, n);
      continue;
    }
    for (i64 j = 0; j < n; ++j) {
      float v = x[j] + h[j];
      o[j] = v > 0.f ? v : 0.f;
    }
  }
}

void rnn_bwd_rows(const CellLayout& L, const float* dh, const float* h, float* dg, float* dhp, int act,
                  const i64* len, i64 t, i64 b0, i64 b1) {
  const i64 n = L.n;
  for (i64 b = b0; b < b1; ++b) {
    const i64 r = b * L.ld_h;
    float* d = dg + b * L.ld_x;
    if (past_end(len, b, t)) {
      std::memcpy(dhp + r, dh + r, sizeof(float) * n);
      std::memset(d, 0, sizeof(float) * n);
      continue;
    }
    for (i64 j = 0; j < n; ++j) {
      float y = h[r + j], dj = dh[r + j];
      d[j] = act == 0 ? dj * (1.f - y * y) : (y > 0.f ? dj : 0.f);
      dhp[r + j] = 0.f;
    }
  }
}


namespace {

// One time step over the whole batch (the per-step bindings below), threaded over rows.
void lstm_fwd(const float* xg, const float* hg, const float* hp, const float* cp, float* ho, float* co, float* gates, i64 B, i64 H, const i64* len, i64 t) {
  parallel_for(B, row_grain(H), [&](i64 b0, i64 b1) { lstm_fwd_rows(CellLayout::rows(H, 4, 4), xg, hg, hp, cp, ho, co, gates, len, t, b0, b1); });
}

void lstm_bwd(const float* dh, const float* dc, const float* gates, const float* cp, const float* cc, float* dg, float* dhp, float* dcp, i64 B, i64 H, const i64* len, i64 t) {
  parallel_for(B, row_grain(H), [&](i64 b0, i64 b1) { lstm_bwd_rows(CellLayout::rows(H, 4, 4), dh, dc, gates, cp, cc, dg, dhp, dcp, len, t, b0, b1); });
}

void gru_fwd(const float* xg, const float* hg, const float* hp, float* ho, float* saved, i64 B, i64 H, const i64* len, i64 t) {
  parallel_for(B, row_grain(H), [&](i64 b0, i64 b1) { gru_fwd_rows(CellLayout::rows(H, 3, 4), xg, hg, hp, ho, saved, len, t, b0, b1); });
}

void gru_bwd(const float* dh, const float* saved, const float* hp, float* dxg, float* dhg, float* dhp, i64 B, i64 H, const i64* len, i64 t) {
  parallel_for(B, row_grain(H), [&](i64 b0, i64 b1) { gru_bwd_rows(CellLayout::rows(H, 3, 4), dh, saved, hp, dxg, dhg, dhp, len, t, b0, b1); });
}

void rnn_fwd(const float* xg, const float* hg, const float* hp, float* ho, i64 B, i64 H, int act, const i64* len, i64 t) {
  parallel_for(B, row_grain(H), [&](i64 b0, i64 b1) { rnn_fwd_rows(CellLayout::rows(H, 1, 0), xg, hg, hp, ho, act, len, t, b0, b1); });
}

void rnn_bwd(const float* dh, const float* h, float* dg, float* dhp, i64 B, i64 H, int act, const i64* len, i64 t) {
  parallel_for(B, row_grain(H), [&](i64 b0, i64 b1) { rnn_bwd_rows(CellLayout::rows(H, 1, 0), dh, h, dg, dhp, act, len, t, b0, b1); });
}

void check_bh(const char* op, i64 B, i64 H, i64 t) {
  KN_CHECK(B >= 0 && H >= 0, op, ": negative size B=", B, " H=", H);
  KN_CHECK(t >= 0, op, ": negative time index t=", t);
}

}  // namespace
}  // namespace kn

KN_BIND(rnn_cell) {
  using kn::i64;
  using kn::uptr;
  using kn::ptr;
  m.def(
      "lstm_cell_forward",
      [](uptr xg, uptr hg, uptr hp, uptr cp, uptr ho, uptr co, uptr gates, i64 B, i64 H, uptr len, i64 t) {
        kn::check_bh("lstm_cell_forward", B, H, t);
        KN_CHECK(xg && hg && hp && cp && ho && co && gates, "lstm_cell_forward: null pointer");
        kn::lstm_fwd(ptr<const float>(xg), ptr<const float>(hg), ptr<const float>(hp), ptr<const float>(cp),
                     ptr<float>(ho), ptr<float>(co), ptr<float>(gates), B, H, ptr<const i64>(len), t);
      },
      KN_NOGIL);
  m.def(
      "lstm_cell_backward",
      [](uptr dh, uptr dc, uptr gates, uptr cp, uptr c, uptr dg, uptr dhp, uptr dcp, i64 B, i64 H, uptr len,
         i64 t) {
        kn::check_bh("lstm_cell_backward", B, H, t);
        KN_CHECK(dh && dc && gates && cp && c && dg && dhp && dcp, "lstm_cell_backward: null pointer");
        kn::lstm_bwd(ptr<const float>(dh), ptr<const float>(dc), ptr<const float>(gates), ptr<const float>(cp),
                     ptr<const float>(c), ptr<float>(dg), ptr<float>(dhp), ptr<float>(dcp), B, H,
                     ptr<const i64>(len), t);
      },
      KN_NOGIL);
  m.def(
      "gru_cell_forward",
      [](uptr xg, uptr hg, uptr hp, uptr ho, uptr saved, i64 B, i64 H, uptr len, i64 t) {
        kn::check_bh("gru_cell_forward", B, H, t);
        KN_CHECK(xg && hg && hp && ho && saved, "gru_cell_forward: null pointer");
        kn::gru_fwd(ptr<const float>(xg), ptr<const float>(hg), ptr<const float>(hp), ptr<float>(ho),
                    ptr<float>(saved), B, H, ptr<const i64>(len), t);
      },
      KN_NOGIL);
  m.def(
      "gru_cell_backward",
      [](uptr dh, uptr saved, uptr hp, uptr dxg, uptr dhg, uptr dhp, i64 B, i64 H, uptr len, i64 t) {
        kn::check_bh("gru_cell_backward", B, H, t);
        KN_CHECK(dh && saved && hp && dxg && dhg && dhp, "gru_cell_backward: null pointer");
        kn::gru_bwd(ptr<const float>(dh), ptr<const float>(saved), ptr<const float>(hp), ptr<float>(dxg),
                    ptr<float>(dhg), ptr<float>(dhp), B, H, ptr<const i64>(len), t);
      },
      KN_NOGIL);
  m.def(
      "rnn_cell_forward",
      [](uptr xg, uptr hg, uptr hp, uptr ho, i64 B, i64 H, int act, uptr len, i64 t) {
        kn::check_bh("rnn_cell_forward", B, H, t);
        KN_CHECK(act == 0 || act == 1, "rnn_cell_forward: act must be 0 (tanh) or 1 (relu), got ", act);
        KN_CHECK(xg && hg && hp && ho, "rnn_cell_forward: null pointer");
        kn::rnn_fwd(ptr<const float>(xg), ptr<const float>(hg), ptr<const float>(hp), ptr<float>(ho), B, H, act,
                    ptr<const i64>(len), t);
      },
      KN_NOGIL);
  m.def(
      "rnn_cell_backward",
      [](uptr dh, uptr h, uptr dg, uptr dhp, i64 B, i64 H, int act, uptr len, i64 t) {
        kn::check_bh("rnn_cell_backward", B, H, t);
        KN_CHECK(act == 0 || act == 1, "rnn_cell_backward: act must be 0 (tanh) or 1 (relu), got ", act);
        KN_CHECK(dh && h && dg && dhp, "rnn_cell_backward: null pointer");
        kn::rnn_bwd(ptr<const float>(dh), ptr<const float>(h), ptr<float>(dg), ptr<float>(dhp), B, H, act,
                    ptr<const i64>(len), t);
      },
      KN_NOGIL);
}
