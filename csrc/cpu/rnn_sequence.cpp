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
#include <memory>
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

struct Sequence {
  int mode, act;
  i64 T, B, H;
  bool reverse;
  const i64* len;
  i64 G() const { return gates_of(mode); }
  i64 saved_blocks() const { return mode == ELMAN ? 0 : 4; }  // LSTM i,f,g,o; GRU r,z,n,hn
  i64 time_at(i64 k) const { return reverse ? T - 1 - k : k; }
};

// How the threads share the time loop.
//  Rows: each thread owns a slice of batch rows for the whole sequence. A row's recurrence reads
//    only that row's state, so the threads never wait for each other; but every thread streams
//    all of W_hh at every step.
//  Units: each thread owns a slice of hidden units (its gate columns of W_hh, packed once) for all
//    rows, and the threads meet at one barrier per step (the next step's product reads every
//    unit of h). Chosen when W_hh is too big to be streamed by every thread each step (above ~1
//    MiB: with rows, LSTM H=512 ran 1.4x faster on 2 threads than on 1, the two threads
//    contending for L3), or when the batch is too small to split.
enum class Split { Rows, Units };

Split choose_split(const Sequence& s, int nt) {
  const i64 GH = s.G() * s.H;
  if (nt <= 1 || s.H < 16 * nt) return Split::Rows;
  if (2.0 * (double)s.B * (double)GH * (double)s.H < 2e5) return Split::Rows;  // a step is too small to share
  return (GH * s.H * 4 > (i64(1) << 20) || s.B < 8 * nt) ? Split::Units : Split::Rows;
}

// Hidden units [j0, j1) of slice `part` out of `parts` (multiples of 16 floats: whole cache lines).
void unit_slice(i64 H, int part, int parts, i64& j0, i64& j1) {
  auto edge = [&](int p) { return p == parts ? H : std::min(H, (H * p / parts + 15) / 16 * 16); };
  j0 = edge(part);
  j1 = edge(part + 1);
}

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

// Split the hidden units over a team of threads that meets at barriers; each runs
// body(j0, n, failed) for its units [j0, j0 + n). A body that cannot allocate sets `failed` and
// must still reach every barrier; the error is raised after the region.
template <typename F>
void over_unit_slices(i64 H, int nt, F&& body) {
  std::atomic<bool> failed{false};
  parallel_team(nt, [&](int p, int team) {
    i64 j0, j1;
    unit_slice(H, p, team, j0, j1);
    body(j0, j1 - j0, failed);
  });
  KN_CHECK(!failed, "rnn_sequence: out of memory for GEMM buffers");
}

// Column sums of rows [b0, b1) of g (row stride ld) over n columns, added to acc.
inline void add_column_sums(const float* g, i64 ld, i64 n, i64 b0, i64 b1, float* __restrict acc) {
  for (i64 b = b0; b < b1; ++b) {
    const float* __restrict d = g + b * ld;
    for (i64 j = 0; j < n; ++j) acc[j] += d[j];
  }
}

// out[t] for rows [b0, b1), units [j0, j0 + n): the step's output state, zero past a row's end.
inline void write_output(const Sequence& s, const float* h_out, float* o, i64 t, i64 j0, i64 n, i64 b0, i64 b1) {
  for (i64 b = b0; b < b1; ++b) {
    if (past_end(s.len, b, t))
      std::memset(o + b * s.H + j0, 0, sizeof(float) * n);
    else
      std::memcpy(o + b * s.H + j0, h_out + b * s.H + j0, sizeof(float) * n);
  }
}

// One forward step on rows [b0, b1) and the units of layout L (pointers already at the span's
// first unit), given its hidden projection hg.
void cell_forward(const Sequence& s, const CellLayout& L, const float* xt, const float* hg, const float* h_prev,
                  const float* c_prev, float* h_out, float* c_out, float* saved_t, i64 t, i64 b0, i64 b1) {
  if (s.mode == LSTM)
    lstm_fwd_rows(L, xt, hg, h_prev, c_prev, h_out, c_out, saved_t, s.len, t, b0, b1);
  else if (s.mode == GRU)
    gru_fwd_rows(L, xt, hg, h_prev, h_out, saved_t, s.len, t, b0, b1);
  else
    rnn_fwd_rows(L, xt, hg, h_prev, h_out, s.act, s.len, t, b0, b1);
}

