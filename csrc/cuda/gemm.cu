// SGEMM on CUDA cores and an opt-in TF32 tensor-core path, with the CPU backend's `sgemm`
// signature (csrc/cpu/gemm/gemm.h): row-major C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b],
// then bias (per column n or per row m) and ReLU. Batch strides may be 0 (broadcast operand).
// beta == 0 never reads C (so C may hold garbage / NaN), like BLAS. Other kernel files call it
// through sgemm_device (cuda/gemm.h); the Python binding `sgemm` is a thin wrapper over it.
//
// FP32 kernel (k_sgemm): the classic tiled design (siboehm's SGEMM_CUDA, CUTLASS's SIMT GEMM):
//   - a BM x BN block tile, K walked in BK slices through shared memory, double buffered: the next
//     slice's global loads are in flight (in registers) while the current slice is multiplied, one
//     __syncthreads per slice;
//   - each thread owns a TM x TN register tile, split in 4x4 pieces spaced BM/(TM/4) (BN/(TN/4))
//     apart so its shared-memory reads are float4 and a warp reads few distinct addresses;
//   - lanes form a 4 x 8 grid inside a warp ("warp tiling"): per k a warp reads 4 distinct A
//     vectors and 8 distinct B vectors (one 128-byte wavefront each);
//   - A is stored k-major in shared memory (As[k][m]) whatever its global layout: a transposed
//     operand is loaded with float4 along m and stored as is, a normal one is transposed on the
//     way in (scalar stores, made conflict-free by padding rows by 4 floats);
//   - global loads are float4 when the operand's pointer, leading dimension and batch stride allow
//     (checked on the host), else scalar; tiles past M, N, K are zero-filled, so any size works.
// Tile configurations (picked per call, see choose()) trade block size against filling the GPU's
// SMs; when even the smallest tiles give too few blocks and K is long (weight gradients: M, N
// small, K = batch x pixels), K is split across blocks ("split-K"): each block writes a partial
// tile to a workspace and a second kernel sums the partials and applies alpha/beta/bias/ReLU
// (deterministic, no atomics).
//
// TF32 kernel (k_sgemm_tf32): warp-level mma.sync m16n8k8 (TF32 inputs rounded with cvt.rna,
// FP32 accumulation); same loading/double-buffering scheme with both operands stored k-contiguous
// in shared memory (rows padded to BK+4 floats: the fragment reads hit 32 distinct banks). Only
// used after set_allow_tf32(True): TF32 keeps 10 mantissa bits, ~1e-3 relative error.
// Config 12 (gemm_tf32_async.cuh) is a second TF32 design (cp.async pipeline, 64x64 warp tiles),
// a candidate that runs only when forced until it has been measured on a GPU.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>

#include "common/ops.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/gemm.h"

