// One direction of one recurrent layer over a whole sequence, forward and backward, in one call.
//
// The per-step alternative (a Python loop calling sgemm and a cell kernel per time step) paid, at
// every step, a Python round trip, an OpenMP wake-up per call and a fresh packing of W_hh. Here:
//   - W_hh is packed once per call (gemm::PackedB) and shared read-only by all threads;
//   - the batch rows are split across the threads once, for the whole sequence. A row's
//     recurrence only ever reads that row's state (h_t[b] depends on h_{t-1}[b] alone), so the
//     threads never wait for each other: one parallel region, no barrier per step;
//   - per step each thread multiplies its rows by W_hh (single-threaded micro-kernels on the
//     packed panels) and runs the fused cell (cpu/rnn_cell.h) on the same rows while they are hot.
// The input projection (all steps at once) and dW_hh (one GEMM over all steps) stay in the
// caller: they are large products that the threaded sgemm does well.
//
// Layouts (float32, contiguous, time-major): xg [T, B, G*H] (input projection with b_ih), hp [T, B, H]
// where hp[t] is the state the step at time t starts from (the caller fills hp[first] with h0; for
// LSTM cp likewise with c0), saved [T, B, G*H] (LSTM: activated gates) or [T, B, 4H] (GRU: r, z, n,
// hn), out [T, B, H]. The steps run t = 0..T-1, or T-1..0 when `reverse`. Rows past their length
// (lengths[b] <= t) carry their state and output zeros (see rnn_cell.cpp).
//
//   rnn_sequence_forward(mode, act, T, B, H, xg, w_hh, b_hh, hp, cp, out, h_n, c_n, saved,
//                        lengths, reverse)
//   rnn_sequence_backward(mode, act, T, B, H, w_hh, hp, cp, h_n, c_n, saved, g_out, dh, dc,
//                         dxg, dhg, db_x, db_h, lengths, reverse)
//       dh (and dc for LSTM) [B, H]: in, the gradient w.r.t. h_n (c_n); out, w.r.t. h0 (c0).
//       g_out: gradient w.r.t. out, or 0 for none. dxg [T, B, G*H]: gradient w.r.t. xg. dhg: the
//       gradient w.r.t. the hidden projection (GRU's differs from dxg in its n block; for the
//       other modes pass dxg again). db_x, db_h [G*H] (0: not wanted) receive the column sums of
//       dxg and dhg (the gradients of b_ih and b_hh), added up per thread while each step's rows
//       are in cache.
// mode: 0 LSTM, 1 GRU, 2 Elman RNN (act 0 tanh, 1 relu). b_hh may be 0.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "common/kn.h"
#include "cpu/gemm/gemm.h"
#include "cpu/parallel.h"
#include "cpu/rnn_cell.h"

