// Portable micro-kernel: plain C++ loops over a 4 x 16 tile that the compiler vectorises for the
// baseline ISA (SSE2 on x86-64, NEON on aarch64). It is the reference shape of the SIMD kernels
// and the path for CPUs without AVX2. B is read 16 columns at a time (zero-padded packed panels
// for a ragged edge); only the first nr columns of C are written.
#include "cpu/gemm/microkernel.h"


namespace kn {
namespace gemm {
namespace {

constexpr int MR = 4;
constexpr int NR = 16;

template <int R, bool KMAJOR>
struct Tile {
  static void run(i64 kc, const float* a, i64 rs_a, i64 cs_a, const float* b, i64 rs_b, float* c, i64 ldc,
                  int nr, const TileStore& st) {
    float acc[R][NR] = {};
    for (i64 k = 0; k < kc; ++k) {
      for (int i = 0; i < R; ++i) {
        const float ai = KMAJOR ? a[i + k * cs_a] : a[i * rs_a + k];
        for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
      }
      b += rs_b;
    }
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      for (int j = 0; j < nr; ++j) {
        float v = st.alpha * acc[i][j];
        if (st.beta != 0.f) v += st.beta * ci[j];
        if (st.bias_col) v += st.bias_col[j];
        if (st.bias_row) v += st.bias_row[i];
        if (st.relu) v = v > 0.f ? v : 0.f;
        ci[j] = v;
      }
    }
  }
};

// Smaller blocks than the SIMD paths: this kernel is slower, so it needs less cache to hide memory.
constexpr MicroKernel kPortable{"portable", MR, NR, /*reads_b_masked=*/false, 256, 512, 256,
                                &run_tile<Tile, MR>};

}  // namespace

const MicroKernel* microkernel_portable() { return &kPortable; }

}  // namespace gemm
}  // namespace kn
