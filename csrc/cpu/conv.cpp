// 2-D convolution (NCHW, float32, contiguous) as im2col + the packed GEMM (cpu/gemm/gemm.h).
//
// Bindings (all pointers are ints, sizes int64; the Python layer allocates outputs):
//   conv2d_forward(x, w, bias, y, N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w,
//                  dil_h, dil_w, groups, act)
//       y[N,K,P,Q] = conv(x[N,C,H,W], w[K,C/groups,R,S]) + bias[K]; bias = 0: none; act 0 none, 1 relu
//   conv2d_backward_input(dy, w, dx, N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups)
//       dx[N,C,H,W] = d(conv)/dx applied to dy[N,K,P,Q] (dx is overwritten)
//   conv2d_backward_weight(x, dy, dw, N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups, accumulate)
//       dw[K,C/groups,R,S] (+)= sum over the batch; accumulate = false overwrites
//   conv2d_backward_bias(dy, db, N, K, PQ)      db[K] = sum of dy[N,K,PQ] over N and PQ (overwrites)
//   conv2d_backward(x, dy, w, dx, dw, db, N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups)
//       all three gradients in one pass over the images; pointers of unwanted ones are 0
//       (dx, dw, db overwritten)
//   conv2d_output_size(H, R, stride, pad, dil) -> (H + 2 pad - dil (R-1) - 1) / stride + 1
//
// Why this shape of algorithm:
// - One image (and one group) at a time is a GEMM  Y[Kg, PQ] = W[Kg, CgRS] @ col[CgRS, PQ], where col
//   is the im2col unfolding of the image. The bias and ReLU ride in the GEMM epilogue (BIAS_ROW),
//   so the output is written once.
// - Threads split the batch, each with its own reused im2col buffer (thread_local, grows once),
//   and each GEMM then runs single-threaded inside: no synchronisation per GEMM and no
//   allocation in the hot path (im2col + BLAS that allocates per call and threads over the batch
//   only is what makes naive convolutions 2-3x slower; we keep the batch threading, drop the
//   allocations and keep the col tile in cache). When the batch is smaller than the thread
//   count the batch loop runs serially and the GEMM threads itself instead.
// - The im2col tile covers a band of output rows sized to stay within ~1 MiB (cache-resident
//   between im2col and the GEMM's packing); small images are one band.
// - 1x1, stride 1, no padding: the image itself is the col matrix; no copy at all.
// - Backward input:  dcol = W^T @ dY, then col2im scatters dcol back (overlapping windows add).
// - Backward weight: dW += dY @ col^T summed over the batch; each thread accumulates its images
//   into a private dW (GEMM beta = 1), then the partial sums are added. The GEMM inner dimension
//   is PQ, long enough to run at speed.
#include <algorithm>
#include <cstring>
#include <vector>

#include "common/kn.h"
#include "common/layer_geometry.h"
#include "common/ops.h"
#include "cpu/gemm/gemm.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"

