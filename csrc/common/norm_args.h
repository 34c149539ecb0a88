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

// Everything each binding checks before any work, identical on both backends.
inline void check_batch_norm_forward(const char* op, uptr x, uptr y, uptr mean, uptr invstd, uptr rmean,
                                     uptr rvar, i64 outer, i64 C, i64 inner, bool training, double momentum,
                                     double eps) {
  check_batch_norm_sizes(op, outer, C, inner);
  check_momentum_eps(op, momentum, eps);
  KN_CHECK(x && y && mean && invstd, op, ": null pointer");
  KN_CHECK(training || (rmean && rvar), op, ": running_mean and running_var are needed in eval mode");
  KN_CHECK(!training || outer * inner > 0, op, ": no values per channel to take statistics of");
}

inline void check_batch_norm_backward(const char* op, uptr x, uptr dy, uptr mean, uptr invstd, i64 outer, i64 C,
                                      i64 inner) {
  check_batch_norm_sizes(op, outer, C, inner);
  KN_CHECK(x && dy && mean && invstd, op, ": null pointer");
}

inline void check_layer_norm_forward(const char* op, uptr x, uptr y, uptr mean, uptr rstd, i64 rows, i64 D,
                                     double eps) {
  check_layer_norm_sizes(op, rows, D);
  check_momentum_eps(op, 0.0, eps);
  KN_CHECK(x && y && mean && rstd, op, ": null pointer");
}

inline void check_layer_norm_backward(const char* op, uptr x, uptr dy, uptr mean, uptr rstd, i64 rows, i64 D) {
  check_layer_norm_sizes(op, rows, D);
  KN_CHECK(x && dy && mean && rstd, op, ": null pointer");
}

}  // namespace kn
