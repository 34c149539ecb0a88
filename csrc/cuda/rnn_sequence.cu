// One direction of one recurrent layer over a whole sequence on the GPU, forward and backward, one
// call each: the CUDA twin of csrc/cpu/rnn_sequence.cpp, with the same bindings, arguments and
// buffer contract. That file's header is the reference (layouts [T, B, G*H] / [T, B, H], hp[t] = the
// state step t starts from, saved = LSTM's activated gates or GRU's (r, z, n, hn), reverse
// direction, lengths, bias-gradient sums); csrc/cpu/rnn_cell.cpp has the cell maths and the
// variable-length rules (rows with t >= lengths[b] carry their state, output zeros, get zero gate
// gradients and pass dh/dc through). Gate order is PyTorch's (LSTM i,f,g,o; GRU r,z,n).
//
//   rnn_sequence_forward(mode, act, T, B, H, xg, w_hh, b_hh, hp, cp, out, h_n, c_n, saved,
//                        lengths, reverse)
//   rnn_sequence_backward(mode, act, T, B, H, w_hh, hp, cp, h_n, c_n, saved, g_out, dh, dc,
//                         dxg, dhg, db_x, db_h, lengths, reverse)
// Every pointer is device memory except `lengths`: a HOST int64[B] (a numpy array) or 0, as on
// the CPU backend, so the Python layer passes the same arguments to both.
//
// Why the time loop is on the host: step t needs all of h_{t-1}, so the steps are sequential and
// each is small (a [B, H] x [H, G*H] product and a pointwise cell). The host enqueues two kernels per
// step on the one stream (cuda_check.h) and never waits: launches are asynchronous and the stream
// orders them. The product reuses our SGEMM (sgemm_device, cuda/gemm.h) rather than a private copy.
//
//   forward, per step (t = k, or T-1-k when reverse):
//     hg = hp[t] @ W_hh^T + b_hh          sgemm_device, b_hh in its epilogue
//     cell kernel                         gates, state update; h -> hp[next step] (h_n after the
//                                         last step), c likewise into cp / c_n, saved[t], out[t]
//   backward, per step from the last one back (dh/dc ping-pong between the caller's buffers and
//   scratch: each step reads the gradient w.r.t. its output state and writes the one w.r.t. its
//   input state):
//     cell backward kernel                dh = dh_cur + g_out[t] (rows still valid), gate gradients
//                                         -> dxg[t] (GRU: also dhg[t]), dh_prev = the part that
//                                         bypasses W_hh, dc_prev
//     dh_prev += dhg[t] @ W_hh            sgemm_device with beta = 1
//   then the bias gradients: column sums of dxg / dhg over all T*B rows in one deterministic pass
//   (below; outside GRU dxg == dhg and one sum fills both db_x and db_h).
//
// Scratch (hg [B, G*H]; the other half of the dh/dc ping-pong; the device copy of lengths; the
// column-sum partials) comes from the caching allocator (Workspace, cuda/allocator.h): no
// cudaMalloc once a training loop is warm. A block goes back to the cache when the call returns,
// possibly before the kernels using it ran; the single stream orders any reuse after them.
//
// lengths: copied to the device once per call (B int64s, cudaMemcpyAsync on the stream) and read
// by every step's cell kernel as `t >= len[b]`. Per-step masks would cost T*B floats and a kernel
// to build, for the same comparison. A host-to-device copy from pageable memory returns once the
// source has been staged, so the array may go away after the call (the Python layer keeps it for
// the layer's lifetime anyway).
//
// NOTE: written and compiled without a GPU; tests/test_cuda_rnn.py compares it with the CPU kernels
// on a GPU machine.
#include <algorithm>
#include <utility>

#include "common/kn.h"
#include "common/ops.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/gemm.h"

