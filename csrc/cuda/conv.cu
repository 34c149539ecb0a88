// 2-D convolution on the GPU (NCHW, float32, contiguous) as implicit GEMM: the CUDA twin of
// csrc/cpu/conv.cpp, with the same bindings and arguments:
//   conv2d_forward(x, w, bias, y, N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups, act)
//   conv2d_backward_input(dy, w, dx, N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups)
//   conv2d_backward_weight(x, dy, dw, N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups, accumulate)
//   conv2d_backward_bias(dy, db, N, K, PQ)
//   conv2d_output_size(H, R, stride, pad, dil)
//
// Why implicit GEMM: every convolution pass is a GEMM whose operands are gathers from the
// tensors (the im2col matrix). Instead of materialising im2col (a buffer R*S times the input, plus
// a write and a read of it), the shared-memory tile loader computes each element's address on the
// fly. The tile loop is an ordinary SGEMM: 64x64 block tiles, BK=16, 256 threads each holding a
// 4x4 register block of C, loads for tile k+1 issued into registers before tile k is multiplied
// (double-buffered shared memory, one barrier per k-step).
//
// One kernel template, three problems (per group g; blockIdx.z = split * groups + g):
//   forward          C[Kg, N*P*Q]   = W[Kg, Cg*R*S]       x  im2col(x)[Cg*R*S, N*P*Q]
//                    epilogue: + bias, ReLU, written straight into y[N, K, P, Q]
//   backward input   C[Cg, N*H*W]   = W^T[Cg, Kg*R*S]     x  G[Kg*R*S, N*H*W]
//                    G[(k,r,s), (n,h,w)] = dy[n, k, p, q] where h = p*sh - ph + r*dh (and for w),
//                    0 where no such integer p/q exists: a gather, so no col2im scatter and no
//                    atomics; every dx element is written exactly once.
//   backward weight  C[Kg, Cg*R*S]  = dY[Kg, N*P*Q]       x  im2col(x)^T[N*P*Q, Cg*R*S]
//                    the reduction dimension N*P*Q is long and C small, so it is split over
//                    blockIdx.z (split-K) and the partial tiles are added with atomicAdd.
// Each problem supplies a per-row context (A), a per-column context (B) computed once per thread,
// and element loaders; all divisions inside the loop are FastDiv multiply-shifts.
//
// Indices are 32-bit: the host checks every tensor has fewer than 2^31 elements.
#include <algorithm>
#include <atomic>

#include "common/kn.h"
#include "common/layer_geometry.h"
#include "common/ops.h"
#include "cuda/layer_common.cuh"

namespace kn {
namespace conv_cuda {

using layer::FastDiv;

using Geom = ConvGeom;

// The CPU backend's checks and messages (common/layer_geometry.h), plus the 32-bit index limit.
Geom make_geom(const char* op, i64 N, i64 C, i64 H, i64 W, i64 K, i64 R, i64 S, i64 sh, i64 sw,
               i64 ph, i64 pw, i64 dh, i64 dw, i64 groups) {
  Geom g = make_conv_geom(op, N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups);
  // headroom below 2^31: tile counts (N + BN - 1) and tile columns n0 + 127 are computed in int
  const i64 lim = layer::kIntMax - 256;
  KN_CHECK(N * C * H * W < lim && N * K * g.P * g.Q < lim && K * g.CRS < lim &&
               H + 2 * ph < lim / 2 && W + 2 * pw < lim / 2 && dh * R < lim / 2 && dw * S < lim / 2 &&
               sh < lim && sw < lim,
           op, ": tensors with 2^31 or more elements are not supported on CUDA (N=", N, " C=", C,
           " H=", H, " W=", W, " K=", K, ")");
  return g;
}

// ---------------------------------------------------------------------------- the tile loop

constexpr int BK = 16;

// Prob: M, N, Kd (per group); Arow arow(m, g) / float loadA(const Arow&, kd);
// Bcol bcol(n, g) / float loadB(const Bcol&, kd); void store(m, n, g, value).
// Rows m >= M and columns n >= N get contexts whose loads return 0 (ctx.ok == false).
template <int BM, int BN, int TM, int TN, class Prob>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    k_igemm(const Prob pr, int groups, int k_chunk) {
  constexpr int NT = (BM / TM) * (BN / TN);
  constexpr int A_STEP = NT / BK;          // rows between one thread's A loads
  constexpr int A_PER = BM / A_STEP;       // A elements per thread per k-step
  constexpr int B_STEP = NT / BN;          // k rows between one thread's B loads
  constexpr int B_PER = BK / B_STEP;       // B elements per thread per k-step
  static_assert(NT % BK == 0 && BM % A_STEP == 0 && NT % BN == 0 && BK % B_STEP == 0, "tile shape");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "register block in float4s");
  constexpr int APAD = 4;  // As rows are written column-wise: the pad spreads them over banks