namespace kn {
namespace {

i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }

// Output columns q whose input column q*sw - pw + s*dw lies inside [0, W): [q0, q1).
inline void valid_q(const ConvGeom& g, i64 s, i64& q0, i64& q1) {
  i64 off = s * g.dw - g.pw;
  q0 = off >= 0 ? 0 : ceil_div(-off, g.sw);
  q1 = g.W - off <= 0 ? 0 : ceil_div(g.W - off, g.sw);
  q0 = std::min(q0, g.Q);
  q1 = std::max(q0, std::min(q1, g.Q));
}

// Unfold output rows [p0, p1) of one group of one image: x is [Cg, H, W]; col is
// [CRS, (p1-p0)*Q] with row (c*R + r)*S + s holding x[c, p*sh - ph + r*dh, q*sw - pw + s*dw].
void im2col(const ConvGeom& g, const float* x, i64 p0, i64 p1, float* col) {
  const i64 HW = g.H * g.W, Q = g.Q, L = (p1 - p0) * Q;
  for (i64 c = 0; c < g.Cg; ++c) {
    const float* xc = x + c * HW;
    for (i64 r = 0; r < g.R; ++r) {
      for (i64 s = 0; s < g.S; ++s) {
        float* dst = col + ((c * g.R + r) * g.S + s) * L;
        i64 q0, q1;
        valid_q(g, s, q0, q1);
        const i64 woff = s * g.dw - g.pw;
        for (i64 p = p0; p < p1; ++p, dst += Q) {
          const i64 ih = p * g.sh - g.ph + r * g.dh;
          if (ih < 0 || ih >= g.H) {
            for (i64 q = 0; q < Q; ++q) dst[q] = 0.f;
            continue;
          }
          const float* src = xc + ih * g.W + woff;  // src[q * sw] for q in [q0, q1)
          for (i64 q = 0; q < q0; ++q) dst[q] = 0.f;
          if (g.sw == 1) {  // short rows (tens of floats): an inline loop beats a memcpy call
            for (i64 q = q0; q < q1; ++q) dst[q] = src[q];
          } else {
            for (i64 q = q0; q < q1; ++q) dst[q] = src[q * g.sw];
          }
          for (i64 q = q1; q < Q; ++q) dst[q] = 0.f;
        }
      }
    }
  }
}

// The adjoint of im2col: dx[c, ih, iw] += col[...] for every window position (dx pre-zeroed).
void col2im(const ConvGeom& g, const float* col, i64 p0, i64 p1, float* dx) {
  const i64 HW = g.H * g.W, Q = g.Q, L = (p1 - p0) * Q;
  for (i64 c = 0; c < g.Cg; ++c) {
    float* xc = dx + c * HW;
    for (i64 r = 0; r < g.R; ++r) {
      for (i64 s = 0; s < g.S; ++s) {
        const float* src = col + ((c * g.R + r) * g.S + s) * L;
        i64 q0, q1;
        valid_q(g, s, q0, q1);
        const i64 woff = s * g.dw - g.pw;
        for (i64 p = p0; p < p1; ++p, src += Q) {
          const i64 ih = p * g.sh - g.ph + r * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          float* dst = xc + ih * g.W + woff;
          if (g.sw == 1) {
            for (i64 q = q0; q < q1; ++q) dst[q] += src[q];
          } else {
            for (i64 q = q0; q < q1; ++q) dst[q * g.sw] += src[q];
          }
        }
      }
    }
  }
}

// Output rows per im2col band: as many as fit ~1 MiB of col, at least one.
i64 band_rows(const ConvGeom& g) {
  const i64 budget = (1 << 20) / sizeof(float);
  i64 rows = budget / std::max<i64>(1, g.CRS * g.Q);
  return std::max<i64>(1, std::min(rows, g.P));
}

// Per-thread buffers (cpu/scratch.h): the im2col band of each worker, the dW partials.
struct ColBand {};
struct WeightPartials {};

// Split [0, N) images into `chunks` contiguous ranges, run f(chunk, begin, end) on the threads.
// Batch threading when there are enough images; otherwise one chunk, so the GEMM threads itself.
template <typename F>
void over_batch(i64 N, i64 chunks, F&& f) {
  parallel_for(chunks, 1, [&](i64 c0, i64 c1) {
    for (i64 c = c0; c < c1; ++c) f(c, N * c / chunks, N * (c + 1) / chunks);
  });
}

i64 batch_chunks(i64 N) {
  i64 nt = num_threads();
  return N >= nt ? nt : 1;
}

}  // namespace