namespace kn {
namespace rnn_cuda {

enum Mode { LSTM = 0, GRU = 1, ELMAN = 2 };

inline int gates_of(int mode) { return mode == LSTM ? 4 : mode == GRU ? 3 : 1; }

constexpr int kCellThreads = 256;

__device__ __forceinline__ bool past_end(const i64* len, i64 b, i64 t) { return len && t >= len[b]; }
__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

// One time step, one thread per (row b, hidden unit j), e = b * H + j; each thread reads unit j of
// every gate of its row. Pointers address the step's row 0 (the host adds t's offset).
struct StepFwd {
  const float* xg;      // [B, G*H] input projection (b_ih folded in)
  const float* hg;      // [B, G*H] hidden projection (b_hh included)
  const float* h_prev;  // [B, H] state the step starts from
  const float* c_prev;  // LSTM
  float* h_out;         // [B, H] state after the step: hp[next step], or h_n after the last
  float* c_out;         // LSTM
  float* saved;         // LSTM [B, 4H] gates (i, f, g, o); GRU [B, 4H] (r, z, n, hn); RNN unused
  float* out;           // out[t] [B, H]
  const i64* len;       // device lengths or null
  i64 t, B, H;
  int act;              // RNN: 0 tanh, 1 relu
};

struct StepBwd {
  const float* dh;      // [B, H] gradient w.r.t. the step's output state (g_out not yet added)
  const float* dc;      // LSTM
  const float* g_out;   // out[t]'s gradient or null
  const float* saved;   // saved[t]
  const float* h_prev;  // GRU: the state the step started from
  const float* h_cur;   // RNN: the step's output state
  const float* c_prev;  // LSTM
  const float* c_cur;   // LSTM
  float* dxg;           // [B, G*H] gradient w.r.t. xg[t] (and hg[t] outside GRU)
  float* dhg;           // GRU: [B, 3H] gradient w.r.t. hg[t] (differs in the n block)
  float* dh_prev;       // [B, H] out: gradient w.r.t. h_prev, less dhg @ W_hh (added by the GEMM)
  float* dc_prev;       // LSTM
  const i64* len;
  i64 t, B, H;
  int act;
};

// grid-stride loop over the B*H units of a step
#define KN_FOR_EACH_UNIT(s)                                                                 \
  for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x, n_ = (s).B * (s).H; e < n_;     \
       e += (i64)gridDim.x * blockDim.x)

__global__ void k_lstm_fwd(StepFwd s) {
  const i64 H = s.H;
  KN_FOR_EACH_UNIT(s) {
    const i64 b = e / H, j = e - b * H;
    const float* x = s.xg + b * 4 * H;
    const float* h = s.hg + b * 4 * H;
    float* g = s.saved + b * 4 * H;
    if (past_end(s.len, b, s.t)) {
      s.h_out[e] = s.h_prev[e];
      s.c_out[e] = s.c_prev[e];
      g[j] = g[H + j] = g[2 * H + j] = g[3 * H + j] = 0.f;
      s.out[e] = 0.f;
      continue;
    }
    const float i = sigmoid(x[j] + h[j]);
    const float f = sigmoid(x[H + j] + h[H + j]);
    const float gg = tanhf(x[2 * H + j] + h[2 * H + j]);
    const float o = sigmoid(x[3 * H + j] + h[3 * H + j]);
    const float c = f * s.c_prev[e] + i * gg;
    const float hv = o * tanhf(c);
    g[j] = i;
    g[H + j] = f;
    g[2 * H + j] = gg;
    g[3 * H + j] = o;
    s.c_out[e] = c;
    s.h_out[e] = hv;
    s.out[e] = hv;
  }
}

__global__ void k_gru_fwd(StepFwd s) {
  const i64 H = s.H;
  KN_FOR_EACH_UNIT(s) {
    const i64 b = e / H, j = e - b * H;
    const float* x = s.xg + b * 3 * H;
    const float* h = s.hg + b * 3 * H;
    float* sv = s.saved + b * 4 * H;
    if (past_end(s.len, b, s.t)) {
      s.h_out[e] = s.h_prev[e];
      sv[j] = sv[H + j] = sv[2 * H + j] = sv[3 * H + j] = 0.f;
      s.out[e] = 0.f;
      continue;
    }
    const float r = sigmoid(x[j] + h[j]);
    const float z = sigmoid(x[H + j] + h[H + j]);
    const float hn = h[2 * H + j];  // includes b_hn: the reset gate scales the hidden projection
    const float n = tanhf(x[2 * H + j] + r * hn);
    const float hv = (1.f - z) * n + z * s.h_prev[e];
    sv[j] = r;
    sv[H + j] = z;
    sv[2 * H + j] = n;
    sv[3 * H + j] = hn;
    s.h_out[e] = hv;
    s.out[e] = hv;
  }
}

__global__ void k_rnn_fwd(StepFwd s) {
  const i64 H = s.H;
  KN_FOR_EACH_UNIT(s) {
    const i64 b = e / H;
    if (past_end(s.len, b, s.t)) {
      s.h_out[e] = s.h_prev[e];
      s.out[e] = 0.f;
      continue;
    }
    const float v = s.xg[e] + s.hg[e];  // G = 1: the gate row is the unit row
    const float hv = s.act == 0 ? tanhf(v) : (v > 0.f ? v : 0.f);
    s.h_out[e] = hv;
    s.out[e] = hv;
  }
}

__global__ void k_lstm_bwd(StepBwd s) {
  const i64 H = s.H;
  KN_FOR_EACH_UNIT(s) {
    const i64 b = e / H, j = e - b * H;
    float* d = s.dxg + b * 4 * H;
    if (past_end(s.len, b, s.t)) {  // no output, no gates: the state gradient passes through
      s.dh_prev[e] = s.dh[e];
      s.dc_prev[e] = s.dc[e];
      d[j] = d[H + j] = d[2 * H + j] = d[3 * H + j] = 0.f;
      continue;
    }
    const float* g = s.saved + b * 4 * H;
    const float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
    const float dh = s.dh[e] + (s.g_out ? s.g_out[e] : 0.f);
    const float tc = tanhf(s.c_cur[e]);
    const float dct = s.dc[e] + dh * o * (1.f - tc * tc);
    d[j] = dct * gg * i * (1.f - i);
    d[H + j] = dct * s.c_prev[e] * f * (1.f - f);
    d[2 * H + j] = dct * i * (1.f - gg * gg);
    d[3 * H + j] = dh * tc * o * (1.f - o);
    s.dc_prev[e] = dct * f;
    s.dh_prev[e] = 0.f;  // all of h_prev's gradient goes through W_hh
  }
}

__global__ void k_gru_bwd(StepBwd s) {
  const i64 H = s.H;
  KN_FOR_EACH_UNIT(s) {
    const i64 b = e / H, j = e - b * H;
    float* dx = s.dxg + b * 3 * H;
    float* dhh = s.dhg + b * 3 * H;
    if (past_end(s.len, b, s.t)) {
      s.dh_prev[e] = s.dh[e];
      dx[j] = dx[H + j] = dx[2 * H + j] = 0.f;
      dhh[j] = dhh[H + j] = dhh[2 * H + j] = 0.f;
      continue;
    }
    const float* sv = s.saved + b * 4 * H;
    const float r = sv[j], z = sv[H + j], n = sv[2 * H + j], hn = sv[3 * H + j];
    const float d = s.dh[e] + (s.g_out ? s.g_out[e] : 0.f);
    const float dn = d * (1.f - z) * (1.f - n * n);  // through tanh
    const float dz = d * (s.h_prev[e] - n) * z * (1.f - z);
    const float dr = dn * hn * r * (1.f - r);
    dx[j] = dr;
    dx[H + j] = dz;
    dx[2 * H + j] = dn;
    dhh[j] = dr;
    dhh[H + j] = dz;
    dhh[2 * H + j] = dn * r;  // n = tanh(xn + r * hn): hn's gradient is scaled by r
    s.dh_prev[e] = d * z;     // the direct path h = ... + z * h_prev
  }
}

__global__ void k_rnn_bwd(StepBwd s) {
  const i64 H = s.H;
  KN_FOR_EACH_UNIT(s) {
    const i64 b = e / H;
    if (past_end(s.len, b, s.t)) {
      s.dh_prev[e] = s.dh[e];
      s.dxg[e] = 0.f;
      continue;
    }
    const float d = s.dh[e] + (s.g_out ? s.g_out[e] : 0.f);
    const float y = s.h_cur[e];  // the activation's derivative from its output
    s.dxg[e] = s.act == 0 ? d * (1.f - y * y) : (y > 0.f ? d : 0.f);
    s.dh_prev[e] = 0.f;
  }
}

#undef KN_FOR_EACH_UNIT

// ------------------------------------------------------------------------- bias-gradient sums
// dst[j] = sum over rows r < R of src[r * N + j]. Deterministic: which thread adds which rows, and
// the order partial sums are combined in, depend only on R and N (not on the device or on timing),
// and there are no atomics. Blocks of 32 columns x 8 row lanes (a warp reads 32 consecutive floats
// of one row), each block over a chunk of kSumChunk rows; with one chunk the block writes dst, else
// per-chunk partials go to a workspace and a second kernel adds them in chunk order.
constexpr int kSumCols = 32, kSumLanes = 8;
constexpr i64 kSumChunk = 256;

__global__ void k_colsum_chunks(const float* src, i64 R, i64 N, i64 chunk, float* part, float* dst1,
                                float* dst2) {
  __shared__ float acc[kSumLanes][kSumCols];
  const i64 j = (i64)blockIdx.x * kSumCols + threadIdx.x;
  const i64 r0 = (i64)blockIdx.y * chunk, r1 = r0 + chunk < R ? r0 + chunk : R;
  float s = 0.f;
  if (j < N)
    for (i64 r = r0 + threadIdx.y; r < r1; r += kSumLanes) s += src[r * N + j];
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y != 0 || j >= N) return;
  float total = 0.f;
#pragma unroll
  for (int y = 0; y < kSumLanes; ++y) total += acc[y][threadIdx.x];
  if (part) {
    part[(i64)blockIdx.y * N + j] = total;
  } else {
    dst1[j] = total;
    if (dst2) dst2[j] = total;
  }
}

