// TF32 tensor-core SGEMM, second design (config 12): the CUTLASS sm_80 shape instead of config 10's
// register-staged copy. Included by gemm.cu inside its anonymous namespace (uses GemmArgs, mma_tf32
// and store_mma_tiles from there).
//
// Why a second kernel: config 10 reached 60 TFLOP/s on an H100 against cuBLAS's ~395 (0.15x). Per
// k-step it converted every fragment element with cvt.rna, staged the next tile through registers
// (so the loads waited on the math and the math on the stores), and kept warp tiles of 64x32 (one
// shared-memory read per mma). Here:
//   - cp.async (16-byte, L2-only .cg) moves tiles global -> shared with no register round trip, in a
//     3-stage ring: tiles t+1 and t+2 are in flight while tile t is multiplied; one __syncthreads
//     per k-tile;
//   - block tile 128 x 128 x 32, 4 warps of 64 x 64: 32 mma per 32 fragment reads per k8 step;
//   - no cvt: the tensor cores read the top 19 bits of each float (TF32 by truncation, as Triton's
//     default). Unlike config 10's cvt.rna this error is biased toward zero: a relative 2^-11 per
//     operand on average, so sums of same-sign products (post-ReLU activations times positive
//     weights) come out ~6e-4 low where rounding gives ~2e-5; a NaN whose payload sits only in the
//     low 13 bits reads as Inf;
//   - shared layouts keep the operand's contiguous dimension (what cp.async copies) and are padded
//     so every fragment read hits 32 distinct banks: k-contiguous rows are BK + 4 floats
//     (bank = 4 * row + k), m/n-contiguous rows BM + 8 floats (bank = 8 * k + m).
// Requirements, checked by the host before choosing it: 16-byte aligned operands with leading
// dimensions and batch strides multiples of 4 (cp.async copies aligned 16-byte chunks; a chunk that
// crosses the end of a row or of K copies only its valid bytes and zero-fills the rest), sm_80+,
// and kTf32AsyncSmem bytes of dynamic shared memory per block.
//
// NOT YET RUN ON A GPU (written 2026-11-27 without one): only used when forced (config 12), never
// by choose(), until bench/cuda/sgemm.py's sweep and tests/test_cuda_kernels.py pass on a GPU.

constexpr int kT32BM = 128, kT32BN = 128, kT32BK = 32, kT32Stages = 3, kT32Threads = 128;
constexpr int kT32LdK = kT32BK + 4;  // row length of a k-contiguous tile (A: [m][k], B^T: [n][k])
constexpr int kT32LdM = kT32BM + 8;  // row length of an m/n-contiguous tile ([k][m] or [k][n])
// floats of one stage's A (or B) tile, whichever layout: max(128 * 36, 32 * 136) = 4608
constexpr int kT32TileFloats = kT32BM * kT32LdK > kT32BK * kT32LdM ? kT32BM * kT32LdK : kT32BK * kT32LdM;
constexpr int kTf32AsyncSmem = kT32Stages * 2 * kT32TileFloats * (int)sizeof(float);  // 110,592 bytes

