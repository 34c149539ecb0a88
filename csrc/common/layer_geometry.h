// Output sizes and argument checks of 2-D convolution and pooling, shared by the CPU and CUDA
// backends so that both accept the same arguments and refuse bad ones with the same messages (the
// CUDA files add their 32-bit index limits on top).
#pragma once
#include "common/kn.h"

namespace kn {

// PyTorch's convolution output size: floor((H + 2 pad - dil (R - 1) - 1) / stride) + 1. Floor, as
// Python's //: C++'s `/` truncates toward zero and made a kernel larger than the padded input
// (negative span) give P = 1 whenever stride > 1, so the check below let it through.
inline i64 conv_out(i64 H, i64 R, i64 s, i64 p, i64 d) {
  const i64 span = H + 2 * p - d * (R - 1) - 1;
  return (span >= 0 ? span / s : -((-span + s - 1) / s)) + 1;
}

struct ConvGeom {
  i64 N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups;
  i64 P, Q;    // output height, width
  i64 Cg, Kg;  // channels per group (input, output)
  i64 CRS;     // Cg * R * S: rows of the col matrix, columns of a weight row
  bool direct;  // 1x1, stride 1, no padding: the col matrix is the image itself
};

inline ConvGeom make_conv_geom(const char* op, i64 N, i64 C, i64 H, i64 W, i64 K, i64 R, i64 S, i64 sh,
                               i64 sw, i64 ph, i64 pw, i64 dh, i64 dw, i64 groups) {
  KN_CHECK(N >= 0 && C >= 1 && H >= 1 && W >= 1 && K >= 1 && R >= 1 && S >= 1, op,
           ": bad sizes N=", N, " C=", C, " H=", H, " W=", W, " K=", K, " R=", R, " S=", S);
  KN_CHECK(sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1 && ph >= 0 && pw >= 0, op,
           ": stride and dilation must be >= 1 and padding >= 0, got stride=(", sh, ",", sw,
           ") padding=(", ph, ",", pw, ") dilation=(", dh, ",", dw, ")");
  KN_CHECK(groups >= 1 && C % groups == 0 && K % groups == 0, op, ": groups=", groups,
           " must divide in_channels=", C, " and out_channels=", K);
  ConvGeom g{N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups, 0, 0, 0, 0, 0, false};
  g.P = conv_out(H, R, sh, ph, dh);
  g.Q = conv_out(W, S, sw, pw, dw);
  KN_CHECK(g.P >= 1 && g.Q >= 1, op, ": kernel (", R, "x", S, ", dilation ", dh, "x", dw,
           ") larger than padded input (", H, "x", W, ", padding ", ph, "x", pw, ")");
  g.Cg = C / groups;
  g.Kg = K / groups;
  g.CRS = g.Cg * R * S;
  g.direct = R == 1 && S == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
  return g;
}

// PyTorch's pooling output size, ceil_mode included.
inline i64 pool_out(i64 H, i64 k, i64 s, i64 p, i64 d, bool ceil_mode) {
  i64 span = H + 2 * p - d * (k - 1) - 1;
  if (span < 0) return 0;
  i64 P = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  // PyTorch: with ceil_mode the last window must start inside the input or its left padding.
  if (ceil_mode && (P - 1) * s >= H + p) --P;
  return P;
}

struct PoolGeom {
  i64 N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw;
};

inline PoolGeom check_pool(const char* op, i64 N, i64 C, i64 H, i64 W, i64 P, i64 Q, i64 kh, i64 kw, i64 sh,
                           i64 sw, i64 ph, i64 pw, i64 dh, i64 dw) {
  KN_CHECK(N >= 0 && C >= 0 && H >= 1 && W >= 1 && P >= 1 && Q >= 1, op, ": bad sizes N=", N,
           " C=", C, " H=", H, " W=", W, " P=", P, " Q=", Q);
  KN_CHECK(kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1 && ph >= 0 && pw >= 0,
           op, ": kernel, stride and dilation must be >= 1 and padding >= 0, got kernel=(", kh, ",",
           kw, ") stride=(", sh, ",", sw, ") padding=(", ph, ",", pw, ") dilation=(", dh, ",", dw,
           ")");
  return PoolGeom{N, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw};
}

}  // namespace kn