namespace kn {
namespace {

std::atomic<bool> g_allow_tf32{false};
std::atomic<int> g_force_config{-1};  // bench/tests: force one FP32 (0..4) / TF32 (10..12) config
std::atomic<int> g_last_config{-1};   // bench/tests: the config the last sgemm call launched

struct GemmArgs {
  int M, N, K;
  const float* A; i64 lda, sa;
  const float* B; i64 ldb, sb;
  float* C; i64 ldc, sc;
  float alpha, beta;
  const float* bias; int bias_mode, act;
  int batch, splits, k_chunk;  // split-K: split s covers k in [s*k_chunk, (s+1)*k_chunk)
  float* ws;                   // split-K partials [splits][batch][M][N] (null: no split)
  bool va, vb, vc;             // float4 global access allowed for A, B, C
};

// ------------------------------------------------------------------------------- tile loading
// Loads 4 consecutive elements (along the contiguous dimension) of a row-major operand tile,
// zero-filling past rows_lim / cols_lim.
__device__ __forceinline__ float4 load4(const float* base, i64 ld, int row, int col, int rows_lim,
                                        int cols_lim, bool vec) {
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (row < rows_lim) {
    const float* p = base + (i64)row * ld + col;
    if (vec && col + 3 < cols_lim) {
      v = *reinterpret_cast<const float4*>(p);
    } else {
      if (col < cols_lim) v.x = p[0];
      if (col + 1 < cols_lim) v.y = p[1];
      if (col + 2 < cols_lim) v.z = p[2];
      if (col + 3 < cols_lim) v.w = p[3];
    }
  }
  return v;
}

// Epilogue value for output (m, n) of batch item bz (split s when split-K writes partials).
__device__ __forceinline__ float epilogue(const GemmArgs& g, float acc, float c_old, int m, int n) {
  float v = g.alpha * acc;
  if (g.beta != 0.f) v += g.beta * c_old;
  if (g.bias_mode == BIAS_COL) v += g.bias[n];
  else if (g.bias_mode == BIAS_ROW) v += g.bias[m];
  if (g.act == ACT_RELU) v = v > 0.f ? v : 0.f;
  return v;
}

// Writes 4 accumulators at (m, n..n+3) either as final C values or as split-K partials.
__device__ __forceinline__ void store4(const GemmArgs& g, int bz, int split, int m, int n, float4 acc) {
  if (m >= g.M) return;
  if (g.ws) {
    float* p = g.ws + (((i64)split * g.batch + bz) * g.M + m) * (i64)g.N + n;
    if (n + 3 < g.N && ((g.N & 3) == 0)) {
      *reinterpret_cast<float4*>(p) = acc;
    } else {
      const float a[4] = {acc.x, acc.y, acc.z, acc.w};
      for (int j = 0; j < 4; ++j) if (n + j < g.N) p[j] = a[j];
    }
    return;
  }
  float* p = g.C + (i64)bz * g.sc + (i64)m * g.ldc + n;
  if (g.vc && n + 3 < g.N) {
    float4 old = g.beta != 0.f ? *reinterpret_cast<const float4*>(p) : make_float4(0.f, 0.f, 0.f, 0.f);
    float4 r;
    r.x = epilogue(g, acc.x, old.x, m, n);
    r.y = epilogue(g, acc.y, old.y, m, n + 1);
    r.z = epilogue(g, acc.z, old.z, m, n + 2);
    r.w = epilogue(g, acc.w, old.w, m, n + 3);
    *reinterpret_cast<float4*>(p) = r;
  } else {
    const float a[4] = {acc.x, acc.y, acc.z, acc.w};
    for (int j = 0; j < 4; ++j)
      if (n + j < g.N) p[j] = epilogue(g, a[j], g.beta != 0.f ? p[j] : 0.f, m, n + j);
  }
}

// Block z index -> (batch item, split); loops when batch * splits exceeds the grid's z limit.
struct ZIter {
  int bz, split;
};

// ------------------------------------------------------------------------------- FP32 kernel
// MINB = 2 for the 8x8 register tile caps registers at 128 so two blocks share an SM (one block
// of 8 warps alone hides latency poorly); costs a few spills in the transposed variants. Config 4
// is the same tile without the cap (163 registers, 1 block per SM) for comparison in bench/cuda.
template <int BM, int BN, int BK, int TM, int TN, int MINB, bool TA, bool TB>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), MINB)
k_sgemm(GemmArgs g) {
  constexpr int NT = (BM / TM) * (BN / TN);
  constexpr int THN = BN / TN, THM = BM / TM;  // threads along n / m
  constexpr int LX = THN < 8 ? THN : 8, LY = 32 / LX;  // lane grid inside a warp
  constexpr int WX = THN / LX;                          // warps along n
  static_assert(THM % LY == 0 && TM % 4 == 0 && TN % 4 == 0, "bad tile config");
  constexpr int PAD = 4;
  constexpr int A_CHUNKS = BM * BK / 4, B_CHUNKS = BK * BN / 4;
  constexpr int A_LOADS = (A_CHUNKS + NT - 1) / NT, B_LOADS = (B_CHUNKS + NT - 1) / NT;
  __shared__ __align__(16) float As[2][BK][BM + PAD];
  __shared__ __align__(16) float Bs[2][BK][BN + PAD];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int tx = (warp % WX) * LX + lane % LX;  // thread column in the THM x THN grid
  const int ty = (warp / WX) * LY + lane / LX;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;

  for (int z = blockIdx.z; z < g.batch * g.splits; z += gridDim.z) {
    const int bz = z % g.batch, split = z / g.batch;
    const int kbeg = split * g.k_chunk, kend = min(g.K, kbeg + g.k_chunk);
    const float* A = g.A + (i64)bz * g.sa;
    const float* B = g.B + (i64)bz * g.sb;

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

    float4 ra[A_LOADS], rb[B_LOADS];
    auto load_tiles = [&](int k0) {
#pragma unroll
      for (int l = 0; l < A_LOADS; ++l) {
        int c = tid + l * NT;
        if (c < A_CHUNKS) {
          if (TA) {  // stored K x M: rows k, contiguous m
            int k = c / (BM / 4), m = (c % (BM / 4)) * 4;
            ra[l] = load4(A, g.lda, k0 + k, m0 + m, kend, g.M, g.va);
          } else {   // stored M x K: rows m, contiguous k
            int m = c / (BK / 4), k = (c % (BK / 4)) * 4;
            ra[l] = load4(A, g.lda, m0 + m, k0 + k, g.M, kend, g.va);
          }
        }
      }
#pragma unroll
      for (int l = 0; l < B_LOADS; ++l) {
        int c = tid + l * NT;
        if (c < B_CHUNKS) {
          if (TB) {  // stored N x K: rows n, contiguous k
            int n = c / (BK / 4), k = (c % (BK / 4)) * 4;
            rb[l] = load4(B, g.ldb, n0 + n, k0 + k, g.N, kend, g.vb);
          } else {   // stored K x N: rows k, contiguous n
            int k = c / (BN / 4), n = (c % (BN / 4)) * 4;
            rb[l] = load4(B, g.ldb, k0 + k, n0 + n, kend, g.N, g.vb);
          }
        }
      }
    };
    auto store_tiles = [&](int buf) {
#pragma unroll
      for (int l = 0; l < A_LOADS; ++l) {
        int c = tid + l * NT;
        if (c < A_CHUNKS) {
          if (TA) {
            int k = c / (BM / 4), m = (c % (BM / 4)) * 4;
            *reinterpret_cast<float4*>(&As[buf][k][m]) = ra[l];
          } else {
            int m = c / (BK / 4), k = (c % (BK / 4)) * 4;
            As[buf][k + 0][m] = ra[l].x;
            As[buf][k + 1][m] = ra[l].y;
            As[buf][k + 2][m] = ra[l].z;
            As[buf][k + 3][m] = ra[l].w;
          }
        }
      }
#pragma unroll
      for (int l = 0; l < B_LOADS; ++l) {
        int c = tid + l * NT;
        if (c < B_CHUNKS) {
          if (TB) {
            int n = c / (BK / 4), k = (c % (BK / 4)) * 4;
            Bs[buf][k + 0][n] = rb[l].x;
            Bs[buf][k + 1][n] = rb[l].y;
            Bs[buf][k + 2][n] = rb[l].z;
            Bs[buf][k + 3][n] = rb[l].w;
          } else {
            int k = c / (BN / 4), n = (c % (BN / 4)) * 4;
            *reinterpret_cast<float4*>(&Bs[buf][k][n]) = rb[l];
          }
        }
      }
    };

    const int ntiles = (kend - kbeg + BK - 1) / BK;
    if (ntiles > 0) {
      load_tiles(kbeg);
      store_tiles(0);
    }
    __syncthreads();
    for (int t = 0; t < ntiles; ++t) {
      const int cur = t & 1;
      if (t + 1 < ntiles) load_tiles(kbeg + (t + 1) * BK);  // in flight during the FMAs below
#pragma unroll
      for (int k = 0; k < BK; ++k) {
        float a[TM], b[TN];
#pragma unroll
        for (int i = 0; i < TM / 4; ++i) {
          float4 v = *reinterpret_cast<const float4*>(&As[cur][k][i * (BM / (TM / 4)) + ty * 4]);
          a[i * 4 + 0] = v.x; a[i * 4 + 1] = v.y; a[i * 4 + 2] = v.z; a[i * 4 + 3] = v.w;
        }
#pragma unroll
        for (int j = 0; j < TN / 4; ++j) {
          float4 v = *reinterpret_cast<const float4*>(&Bs[cur][k][j * (BN / (TN / 4)) + tx * 4]);
          b[j * 4 + 0] = v.x; b[j * 4 + 1] = v.y; b[j * 4 + 2] = v.z; b[j * 4 + 3] = v.w;
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
      if (t + 1 < ntiles) store_tiles(cur ^ 1);
      __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
      int m = m0 + (i / 4) * (BM / (TM / 4)) + ty * 4 + (i % 4);
#pragma unroll
      for (int j = 0; j < TN / 4; ++j) {
        int n = n0 + j * (BN / (TN / 4)) + tx * 4;
        store4(g, bz, split, m, n,
               make_float4(acc[i][j * 4], acc[i][j * 4 + 1], acc[i][j * 4 + 2], acc[i][j * 4 + 3]));
      }
    }
  }
}

// ------------------------------------------------------------------------------- TF32 kernel
__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// Writes a warp's MT x NTL mma.sync m16n8 accumulator tiles, tile (i, j) at rows m_w + 16 i and
// columns n_w + 8 j (c0, c1 at row gq, columns 2 tq and 2 tq + 1; c2, c3 at row gq + 8): as C
// through the epilogue, or as split-K partials. Shared by the TF32 kernels.
template <int MT, int NTL>
__device__ __forceinline__ void store_mma_tiles(const GemmArgs& g, const float (&acc)[MT][NTL][4], int m_w, int n_w,
                                                int gq, int tq, int bz, int split) {
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NTL; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int m = m_w + i * 16 + gq + h * 8;
        const int n = n_w + j * 8 + tq * 2;
        if (m >= g.M) continue;
        const float v[2] = {acc[i][j][h * 2], acc[i][j][h * 2 + 1]};
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          if (n + e >= g.N) continue;
          if (g.ws) {
            g.ws[(((i64)split * g.batch + bz) * g.M + m) * (i64)g.N + n + e] = v[e];
          } else {
            float* p = g.C + (i64)bz * g.sc + (i64)m * g.ldc + n + e;
            *p = epilogue(g, v[e], g.beta != 0.f ? *p : 0.f, m, n + e);
          }
        }
      }
}