  __shared__ __align__(16) float As[2][BK][BM + APAD];  // A tile, transposed: As[kk][m]
  __shared__ __align__(16) float Bs[2][BK][BN];

  const int tid = threadIdx.x;
  const int g = blockIdx.z % groups;
  const int split = blockIdx.z / groups;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int kbeg = split * k_chunk;
  // (in 64 bits: for the last split kbeg + k_chunk can pass 2^31 when N*P*Q is within
  // 16 * splits of the 2^31 limit, which would make kend negative and drop that split)
  const int kend = (int)min((i64)pr.Kd, (i64)kbeg + k_chunk);
  if (kbeg >= kend) return;  // (the host sizes splits so this does not happen; stay safe)

  // Loader contexts: fixed rows of A and one fixed column of B per thread for the whole loop.
  const int a_kk = tid % BK, a_m = tid / BK;
  const int b_n = tid % BN, b_kk = tid / BN;
  typename Prob::Arow actx[A_PER];
#pragma unroll
  for (int i = 0; i < A_PER; ++i) actx[i] = pr.arow(m0 + a_m + i * A_STEP, g);
  const typename Prob::Bcol bctx = pr.bcol(n0 + b_n, g);

  float ra[A_PER], rb[B_PER];
  auto load_tile = [&](int k0) {
#pragma unroll
    for (int i = 0; i < A_PER; ++i) {
      int kd = k0 + a_kk;
      ra[i] = kd < kend ? pr.loadA(actx[i], kd) : 0.f;
    }
#pragma unroll
    for (int i = 0; i < B_PER; ++i) {
      int kd = k0 + b_kk + i * B_STEP;
      rb[i] = kd < kend ? pr.loadB(bctx, kd) : 0.f;
    }
  };
  auto store_tile = [&](int buf) {
#pragma unroll
    for (int i = 0; i < A_PER; ++i) As[buf][a_kk][a_m + i * A_STEP] = ra[i];
#pragma unroll
    for (int i = 0; i < B_PER; ++i) Bs[buf][b_kk + i * B_STEP][b_n] = rb[i];
  };

  // Thread (ty, tx) owns rows ty*TM.. and columns tx*TN.. of the block tile.
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  load_tile(kbeg);
  int buf = 0;
  for (int k0 = kbeg; k0 < kend; k0 += BK) {
    store_tile(buf);
    __syncthreads();  // tile visible; and every thread finished reading this buffer 2 steps ago
    if (k0 + BK < kend) load_tile(k0 + BK);  // global loads in flight during the FMAs below
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; i += 4) {
        float4 v = *reinterpret_cast<const float4*>(&As[buf][kk][ty * TM + i]);
        a[i] = v.x; a[i + 1] = v.y; a[i + 2] = v.z; a[i + 3] = v.w;
      }
#pragma unroll
      for (int j = 0; j < TN; j += 4) {
        float4 v = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * TN + j]);
        b[j] = v.x; b[j + 1] = v.y; b[j + 2] = v.z; b[j + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    buf ^= 1;
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + ty * TM + i;
    if (m >= pr.M) break;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int n = n0 + tx * TN + j;
      if (n < pr.N) pr.store(m, n, g, acc[i][j]);
    }
  }
}

// ---------------------------------------------------------------------------- the problems