__global__ void k_colsum_combine(const float* part, i64 chunks, i64 N, float* dst1, float* dst2) {
  for (i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x; j < N; j += (i64)gridDim.x * blockDim.x) {
    float total = 0.f;
    for (i64 c = 0; c < chunks; ++c) total += part[c * N + j];
    dst1[j] = total;
    if (dst2) dst2[j] = total;
  }
}

// Column sums of src [R, N] into dst1 and, when not null, the same values into dst2.
void column_sums(const char* op, const float* src, i64 R, i64 N, float* dst1, float* dst2) {
  if (N == 0) return;
  if (R == 0) {  // an empty batch: the gradient of a bias that touched nothing
    KN_CUDA_CHECK(cudaMemsetAsync(dst1, 0, sizeof(float) * N, kStream), op);
    if (dst2) KN_CUDA_CHECK(cudaMemsetAsync(dst2, 0, sizeof(float) * N, kStream), op);
    return;
  }
  const i64 chunk = std::max<i64>(kSumChunk, (R + 65534) / 65535);  // gridDim.y <= 65535
  const i64 chunks = (R + chunk - 1) / chunk;
  const i64 col_blocks = (N + kSumCols - 1) / kSumCols;
  KN_CHECK(col_blocks <= 2147483647, op, ": too many gate columns (", N, ")");
  Workspace part(chunks > 1 ? sizeof(float) * chunks * N : 0, op);
  dim3 grid((unsigned)col_blocks, (unsigned)chunks), block(kSumCols, kSumLanes);
  k_colsum_chunks<<<grid, block, 0, kStream>>>(src, R, N, chunk, part.as<float>(), dst1, dst2);
  KN_LAUNCH_CHECK(op);
  if (chunks > 1) {
    k_colsum_combine<<<grid_for(N, 256, (i64)num_sms() * 8), 256, 0, kStream>>>(part.as<float>(), chunks, N,
                                                                                 dst1, dst2);
    KN_LAUNCH_CHECK(op);
  }
}