namespace kn {
namespace {

enum Mode { LSTM = 0, GRU = 1, ELMAN = 2 };

inline int gates_of(int mode) { return mode == LSTM ? 4 : mode == GRU ? 3 : 1; }
inline bool done(const i64* len, i64 b, i64 t) { return len && t >= len[b]; }

// Split the batch rows over the threads for the whole sequence; each thread runs body(b0, b1).
// Exceptions (out of memory in the packing buffers) must not cross the OpenMP region.
template <typename F>
void over_row_slices(i64 B, F&& body) {
  std::atomic<bool> failed{false};
  parallel_for(B, 4, [&](i64 b0, i64 b1) {
    try {
      body(b0, b1);
    } catch (...) {
      failed = true;
    }
  });
  KN_CHECK(!failed, "rnn_sequence: out of memory for GEMM buffers");
}

struct Sequence {
  int mode, act;
  i64 T, B, H;
  bool reverse;
  const i64* len;
  i64 G() const { return gates_of(mode); }
  i64 time_at(i64 k) const { return reverse ? T - 1 - k : k; }
};

void forward(const Sequence& s, const float* xg, const float* w_hh, const float* b_hh, float* hp,
             float* cp, float* out, float* h_n, float* c_n, float* saved) {
  const i64 T = s.T, B = s.B, H = s.H, GH = s.G() * H;
  const PackedB w(/*trans_b=*/true, w_hh, H, H, GH);  // op(B) = W_hh^T: H x GH
  std::vector<float> hg((size_t)(B * GH));            // this step's hidden projection
  const i64 saved_row = s.mode == GRU ? 4 * H : GH;
  over_row_slices(B, [&](i64 b0, i64 b1) {
    for (i64 k = 0; k < T; ++k) {
      const i64 t = s.time_at(k);
      const bool last = k == T - 1;
      const float* h_prev = hp + t * B * H;
      float* h_out = last ? h_n : hp + s.time_at(k + 1) * B * H;
      w.multiply(b1 - b0, h_prev + b0 * H, H, 0.f, hg.data() + b0 * GH, GH, b_hh);
      const float* xt = xg + t * B * GH;
      if (s.mode == LSTM) {
        const float* c_prev = cp + t * B * H;
        float* c_out = last ? c_n : cp + s.time_at(k + 1) * B * H;
        lstm_fwd_rows(xt, hg.data(), h_prev, c_prev, h_out, c_out, saved + t * B * saved_row, H, s.len, t, b0,
                      b1);
      } else if (s.mode == GRU) {
        gru_fwd_rows(xt, hg.data(), h_prev, h_out, saved + t * B * saved_row, H, s.len, t, b0, b1);
      } else {
        rnn_fwd_rows(xt, hg.data(), h_prev, h_out, H, s.act, s.len, t, b0, b1);
      }
      float* o = out + t * B * H;
      for (i64 b = b0; b < b1; ++b) {
        if (done(s.len, b, t))
          std::memset(o + b * H, 0, sizeof(float) * H);
        else
          std::memcpy(o + b * H, h_out + b * H, sizeof(float) * H);
      }
    }
  });
}

void backward(const Sequence& s, const float* w_hh, const float* hp, const float* cp, const float* h_n,
              const float* c_n, const float* saved, const float* g_out, float* dh, float* dc, float* dxg,
              float* dhg, float* db_x, float* db_h) {
  const i64 T = s.T, B = s.B, H = s.H, GH = s.G() * H;
  const PackedB w(/*trans_b=*/false, w_hh, H, GH, H);  // op(B) = W_hh: GH x H
  std::vector<float> dh_other((size_t)(B * H)), dc_other(s.mode == LSTM ? (size_t)(B * H) : 0);
  const i64 saved_row = s.mode == GRU ? 4 * H : GH;
  // Bias gradients: each row slice sums its rows, the slices are added in row order afterwards
  // (a fixed order, so the result does not depend on which thread finished first). Outside GRU
  // dxg is dhg and one sum serves both.
  const bool sum_x = db_x && dxg != dhg, sum_h = db_h || (db_x && dxg == dhg);
  std::mutex db_lock;
  std::vector<std::pair<i64, std::vector<float>>> db_slices;  // per slice: [sums of dhg, of dxg]
  over_row_slices(B, [&](i64 b0, i64 b1) {
    std::vector<float> db_part((sum_h ? (size_t)GH : 0) + (sum_x ? (size_t)GH : 0), 0.f);
    // ping-pong: the step reads dh_cur (gradient w.r.t. its output state) and writes dh_prev
    float* dh_cur = dh;
    float* dh_prev = dh_other.data();
    float* dc_cur = dc;
    float* dc_prev = dc_other.data();
    for (i64 k = T - 1; k >= 0; --k) {
      const i64 t = s.time_at(k);
      const bool last = k == T - 1;
      if (g_out) {  // rows past their end had no output, so no output gradient
        const float* go = g_out + t * B * H;
        for (i64 b = b0; b < b1; ++b) {
          if (done(s.len, b, t)) continue;
          float* __restrict d = dh_cur + b * H;
          const float* __restrict g = go + b * H;
          for (i64 j = 0; j < H; ++j) d[j] += g[j];
        }
      }
      const float* h_prev = hp + t * B * H;
      const float* h_cur = last ? h_n : hp + s.time_at(k + 1) * B * H;  // this step's output
      float* dgt = dxg + t * B * GH;
      float* dht = dhg + t * B * GH;
      if (s.mode == LSTM) {
        const float* c_prev = cp + t * B * H;
        const float* c_cur = last ? c_n : cp + s.time_at(k + 1) * B * H;
        lstm_bwd_rows(dh_cur, dc_cur, saved + t * B * saved_row, c_prev, c_cur, dgt, dh_prev, dc_prev, H, s.len,
                      t, b0, b1);
        std::swap(dc_cur, dc_prev);
      } else if (s.mode == GRU) {
        gru_bwd_rows(dh_cur, saved + t * B * saved_row, h_prev, dgt, dht, dh_prev, H, s.len, t, b0, b1);
      } else {
        rnn_bwd_rows(dh_cur, h_cur, dgt, dh_prev, H, s.act, s.len, t, b0, b1);
      }
      // dh_prev += dgates_h @ W_hh on this thread's rows
      w.multiply(b1 - b0, dht + b0 * GH, GH, 1.f, dh_prev + b0 * H, H, nullptr);
      auto add_rows = [&](const float* g, float* __restrict acc) {
        for (i64 b = b0; b < b1; ++b) {
          const float* __restrict d = g + b * GH;
          for (i64 j = 0; j < GH; ++j) acc[j] += d[j];
        }
      };
      if (sum_h) add_rows(dht, db_part.data());
      if (sum_x) add_rows(dgt, db_part.data() + (sum_h ? GH : 0));
      std::swap(dh_cur, dh_prev);
    }
    if (sum_h || sum_x) {
      std::lock_guard<std::mutex> g(db_lock);
      db_slices.emplace_back(b0, std::move(db_part));
    }
    // the result is in dh_cur; hand it back in the caller's buffers
    if (dh_cur != dh) std::memcpy(dh + b0 * H, dh_cur + b0 * H, sizeof(float) * (b1 - b0) * H);
    if (s.mode == LSTM && dc_cur != dc)
      std::memcpy(dc + b0 * H, dc_cur + b0 * H, sizeof(float) * (b1 - b0) * H);
  });
  std::sort(db_slices.begin(), db_slices.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  auto total = [&](float* db, i64 offset) {
    std::fill(db, db + GH, 0.f);
    for (const auto& part : db_slices)
      for (i64 j = 0; j < GH; ++j) db[j] += part.second[(size_t)(offset + j)];
  };
  if (sum_h) total(db_h ? db_h : db_x, 0);
  if (sum_x) total(db_x, sum_h ? GH : 0);
  if (db_x && db_h && dxg == dhg) std::memcpy(db_x, db_h, sizeof(float) * GH);
}

Sequence checked(const char* op, int mode, int act, i64 T, i64 B, i64 H, uptr lengths, bool reverse) {
  KN_CHECK(mode >= LSTM && mode <= ELMAN, op, ": mode must be 0 (LSTM), 1 (GRU) or 2 (RNN), got ", mode);
  KN_CHECK(act == 0 || act == 1, op, ": act must be 0 (tanh) or 1 (relu), got ", act);
  KN_CHECK(T >= 1 && B >= 0 && H >= 1, op, ": bad sizes T=", T, " B=", B, " H=", H);
  return Sequence{mode, act, T, B, H, reverse, ptr<const i64>(lengths)};
}

}  // namespace
}  // namespace kn

KN_BIND(rnn_sequence) {
  using kn::i64;
  using kn::ptr;
  using kn::uptr;
  m.def(
      "rnn_sequence_forward",
      [](int mode, int act, i64 T, i64 B, i64 H, uptr xg, uptr w_hh, uptr b_hh, uptr hp, uptr cp, uptr out,
         uptr h_n, uptr c_n, uptr saved, uptr lengths, bool reverse) {
        const kn::Sequence s = kn::checked("rnn_sequence_forward", mode, act, T, B, H, lengths, reverse);
        KN_CHECK(xg && w_hh && hp && out && h_n, "rnn_sequence_forward: null pointer");
        KN_CHECK(mode == kn::ELMAN || saved, "rnn_sequence_forward: null pointer (saved)");
        KN_CHECK(mode != kn::LSTM || (cp && c_n), "rnn_sequence_forward: null pointer (cp, c_n)");
        kn::forward(s, ptr<const float>(xg), ptr<const float>(w_hh), ptr<const float>(b_hh), ptr<float>(hp),
                    ptr<float>(cp), ptr<float>(out), ptr<float>(h_n), ptr<float>(c_n), ptr<float>(saved));
      },
      KN_NOGIL);
  m.def(
      "rnn_sequence_backward",
      [](int mode, int act, i64 T, i64 B, i64 H, uptr w_hh, uptr hp, uptr cp, uptr h_n, uptr c_n, uptr saved,
         uptr g_out, uptr dh, uptr dc, uptr dxg, uptr dhg, uptr db_x, uptr db_h, uptr lengths,
         bool reverse) {
        const kn::Sequence s = kn::checked("rnn_sequence_backward", mode, act, T, B, H, lengths, reverse);
        KN_CHECK(w_hh && hp && h_n && dh && dxg && dhg, "rnn_sequence_backward: null pointer");
        KN_CHECK(mode == kn::ELMAN || saved, "rnn_sequence_backward: null pointer (saved)");
        KN_CHECK(mode != kn::LSTM || (cp && c_n && dc), "rnn_sequence_backward: null pointer (cp, c_n, dc)");
        kn::backward(s, ptr<const float>(w_hh), ptr<const float>(hp), ptr<const float>(cp),
                     ptr<const float>(h_n), ptr<const float>(c_n), ptr<const float>(saved),
                     ptr<const float>(g_out), ptr<float>(dh), ptr<float>(dc), ptr<float>(dxg), ptr<float>(dhg),
                     ptr<float>(db_x), ptr<float>(db_h));
      },
      KN_NOGIL);
}