template <int BM, int BN, int WARPS_M, int WARPS_N, bool TA, bool TB>
__global__ void __launch_bounds__(WARPS_M * WARPS_N * 32)
k_sgemm_tf32(GemmArgs g) {
  constexpr int BK = 16, PAD = 4, LDS = BK + PAD;
  constexpr int NT = WARPS_M * WARPS_N * 32;
  constexpr int WTM = BM / WARPS_M, WTN = BN / WARPS_N;  // warp tile
  constexpr int MT = WTM / 16, NTL = WTN / 8;            // mma tiles per warp
  constexpr int A_CHUNKS = BM * BK / 4, B_CHUNKS = BN * BK / 4;
  constexpr int A_LOADS = (A_CHUNKS + NT - 1) / NT, B_LOADS = (B_CHUNKS + NT - 1) / NT;
  __shared__ __align__(16) float As[2][BM][LDS];  // k contiguous
  __shared__ __align__(16) float Bs[2][BN][LDS];  // k contiguous

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = (warp / WARPS_N) * WTM, wn = (warp % WARPS_N) * WTN;
  const int gq = lane >> 2, tq = lane & 3;  // mma fragment coordinates
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;

  for (int z = blockIdx.z; z < g.batch * g.splits; z += gridDim.z) {
    const int bz = z % g.batch, split = z / g.batch;
    const int kbeg = split * g.k_chunk, kend = min(g.K, kbeg + g.k_chunk);
    const float* A = g.A + (i64)bz * g.sa;
    const float* B = g.B + (i64)bz * g.sb;

    float acc[MT][NTL][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int j = 0; j < NTL; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

    float4 ra[A_LOADS], rb[B_LOADS];
    auto load_tiles = [&](int k0) {
#pragma unroll
      for (int l = 0; l < A_LOADS; ++l) {
        int c = tid + l * NT;
        if (c < A_CHUNKS) {
          if (TA) {
            int k = c / (BM / 4), m = (c % (BM / 4)) * 4;
            ra[l] = load4(A, g.lda, k0 + k, m0 + m, kend, g.M, g.va);
          } else {
            int m = c / (BK / 4), k = (c % (BK / 4)) * 4;
            ra[l] = load4(A, g.lda, m0 + m, k0 + k, g.M, kend, g.va);
          }
        }
      }
#pragma unroll
      for (int l = 0; l < B_LOADS; ++l) {
        int c = tid + l * NT;
        if (c < B_CHUNKS) {
          if (TB) {
            int n = c / (BK / 4), k = (c % (BK / 4)) * 4;
            rb[l] = load4(B, g.ldb, n0 + n, k0 + k, g.N, kend, g.vb);
          } else {
            int k = c / (BN / 4), n = (c % (BN / 4)) * 4;
            rb[l] = load4(B, g.ldb, k0 + k, n0 + n, kend, g.N, g.vb);
          }
        }
      }
    };
    auto store_tiles = [&](int buf) {
#pragma unroll
      for (int l = 0; l < A_LOADS; ++l) {
        int c = tid + l * NT;
        if (c < A_CHUNKS) {
          if (TA) {
            int k = c / (BM / 4), m = (c % (BM / 4)) * 4;
            As[buf][m + 0][k] = ra[l].x;
            As[buf][m + 1][k] = ra[l].y;
            As[buf][m + 2][k] = ra[l].z;
            As[buf][m + 3][k] = ra[l].w;
          } else {
            int m = c / (BK / 4), k = (c % (BK / 4)) * 4;
            *reinterpret_cast<float4*>(&As[buf][m][k]) = ra[l];
          }
        }
      }
#pragma unroll
      for (int l = 0; l < B_LOADS; ++l) {
        int c = tid + l * NT;
        if (c < B_CHUNKS) {
          if (TB) {
            int n = c / (BK / 4), k = (c % (BK / 4)) * 4;
            *reinterpret_cast<float4*>(&Bs[buf][n][k]) = rb[l];
          } else {
            int k = c / (BN / 4), n = (c % (BN / 4)) * 4;
            Bs[buf][n + 0][k] = rb[l].x;
            Bs[buf][n + 1][k] = rb[l].y;
            Bs[buf][n + 2][k] = rb[l].z;
            Bs[buf][n + 3][k] = rb[l].w;
          }
        }
      }
    };

    const int ntiles = (kend - kbeg + BK - 1) / BK;
    if (ntiles > 0) {
      load_tiles(kbeg);
      store_tiles(0);
    }
    __syncthreads();
    for (int t = 0; t < ntiles; ++t) {
      const int cur = t & 1;
      if (t + 1 < ntiles) load_tiles(kbeg + (t + 1) * BK);
#pragma unroll
      for (int kk = 0; kk < BK; kk += 8) {
        uint32_t af[MT][4], bf[NTL][2];
#pragma unroll
        for (int i = 0; i < MT; ++i) {
          const int r = wm + i * 16 + gq;
          af[i][0] = to_tf32(As[cur][r][kk + tq]);
          af[i][1] = to_tf32(As[cur][r + 8][kk + tq]);
          af[i][2] = to_tf32(As[cur][r][kk + tq + 4]);
          af[i][3] = to_tf32(As[cur][r + 8][kk + tq + 4]);
        }
#pragma unroll
        for (int j = 0; j < NTL; ++j) {
          const int cidx = wn + j * 8 + gq;
          bf[j][0] = to_tf32(Bs[cur][cidx][kk + tq]);
          bf[j][1] = to_tf32(Bs[cur][cidx][kk + tq + 4]);
        }
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
          for (int j = 0; j < NTL; ++j) mma_tf32(acc[i][j], af[i], bf[j]);
      }
      if (t + 1 < ntiles) store_tiles(cur ^ 1);
      __syncthreads();
    }

    store_mma_tiles(g, acc, m0 + wm, n0 + wn, gq, tq, bz, split);
  }
}

#include "cuda/gemm_tf32_async.cuh"  // config 12 (candidate, forced only)

// ------------------------------------------------------------------------------- split-K reduce
__global__ void k_splitk_reduce(GemmArgs g) {
  i64 mn = (i64)g.M * g.N, total = mn * g.batch, stride = (i64)gridDim.x * blockDim.x;
  for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    float s = 0.f;
    for (int p = 0; p < g.splits; ++p) s += g.ws[(i64)p * total + e];
    int bz = (int)(e / mn);
    i64 r = e % mn;
    int m = (int)(r / g.N), n = (int)(r % g.N);
    float* c = g.C + (i64)bz * g.sc + (i64)m * g.ldc + n;
    *c = epilogue(g, s, g.beta != 0.f ? *c : 0.f, m, n);
  }
}