// ------------------------------------------------------------------------- host side
struct Sequence {
  int mode, act;
  i64 T, B, H;
  bool reverse;
  i64 G() const { return gates_of(mode); }
  i64 time_at(i64 k) const { return reverse ? T - 1 - k : k; }
  i64 saved_row() const { return mode == GRU ? 4 * H : G() * H; }
};

// The host lengths array on the device for one call (null when there are none).
class DeviceLengths {
 public:
  DeviceLengths(const char* op, const i64* host, i64 B) : ws_(host && B > 0 ? sizeof(i64) * B : 0, op) {
    // captured, this copy would read the caller's pageable array at every replay (or be refused)
    KN_CHECK(!ws_.p || kStream == nullptr, op, ": sequence lengths cannot be captured in a CUDA graph");
    if (ws_.p)
      KN_CUDA_CHECK(cudaMemcpyAsync(ws_.p, host, sizeof(i64) * B, cudaMemcpyHostToDevice, kStream), op);
  }
  const i64* get() const { return ws_.as<const i64>(); }

 private:
  Workspace ws_;
};

unsigned cell_grid(i64 n) { return grid_for(n, kCellThreads, (i64)num_sms() * 8); }

void forward(const Sequence& s, const float* xg, const float* w_hh, const float* b_hh, float* hp, float* cp,
             float* out, float* h_n, float* c_n, float* saved, const i64* lengths) {
  const char* op = "rnn_sequence_forward";
  const i64 T = s.T, B = s.B, H = s.H, GH = s.G() * H, BH = B * H, SR = s.saved_row();
  if (B == 0) return;  // nothing to compute; the outputs are empty
  const DeviceLengths len(op, lengths, B);
  Workspace hg_ws(sizeof(float) * B * GH, op);
  float* hg = hg_ws.as<float>();
  const unsigned grid = cell_grid(BH);
  for (i64 k = 0; k < T; ++k) {
    const i64 t = s.time_at(k);
    const bool last = k == T - 1;
    const i64 next = last ? 0 : s.time_at(k + 1);
    StepFwd p{};
    p.xg = xg + t * B * GH;
    p.hg = hg;
    p.h_prev = hp + t * BH;
    p.h_out = last ? h_n : hp + next * BH;
    if (s.mode == LSTM) {
      p.c_prev = cp + t * BH;
      p.c_out = last ? c_n : cp + next * BH;
    }
    if (s.mode != ELMAN) p.saved = saved + t * B * SR;
    p.out = out + t * BH;
    p.len = len.get();
    p.t = t;
    p.B = B;
    p.H = H;
    p.act = s.act;
    // hg = h_prev @ W_hh^T + b_hh: W_hh is [G*H, H], so op(B) = W_hh^T is W_hh stored transposed
    sgemm_device(1, false, true, B, GH, H, 1.f, p.h_prev, H, 0, w_hh, H, 0, 0.f, hg, GH, 0, b_hh,
                 b_hh ? BIAS_COL : BIAS_NONE, ACT_NONE);
    if (s.mode == LSTM)
      k_lstm_fwd<<<grid, kCellThreads, 0, kStream>>>(p);
    else if (s.mode == GRU)
      k_gru_fwd<<<grid, kCellThreads, 0, kStream>>>(p);
    else
      k_rnn_fwd<<<grid, kCellThreads, 0, kStream>>>(p);
    KN_LAUNCH_CHECK(op);
  }
}