void conv2d_forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y,
                    int act) {
  const i64 PQ = g.P * g.Q, band = band_rows(g);
  over_batch(g.N, batch_chunks(g.N), [&](i64, i64 n0, i64 n1) {
    float* col = g.direct ? nullptr : thread_scratch<ColBand>(g.CRS * band * g.Q);
    for (i64 n = n0; n < n1; ++n) {
      for (i64 gr = 0; gr < g.groups; ++gr) {
        const float* xg = x + (n * g.C + gr * g.Cg) * g.H * g.W;
        const float* wg = w + gr * g.Kg * g.CRS;
        float* yg = y + (n * g.K + gr * g.Kg) * PQ;
        GemmEpilogue ep{bias ? bias + gr * g.Kg : nullptr, bias ? BIAS_ROW : BIAS_NONE, act};
        if (g.direct) {
          sgemm(1, false, false, g.Kg, PQ, g.CRS, 1.f, wg, g.CRS, 0, xg, PQ, 0, 0.f, yg, PQ, 0, ep);
          continue;
        }
        for (i64 p0 = 0; p0 < g.P; p0 += band) {
          const i64 p1 = std::min(g.P, p0 + band), L = (p1 - p0) * g.Q;
          im2col(g, xg, p0, p1, col);
          // Y[:, p0*Q : p1*Q] = W @ col  (ldc = PQ keeps the band inside the full output rows)
          sgemm(1, false, false, g.Kg, L, g.CRS, 1.f, wg, g.CRS, 0, col, L, 0, 0.f, yg + p0 * g.Q,
                PQ, 0, ep);
        }
      }
    }
  });
}

// Sum of a row in 16 independent float lanes (one running sum is a serial chain of adds that
// the compiler may not reorder, 4 cycles an element), then the lanes pairwise.
inline float row_sum(const float* __restrict row, i64 n) {
  float lane[16] = {};
  i64 i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) lane[j] += row[i + j];
  for (int j = 0; i < n; ++i, ++j) lane[j] += row[i];
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) lane[j] += lane[j + w];
  return lane[0];
}