// ------------------------------------------------------------------------------- host side
struct Config {
  int id, bm, bn, bk, threads;
};
// FP32 configs 0..4 (4 is only used when forced), TF32 configs 10, 11, 12 (12 only when forced: not
// yet run on a GPU, see gemm_tf32_async.cuh). choose() walks them in order.
const Config kConfigs[] = {
    {0, 128, 128, 8, 256},  {1, 128, 64, 8, 256},   {2, 64, 64, 16, 256}, {3, 32, 64, 16, 128},
    {10, 128, 128, 16, 256}, {11, 64, 64, 16, 128}, {4, 128, 128, 8, 256}, {12, 128, 128, 32, 128},
};
bool forced_only(int id) { return id == 4 || id == 12; }

template <int BM, int BN, int BK, int TM, int TN, int MINB = 1>
void launch_fp32(const GemmArgs& g, bool ta, bool tb, dim3 grid) {
  constexpr int NT = (BM / TM) * (BN / TN);
  if (ta && tb) k_sgemm<BM, BN, BK, TM, TN, MINB, true, true><<<grid, NT, 0, kStream>>>(g);
  else if (ta) k_sgemm<BM, BN, BK, TM, TN, MINB, true, false><<<grid, NT, 0, kStream>>>(g);
  else if (tb) k_sgemm<BM, BN, BK, TM, TN, MINB, false, true><<<grid, NT, 0, kStream>>>(g);
  else k_sgemm<BM, BN, BK, TM, TN, MINB, false, false><<<grid, NT, 0, kStream>>>(g);
}

