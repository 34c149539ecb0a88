// Argument checks shared by the batch / layer normalisation bindings of both backends
// (csrc/cpu/norm.cpp, csrc/cuda/norm.cu), so a bad call raises the same ValueError on either.
#pragma once
#include "common/kn.h"

namespace kn {

// x viewed [outer, C, inner]; statistics per channel c over outer * inner values.
inline void check_batch_norm_sizes(const char* op, i64 outer, i64 C, i64 inner) {
  KN_CHECK(outer >= 0 && C >= 1 && inner >= 0, op, ": bad sizes outer=", outer, " C=", C,
           " inner=", inner);
}

inline void check_momentum_eps(const char* op, double momentum, double eps) {
  KN_CHECK(momentum >= 0.0 && momentum <= 1.0, op, ": momentum must be in [0, 1], got ", momentum);
  KN_CHECK(eps >= 0.0, op, ": eps must be >= 0, got ", eps);
}

// x viewed [rows, D]; statistics per row over D values.
inline void check_layer_norm_sizes(const char* op, i64 rows, i64 D) {
  KN_CHECK(rows >= 0 && D >= 1, op, ": bad sizes rows=", rows, " D=", D);
}

}  // namespace kn
