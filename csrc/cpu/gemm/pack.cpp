// Packing routines (baseline ISA: they are copies, bound by memory, and shared by every SIMD path).
#include "cpu/gemm/pack.h"

#include <cstring>

#include "cpu/cpu_features.h"

namespace kn {
namespace gemm {

using i64 = std::int64_t;

// Gather a kc x w block whose element (k, x) is src[x*ld + k] (x < w) into dst[k*W + x], the
// "transposing" copy both packers need for one of their two layouts. Reading 8 k at a time keeps
// each source row's cache line in use while the 8 destination rows are written.
static void pack_transposed(const float* src, i64 ld, i64 kc, int w, int W, float* dst) {
  i64 k = 0;
  for (; k + 8 <= kc; k += 8) {
    for (int x = 0; x < w; ++x) {
      const float* s = src + x * ld + k;
      float* d = dst + k * W + x;
      for (int u = 0; u < 8; ++u) d[u * W] = s[u];
    }
    for (int x = w; x < W; ++x)
      for (int u = 0; u < 8; ++u) dst[(k + u) * W + x] = 0.f;
  }
  for (; k < kc; ++k) {
    for (int x = 0; x < w; ++x) dst[k * W + x] = src[x * ld + k];
    for (int x = w; x < W; ++x) dst[k * W + x] = 0.f;
  }
}

// Copy a kc x w block whose rows are contiguous (src[k*ld + x]) into dst[k*W + x], zero-padding.
// Full-width rows of the common panel widths take a loop of constant trip count, which the
// compiler turns into a few vector moves (a memcpy call per 48-128 byte row costs more than the
// copy itself).
// (A constant-size memcpy is inlined as vector moves; the element loop compiled to scalar moves
// because the compiler could not rule out src and dst overlapping.)
template <int W>
static void pack_rows_fixed(const float* src, i64 ld, i64 kc, float* dst) {
  for (i64 k = 0; k < kc; ++k) std::memcpy(dst + k * W, src + k * ld, W * sizeof(float));
}

static void pack_rows(const float* src, i64 ld, i64 kc, int w, int W, float* dst) {
  if (w == W) {
    switch (W) {
      case 4: return pack_rows_fixed<4>(src, ld, kc, dst);
      case 6: return pack_rows_fixed<6>(src, ld, kc, dst);
      case 12: return pack_rows_fixed<12>(src, ld, kc, dst);
      case 16: return pack_rows_fixed<16>(src, ld, kc, dst);
      case 32: return pack_rows_fixed<32>(src, ld, kc, dst);
      default: break;
    }
  }
  for (i64 k = 0; k < kc; ++k) {
    for (int x = 0; x < w; ++x) dst[k * W + x] = src[k * ld + x];
    for (int x = w; x < W; ++x) dst[k * W + x] = 0.f;
  }
}

// The transposing copy for the active SIMD path (the AVX-512 one moves 16 x 16 blocks).
static PackTransposedFn transposed_packer() {
  static const PackTransposedFn avx512 = pack_transposed_avx512();
  return avx512 && active_simd() == Simd::Avx512 ? avx512 : &pack_transposed;
}

// A^T stored K x M: row k of the block is mc contiguous floats, split across the panels. Walking
// k outermost reads each source row once, sequentially; panel by panel (kc rows of MR floats, one
// source row apart) made every k step a jump of lda floats, which the prefetchers do not follow
// across pages, and a 512 x 28 x 1792 weight gradient ran at half the speed of its untransposed
// twin.
template <int MR>
static void pack_a_trans_fixed(const float* A, i64 lda, i64 mc, i64 kc, float* out) {
  const i64 full = mc / MR * MR;
  for (i64 k = 0; k < kc; ++k) {
    const float* src = A + k * lda;
    for (i64 p = 0; p < full; p += MR) std::memcpy(out + p * kc + k * MR, src + p, MR * sizeof(float));
    if (full < mc) {
      float* d = out + full * kc + k * MR;
      const int r = (int)(mc - full);
      for (int x = 0; x < r; ++x) d[x] = src[full + x];
      for (int x = r; x < MR; ++x) d[x] = 0.f;
    }
  }
}

void pack_a(bool trans_a, const float* A, i64 lda, i64 i0, i64 k0, i64 mc, i64 kc, int MR,
            float* out) {
  if (trans_a) {
    const float* src = A + k0 * lda + i0;
    switch (MR) {
      case 4: return pack_a_trans_fixed<4>(src, lda, mc, kc, out);
      case 6: return pack_a_trans_fixed<6>(src, lda, mc, kc, out);
      case 12: return pack_a_trans_fixed<12>(src, lda, mc, kc, out);
      default: break;
    }
    for (i64 p = 0; p < mc; p += MR)
      pack_rows(src + p, lda, kc, (int)(mc - p < MR ? mc - p : MR), MR, out + p * kc);
    return;
  }
  const PackTransposedFn packt = transposed_packer();
  for (i64 p = 0; p < mc; p += MR) {
    const int r = (int)(mc - p < MR ? mc - p : MR);
    packt(A + (i0 + p) * lda + k0, lda, kc, r, MR, out + p * kc);  // panel p / MR at (p / MR) * kc * MR
  }
}

// B stored K x N: like pack_a_trans_fixed, row k of the block (nc contiguous floats) is read once,
// sequentially, and split across the panels; panel by panel, every k step jumped ldb floats (a new
// page for a wide weight), which the prefetchers do not follow.
template <int NR>
static void pack_b_rows_fixed(const float* B, i64 ldb, i64 kc, i64 nc, float* out) {
  const i64 full = nc / NR * NR;
  for (i64 k = 0; k < kc; ++k) {
    const float* src = B + k * ldb;
    for (i64 q = 0; q < full; q += NR) std::memcpy(out + q * kc + k * NR, src + q, NR * sizeof(float));
    if (full < nc) {
      float* d = out + full * kc + k * NR;
      const int w = (int)(nc - full);
      for (int x = 0; x < w; ++x) d[x] = src[full + x];
      for (int x = w; x < NR; ++x) d[x] = 0.f;
    }
  }
}

void pack_b(bool trans_b, const float* B, i64 ldb, i64 k0, i64 j0, i64 kc, i64 nc, int NR,
            float* out) {
  if (!trans_b) {
    const float* src = B + k0 * ldb + j0;
    switch (NR) {
      case 16: return pack_b_rows_fixed<16>(src, ldb, kc, nc, out);
      case 32: return pack_b_rows_fixed<32>(src, ldb, kc, nc, out);
      default: break;
    }
    for (i64 q = 0; q < nc; q += NR)
      pack_rows(src + q, ldb, kc, (int)(nc - q < NR ? nc - q : NR), NR, out + q * kc);
    return;
  }
  const PackTransposedFn packt = transposed_packer();
  for (i64 q = 0; q < nc; q += NR) {
    const int w = (int)(nc - q < NR ? nc - q : NR);
    packt(B + (j0 + q) * ldb + k0, ldb, kc, w, NR, out + q * kc);
  }
}

}  // namespace gemm
}  // namespace kn