template <int BM, int BN, int WM, int WN>
void launch_tf32(const GemmArgs& g, bool ta, bool tb, dim3 grid) {
  constexpr int NT = WM * WN * 32;
  if (ta && tb) k_sgemm_tf32<BM, BN, WM, WN, true, true><<<grid, NT, 0, kStream>>>(g);
  else if (ta) k_sgemm_tf32<BM, BN, WM, WN, true, false><<<grid, NT, 0, kStream>>>(g);
  else if (tb) k_sgemm_tf32<BM, BN, WM, WN, false, true><<<grid, NT, 0, kStream>>>(g);
  else k_sgemm_tf32<BM, BN, WM, WN, false, false><<<grid, NT, 0, kStream>>>(g);
}

i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }

const Config& choose_id(int id) {
  for (const Config& c : kConfigs)
    if (c.id == id) return c;
  return kConfigs[0];
}

// Picks the tile configuration: the largest tiles that still give a full wave of blocks with
// little padding waste; otherwise the config with the least waste (then split-K if K is long).
const Config& choose(bool tf32, i64 M, i64 N, i64 batch) {
  int forced = g_force_config.load();
  for (const Config& c : kConfigs)
    if (c.id == forced && (c.id >= 10) == tf32) return c;
  const i64 sms = num_sms();
  const Config* best = nullptr;
  double best_eff = -1;
  for (const Config& c : kConfigs) {
    if ((c.id >= 10) != tf32 || forced_only(c.id)) continue;
    i64 tiles = ceil_div(M, c.bm) * ceil_div(N, c.bn) * batch;
    double eff = (double)M * N * batch / ((double)tiles * c.bm * c.bn);
    if (tiles >= sms && eff >= 0.75) return c;
    if (eff > best_eff + 1e-9) {
      best = &c;
      best_eff = eff;
    }
  }
  return *best;
}

}  // namespace