// Forward: A = weights [Kg, CRS] (row m = output channel), B = im2col(x) [CRS, N*P*Q].
struct FwdProb {
  const float* x;
  const float* w;
  const float* bias;
  float* y;
  int M, N, Kd;  // Kg, N*P*Q, Cg*R*S
  int C, H, W, K, Cg, Kg, S, sh, sw, ph, pw, dh, dw, PQ, act;
  FastDiv div_PQ, div_Q, div_RS, div_S;

  struct Arow { const float* p; };
  struct Bcol { const float* base; int ih0, iw0; bool ok; };

  __device__ Arow arow(int m, int g) const {
    return Arow{m < M ? w + (i64)(g * Kg + m) * Kd : nullptr};
  }
  __device__ float loadA(const Arow& a, int kd) const { return a.p ? __ldg(a.p + kd) : 0.f; }

  __device__ Bcol bcol(int n, int g) const {
    Bcol c{x, 0, 0, n < N};
    if (!c.ok) return c;
    int nb = div_PQ.div(n), pq = n - nb * PQ;
    int p = div_Q.div(pq), q = pq - p * div_Q.d;
    c.base = x + ((i64)nb * C + (i64)g * Cg) * H * W;
    c.ih0 = p * sh - ph;
    c.iw0 = q * sw - pw;
    return c;
  }
  __device__ float loadB(const Bcol& c, int kd) const {
    if (!c.ok) return 0.f;
    int ch = div_RS.div(kd), rs = kd - ch * (int)div_RS.d;
    int r = div_S.div(rs), s = rs - r * S;
    int ih = c.ih0 + r * dh, iw = c.iw0 + s * dw;
    if ((unsigned)ih >= (unsigned)H || (unsigned)iw >= (unsigned)W) return 0.f;  // padding
    return __ldg(c.base + ((i64)ch * H + ih) * W + iw);
  }
  __device__ void store(int m, int n, int g, float v) const {
    int k = g * Kg + m;
    if (bias) v += __ldg(bias + k);
    if (act == ACT_RELU) v = v > 0.f ? v : 0.f;
    int nb = div_PQ.div(n), pq = n - nb * PQ;
    y[((i64)nb * K + k) * PQ + pq] = v;
  }
};

// Backward input: A = W^T [Cg, Kg*R*S] (row m = input channel c), B = dy gathered [Kg*R*S, N*H*W].
struct BwdInProb {
  const float* dy;
  const float* w;
  float* dx;
  int M, N, Kd;  // Cg, N*H*W, Kg*R*S
  int C, K, Cg, Kg, RS, S, sh, sw, ph, pw, dh, dw, P, Q, HW;
  FastDiv div_HW, div_W, div_RS, div_S, div_sh, div_sw;

  struct Arow { const float* p; };
  struct Bcol { const float* base; int hp, wp; bool ok; };

  // w[g*Kg + k, c, r, s] = p[k * Cg*RS + rs] with p = w + (g*Kg*Cg + c) * RS
  __device__ Arow arow(int m, int g) const {
    return Arow{m < M ? w + ((i64)g * Kg * Cg + m) * RS : nullptr};
  }
  __device__ float loadA(const Arow& a, int kd) const {
    if (!a.p) return 0.f;
    int k = div_RS.div(kd), rs = kd - k * RS;
    return __ldg(a.p + (i64)k * Cg * RS + rs);
  }
  __device__ Bcol bcol(int n, int g) const {
    Bcol c{dy, 0, 0, n < N};
    if (!c.ok) return c;
    int nb = div_HW.div(n), hw = n - nb * HW;
    int h = div_W.div(hw), wq = hw - h * (int)div_W.d;
    c.base = dy + ((i64)nb * K + (i64)g * Kg) * P * Q;
    c.hp = h + ph;
    c.wp = wq + pw;
    return c;
  }
  __device__ float loadB(const Bcol& c, int kd) const {
    if (!c.ok) return 0.f;
    int k = div_RS.div(kd), rs = kd - k * RS;
    int r = div_S.div(rs), s = rs - r * S;
    int th = c.hp - r * dh, tw = c.wp - s * dw;  // = p*sh, q*sw if this tap touches (h, w)
    if (th < 0 || tw < 0) return 0.f;
    int p = th, q = tw;
    if (sh != 1) {
      p = div_sh.div(th);  // th < 2^31 and >= 0 (checked above): FastDiv's range
      if (p * sh != th) return 0.f;
    }
    if (sw != 1) {
      q = div_sw.div(tw);
      if (q * sw != tw) return 0.f;
    }
    if (p >= P || q >= Q) return 0.f;
    return __ldg(c.base + ((i64)k * P + p) * Q + q);
  }
  __device__ void store(int m, int n, int g, float v) const {
    int nb = div_HW.div(n), hw = n - nb * HW;
    dx[((i64)nb * C + (i64)g * Cg + m) * HW + hw] = v;
  }
};

