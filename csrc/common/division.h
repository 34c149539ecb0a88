// PyTorch's division family on one element, one definition for the CPU and the CUDA kernels
// (B_DIV on int64, B_FMOD, B_REMAINDER, B_FLOOR_DIV in common/ops.h).
//
// float: computed from fmod, which is exact, as PyTorch does (c10::div_floor_floating): floor(a / b)
// rounds the quotient first, so 1.0 // 0.1 gave 10 and 1e10 % 3 gave 0.
// int64: exact; a zero divisor gives 0 (the Python layer raises before), and -1 is a wrapping
// negation, because INT64_MIN / -1 traps in hardware (SIGFPE).
#pragma once
#include <cmath>
#include <cstdint>

#include "common/hd.h"

namespace kn {

KN_HD float remainder_float(float a, float b) {  // the sign of b, as Python's %
  const float r = fmodf(a, b);
  return (r != 0.f && ((r < 0.f) != (b < 0.f))) ? r + b : r;
}

KN_HD float floor_divide_float(float a, float b) {
  if (b == 0.f) return a / b;
  const float mod = fmodf(a, b);
  float div = (a - mod) / b;
  if (mod != 0.f && ((b < 0.f) != (mod < 0.f))) div -= 1.f;
  if (div == 0.f) return copysignf(0.f, a / b);
  const float fl = floorf(div);
  return div - fl > 0.5f ? fl + 1.f : fl;
}

KN_HD std::int64_t floor_divide_int64(std::int64_t a, std::int64_t b) {  // Python's //
  if (b == 0) return 0;
  if (b == -1) return (std::int64_t)(0 - (std::uint64_t)a);
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

KN_HD std::int64_t fmod_int64(std::int64_t a, std::int64_t b) {  // the sign of a, as C's %
  return (b == 0 || b == -1) ? 0 : a % b;
}

KN_HD std::int64_t remainder_int64(std::int64_t a, std::int64_t b) {  // the sign of b
  if (b == 0 || b == -1) return 0;
  const std::int64_t r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

}  // namespace kn