void sgemm_device(i64 batch, bool ta, bool tb, i64 M, i64 N, i64 K, float alpha, const float* A,
                  i64 lda, i64 sa, const float* B, i64 ldb, i64 sb, float beta, float* C, i64 ldc,
                  i64 sc, const float* bias, int bias_mode, int act) {
  KN_CHECK(batch >= 0 && M >= 0 && N >= 0 && K >= 0, "sgemm: negative size (batch ", batch, ", M ",
           M, ", N ", N, ", K ", K, ")");
  KN_CHECK(M < (i64(1) << 31) && N < (i64(1) << 31) && K < (i64(1) << 31) && batch < (i64(1) << 31),
           "sgemm: dimension too large");
  KN_CHECK(bias_mode >= BIAS_NONE && bias_mode <= BIAS_ROW && act >= ACT_NONE && act <= ACT_RELU,
           "sgemm: bad bias_mode ", bias_mode, " or act ", act);
  KN_CHECK(bias_mode == BIAS_NONE || bias != nullptr, "sgemm: bias_mode set but bias is null");
  if (batch == 0 || M == 0 || N == 0) return;
  // gridDim.y carries the row tiles (at most 65535): taller products run as row blocks that every
  // configuration fits (its smallest tile height is 32). Each block is the same product on rows
  // [m0, m0 + mc) of op(A), C and a per-row bias.
  constexpr i64 kMaxRows = 65535LL * 32;
  if (M > kMaxRows) {
    for (i64 m0 = 0; m0 < M; m0 += kMaxRows) {
      const i64 mc = std::min(kMaxRows, M - m0);
      sgemm_device(batch, ta, tb, mc, N, K, alpha, A + (ta ? m0 : m0 * lda), lda, sa, B, ldb, sb, beta,
                   C + m0 * ldc, ldc, sc, bias_mode == BIAS_ROW ? bias + m0 : bias, bias_mode, act);
    }
    return;
  }

  GemmArgs g{};
  g.M = (int)M; g.N = (int)N; g.K = (int)K;
  g.A = A; g.lda = lda; g.sa = sa;
  g.B = B; g.ldb = ldb; g.sb = sb;
  g.C = C; g.ldc = ldc; g.sc = sc;
  g.alpha = alpha; g.beta = beta;
  g.bias = bias_mode == BIAS_NONE ? nullptr : bias;
  g.bias_mode = bias_mode; g.act = act;
  g.batch = (int)batch;
  g.va = ((uptr)A % 16 == 0) && lda % 4 == 0 && sa % 4 == 0;
  g.vb = ((uptr)B % 16 == 0) && ldb % 4 == 0 && sb % 4 == 0;
  g.vc = ((uptr)C % 16 == 0) && ldc % 4 == 0 && sc % 4 == 0;

  // the TF32 kernels need mma.sync (sm_80+); on older GPUs they would compile to no-ops
  const bool tf32 = g_allow_tf32.load() && device_cc_major() >= 8;
  const Config* pick = &choose(tf32, M, N, batch);
  if (pick->id == 12 && !tf32_async_fits(g)) pick = &choose_id(10);  // unaligned operands / small smem
  const Config& cfg = *pick;
  g_last_config.store(cfg.id);
  i64 tiles = ceil_div(M, cfg.bm) * ceil_div(N, cfg.bn) * batch;
  const i64 sms = num_sms();
  // split-K when the output tiles cannot fill the GPU and K is long enough to share
  i64 splits = 1;
  const i64 min_chunk = 128;
  if (tiles < sms && K >= 2 * min_chunk) {
    splits = std::min<i64>(ceil_div(2 * sms, tiles), K / min_chunk);
    splits = std::min<i64>(splits, 64);
  }
  i64 k_chunk = K;
  if (splits > 1) {
    k_chunk = ceil_div(ceil_div(K, splits), cfg.bk) * cfg.bk;  // slices never straddle a split
    splits = ceil_div(K, k_chunk);
  }
  g.splits = (int)splits;
  g.k_chunk = (int)std::max<i64>(k_chunk, 1);

  std::unique_ptr<Workspace> ws;
  if (splits > 1) {
    ws.reset(new Workspace(sizeof(float) * splits * batch * M * N, "sgemm"));
    g.ws = ws->as<float>();
  }
  i64 gx = ceil_div(N, cfg.bn), gy = ceil_div(M, cfg.bm);
  KN_CHECK(gy <= 65535, "sgemm: M = ", M, " too large for one launch");
  dim3 grid((unsigned)gx, (unsigned)gy, (unsigned)std::min<i64>(batch * splits, 65535));
  switch (cfg.id) {
    case 0: launch_fp32<128, 128, 8, 8, 8, 2>(g, ta, tb, grid); break;
    case 4: launch_fp32<128, 128, 8, 8, 8, 1>(g, ta, tb, grid); break;
    case 1: launch_fp32<128, 64, 8, 8, 4>(g, ta, tb, grid); break;
    case 2: launch_fp32<64, 64, 16, 4, 4>(g, ta, tb, grid); break;
    case 3: launch_fp32<32, 64, 16, 4, 4>(g, ta, tb, grid); break;
    case 10: launch_tf32<128, 128, 2, 4>(g, ta, tb, grid); break;
    case 11: launch_tf32<64, 64, 2, 2>(g, ta, tb, grid); break;
    case 12: launch_tf32_async(g, ta, tb, grid); break;
  }
  KN_LAUNCH_CHECK("sgemm");
  if (splits > 1) {
    k_splitk_reduce<<<grid_for(batch * M * N, 256, sms * 16), 256, 0, kStream>>>(g);
    KN_LAUNCH_CHECK("sgemm");
  }
}

