// Flush-to-zero for denormal floats while kernels run (x86: MXCSR FTZ + DAZ bits).
//
// Why: denormals (|x| < 1.2e-38) take a microcode assist of ~100+ cycles per instruction on x86.
// Adam's first moment decays by 0.9 per step wherever a gradient is exactly zero (dead ReLU
// units), so after ~700 steps of the course CNN a third of fc1's moments were denormal and the
// training step ran 2x slower (31 -> 60+ ms). Deep learning never needs gradual underflow.
//
// Each kernel call sets FTZ/DAZ on its calling thread for its duration (KN_NOGIL's call guard)
// and on every OpenMP worker inside parallel_for, and restores the previous mode afterwards, so
// NumPy and user code keep IEEE semantics. set_flush_denormal(false) (kernelnet.set_flush_denormal,
// or KERNELNET_FLUSH_DENORMAL=0) turns it off. Other architectures: no-op.
#pragma once
#include <atomic>
#include <cstdlib>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define KN_HAVE_MXCSR 1
#endif

namespace kn {

inline std::atomic<bool>& flush_denormal_flag() {
  static std::atomic<bool> flag{[] {
    const char* env = std::getenv("KERNELNET_FLUSH_DENORMAL");
    return !(env && env[0] == '0');
  }()};
  return flag;
}

// The thread's floating-point control word (MXCSR on x86; 0 elsewhere).
inline unsigned fp_mode() {
#if defined(KN_HAVE_MXCSR)
  return _mm_getcsr();
#else
  return 0;
#endif
}

// RAII: this thread runs with control word `mode` for the scope, its own restored on exit.
// parallel_for gives OpenMP workers the caller's mode this way: workers are created (and keep
// their own control word) whenever the pool is, so they must not be trusted to have any mode.
struct FpModeScope {
  unsigned saved;
  explicit FpModeScope(unsigned mode) : saved(fp_mode()) {
#if defined(KN_HAVE_MXCSR)
    if (mode != saved) _mm_setcsr(mode);
#else
    (void)mode;
#endif
  }
  ~FpModeScope() {
#if defined(KN_HAVE_MXCSR)
    if (fp_mode() != saved) _mm_setcsr(saved);
#endif
  }
  FpModeScope(const FpModeScope&) = delete;
  FpModeScope& operator=(const FpModeScope&) = delete;
};

constexpr unsigned kFlushDenormalBits = 0x8040;  // MXCSR FTZ (bit 15) | DAZ (bit 6)

// The caller's control word with FTZ + DAZ added when flushing is on (unchanged otherwise).
inline unsigned kernel_fp_mode() {
  const unsigned m = fp_mode();
  return flush_denormal_flag().load(std::memory_order_relaxed) ? (m | kFlushDenormalBits) : m;
}

// KN_NOGIL's guard: the calling thread runs the kernel call in kernel_fp_mode().
struct FlushDenormalScope : FpModeScope {
  FlushDenormalScope() : FpModeScope(kernel_fp_mode()) {}
};

}  // namespace kn
