// Fused recurrent cells (float32, one time step, a range of batch rows), called by the native time
// loop (rnn_sequence.cpp) on each thread's span of rows or of hidden units (CellLayout, rnn_cell.h).
//
// The input projection of every time step (xg, [T, B, G*H], b_ih folded in) and each step's hidden
// projection hg = h_prev @ W_hh^T + b_hh come from GEMMs; these kernels do everything pointwise
// that follows: gate activations, the state update, and what backward needs. Gate order is
// PyTorch's (LSTM i,f,g,o; GRU r,z,n).
//
// Variable-length batches: `len` (int64[B], null = all rows full length) and the time index `t`.
// A row with t >= len[b] is past its end: it carries its state unchanged (h_out = h_prev,
// c_out = c_prev), and backward passes dh/dc straight through with zero gate gradients. The
// reverse direction of a bidirectional layer therefore starts each row at its own last element.
//
//   lstm_fwd_rows(L, xg, hg, h_prev, c_prev, h_out, c_out, gates, ...)
//       gates receives the activated (i, f, g, o), saved for backward.
//   lstm_bwd_rows(L, dh, dc, gates, c_prev, c, dgates, dh_prev, dc_prev, ...)
//       dh, dc: gradient w.r.t. h_t and c_t. dgates: gradient w.r.t. the pre-activation gates
//       (same for xg and hg). dh_prev gets only the part that bypasses W_hh (0, or dh for finished
//       rows); the caller adds dgates @ W_hh with a beta=1 GEMM.
//   gru_fwd_rows(L, xg, hg, h_prev, h_out, saved, ...)
//       r = s(xr + hr), z = s(xz + hz), n = tanh(xn + r * hn), h = (1 - z) * n + z * h_prev,
//       where hn includes b_hn (PyTorch's GRU: the reset gate multiplies the hidden projection).
//       saved receives (r, z, n, hn).
//   gru_bwd_rows(L, dh, saved, h_prev, dxg, dhg, dh_prev, ...)
//       dxg, dhg: gradients w.r.t. xg and hg (they differ in the n block);
//       dh_prev = dh * z (+ dhg @ W_hh added by the caller).
//   rnn_fwd_rows(L, xg, hg, h_prev, h_out, act, ...)    act 0 tanh, 1 relu
//   rnn_bwd_rows(L, dh, h, dgates, dh_prev, act, ...)   h = this step's output
#include "cpu/rnn_cell.h"

#include <cstring>

#include "common/kn.h"
#include "cpu/scratch.h"
#include "cpu/vecmath.h"

namespace kn {

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

// The LSTM cell's gradients for n units of one row, given tanh(c) in tc. A function of its own
// with every pointer restrict-qualified: written inline in the row loop, GCC left it scalar.
void lstm_grad_span(i64 n, const float* __restrict gi, const float* __restrict gf, const float* __restrict gg,
                    const float* __restrict go, const float* __restrict tc, const float* __restrict dh,
                    const float* __restrict dc, const float* __restrict cp, float* __restrict di,
                    float* __restrict df, float* __restrict dgg, float* __restrict dgo, float* __restrict dcp,
                    float* __restrict dhp) {
  for (i64 j = 0; j < n; ++j) {
    const float i = gi[j], f = gf[j], g = gg[j], o = go[j], t = tc[j], dhj = dh[j];
    const float dct = dc[j] + dhj * o * (1.f - t * t);
    di[j] = dct * g * i * (1.f - i);
    df[j] = dct * cp[j] * f * (1.f - f);
    dgg[j] = dct * i * (1.f - g * g);
    dgo[j] = dhj * t * o * (1.f - o);
    dcp[j] = dct * f;
    dhp[j] = 0.f;
  }
}
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
    // tanh(c) for the row with the vectorised exp, then one branch-free loop (the scalar tanh
    // per element made this cell 3x the forward)
    float* tc = thread_scratch<TanhCRow>(n);
    tanh_of_sum(cc + r, nullptr, tc, n);
    const float* gi = gates + b * L.ld_s;
    lstm_grad_span(n, gi, gi + L.gs_s, gi + 2 * L.gs_s, gi + 3 * L.gs_s, tc, dh + r, dc + r, cp + r, d,
                   d + L.gs_x, d + 2 * L.gs_x, d + 3 * L.gs_x, dcp + r, dhp + r);
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

namespace {
// The GRU cell's gradients for n units of one row (restrict pointers, so that it vectorises; see
// lstm_grad_span). dxg and dhg differ only in the n block: dhn = dn * r.
void gru_grad_span(i64 n, const float* __restrict sr, const float* __restrict sz, const float* __restrict sn,
                   const float* __restrict shn, const float* __restrict dh, const float* __restrict hp,
                   float* __restrict dxr, float* __restrict dxz, float* __restrict dxn, float* __restrict dhr,
                   float* __restrict dhz, float* __restrict dhn, float* __restrict dhp) {
  for (i64 j = 0; j < n; ++j) {
    const float rg = sr[j], z = sz[j], ng = sn[j], hn = shn[j], d = dh[j];
    const float dn = d * (1.f - z) * (1.f - ng * ng);  // through tanh
    const float dz = d * (hp[j] - ng) * z * (1.f - z);
    const float dr = dn * hn * rg * (1.f - rg);
    dxr[j] = dr;
    dxz[j] = dz;
    dxn[j] = dn;
    dhr[j] = dr;
    dhz[j] = dz;
    dhn[j] = dn * rg;
    dhp[j] = d * z;
  }
}
}  // namespace

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
    gru_grad_span(n, s, s + L.gs_s, s + 2 * L.gs_s, s + 3 * L.gs_s, dh + r, hp + r, dx, dx + L.gs_x,
                  dx + 2 * L.gs_x, dhh, dhh + L.gs_hg, dhh + 2 * L.gs_hg, dhp + r);
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

}  // namespace kn
