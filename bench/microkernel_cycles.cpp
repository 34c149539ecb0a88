// Cycles of one GEMM micro-kernel call on L1-resident packed panels: the fastest of 20000 calls,
// timed with rdtsc. Interference only ever slows a call down, so the minimum is stable even on a
// noisy shared machine (it found the accumulator spills that cost ~70 cycles per tile).
//
//   g++ -O3 -std=c++17 -Icsrc -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma \
//       bench/microkernel_cycles.cpp csrc/cpu/gemm/microkernel_avx512.cpp -o /tmp/ukc
//   /tmp/ukc [kc] [beta]      e.g. /tmp/ukc 9 0   (defaults: kc 256, beta 1)
//
// TSC cycles tick at the nominal clock; "zmm FMAs per TSC cycle" above 2.0 means the core runs
// faster than nominal with both FMA ports busy.
#include <x86intrin.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cpu/gemm/microkernel.h"

int main(int argc, char** argv) {
  using namespace kn::gemm;
  const MicroKernel* uk = microkernel_avx512();
  if (!uk) return std::puts("no AVX-512 micro-kernel in this build"), 1;
  const int kc = argc > 1 ? std::atoi(argv[1]) : 256;
  const float beta = argc > 2 ? (float)std::atof(argv[2]) : 1.f;
  const int MR = uk->mr, NR = uk->nr;
  std::vector<float> a((size_t)kc * MR + 64, 1e-3f), b((size_t)kc * NR + 64, 1e-3f), c((size_t)MR * NR, 0.f);
  const TileStore st{1.f, beta, nullptr, nullptr, false, /*b_padded=*/true};
  unsigned long long best = ~0ull;
  for (int r = 0; r < 20000; ++r) {
    const unsigned long long t0 = __rdtsc();
    uk->fn(kc, a.data(), 1, MR, b.data(), NR, c.data(), NR, MR, NR, st);
    const unsigned long long t1 = __rdtsc();
    if (t1 - t0 < best) best = t1 - t0;
  }
  const double fmas = (double)kc * MR * NR / 16;
  std::printf("%s %dx%d kc=%d beta=%g: %llu TSC cycles, %.2f zmm FMAs per TSC cycle\n", uk->name, MR, NR, kc,
              (double)beta, best, fmas / (double)best);
}
