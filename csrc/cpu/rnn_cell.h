// The fused recurrent cells on a range of batch rows [b0, b1) of one time step (rnn_cell.cpp
// documents the arguments). rnn_sequence.cpp calls them inside its own time loop, each thread on
// its own rows, or on its own hidden units of every row (CellLayout says where a span's values
// live).
#pragma once
#include <cstdint>

namespace kn {

using i64 = std::int64_t;

// Row b is past its end at time t (lengths[b] <= t; len null: every row is full length): it
// carries its state, outputs zeros and passes gradients straight through.
inline bool past_end(const i64* len, i64 b, i64 t) { return len && t >= len[b]; }

// Where the values of one time step live, for a span of n hidden units. The pointers given to a
// cell address unit 0 of the span in row 0; gate k of a row starts k * gate stride after gate 0.
struct CellLayout {
  i64 n;             // units in the span (the loop length of every row)
  i64 ld_h;          // row stride of the states h, c, dh, dc, out
  i64 ld_x, gs_x;    // xg, dxg: row stride, gate stride
  i64 ld_hg, gs_hg;  // hg (forward), dhg (GRU backward): row stride, gate stride
  i64 ld_s, gs_s;    // saved gates (LSTM i,f,g,o; GRU r,z,n,hn): row stride, block stride

  // Whole rows of the time-major buffers: G gates of H units, `saved_blocks` blocks saved per row.
  static CellLayout rows(i64 H, i64 G, i64 saved_blocks) {
    return CellLayout{H, H, G * H, H, G * H, H, saved_blocks * H, H};
  }
};

void lstm_fwd_rows(const CellLayout& L, const float* xg, const float* hg, const float* hp, const float* cp,
                   float* ho, float* co, float* gates, const i64* len, i64 t, i64 b0, i64 b1);
void lstm_bwd_rows(const CellLayout& L, const float* dh, const float* dc, const float* gates, const float* cp,
                   const float* cc, float* dg, float* dhp, float* dcp, const i64* len, i64 t, i64 b0, i64 b1);
void gru_fwd_rows(const CellLayout& L, const float* xg, const float* hg, const float* hp, float* ho,
                  float* saved, const i64* len, i64 t, i64 b0, i64 b1);
void gru_bwd_rows(const CellLayout& L, const float* dh, const float* saved, const float* hp, float* dxg,
                  float* dhg, float* dhp, const i64* len, i64 t, i64 b0, i64 b1);
void rnn_fwd_rows(const CellLayout& L, const float* xg, const float* hg, const float* hp, float* ho, int act,
                  const i64* len, i64 t, i64 b0, i64 b1);
void rnn_bwd_rows(const CellLayout& L, const float* dh, const float* h, float* dg, float* dhp, int act,
                  const i64* len, i64 t, i64 b0, i64 b1);

}  // namespace kn