// 16 bytes global -> shared, of which `bytes` (0..16) are read and the rest zero-filled.
__device__ __forceinline__ void cp_async16(float* smem, const float* gmem, int bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {  // at most N committed groups still pending
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

// Issues the copies of one BR x BC tile of a row-major operand (rows [r0, r0 + BR), columns
// [c0, c0 + BC), BC contiguous) into `dst` with row length LD; rows >= rows_lim and columns >=
// cols_lim arrive as zeros. The threads split a row into BC / 4 chunks, so each thread copies one
// column of chunks, ROW_STEP rows apart: its column's byte count and source address are worked
// out once, then each chunk adds a fixed row step (the per-chunk index arithmetic of a flat
// chunk number was about half of the kernel's instructions per k-tile). A source address is used
// only for chunks with bytes to read; the others name `src` (valid, aligned) and read nothing.
template <int BR, int BC, int LD>
__device__ __forceinline__ void t32_load_tile(float* dst, const float* src, i64 ld, int r0, int c0, int rows_lim,
                                              int cols_lim, int tid) {
  constexpr int CPR = BC / 4;                  // chunks per row
  constexpr int ROW_STEP = kT32Threads / CPR;  // rows between one thread's chunks
  constexpr int PER_THREAD = BR / ROW_STEP;
  static_assert(kT32Threads % CPR == 0 && BR % ROW_STEP == 0, "tile chunks must divide among the threads");
  const int r = tid / CPR, col = (tid % CPR) * 4;
  const int gcol = c0 + col;
  const int col_bytes = gcol < cols_lim ? min(cols_lim - gcol, 4) * 4 : 0;  // the same for all its chunks
  const float* p = src + (i64)(r0 + r) * ld + gcol;
  const i64 step = (i64)ROW_STEP * ld;
  float* d = dst + r * LD + col;
#pragma unroll
  for (int l = 0; l < PER_THREAD; ++l) {
    const int bytes = r0 + r + l * ROW_STEP < rows_lim ? col_bytes : 0;
    cp_async16(d + l * ROW_STEP * LD, bytes ? p + l * step : src, bytes);
  }
}

template <bool TA, bool TB>
__global__ void __launch_bounds__(kT32Threads, 2) k_sgemm_tf32_async(GemmArgs g) {
  extern __shared__ __align__(16) float t32_smem[];
  constexpr int BM = kT32BM, BN = kT32BN, BK = kT32BK, S = kT32Stages;
  constexpr int WTM = 64, WTN = 64, MT = WTM / 16, NTL = WTN / 8;  // warp tile, mma tiles per warp
  float* As = t32_smem;                       // S stages of A tiles
  float* Bs = t32_smem + S * kT32TileFloats;  // S stages of B tiles

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = (warp >> 1) * WTM, wn = (warp & 1) * WTN;  // 2 x 2 warps
  const int gq = lane >> 2, tq = lane & 3;                  // mma fragment coordinates
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;

  for (int z = blockIdx.z; z < g.batch * g.splits; z += gridDim.z) {
    const int bz = z % g.batch, split = z / g.batch;
    const int kbeg = split * g.k_chunk, kend = min(g.K, kbeg + g.k_chunk);
    const float* A = g.A + (i64)bz * g.sa;
    const float* B = g.B + (i64)bz * g.sb;

    // tile t (k from kbeg + t * BK) into stage s
    auto load_stage = [&](int s, int t) {
      const int k0 = kbeg + t * BK;
      float* as = As + s * kT32TileFloats;
      float* bs = Bs + s * kT32TileFloats;
      if (TA) t32_load_tile<BK, BM, kT32LdM>(as, A, g.lda, k0, m0, kend, g.M, tid);  // [k][m]
      else t32_load_tile<BM, BK, kT32LdK>(as, A, g.lda, m0, k0, g.M, kend, tid);     // [m][k]
      if (TB) t32_load_tile<BN, BK, kT32LdK>(bs, B, g.ldb, n0, k0, g.N, kend, tid);  // [n][k]
      else t32_load_tile<BK, BN, kT32LdM>(bs, B, g.ldb, k0, n0, kend, g.N, tid);     // [k][n]
    };

    float acc[MT][NTL][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int j = 0; j < NTL; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

    const int ntiles = (kend - kbeg + BK - 1) / BK;
    // prologue: tiles 0 .. S-2 in flight; one commit group per tile, empty groups included, so
    // that "tile t has landed" is always "at most S-2 groups pending" at iteration t
#pragma unroll
    for (int s = 0; s < S - 1; ++s) {
      if (s < ntiles) load_stage(s, s);
      cp_async_commit();
    }
    for (int t = 0; t < ntiles; ++t) {
      cp_async_wait<S - 2>();
      __syncthreads();  // tile t visible to all warps; every warp is done with tile t-1's stage
      if (t + S - 1 < ntiles) load_stage((t + S - 1) % S, t + S - 1);  // reuses tile t-1's stage
      cp_async_commit();

      const float* as = As + (t % S) * kT32TileFloats;
      const float* bs = Bs + (t % S) * kT32TileFloats;
#pragma unroll
      for (int kk = 0; kk < BK; kk += 8) {
        uint32_t af[MT][4], bf[NTL][2];
#pragma unroll
        for (int i = 0; i < MT; ++i) {
          const int r = wm + i * 16 + gq;
          if (TA) {  // [k][m]
            af[i][0] = __float_as_uint(as[(kk + tq) * kT32LdM + r]);
            af[i][1] = __float_as_uint(as[(kk + tq) * kT32LdM + r + 8]);
            af[i][2] = __float_as_uint(as[(kk + tq + 4) * kT32LdM + r]);
            af[i][3] = __float_as_uint(as[(kk + tq + 4) * kT32LdM + r + 8]);
          } else {  // [m][k]
            af[i][0] = __float_as_uint(as[r * kT32LdK + kk + tq]);
            af[i][1] = __float_as_uint(as[(r + 8) * kT32LdK + kk + tq]);
            af[i][2] = __float_as_uint(as[r * kT32LdK + kk + tq + 4]);
            af[i][3] = __float_as_uint(as[(r + 8) * kT32LdK + kk + tq + 4]);
          }
        }
#pragma unroll
        for (int j = 0; j < NTL; ++j) {
          const int c = wn + j * 8 + gq;
          if (TB) {  // [n][k]
            bf[j][0] = __float_as_uint(bs[c * kT32LdK + kk + tq]);
            bf[j][1] = __float_as_uint(bs[c * kT32LdK + kk + tq + 4]);
          } else {  // [k][n]
            bf[j][0] = __float_as_uint(bs[(kk + tq) * kT32LdM + c]);
            bf[j][1] = __float_as_uint(bs[(kk + tq + 4) * kT32LdM + c]);
          }
        }
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
          for (int j = 0; j < NTL; ++j) mma_tf32(acc[i][j], af[i], bf[j]);
      }
    }
    cp_async_wait<0>();  // only empty groups can be pending here; drained before the stages are reused
    __syncthreads();     // for the next z item: every warp is done reading the last stage

    store_mma_tiles(g, acc, m0 + wm, n0 + wn, gq, tq, bz, split);
  }
}

// Whether this device gives a block the shared memory config 12 needs (sm_86/89 allow ~99 KB,
// less than the three stages need).
bool tf32_async_smem_ok() {
  static const int optin = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, 0);
  return optin >= kTf32AsyncSmem;
}
// Whether config 12 can run this call on this device: aligned operands (cp.async) and shared memory.
bool tf32_async_fits(const GemmArgs& g) { return g.va && g.vb && tf32_async_smem_ok(); }

template <bool TA, bool TB>
void launch_tf32_async_one(const GemmArgs& g, dim3 grid) {
  // the opt-in to more than 48 KB of dynamic shared memory, once per instantiation
  static const cudaError_t attr = cudaFuncSetAttribute(
      k_sgemm_tf32_async<TA, TB>, cudaFuncAttributeMaxDynamicSharedMemorySize, kTf32AsyncSmem);
  KN_CUDA_CHECK(attr, "sgemm (tf32 config 12: shared memory opt-in)");
  k_sgemm_tf32_async<TA, TB><<<grid, kT32Threads, kTf32AsyncSmem, kStream>>>(g);
}

void launch_tf32_async(const GemmArgs& g, bool ta, bool tb, dim3 grid) {
  if (ta && tb) launch_tf32_async_one<true, true>(g, grid);
  else if (ta) launch_tf32_async_one<true, false>(g, grid);
  else if (tb) launch_tf32_async_one<false, true>(g, grid);
  else launch_tf32_async_one<false, false>(g, grid);
}