void cell_backward(const Sequence& s, const CellLayout& L, const float* dh_cur, const float* dc_cur,
                   const float* saved_t, const float* h_prev, const float* h_cur, const float* c_prev,
                   const float* c_cur, float* dgt, float* dht, float* dh_prev, float* dc_prev, i64 t, i64 b0,
                   i64 b1) {
  if (s.mode == LSTM)
    lstm_bwd_rows(L, dh_cur, dc_cur, saved_t, c_prev, c_cur, dgt, dh_prev, dc_prev, s.len, t, b0, b1);
  else if (s.mode == GRU)
    gru_bwd_rows(L, dh_cur, saved_t, h_prev, dgt, dht, dh_prev, s.len, t, b0, b1);
  else
    rnn_bwd_rows(L, dh_cur, h_cur, dgt, dh_prev, s.act, s.len, t, b0, b1);
}

// In a time-indexed state buffer (hp, cp: [T, B, H]), the state step k starts from, and the one it
// produces (the last step's goes to `last`: h_n, c_n). Null buffers (cp outside LSTM) stay null.
template <typename P>
P state_at(const Sequence& s, P base, i64 k) {
  return base ? base + s.time_at(k) * s.B * s.H : nullptr;
}
template <typename P>
P state_after(const Sequence& s, P base, P last, i64 k) {
  return k == s.T - 1 ? last : state_at(s, base, k + 1);
}
// Unit j0 of a row-0 pointer, or null.
template <typename P>
P at_unit(P p, i64 j0) {
  return p ? p + j0 : nullptr;
}

struct Buffers {  // the caller's time-major buffers (see the header comment)
  const float* xg;
  float *hp, *cp, *out, *h_n, *c_n, *saved;
};

void forward(const Sequence& s, const float* w_hh, const float* b_hh, const Buffers& m) {
  const i64 T = s.T, B = s.B, H = s.H, G = s.G(), GH = G * H;
  const i64 ld_s = s.saved_blocks() * H;
  const int nt = available_threads();
  std::vector<float> hg((size_t)(B * GH));  // this step's hidden projection

  // Steps k = 0 .. T-1 for rows [b0, b1) and units [j0, j0 + n): `product(h_prev)` writes the
  // span's hidden projection, read by the cell at hg_span (layout L); `sync` ends each step.
  auto time_loop = [&](i64 b0, i64 b1, i64 j0, i64 n, const CellLayout& L, const float* hg_span, auto&& product,
                       auto&& sync) {
    for (i64 k = 0; k < T; ++k) {
      const i64 t = s.time_at(k);
      const float* h_prev = state_at(s, m.hp, k);
      float* h_out = state_after(s, m.hp, m.h_n, k);
      product(h_prev);
      cell_forward(s, L, m.xg + t * B * GH + j0, hg_span, h_prev + j0, at_unit(state_at(s, m.cp, k), j0),
                   h_out + j0, at_unit(state_after(s, m.cp, m.c_n, k), j0),
                   at_unit(m.saved ? m.saved + t * B * ld_s : nullptr, j0), t, b0, b1);
      write_output(s, h_out, m.out + t * B * H, t, j0, n, b0, b1);
      sync();
    }
  };

  if (choose_split(s, nt) == Split::Rows) {
    const PackedB w(/*trans_b=*/true, w_hh, H, H, GH);  // op(B) = W_hh^T: H x GH
    over_row_slices(B, [&](i64 b0, i64 b1) {
      time_loop(b0, b1, 0, H, CellLayout::rows(H, G, s.saved_blocks()), hg.data(),
                [&](const float* h_prev) {
                  w.multiply(b1 - b0, h_prev + b0 * H, H, 0.f, hg.data() + b0 * GH, GH, b_hh);
                },
                [] {});
    });
    return;
  }
  // Units: thread p packs its gate rows of W_hh (G blocks of n rows) as one op(B) = H x G*n, and
  // its part of b_hh; its hg is [B, G*n] (gate stride n), inside the shared buffer.
  over_unit_slices(H, nt, [&](i64 j0, i64 n, std::atomic<bool>& failed) {
    std::unique_ptr<PackedB> w;
    std::vector<float> bias;
    try {
      std::vector<float> rows((size_t)(G * n * H));
      for (i64 g = 0; g < G; ++g) {
        std::memcpy(rows.data() + g * n * H, w_hh + (g * H + j0) * H, sizeof(float) * n * H);
        if (b_hh) bias.insert(bias.end(), b_hh + g * H + j0, b_hh + g * H + j0 + n);
      }
      w.reset(new PackedB(/*trans_b=*/true, rows.data(), H, H, G * n));
    } catch (...) {
      failed = true;  // keep meeting the barriers; reported after the region
    }
    float* hgp = hg.data() + B * G * j0;
    time_loop(0, B, j0, n, CellLayout{n, H, GH, H, G * n, n, ld_s, H}, hgp,
              [&](const float* h_prev) {
                if (!w) return;  // failed: the results are discarded, the barriers still met
                try {
                  w->multiply(B, h_prev, H, 0.f, hgp, G * n, b_hh ? bias.data() : nullptr);
                } catch (...) {
                  failed = true;
                }
              },
              [] { team_barrier(); });  // the next step's product reads every unit of h_out
  });
}

