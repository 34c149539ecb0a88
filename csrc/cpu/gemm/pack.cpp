// Packing routines (baseline ISA: they are copies, bound by memory, and shared by every SIMD path).
#include "cpu/gemm/pack.h"

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
template <int W>
static void pack_rows_fixed(const float* src, i64 ld, i64 kc, float* dst) {
  for (i64 k = 0; k < kc; ++k)
    for (int x = 0; x < W; ++x) dst[k * W + x] = src[k * ld + x];
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

void pack_a(bool trans_a, const float* A, i64 lda, i64 i0, i64 k0, i64 mc, i64 kc, int MR,
            float* out) {
  const PackTransposedFn packt = transposed_packer();
  for (i64 p = 0; p < mc; p += MR) {
    const int r = (int)(mc - p < MR ? mc - p : MR);
    float* dst = out + p * kc;  // panel p / MR starts at (p / MR) * kc * MR
    if (trans_a)
      pack_rows(A + k0 * lda + i0 + p, lda, kc, r, MR, dst);
    else
      packt(A + (i0 + p) * lda + k0, lda, kc, r, MR, dst);
  }
}

void pack_b(bool trans_b, const float* B, i64 ldb, i64 k0, i64 j0, i64 kc, i64 nc, int NR,
            float* out) {
  const PackTransposedFn packt = transposed_packer();
  for (i64 q = 0; q < nc; q += NR) {
    const int w = (int)(nc - q < NR ? nc - q : NR);
    float* dst = out + q * kc;
    if (trans_b)
      packt(B + (j0 + q) * ldb + k0, ldb, kc, w, NR, dst);
    else
      pack_rows(B + k0 * ldb + j0 + q, ldb, kc, w, NR, dst);
  }
}

}  // namespace gemm
}  // namespace kn
