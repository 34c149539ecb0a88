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

// Copy a kc x w block whose rows are contiguous (src[k*ld + x]) into dst[k*W + x], zero-padding:
// the fallback of split_rows for panel widths no micro-kernel uses.
static void pack_rows(const float* src, i64 ld, i64 kc, int w, int W, float* dst) {
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

// The operand whose k rows are contiguous (A^T stored K x M, or B stored K x N): row k of the
// block (n contiguous floats) is read once, sequentially, and split across the panels of width W.
// Panel by panel (kc rows of W floats, one source row apart) every k step jumped ld floats, which
// the prefetchers do not follow across pages: a 512 x 28 x 1792 weight gradient ran at half the
// speed of its untransposed twin, and a 9216-wide weight's input gradient 10-40 % slower.
template <int W>
static void split_rows_fixed(const float* src, i64 ld, i64 n, i64 kc, float* out) {
  const i64 full = n / W * W;
  for (i64 k = 0; k < kc; ++k) {
    const float* row = src + k * ld;
    for (i64 p = 0; p < full; p += W) std::memcpy(out + p * kc + k * W, row + p, W * sizeof(float));
    if (full < n) {
      float* d = out + full * kc + k * W;
      const int r = (int)(n - full);
      for (int x = 0; x < r; ++x) d[x] = row[full + x];
      for (int x = r; x < W; ++x) d[x] = 0.f;
    }
  }
}

// The same for any W: the widths of the micro-kernels get the fixed-width copy above.
static void split_rows(const float* src, i64 ld, i64 n, i64 kc, int W, float* out) {
  switch (W) {
    case 4: return split_rows_fixed<4>(src, ld, n, kc, out);
    case 6: return split_rows_fixed<6>(src, ld, n, kc, out);
    case 12: return split_rows_fixed<12>(src, ld, n, kc, out);
    case 16: return split_rows_fixed<16>(src, ld, n, kc, out);
    case 32: return split_rows_fixed<32>(src, ld, n, kc, out);
    default: break;
  }
  for (i64 p = 0; p < n; p += W) pack_rows(src + p, ld, kc, (int)(n - p < W ? n - p : W), W, out + p * kc);
}

void pack_a(bool trans_a, const float* A, i64 lda, i64 i0, i64 k0, i64 mc, i64 kc, int MR,
            float* out) {
  if (trans_a) return split_rows(A + k0 * lda + i0, lda, mc, kc, MR, out);
  const PackTransposedFn packt = transposed_packer();
  for (i64 p = 0; p < mc; p += MR) {
    const int r = (int)(mc - p < MR ? mc - p : MR);
    packt(A + (i0 + p) * lda + k0, lda, kc, r, MR, out + p * kc);  // panel p / MR at (p / MR) * kc * MR
  }
}

void pack_b(bool trans_b, const float* B, i64 ldb, i64 k0, i64 j0, i64 kc, i64 nc, int NR,
            float* out) {
  if (!trans_b) return split_rows(B + k0 * ldb + j0, ldb, nc, kc, NR, out);
  const PackTransposedFn packt = transposed_packer();
  for (i64 q = 0; q < nc; q += NR) {
    const int w = (int)(nc - q < NR ? nc - q : NR);
    packt(B + (j0 + q) * ldb + k0, ldb, kc, w, NR, out + q * kc);
  }
}

}  // namespace gemm
}  // namespace kn