namespace {
// The Python binding: pointers arrive as integers.
void sgemm(i64 batch, bool ta, bool tb, i64 M, i64 N, i64 K, float alpha, uptr A, i64 lda, i64 sa,
           uptr B, i64 ldb, i64 sb, float beta, uptr C, i64 ldc, i64 sc, uptr bias, int bias_mode,
           int act) {
  sgemm_device(batch, ta, tb, M, N, K, alpha, ptr<const float>(A), lda, sa, ptr<const float>(B), ldb,
               sb, beta, ptr<float>(C), ldc, sc, ptr<const float>(bias), bias_mode, act);
}
}  // namespace
}  // namespace kn

KN_BIND(gemm) {
  using namespace kn;
  m.def("sgemm", &sgemm, py::arg("batch"), py::arg("trans_a"), py::arg("trans_b"), py::arg("M"),
        py::arg("N"), py::arg("K"), py::arg("alpha"), py::arg("A"), py::arg("lda"), py::arg("stride_a"),
        py::arg("B"), py::arg("ldb"), py::arg("stride_b"), py::arg("beta"), py::arg("C"), py::arg("ldc"),
        py::arg("stride_c"), py::arg("bias") = 0, py::arg("bias_mode") = 0, py::arg("act") = 0, KN_NOGIL);
  m.def("set_allow_tf32", [](bool on) { g_allow_tf32.store(on); }, py::arg("enabled"),
        "Let sgemm use TF32 tensor cores (10-bit mantissa inputs, FP32 accumulation). Off by default.");
  m.def("allow_tf32", [] { return g_allow_tf32.load(); });
  m.def("_sgemm_force_config", [](int id) { g_force_config.store(id); }, py::arg("config_id"),
        "Benchmarks/tests: force a tile config (FP32 0..4, TF32 10..12; -1 = automatic).");
  m.def("_sgemm_config", [](bool tf32, i64 M, i64 N, i64 batch) { return choose(tf32, M, N, batch).id; });
  m.def("_sgemm_last_config", [] { return g_last_config.load(); },
        "Benchmarks/tests: the config the last sgemm call launched (after config 12's fallback to 10).");
  m.def("_sgemm_tf32_async_smem_ok", [] { return tf32_async_smem_ok(); },
        "Tests: whether this device has the shared memory per block that config 12 needs.");
}