// Backward weight: A = dY [Kg, N*P*Q] (row m = output channel), B = im2col(x)^T [N*P*Q, CRS].
struct BwdWProb {
  const float* x;
  const float* dy;
  float* dwt;
  int M, N, Kd;  // Kg, Cg*R*S, N*P*Q
  int C, H, W, K, Cg, Kg, S, sh, sw, ph, pw, dh, dw, PQ, mode;  // mode 0 store, 1 add, 2 atomicAdd
  FastDiv div_PQ, div_Q, div_RS, div_S;

  struct Arow { const float* p; };
  struct Bcol { const float* base; int roff, soff; bool ok; };

  __device__ Arow arow(int m, int g) const {
    return Arow{m < M ? dy + (i64)(g * Kg + m) * PQ : nullptr};
  }
  __device__ float loadA(const Arow& a, int j) const {
    if (!a.p) return 0.f;
    int nb = div_PQ.div(j), pq = j - nb * PQ;
    return __ldg(a.p + (i64)nb * K * PQ + pq);
  }
  __device__ Bcol bcol(int n, int g) const {
    Bcol c{x, 0, 0, n < N};
    if (!c.ok) return c;
    int ch = div_RS.div(n), rs = n - ch * (int)div_RS.d;
    int r = div_S.div(rs), s = rs - r * S;
    c.base = x + ((i64)g * Cg + ch) * H * W;
    c.roff = r * dh - ph;
    c.soff = s * dw - pw;
    return c;
  }
  __device__ float loadB(const Bcol& c, int j) const {
    if (!c.ok) return 0.f;
    int nb = div_PQ.div(j), pq = j - nb * PQ;
    int p = div_Q.div(pq), q = pq - p * (int)div_Q.d;
    int ih = p * sh + c.roff, iw = q * sw + c.soff;
    if ((unsigned)ih >= (unsigned)H || (unsigned)iw >= (unsigned)W) return 0.f;
    return __ldg(c.base + (i64)nb * C * H * W + (i64)ih * W + iw);
  }
  __device__ void store(int m, int n, int g, float v) const {
    float* d = dwt + (i64)(g * Kg + m) * N + n;
    if (mode == 2) atomicAdd(d, v);
    else if (mode == 1) *d += v;
    else *d = v;
  }
};

// ---------------------------------------------------------------------------- launching

// Tile configurations (id: block tile, register block, threads):
//   1: 64x64,  4x4, 256 threads  the general case
//   2: 32x128, 4x4, 256 threads  M (output or input channels per group) <= 32: the course CNN's
//                                first layer would waste half of every 64-row tile
//   3: 64x128, 8x8, 128 threads  M >= 64 and many columns: twice the FMAs per shared-memory load
//                                and per im2col address computation
// _conv_force_config(id) pins one (0 = automatic) so bench/cuda/conv.py can time each.
std::atomic<int> g_force_config{0};

int choose_config(int M, i64 N) {
  int f = g_force_config.load();
  if (f >= 1 && f <= 3) return f;
  if (M <= 32) return 2;
  if (M >= 64 && N >= 128 * 4 * (i64)layer::sm_count()) return 3;  // enough tiles to fill the GPU
  return 1;
}

template <int BM, int BN, int TM, int TN, class Prob>
void launch_cfg(const char* op, const Prob& pr, unsigned gz, int groups, int k_chunk) {
  dim3 grid((unsigned)((pr.N + BN - 1) / BN), (unsigned)((pr.M + BM - 1) / BM), gz);
  KN_CHECK(grid.y <= 65535u, op, ": too many row tiles");
  k_igemm<BM, BN, TM, TN, Prob><<<grid, (BM / TM) * (BN / TN), 0, kStream>>>(pr, groups, k_chunk);
}

