// box_muller_run (cpu/box_muller.h) compiled for AVX-512: the same source, vectorised 16 wide by
// the compiler. CMakeLists.txt compiles this file with -ffp-contract=off, as random.cpp, so the
// bits equal the baseline path's.
#include "cpu/box_muller.h"

#if defined(__AVX512F__)
namespace kn {
namespace {
void run(const std::uint32_t* w, int pairs, float mean, float stdev, float* out) {
  box_muller_run(w, pairs, mean, stdev, out);
}
}  // namespace

BoxMullerFn box_muller_avx512() { return &run; }
}  // namespace kn
#else
namespace kn {
BoxMullerFn box_muller_avx512() { return nullptr; }
}  // namespace kn
#endif