void backward(const Sequence& s, const float* w_hh, const float* hp, const float* cp, const float* h_n,
              const float* c_n, const float* saved, const float* g_out, float* dh, float* dc, float* dxg,
              float* dhg, float* db_x, float* db_h, const i64* lengths) {
  const char* op = "rnn_sequence_backward";
  const i64 T = s.T, B = s.B, H = s.H, GH = s.G() * H, BH = B * H, SR = s.saved_row();
  const bool lstm = s.mode == LSTM;
  if (B > 0) {
    const DeviceLengths len(op, lengths, B);
    Workspace dh_ws(sizeof(float) * BH, op), dc_ws(lstm ? sizeof(float) * BH : 0, op);
    // ping-pong: a step reads *_cur (gradient w.r.t. its output state), writes *_prev
    float* dh_cur = dh;
    float* dh_prev = dh_ws.as<float>();
    float* dc_cur = dc;
    float* dc_prev = dc_ws.as<float>();
    const unsigned grid = cell_grid(BH);
    for (i64 k = T - 1; k >= 0; --k) {
      const i64 t = s.time_at(k);
      const bool last = k == T - 1;
      const i64 next = last ? 0 : s.time_at(k + 1);
      StepBwd p{};
      p.dh = dh_cur;
      p.g_out = g_out ? g_out + t * BH : nullptr;
      if (s.mode != ELMAN) p.saved = saved + t * B * SR;
      p.h_prev = hp + t * BH;
      p.h_cur = last ? h_n : hp + next * BH;
      if (lstm) {
        p.dc = dc_cur;
        p.c_prev = cp + t * BH;
        p.c_cur = last ? c_n : cp + next * BH;
        p.dc_prev = dc_prev;
      }
      p.dxg = dxg + t * B * GH;
      p.dhg = dhg + t * B * GH;
      p.dh_prev = dh_prev;
      p.len = len.get();
      p.t = t;
      p.B = B;
      p.H = H;
      p.act = s.act;
      if (lstm)
        k_lstm_bwd<<<grid, kCellThreads, 0, kStream>>>(p);
      else if (s.mode == GRU)
        k_gru_bwd<<<grid, kCellThreads, 0, kStream>>>(p);
      else
        k_rnn_bwd<<<grid, kCellThreads, 0, kStream>>>(p);
      KN_LAUNCH_CHECK(op);
      // dh_prev += dhg[t] @ W_hh (W_hh [G*H, H] as stored); rows past their end have dhg = 0
      sgemm_device(1, false, false, B, H, GH, 1.f, p.dhg, GH, 0, w_hh, H, 0, 1.f, dh_prev, H, 0);
      std::swap(dh_cur, dh_prev);
      if (lstm) std::swap(dc_cur, dc_prev);
    }
    // the gradient w.r.t. h0 (c0) is in *_cur; hand it back in the caller's buffers
    if (dh_cur != dh)
      KN_CUDA_CHECK(cudaMemcpyAsync(dh, dh_cur, sizeof(float) * BH, cudaMemcpyDeviceToDevice, kStream), op);
    if (lstm && dc_cur != dc)
      KN_CUDA_CHECK(cudaMemcpyAsync(dc, dc_cur, sizeof(float) * BH, cudaMemcpyDeviceToDevice, kStream), op);
  }
  // Bias gradients, as on the CPU: db_h sums dhg, db_x sums dxg; outside GRU they are one buffer
  // and one pass writes both.
  const bool shared = dxg == dhg;
  if (db_h || (db_x && shared))
    column_sums(op, dhg, T * B, GH, db_h ? db_h : db_x, db_h && db_x && shared ? db_x : nullptr);
  if (db_x && !shared) column_sums(op, dxg, T * B, GH, db_x, nullptr);
}