template <class Prob>
void launch(const char* op, const Prob& pr, int cfg, int groups, int splits, int k_chunk) {
  const unsigned gz = (unsigned)(groups * splits);
  KN_CHECK(gz <= 65535u, op, ": too many groups x splits (", groups, " x ", splits, ")");
  if (cfg == 2) launch_cfg<32, 128, 4, 4>(op, pr, gz, groups, k_chunk);
  else if (cfg == 3) launch_cfg<64, 128, 8, 8>(op, pr, gz, groups, k_chunk);
  else launch_cfg<64, 64, 4, 4>(op, pr, gz, groups, k_chunk);
  KN_LAUNCH_CHECK(op);
}

// Block tile (rows, columns) of a configuration, for the split-K sizing.
void tile_of(int cfg, i64& BM, i64& BN) {
  BM = cfg == 2 ? 32 : 64;
  BN = cfg == 1 ? 64 : 128;
}

FastDiv fd(i64 d) { return FastDiv((std::uint32_t)d); }

void forward(const Geom& g, const float* x, const float* w, const float* bias, float* y, int act) {
  if (g.N == 0) return;
  FwdProb pr;
  pr.x = x; pr.w = w; pr.bias = bias; pr.y = y;
  pr.M = (int)g.Kg; pr.N = (int)(g.N * g.P * g.Q); pr.Kd = (int)g.CRS;
  pr.C = (int)g.C; pr.H = (int)g.H; pr.W = (int)g.W; pr.K = (int)g.K; pr.Cg = (int)g.Cg;
  pr.Kg = (int)g.Kg; pr.S = (int)g.S; pr.sh = (int)g.sh; pr.sw = (int)g.sw; pr.ph = (int)g.ph;
  pr.pw = (int)g.pw; pr.dh = (int)g.dh; pr.dw = (int)g.dw; pr.PQ = (int)(g.P * g.Q); pr.act = act;
  pr.div_PQ = fd(g.P * g.Q); pr.div_Q = fd(g.Q); pr.div_RS = fd(g.R * g.S); pr.div_S = fd(g.S);
  launch("conv2d_forward", pr, choose_config(pr.M, pr.N), (int)g.groups, 1, pr.Kd);
}

void backward_input(const Geom& g, const float* dy, const float* w, float* dx) {
  if (g.N == 0) return;
  BwdInProb pr;
  pr.dy = dy; pr.w = w; pr.dx = dx;
  pr.M = (int)g.Cg; pr.N = (int)(g.N * g.H * g.W); pr.Kd = (int)(g.Kg * g.R * g.S);
  pr.C = (int)g.C; pr.K = (int)g.K; pr.Cg = (int)g.Cg; pr.Kg = (int)g.Kg; pr.RS = (int)(g.R * g.S);
  pr.S = (int)g.S; pr.sh = (int)g.sh; pr.sw = (int)g.sw; pr.ph = (int)g.ph; pr.pw = (int)g.pw;
  pr.dh = (int)g.dh; pr.dw = (int)g.dw; pr.P = (int)g.P; pr.Q = (int)g.Q; pr.HW = (int)(g.H * g.W);
  pr.div_HW = fd(g.H * g.W); pr.div_W = fd(g.W); pr.div_RS = fd(g.R * g.S); pr.div_S = fd(g.S);
  pr.div_sh = fd(g.sh); pr.div_sw = fd(g.sw);
  launch("conv2d_backward_input", pr, choose_config(pr.M, pr.N), (int)g.groups, 1, pr.Kd);
}

