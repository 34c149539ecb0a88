// Threading for CPU kernels: OpenMP when built with it, serial otherwise.
#pragma once
#include <cstdint>

#include "common/denormal.h"
#ifdef KN_HAVE_OPENMP
#include <omp.h>
#endif

namespace kn {

int num_threads();
void set_num_threads(int n);

// Threads a kernel may start now: one when already inside a parallel region (a kernel called by
// another kernel's worker, e.g. a GEMM per image of a convolution), else num_threads().
inline int available_threads() {
#ifdef KN_HAVE_OPENMP
  if (omp_in_parallel()) return 1;
#endif
  return num_threads();
}

// Run f(begin, end) over [0, n) split in contiguous chunks across threads. Work smaller than
// `grain` elements per thread runs inline: a thread wake-up costs more than a small loop.
template <typename F>
inline void parallel_for(std::int64_t n, std::int64_t grain, F&& f) {
  if (n <= 0) return;
#ifdef KN_HAVE_OPENMP
  int nt = num_threads();
  if (nt > 1 && n > grain && !omp_in_parallel()) {
    std::int64_t chunks = (n + grain - 1) / grain;
    if (chunks < nt) nt = (int)chunks;
    const unsigned mode = fp_mode();  // the caller's (denormal flushing set by KN_NOGIL's guard)
#pragma omp parallel num_threads(nt)
    {
      FpModeScope fp(mode);  // every worker runs the region in the caller's mode
      int t = omp_get_thread_num();
      int T = omp_get_num_threads();
      std::int64_t b = n * t / T, e = n * (t + 1) / T;
      if (b < e) f(b, e);
    }
    return;
  }
#endif
  f(0, n);
}

// Run f(tid, nthreads) once on each of up to nt threads that stay together for the whole call, so
// f may synchronise them with team_barrier() (every thread must reach every barrier). Inline
// (f(0, 1)) without OpenMP or inside another parallel region.
template <typename F>
inline void parallel_team(int nt, F&& f) {
#ifdef KN_HAVE_OPENMP
  if (nt > 1 && !omp_in_parallel()) {
    const unsigned mode = fp_mode();
#pragma omp parallel num_threads(nt)
    {
      FpModeScope fp(mode);
      f(omp_get_thread_num(), omp_get_num_threads());
    }
    return;
  }
#endif
  f(0, 1);
}

inline void team_barrier() {
#ifdef KN_HAVE_OPENMP
#pragma omp barrier
#endif
}

}  // namespace kn