Sequence checked(const char* op, int mode, int act, i64 T, i64 B, i64 H, bool reverse) {
  KN_CHECK(mode >= LSTM && mode <= ELMAN, op, ": mode must be 0 (LSTM), 1 (GRU) or 2 (RNN), got ", mode);
  KN_CHECK(act == 0 || act == 1, op, ": act must be 0 (tanh) or 1 (relu), got ", act);
  KN_CHECK(T >= 1 && B >= 0 && H >= 1, op, ": bad sizes T=", T, " B=", B, " H=", H);
  return Sequence{mode, act, T, B, H, reverse};
}

}  // namespace rnn_cuda
}  // namespace kn

KN_BIND(rnn_sequence) {
  using kn::i64;
  using kn::ptr;
  using kn::uptr;
  namespace rc = kn::rnn_cuda;
  m.def(
      "rnn_sequence_forward",
      [](int mode, int act, i64 T, i64 B, i64 H, uptr xg, uptr w_hh, uptr b_hh, uptr hp, uptr cp, uptr out,
         uptr h_n, uptr c_n, uptr saved, uptr lengths, bool reverse) {
        const rc::Sequence s = rc::checked("rnn_sequence_forward", mode, act, T, B, H, reverse);
        KN_CHECK(xg && w_hh && hp && out && h_n, "rnn_sequence_forward: null pointer");
        KN_CHECK(mode == rc::ELMAN || saved, "rnn_sequence_forward: null pointer (saved)");
        KN_CHECK(mode != rc::LSTM || (cp && c_n), "rnn_sequence_forward: null pointer (cp, c_n)");
        rc::forward(s, ptr<const float>(xg), ptr<const float>(w_hh), ptr<const float>(b_hh), ptr<float>(hp),
                    ptr<float>(cp), ptr<float>(out), ptr<float>(h_n), ptr<float>(c_n), ptr<float>(saved),
                    ptr<const i64>(lengths));
      },
      kn::py::arg("mode"), kn::py::arg("act"), kn::py::arg("T"), kn::py::arg("B"), kn::py::arg("H"),
      kn::py::arg("xg"), kn::py::arg("w_hh"), kn::py::arg("b_hh"), kn::py::arg("hp"), kn::py::arg("cp"),
      kn::py::arg("out"), kn::py::arg("h_n"), kn::py::arg("c_n"), kn::py::arg("saved"),
      kn::py::arg("lengths"), kn::py::arg("reverse"), KN_NOGIL);
  m.def(
      "rnn_sequence_backward",
      [](int mode, int act, i64 T, i64 B, i64 H, uptr w_hh, uptr hp, uptr cp, uptr h_n, uptr c_n, uptr saved,
         uptr g_out, uptr dh, uptr dc, uptr dxg, uptr dhg, uptr db_x, uptr db_h, uptr lengths,
         bool reverse) {
        const rc::Sequence s = rc::checked("rnn_sequence_backward", mode, act, T, B, H, reverse);
        KN_CHECK(w_hh && hp && h_n && dh && dxg && dhg, "rnn_sequence_backward: null pointer");
        KN_CHECK(mode == rc::ELMAN || saved, "rnn_sequence_backward: null pointer (saved)");
        KN_CHECK(mode != rc::LSTM || (cp && c_n && dc), "rnn_sequence_backward: null pointer (cp, c_n, dc)");
        rc::backward(s, ptr<const float>(w_hh), ptr<const float>(hp), ptr<const float>(cp),
                     ptr<const float>(h_n), ptr<const float>(c_n), ptr<const float>(saved),
                     ptr<const float>(g_out), ptr<float>(dh), ptr<float>(dc), ptr<float>(dxg), ptr<float>(dhg),
                     ptr<float>(db_x), ptr<float>(db_h), ptr<const i64>(lengths));
      },
      kn::py::arg("mode"), kn::py::arg("act"), kn::py::arg("T"), kn::py::arg("B"), kn::py::arg("H"),
      kn::py::arg("w_hh"), kn::py::arg("hp"), kn::py::arg("cp"), kn::py::arg("h_n"), kn::py::arg("c_n"),
      kn::py::arg("saved"), kn::py::arg("g_out"), kn::py::arg("dh"), kn::py::arg("dc"), kn::py::arg("dxg"),
      kn::py::arg("dhg"), kn::py::arg("db_x"), kn::py::arg("db_h"), kn::py::arg("lengths"),
      kn::py::arg("reverse"), KN_NOGIL);
}