// All of a convolution's backward in one pass over the images: per image (and group) the input
// gradient (dcol = W^T @ dY, col2im), the weight gradient (im2col, dW^T += col @ dY^T), the bias
// gradient (row sums of dY); any of dx, dw, db may be null. One pass instead of three keeps each
// image's dY (147 KB for the course CNN's conv2) in cache for all its uses and runs one parallel
// region; the col scratch serves both GEMMs in turn.
// dw: overwritten, or added to when accumulate_dw. db: overwritten.
void conv2d_backward(const ConvGeom& g, const float* x, const float* dy, const float* w, float* dx,
                     float* dw, bool accumulate_dw, float* db) {
  const i64 PQ = g.P * g.Q, HW = g.H * g.W, band = band_rows(g), WN = g.K * g.CRS;
  if (g.N == 0) {
    if (dw && !accumulate_dw) std::memset(dw, 0, sizeof(float) * WN);
    if (db) std::memset(db, 0, sizeof(float) * g.K);
    return;
  }
  const i64 chunks = std::min(batch_chunks(g.N), std::max<i64>(1, g.N));
  // Partial dW (and db, in double: a long sum) per chunk, added up after the pass.
  float* partial = dw ? thread_scratch<WeightPartials>(chunks * WN) : nullptr;
  std::vector<double> partial_db(db ? (size_t)(chunks * g.K) : 0, 0.0);
  // Weight-gradient orientation: dW^T[CRS, Kg] = col @ dY^T (transposed while summing the
  // partials) runs the packed GEMM faster than dW = dY @ col^T whenever Kg fills its 32-wide
  // register tile: measured 128 vs 88 GFLOP/s for the course CNN's conv2 (Kg 64, CRS 288), 23 vs
  // 12 for conv1 (32 x 9), equal at Kg 256. With fewer output channels than that, CRS is the
  // better N.
  const bool tr = g.Kg >= 32 || g.CRS < g.Kg;
  over_batch(g.N, chunks, [&](i64 c, i64 n0, i64 n1) {
    float* acc = dw ? partial + c * WN : nullptr;
    float* col = g.direct ? nullptr : thread_scratch<ColBand>(g.CRS * band * g.Q);
    for (i64 n = n0; n < n1; ++n) {
      for (i64 gr = 0; gr < g.groups; ++gr) {
        const float* dyg = dy + (n * g.K + gr * g.Kg) * PQ;
        if (dx) {
          const float* wg = w + gr * g.Kg * g.CRS;
          float* dxg = dx + (n * g.C + gr * g.Cg) * HW;
          if (g.direct) {  // dX[Cg, HW] = W^T @ dY
            sgemm(1, true, false, g.CRS, PQ, g.Kg, 1.f, wg, g.CRS, 0, dyg, PQ, 0, 0.f, dxg, PQ, 0);
          } else {
            std::memset(dxg, 0, sizeof(float) * g.Cg * HW);
            for (i64 p0 = 0; p0 < g.P; p0 += band) {
              const i64 p1 = std::min(g.P, p0 + band), L = (p1 - p0) * g.Q;
              // dcol[CRS, L] = W^T @ dY[:, band]
              sgemm(1, true, false, g.CRS, L, g.Kg, 1.f, wg, g.CRS, 0, dyg + p0 * g.Q, PQ, 0, 0.f,
                    col, L, 0);
              col2im(g, col, p0, p1, dxg);
            }
          }
        }
        if (dw) {
          const float* xg = x + (n * g.C + gr * g.Cg) * HW;
          float* ag = acc + gr * g.Kg * g.CRS;  // [Kg, CRS], or [CRS, Kg] when tr
          for (i64 p0 = 0; p0 < g.P; p0 += band) {
            const i64 p1 = std::min(g.P, p0 + band), L = (p1 - p0) * g.Q;
            // 1x1 direct: the image rows are the col matrix (one band covers it: P*Q = H*W)
            const float* cb = g.direct ? xg + p0 * g.Q : col;
            const i64 ldcol = g.direct ? PQ : L;
            if (!g.direct) im2col(g, xg, p0, p1, col);
            const float beta = (n == n0 && p0 == 0) ? 0.f : 1.f;
            if (tr)  // dW^T[CRS, Kg] += col @ dY[:, band]^T
              sgemm(1, false, true, g.CRS, g.Kg, L, 1.f, cb, ldcol, 0, dyg + p0 * g.Q, PQ, 0, beta,
                    ag, g.Kg, 0);
            else  // dW[Kg, CRS] += dY[:, band] @ col^T
              sgemm(1, false, true, g.Kg, g.CRS, L, 1.f, dyg + p0 * g.Q, PQ, 0, cb, ldcol, 0, beta,
                    ag, g.CRS, 0);
          }
        }
        if (db) {
          double* pdb = partial_db.data() + c * g.K + gr * g.Kg;
          for (i64 k = 0; k < g.Kg; ++k) pdb[k] += row_sum(dyg + k * PQ, PQ);
        }
      }
    }
  });
  if (dw) {  // sum the partials into dw (threads split the weight elements)
    parallel_for(WN, 4096, [&](i64 i0, i64 i1) {
      for (i64 i = i0; i < i1; ++i) {
        i64 src = i;
        if (tr) {  // dw index (gr, k, j) lives at (gr, j, k) in the transposed partials
          const i64 gsz = g.Kg * g.CRS, gr = i / gsz, k = (i % gsz) / g.CRS, j = i % g.CRS;
          src = gr * gsz + j * g.Kg + k;
        }
        float s = accumulate_dw ? dw[i] : 0.f;
        for (i64 c = 0; c < chunks; ++c) s += partial[c * WN + src];
        dw[i] = s;
      }
    });
  }
  if (db) {
    for (i64 k = 0; k < g.K; ++k) {
      double s = 0.0;
      for (i64 c = 0; c < chunks; ++c) s += partial_db[(size_t)(c * g.K + k)];
      db[k] = (float)s;
    }
  }
}

void conv2d_backward_input(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  conv2d_backward(g, nullptr, dy, w, dx, nullptr, false, nullptr);
}

void conv2d_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw,
                            bool accumulate) {
  conv2d_backward(g, x, dy, nullptr, nullptr, dw, accumulate, nullptr);
}

void conv2d_backward_bias(const float* dy, float* db, i64 N, i64 K, i64 PQ) {
  parallel_for(K, 4, [&](i64 k0, i64 k1) {
    for (i64 k = k0; k < k1; ++k) {
      double s = 0.0;  // a long sum (N * PQ terms): accumulate in double, summed per row in float
      for (i64 n = 0; n < N; ++n) {
        s += row_sum(dy + (n * K + k) * PQ, PQ);
      }
      db[k] = (float)s;
    }
  });
}

}  // namespace kn