struct GradBuffers {
  const float *hp, *cp, *h_n, *c_n, *saved, *g_out;
  float *dh, *dc, *dxg, *dhg, *db_x, *db_h;
};

void backward(const Sequence& s, const float* w_hh, const GradBuffers& m) {
  const i64 T = s.T, B = s.B, H = s.H, G = s.G(), GH = G * H;
  const i64 ld_s = s.saved_blocks() * H;
  const int nt = available_threads();
  std::vector<float> dh_other((size_t)(B * H)), dc_other(s.mode == LSTM ? (size_t)(B * H) : 0);
  // Bias gradients: outside GRU dxg is dhg and one sum serves both.
  const bool sum_x = m.db_x && m.dxg != m.dhg, sum_h = m.db_h || (m.db_x && m.dxg == m.dhg);
  float* db_h = m.db_h ? m.db_h : m.db_x;

  // Steps k = T-1 .. 0 for rows [b0, b1) and units [j0, j0 + n); `product` adds dgates_h @ W_hh
  // into dh_prev for the span, `sync` runs between the cell and the product.
  auto time_loop = [&](i64 b0, i64 b1, i64 j0, i64 n, const CellLayout& L, auto&& sync, auto&& product,
                       float* dbh_acc, float* dbx_acc) {
    // ping-pong: a step reads dh_cur (gradient w.r.t. its output state) and writes dh_prev
    float* dh_cur = m.dh;
    float* dh_prev = dh_other.data();
    float* dc_cur = m.dc;
    float* dc_prev = dc_other.data();
    for (i64 k = T - 1; k >= 0; --k) {
      const i64 t = s.time_at(k);
      if (m.g_out) {  // rows past their end had no output, so no output gradient
        const float* go = m.g_out + t * B * H;
        for (i64 b = b0; b < b1; ++b) {
          if (past_end(s.len, b, t)) continue;
          float* __restrict d = dh_cur + b * H + j0;
          const float* __restrict g = go + b * H + j0;
          for (i64 j = 0; j < n; ++j) d[j] += g[j];
        }
      }
      float* dgt = m.dxg + t * B * GH;
      float* dht = m.dhg + t * B * GH;
      cell_backward(s, L, dh_cur + j0, at_unit(dc_cur, j0), at_unit(m.saved ? m.saved + t * B * ld_s : nullptr, j0),
                    state_at(s, m.hp, k) + j0, state_after(s, m.hp, m.h_n, k) + j0,
                    at_unit(state_at(s, m.cp, k), j0), at_unit(state_after(s, m.cp, m.c_n, k), j0), dgt + j0,
                    dht + j0, dh_prev + j0, at_unit(dc_prev, j0), t, b0, b1);
      sync();
      product(dht, dh_prev);
      for (i64 g = 0; g < G; ++g) {  // bias gradients of this span, while the step's rows are in cache
        if (sum_h && dbh_acc) add_column_sums(dht + g * H + j0, GH, n, b0, b1, dbh_acc + g * n);
        if (sum_x && dbx_acc) add_column_sums(dgt + g * H + j0, GH, n, b0, b1, dbx_acc + g * n);
      }
      std::swap(dh_cur, dh_prev);
      if (s.mode == LSTM) std::swap(dc_cur, dc_prev);
    }
    // the result is in dh_cur; hand it back in the caller's buffers
    for (i64 b = b0; b < b1; ++b) {
      if (dh_cur != m.dh) std::memcpy(m.dh + b * H + j0, dh_cur + b * H + j0, sizeof(float) * n);
      if (s.mode == LSTM && dc_cur != m.dc) std::memcpy(m.dc + b * H + j0, dc_cur + b * H + j0, sizeof(float) * n);
    }
  };
  // copy a span's bias sums (gate-major, n per gate) to the units j0.. of each gate
  auto scatter_sums = [&](const float* acc, float* db, i64 j0, i64 n) {
    for (i64 g = 0; g < G; ++g) std::memcpy(db + g * H + j0, acc + g * n, sizeof(float) * n);
  };

  if (choose_split(s, nt) == Split::Rows) {
    const PackedB w(/*trans_b=*/false, w_hh, H, GH, H);  // op(B) = W_hh: GH x H
    const CellLayout L = CellLayout::rows(H, G, s.saved_blocks());
    // each row slice sums its rows; the slices are added in row order afterwards (a fixed
    // order, so the result does not depend on which thread finished first)
    std::mutex lock;
    std::vector<std::pair<i64, std::vector<float>>> sums;  // per slice: [sums of dhg, of dxg]
    over_row_slices(B, [&](i64 b0, i64 b1) {
      std::vector<float> acc(2 * (size_t)GH, 0.f);
      time_loop(b0, b1, 0, H, L, [] {},
                [&](const float* dht, float* dh_prev) {
                  w.multiply(b1 - b0, dht + b0 * GH, GH, 1.f, dh_prev + b0 * H, H, nullptr);
                },
                acc.data(), acc.data() + GH);
      std::lock_guard<std::mutex> g(lock);
      sums.emplace_back(b0, std::move(acc));
    });
    std::sort(sums.begin(), sums.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    auto total = [&](float* db, i64 offset) {
      std::fill(db, db + GH, 0.f);
      for (const auto& part : sums)
        for (i64 j = 0; j < GH; ++j) db[j] += part.second[(size_t)(offset + j)];
    };
    if (sum_h) total(db_h, 0);
    if (sum_x) total(m.db_x, GH);
  } else {
    // Units: thread p owns dh/dc columns [j0, j1) of every row: its cell writes its gate columns
    // of dgates, a barrier, then dh_prev[:, j0:j1] += dgates_h (all columns) @ W_hh[:, j0:j1].
    // Each thread sums the bias gradients of its own columns, so no reduction between threads.
    over_unit_slices(H, nt, [&](i64 j0, i64 n, std::atomic<bool>& failed) {
      std::unique_ptr<PackedB> w;
      std::vector<float> acc;
      try {
        w.reset(new PackedB(/*trans_b=*/false, w_hh + j0, H, GH, n));  // op(B) = W_hh[:, j0:j1]
        acc.assign(2 * (size_t)(G * n), 0.f);
      } catch (...) {
        failed = true;  // keep meeting the barriers; reported after the region
      }
      const CellLayout L{n, H, GH, H, GH, H, ld_s, H};
      time_loop(0, B, j0, n, L, [] { team_barrier(); },
                [&](const float* dht, float* dh_prev) {
                  if (!w) return;
                  try {
                    w->multiply(B, dht, GH, 1.f, dh_prev + j0, H, nullptr);
                  } catch (...) {
                    failed = true;
                  }
                },
                w ? acc.data() : nullptr, w ? acc.data() + G * n : nullptr);
      if (w && sum_h) scatter_sums(acc.data(), db_h, j0, n);
      if (w && sum_x) scatter_sums(acc.data() + G * n, m.db_x, j0, n);
    });
  }
  if (m.db_x && m.db_h && m.dxg == m.dhg) std::memcpy(m.db_x, m.db_h, sizeof(float) * GH);  // one sum, both
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
        const kn::Buffers bufs{ptr<const float>(xg), ptr<float>(hp),  ptr<float>(cp),   ptr<float>(out),
                               ptr<float>(h_n),      ptr<float>(c_n), ptr<float>(saved)};
        kn::forward(s, ptr<const float>(w_hh), ptr<const float>(b_hh), bufs);
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
        const kn::GradBuffers bufs{ptr<const float>(hp),    ptr<const float>(cp),    ptr<const float>(h_n),
                                   ptr<const float>(c_n),   ptr<const float>(saved), ptr<const float>(g_out),
                                   ptr<float>(dh),          ptr<float>(dc),          ptr<float>(dxg),
                                   ptr<float>(dhg),         ptr<float>(db_x),        ptr<float>(db_h)};
        kn::backward(s, ptr<const float>(w_hh), bufs);
      },
      KN_NOGIL);
}