void backward_weight(const Geom& g, const float* x, const float* dy, float* dwt, bool accumulate) {
  const i64 WN = g.K * g.CRS;
  const char* op = "conv2d_backward_weight";
  if (g.N == 0) {
    if (!accumulate) KN_CUDA_CHECK(cudaMemsetAsync(dwt, 0, sizeof(float) * WN, kStream), op);
    return;
  }
  BwdWProb pr;
  pr.x = x; pr.dy = dy; pr.dwt = dwt;
  pr.M = (int)g.Kg; pr.N = (int)g.CRS; pr.Kd = (int)(g.N * g.P * g.Q);
  pr.C = (int)g.C; pr.H = (int)g.H; pr.W = (int)g.W; pr.K = (int)g.K; pr.Cg = (int)g.Cg;
  pr.Kg = (int)g.Kg; pr.S = (int)g.S; pr.sh = (int)g.sh; pr.sw = (int)g.sw; pr.ph = (int)g.ph;
  pr.pw = (int)g.pw; pr.dh = (int)g.dh; pr.dw = (int)g.dw; pr.PQ = (int)(g.P * g.Q);
  pr.div_PQ = fd(g.P * g.Q); pr.div_Q = fd(g.Q); pr.div_RS = fd(g.R * g.S); pr.div_S = fd(g.S);

  // Split-K: enough blocks for ~4 waves of the GPU, each split at least 4 k-steps long.
  // The weight gradient's C is small (K x C*R*S); its long dimension is the reduction, so the
  // 8x8 tile (fewer, larger tiles) is never chosen automatically here.
  const int cfg = g_force_config.load() ? choose_config(pr.M, pr.N) : (pr.M <= 32 ? 2 : 1);
  i64 BM, BN;
  tile_of(cfg, BM, BN);
  const i64 tiles = ((pr.M + BM - 1) / BM) * ((pr.N + BN - 1) / BN) * g.groups;
  const i64 want = std::max<i64>(1, (4 * (i64)layer::sm_count() + tiles - 1) / tiles);
  const i64 max_splits = std::max<i64>(1, pr.Kd / (4 * BK));
  // (at least 1: with more than 65535 groups the launch's own check refuses it with a ValueError)
  i64 splits = std::min<i64>({want, max_splits, std::max<i64>(1, 65535 / g.groups)});
  i64 chunk = (pr.Kd + splits - 1) / splits;
  chunk = (chunk + BK - 1) / BK * BK;           // each split starts on a k-step boundary
  splits = (pr.Kd + chunk - 1) / chunk;         // no empty splits
  if (splits > 1) {
    if (!accumulate) KN_CUDA_CHECK(cudaMemsetAsync(dwt, 0, sizeof(float) * WN, kStream), op);
    pr.mode = 2;
  } else {
    pr.mode = accumulate ? 1 : 0;
  }
  launch(op, pr, cfg, (int)g.groups, (int)splits, (int)chunk);
}

// db[k] = sum over n and pq of dy[n, k, pq]: block (k, slice of the batch) reduces its part and
// adds it into db with one atomicAdd (db zeroed first). Float atomics make the last bits of db
// order-dependent; the CPU backend sums in double, so the two agree to float rounding.
__global__ void k_bias_grad(const float* __restrict__ dy, float* __restrict__ db, int N, int K, int PQ,
                            int n_per_block) {
  __shared__ float warp_sums[32];
  const int k = blockIdx.x;
  const int nb0 = blockIdx.y * n_per_block, nb1 = min(N, nb0 + n_per_block);
  float s = 0.f;
  for (int nb = nb0; nb < nb1; ++nb) {
    const float* row = dy + ((i64)nb * K + k) * PQ;
    for (int i = threadIdx.x; i < PQ; i += blockDim.x) s += row[i];
  }
  for (int d = 16; d > 0; d >>= 1) s += __shfl_xor_sync(0xffffffffu, s, d);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.f;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) t += warp_sums[w];
    atomicAdd(db + k, t);
  }
}