KN_BIND(conv) {
  using kn::i64;
  using kn::uptr;
  m.def("conv2d_output_size", &kn::conv_out, "(H + 2 pad - dil (R-1) - 1) / stride + 1",
        kn::py::arg("H"), kn::py::arg("R"), kn::py::arg("stride"), kn::py::arg("pad"),
        kn::py::arg("dil"));
  m.def(
      "conv2d_forward",
      [](uptr x, uptr w, uptr bias, uptr y, i64 N, i64 C, i64 H, i64 W, i64 K, i64 R, i64 S, i64 sh,
         i64 sw, i64 ph, i64 pw, i64 dh, i64 dw, i64 groups, int act) {
        auto g = kn::make_conv_geom("conv2d_forward", N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups);
        KN_CHECK(act == kn::ACT_NONE || act == kn::ACT_RELU, "conv2d_forward: unknown act ", act);
        KN_CHECK(x && w && y, "conv2d_forward: null pointer");
        kn::conv2d_forward(g, kn::ptr<const float>(x), kn::ptr<const float>(w),
                           kn::ptr<const float>(bias), kn::ptr<float>(y), act);
      },
      KN_NOGIL);
  m.def(
      "conv2d_backward_input",
      [](uptr dy, uptr w, uptr dx, i64 N, i64 C, i64 H, i64 W, i64 K, i64 R, i64 S, i64 sh, i64 sw,
         i64 ph, i64 pw, i64 dh, i64 dw, i64 groups) {
        auto g = kn::make_conv_geom("conv2d_backward_input", N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw,
                               groups);
        KN_CHECK(dy && w && dx, "conv2d_backward_input: null pointer");
        kn::conv2d_backward_input(g, kn::ptr<const float>(dy), kn::ptr<const float>(w),
                                  kn::ptr<float>(dx));
      },
      KN_NOGIL);
  m.def(
      "conv2d_backward_weight",
      [](uptr x, uptr dy, uptr dwt, i64 N, i64 C, i64 H, i64 W, i64 K, i64 R, i64 S, i64 sh, i64 sw,
         i64 ph, i64 pw, i64 dh, i64 dw, i64 groups, bool accumulate) {
        auto g = kn::make_conv_geom("conv2d_backward_weight", N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw,
                               groups);
        KN_CHECK(x && dy && dwt, "conv2d_backward_weight: null pointer");
        kn::conv2d_backward_weight(g, kn::ptr<const float>(x), kn::ptr<const float>(dy),
                                   kn::ptr<float>(dwt), accumulate);
      },
      KN_NOGIL);
  m.def(
      "conv2d_backward",
      [](uptr x, uptr dy, uptr w, uptr dx, uptr dwt, uptr db, i64 N, i64 C, i64 H, i64 W, i64 K,
         i64 R, i64 S, i64 sh, i64 sw, i64 ph, i64 pw, i64 dh, i64 dw, i64 groups) {
        auto g = kn::make_conv_geom("conv2d_backward", N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw,
                               groups);
        KN_CHECK(dy, "conv2d_backward: null grad_output pointer");
        KN_CHECK(!dx || w, "conv2d_backward: the input gradient needs the weight pointer");
        KN_CHECK(!dwt || x, "conv2d_backward: the weight gradient needs the input pointer");
        kn::conv2d_backward(g, kn::ptr<const float>(x), kn::ptr<const float>(dy),
                            kn::ptr<const float>(w), kn::ptr<float>(dx), kn::ptr<float>(dwt), false,
                            kn::ptr<float>(db));
      },
      KN_NOGIL);
  m.def(
      "conv2d_backward_bias",
      [](uptr dy, uptr db, i64 N, i64 K, i64 PQ) {
        KN_CHECK(N >= 0 && K >= 1 && PQ >= 0, "conv2d_backward_bias: bad sizes N=", N, " K=", K,
                 " PQ=", PQ);
        KN_CHECK(dy && db, "conv2d_backward_bias: null pointer");
        kn::conv2d_backward_bias(kn::ptr<const float>(dy), kn::ptr<float>(db), N, K, PQ);
      },
      KN_NOGIL);
}
