// The fused recurrent cells on a range of batch rows [b0, b1) of one time step (rnn_cell.cpp
// documents the arguments; pointers address row 0, rows are contiguous). rnn_cell.cpp binds them
// per step over the whole batch; rnn_sequence.cpp calls them inside its own time loop, each
// thread on its own rows.
#pragma once
#include <cstdint>

namespace kn {

using i64 = std::int64_t;

void lstm_fwd_rows(const float* xg, const float* hg, const float* hp, const float* cp, float* ho,
                   float* co, float* gates, i64 H, const i64* len, i64 t, i64 b0, i64 b1);
void lstm_bwd_rows(const float* dh, const float* dc, const float* gates, const float* cp,
                   const float* cc, float* dg, float* dhp, float* dcp, i64 H, const i64* len, i64 t,
                   i64 b0, i64 b1);
void gru_fwd_rows(const float* xg, const float* hg, const float* hp, float* ho, float* saved, i64 H,
                  const i64* len, i64 t, i64 b0, i64 b1);
void gru_bwd_rows(const float* dh, const float* saved, const float* hp, float* dxg, float* dhg,
                  float* dhp, i64 H, const i64* len, i64 t, i64 b0, i64 b1);
void rnn_fwd_rows(const float* xg, const float* hg, const float* hp, float* ho, i64 H, int act,
                  const i64* len, i64 t, i64 b0, i64 b1);
void rnn_bwd_rows(const float* dh, const float* h, float* dg, float* dhp, i64 H, int act,
                  const i64* len, i64 t, i64 b0, i64 b1);

}  // namespace kn