void backward_bias(const float* dy, float* db, i64 N, i64 K, i64 PQ) {
  const char* op = "conv2d_backward_bias";
  KN_CUDA_CHECK(cudaMemsetAsync(db, 0, sizeof(float) * K, kStream), op);
  if (N == 0 || PQ == 0) return;
  KN_CHECK(N * K * PQ < layer::kIntMax && K <= 2147483647, op, ": too large (N=", N, " K=", K,
           " PQ=", PQ, ")");
  const int threads = PQ >= 256 ? 256 : (PQ >= 128 ? 128 : 64);
  // Slices of the batch so that K * slices fills the GPU a few times over.
  i64 slices = std::max<i64>(1, std::min<i64>(N, (4 * (i64)layer::sm_count() + K - 1) / K));
  slices = std::min<i64>(slices, 65535);
  const i64 per = (N + slices - 1) / slices;
  slices = (N + per - 1) / per;
  dim3 grid((unsigned)K, (unsigned)slices);
  KN_CHECK(K <= 2147483647, op, ": K too large");
  k_bias_grad<<<grid, threads, 0, kStream>>>(dy, db, (int)N, (int)K, (int)PQ, (int)per);
  KN_LAUNCH_CHECK(op);
}

}  // namespace conv_cuda
}  // namespace kn

KN_BIND(conv_cuda) {
  using kn::i64;
  using kn::uptr;
  namespace cc = kn::conv_cuda;
  m.def("conv2d_output_size", &kn::conv_out, "(H + 2 pad - dil (R-1) - 1) / stride + 1",
        kn::py::arg("H"), kn::py::arg("R"), kn::py::arg("stride"), kn::py::arg("pad"),
        kn::py::arg("dil"));
  m.def(
      "conv2d_forward",
      [](uptr x, uptr w, uptr bias, uptr y, i64 N, i64 C, i64 H, i64 W, i64 K, i64 R, i64 S, i64 sh,
         i64 sw, i64 ph, i64 pw, i64 dh, i64 dw, i64 groups, int act) {
        auto g = cc::make_geom("conv2d_forward", N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups);
        KN_CHECK(act == kn::ACT_NONE || act == kn::ACT_RELU, "conv2d_forward: unknown act ", act);
        KN_CHECK(x && w && y, "conv2d_forward: null pointer");
        cc::forward(g, kn::ptr<const float>(x), kn::ptr<const float>(w), kn::ptr<const float>(bias),
                    kn::ptr<float>(y), act);
      },
      KN_NOGIL);
  m.def(
      "conv2d_backward_input",
      [](uptr dy, uptr w, uptr dx, i64 N, i64 C, i64 H, i64 W, i64 K, i64 R, i64 S, i64 sh, i64 sw,
         i64 ph, i64 pw, i64 dh, i64 dw, i64 groups) {
        auto g = cc::make_geom("conv2d_backward_input", N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw,
                               groups);
        KN_CHECK(dy && w && dx, "conv2d_backward_input: null pointer");
        cc::backward_input(g, kn::ptr<const float>(dy), kn::ptr<const float>(w), kn::ptr<float>(dx));
      },
      KN_NOGIL);
  m.def(
      "conv2d_backward_weight",
      [](uptr x, uptr dy, uptr dwt, i64 N, i64 C, i64 H, i64 W, i64 K, i64 R, i64 S, i64 sh, i64 sw,
         i64 ph, i64 pw, i64 dh, i64 dw, i64 groups, bool accumulate) {
        auto g = cc::make_geom("conv2d_backward_weight", N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw,
                               groups);
        KN_CHECK(x && dy && dwt, "conv2d_backward_weight: null pointer");
        cc::backward_weight(g, kn::ptr<const float>(x), kn::ptr<const float>(dy), kn::ptr<float>(dwt),
                            accumulate);
      },
      KN_NOGIL);
  m.def("_conv_force_config", [](int id) { cc::g_force_config.store(id); }, kn::py::arg("config_id"),
        "pin the implicit-GEMM tile configuration (1: 64x64/4x4, 2: 32x128/4x4, 3: 64x128/8x8; 0: automatic); for benchmarks");
  m.def(
      "conv2d_backward_bias",
      [](uptr dy, uptr db, i64 N, i64 K, i64 PQ) {
        KN_CHECK(N >= 0 && K >= 1 && PQ >= 0, "conv2d_backward_bias: bad sizes N=", N, " K=", K,
                 " PQ=", PQ);
        KN_CHECK(dy && db, "conv2d_backward_bias: null pointer");
        cc::backward_bias(kn::ptr<const float>(dy), kn::ptr<float>(db), N, K, PQ);
      },
      KN_NOGIL);
}
