// Packed, cache-blocked, multithreaded SGEMM in the GotoBLAS/BLIS structure, with a fused epilogue.
//
// Loop nest over one thread's slice of C (rows m0..m1, columns n0..n1, k0..k1):
//   pc: KC at a time            C accumulates across K blocks
//    ic: MC rows at a time      A block (MC x KC) packed once per K block                 -> L3
//     jc: NC columns at a time  B block (KC x NC) packed, reread by every A panel         -> L2
//      ir: MR-row panels        one A panel (MR x KC) stays in L1 during the jr sweep     -> L1
//       jr: NR-column panels    micro-kernel: the MR x NR tile of C lives in registers
// The A panel is the broadcast operand (MR values per k step) and the B panels the vector one
// (NR values per k step), so B streams from L2 while the small A panel sits in L1; the jr sweep
// walks C along its rows, which keeps C accesses sequential. Each operand is packed once per K
// block (B once more per extra MC block), instead of once per neighbouring block.
// Block sizes belong to each micro-kernel (microkernel_*.cpp) because they follow its tile shape.
//
// Epilogue: every tile of C is written once per K block by the micro-kernel; beta is applied on
// the first K block (later blocks accumulate), bias and ReLU on the last one, so the fused
// epilogue costs no extra pass over C.
//
// Threads: the threads split C into a grid of slices (rows x columns), or split K when C is too
// small to share (weight gradients: M x N small, K = batch * pixels); K slices beyond the first
// write private partial sums that one extra pass adds up before the epilogue. Batched calls with
// enough items give each thread whole items instead.
//
// Packing is skipped when it cannot pay for itself: an A block used by only a few B panels, or a
// B block used by only a few A panels (small M or small N: FC layers, conv weight gradients) is
// read in place; the micro-kernels accept both layouts.
#include "cpu/gemm/gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "common/kn.h"
#include "common/ops.h"
#include "cpu/cpu_features.h"
#include "cpu/gemm/microkernel.h"
#include "cpu/gemm/pack.h"
#include "cpu/parallel.h"

namespace kn {
namespace {

using gemm::MicroKernel;
using gemm::TileStore;

const MicroKernel& pick_kernel() {
  const MicroKernel* k = nullptr;
  switch (active_simd()) {
    case Simd::Avx512: k = gemm::microkernel_avx512(); break;
    case Simd::Avx2: k = gemm::microkernel_avx2(); break;
    default: break;
  }
  return k ? *k : *gemm::microkernel_portable();
}

inline i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }
inline i64 round_up(i64 a, i64 b) { return ceil_div(a, b) * b; }

// Block size for n elements with at most `cap` per block, as equal as possible and a multiple of
// `unit`: K = 288 becomes two blocks of 144 rather than 256 + 32 (a thin last block would load and
// store its C tiles for very little work).
i64 balanced_block(i64 n, i64 cap, i64 unit) {
  if (n <= cap) return n;
  return round_up(ceil_div(n, ceil_div(n, cap)), unit);
}

// Up to this many row panels in a block, the B panel loop runs outermost (see gemm_slice).
constexpr i64 kFewRowPanels = 6;
// ... and only while a B panel (kc x NR) fills at most half of the 48 KiB L1, next to the A panel:
// with KC = 384 a 32-wide panel is all of L1 and the order gained nothing (conv2's weight
// gradient 64 x 288 x 18432, best of 4 one-thread A/B runs: 120 vs 115 GFLOP/s).
constexpr i64 kFewRowsPanelFloats = 6144;

// Per-thread packing buffers, kept between calls (OpenMP threads persist) and grown on demand.
struct Workspace {
  float* a = nullptr;
  float* b = nullptr;
  i64 a_cap = 0, b_cap = 0;
  ~Workspace() {
    std::free(a);
    std::free(b);
  }
  static float* grow(float*& p, i64& cap, i64 n) {
    if (n > cap) {
      std::free(p);
      p = static_cast<float*>(std::aligned_alloc(64, (size_t)round_up(n * 4, 64)));
      cap = p ? n : 0;
    }
    return p;
  }
};
thread_local Workspace tls_ws;

// One matrix product (one batch item), in the caller's storage.
struct Problem {
  bool ta, tb;
  i64 M, N, K;
  float alpha;
  const float* A;
  i64 lda;
  const float* B;
  i64 ldb;
  float beta;
  float* C;
  i64 ldc;
  GemmEpilogue ep;
};

// A slice of the iteration space: C rows [m0,m1) x columns [n0,n1), summed over k in [k0,k1).
struct Slice {
  i64 m0, m1, n0, n1, k0, k1;
};

// Compute one slice into c (the element (m0, n0) of the destination, row stride ldc): c = alpha *
// sum + beta * c, then the epilogue if `epilogue`. Returns false if a packing buffer could not be
// allocated.
bool gemm_slice(const MicroKernel& uk, const Problem& p, const Slice& s, float* c, i64 ldc,
                float beta, bool epilogue) {
  const int MR = uk.mr, NR = uk.nr;
  const i64 rows = s.m1 - s.m0, cols = s.n1 - s.n0, depth = s.k1 - s.k0;
  const i64 KC = balanced_block(depth, uk.kc, 8);
  const i64 MC = balanced_block(rows, uk.mc, MR);
  const i64 NC = balanced_block(cols, uk.nc, NR);

  // An A panel is reused once per B panel (jr loop), a B block once per A panel (ir loop); with
  // few reuses the packing copy costs more than the contiguous layout saves. B in place is read
  // with its own row stride, which thrashes L1 sets when that stride is a multiple of 4 KiB and
  // measured slower even for short rows (conv weight gradients, N = 288), so it is left unpacked
  // only when nothing rereads it (a single A panel).
  const bool pack_a = ceil_div(cols, NR) > 4 || p.ta;
  const bool pack_b = p.tb || ceil_div(rows, MR) > 1 || (!uk.reads_b_masked && cols % NR != 0);

  Workspace& ws = tls_ws;
  float* abuf = nullptr;
  float* bbuf = nullptr;
  if (pack_a && !(abuf = Workspace::grow(ws.a, ws.a_cap, round_up(MC, MR) * KC))) return false;
  if (pack_b && !(bbuf = Workspace::grow(ws.b, ws.b_cap, round_up(NC, NR) * KC))) return false;

  const bool bias_col = epilogue && p.ep.bias_mode == BIAS_COL && p.ep.bias;
  const bool bias_row = epilogue && p.ep.bias_mode == BIAS_ROW && p.ep.bias;
  const bool relu = epilogue && p.ep.act == ACT_RELU;

  for (i64 pc = s.k0; pc < s.k1; pc += KC) {
    const i64 kc = std::min(KC, s.k1 - pc);
    const bool first = pc == s.k0, last = pc + kc == s.k1;

    for (i64 ic = s.m0; ic < s.m1; ic += MC) {
      const i64 mc = std::min(MC, s.m1 - ic);
      if (pack_a) gemm::pack_a(p.ta, p.A, p.lda, ic, pc, mc, kc, MR, abuf);

      for (i64 jc = s.n0; jc < s.n1; jc += NC) {
        const i64 nc = std::min(NC, s.n1 - jc);
        // B block: packed panels (panel q at bbuf + q*kc*NR, row stride NR) or B in place.
        const float* bblk;
        i64 rs_b, b_panel;
        if (pack_b) {
          gemm::pack_b(p.tb, p.B, p.ldb, pc, jc, kc, nc, NR, bbuf);
          bblk = bbuf, rs_b = NR, b_panel = kc * NR;
        } else {
          bblk = p.B + pc * p.ldb + jc, rs_b = p.ldb, b_panel = NR;
        }

        // One register tile: rows [ir, ir+MR) x columns [jr, jr+NR) of this block.
        auto tile = [&](i64 ir, i64 jr) {
          const int mr = (int)std::min<i64>(MR, mc - ir);
          const int nr = (int)std::min<i64>(NR, nc - jr);
          // A panel: packed (k-major, stride MR), A^T in place (k-major, stride lda), or A in
          // place (row-major).
          const float* ap;
          i64 rs_a, cs_a;
          if (pack_a)
            ap = abuf + ir * kc, rs_a = 1, cs_a = MR;
          else if (p.ta)
            ap = p.A + pc * p.lda + ic + ir, rs_a = 1, cs_a = p.lda;
          else
            ap = p.A + (ic + ir) * p.lda + pc, rs_a = p.lda, cs_a = 1;
          const i64 gi = ic + ir, gj = jc + jr;  // global row / column of this tile
          TileStore st{p.alpha, first ? beta : 1.f, last && bias_col ? p.ep.bias + gj : nullptr,
                       last && bias_row ? p.ep.bias + gi : nullptr, last && relu, pack_b};
          uk.fn(kc, ap, rs_a, cs_a, bblk + (jr / NR) * b_panel, rs_b,
                c + (gi - s.m0) * ldc + (gj - s.n0), ldc, mr, nr, st);
        };
        if (mc <= kFewRowPanels * MR && kc * NR <= kFewRowsPanelFloats) {
          // Few row panels (small M: a batch of 32-64 rows times a wide weight): each B panel
          // is loaded once into L1 and used by every row panel, instead of the whole B block
          // streaming from L2 once per row panel. The tiles and their sums are the same.
          for (i64 jr = 0; jr < nc; jr += NR)
            for (i64 ir = 0; ir < mc; ir += MR) tile(ir, jr);
        } else {
          for (i64 ir = 0; ir < mc; ir += MR)
            for (i64 jr = 0; jr < nc; jr += NR) tile(ir, jr);
        }
      }
    }
  }
  return true;
}

// C rows [r0, r1): the epilogue on finished values.
void epilogue_rows(const Problem& p, i64 r0, i64 r1) {
  for (i64 i = r0; i < r1; ++i) {
    float* c = p.C + i * p.ldc;
    if (p.ep.bias && p.ep.bias_mode == BIAS_COL)
      for (i64 j = 0; j < p.N; ++j) c[j] += p.ep.bias[j];
    if (p.ep.bias && p.ep.bias_mode == BIAS_ROW)
      for (i64 j = 0; j < p.N; ++j) c[j] += p.ep.bias[i];
    if (p.ep.act == ACT_RELU)
      for (i64 j = 0; j < p.N; ++j) c[j] = c[j] > 0.f ? c[j] : 0.f;
  }
}

// K == 0 or alpha == 0: C = beta * C (+ epilogue); A and B are not read (BLAS semantics).
void scale_only(const Problem& p, int nt) {
  auto body = [&](i64 r0, i64 r1) {
    for (i64 i = r0; i < r1; ++i) {
      float* c = p.C + i * p.ldc;
      for (i64 j = 0; j < p.N; ++j) c[j] = p.beta == 0.f ? 0.f : p.beta * c[j];
    }
    epilogue_rows(p, r0, r1);
  };
  if (nt > 1)
    parallel_for(p.M, std::max<i64>(1, 65536 / std::max<i64>(p.N, 1)), body);
  else
    body(0, p.M);
}

// How nt threads share one product: a tm x tn grid of C slices, each summed over K in tk parts.
struct Split {
  int tm, tn, tk;
};

// Estimated cycles on the slowest thread: its multiply-adds (rounded up to whole register tiles),
// plus reading its operands, plus (K split) writing and adding partial sums.
Split choose_split(const MicroKernel& uk, i64 M, i64 N, i64 K, int nt) {
  const i64 mp = ceil_div(M, uk.mr), np = ceil_div(N, uk.nr);
  Split best{1, 1, 1};
  double best_cost = -1;
  for (int tm = 1; tm <= nt; ++tm) {
    if (nt % tm || tm > mp) continue;
    for (int tn = 1; tn <= nt / tm; ++tn) {
      if ((nt / tm) % tn || tn > np) continue;
      const int tk = nt / tm / tn;
      if (tk > ceil_div(K, 64)) continue;
      const double rows = (double)std::min(M, ceil_div(mp, tm) * uk.mr);
      const double cols = (double)std::min(N, ceil_div(np, tn) * uk.nr);
      const double depth = (double)ceil_div(K, tk);
      double cost = rows * cols * depth / uk.nr + 0.5 * depth * (rows + cols);
      if (tk > 1) cost += 2.0 * (double)M * (double)N;
      if (best_cost < 0 || cost < best_cost) best_cost = cost, best = {tm, tn, tk};
    }
  }
  return best;
}

[[noreturn]] void out_of_memory() { throw ArgError("sgemm: out of memory for packing buffers"); }

// One product on up to nt threads.
void gemm_one(const MicroKernel& uk, const Problem& p, int nt) {
  if (p.M == 0 || p.N == 0) return;
  if (p.K == 0 || p.alpha == 0.f) return scale_only(p, nt);
  const Slice whole{0, p.M, 0, p.N, 0, p.K};
  if (nt <= 1) {
    if (!gemm_slice(uk, p, whole, p.C, p.ldc, p.beta, true)) out_of_memory();
    return;
  }
  const Split sp = choose_split(uk, p.M, p.N, p.K, nt);
  const int tasks = sp.tm * sp.tn * sp.tk;
  const i64 mp = ceil_div(p.M, uk.mr), np = ceil_div(p.N, uk.nr);
  std::vector<float> partial;  // K slices 1.. write here: (tk - 1) dense M x N sums
  if (sp.tk > 1) partial.resize((size_t)((sp.tk - 1) * p.M * p.N));
  std::atomic<bool> failed{false};

  parallel_for(tasks, 1, [&](i64 t0, i64 t1) {
    for (i64 t = t0; t < t1; ++t) {
      const i64 ik = t % sp.tk, in = (t / sp.tk) % sp.tn, im = t / (sp.tk * sp.tn);
      Slice s;
      s.m0 = std::min(p.M, mp * im / sp.tm * uk.mr);
      s.m1 = std::min(p.M, mp * (im + 1) / sp.tm * uk.mr);
      s.n0 = std::min(p.N, np * in / sp.tn * uk.nr);
      s.n1 = std::min(p.N, np * (in + 1) / sp.tn * uk.nr);
      s.k0 = p.K * ik / sp.tk;
      s.k1 = p.K * (ik + 1) / sp.tk;
      if (s.m0 >= s.m1 || s.n0 >= s.n1 || s.k0 >= s.k1) continue;
      bool ok;
      if (ik == 0)
        ok = gemm_slice(uk, p, s, p.C + s.m0 * p.ldc + s.n0, p.ldc, p.beta, sp.tk == 1);
      else
        ok = gemm_slice(uk, p, s, partial.data() + (ik - 1) * p.M * p.N + s.m0 * p.N + s.n0, p.N,
                        0.f, false);
      if (!ok) failed = true;
    }
  });
  if (failed) out_of_memory();

  if (sp.tk > 1) {  // add the partial sums into C, then the epilogue, rows split across threads
    parallel_for(p.M, std::max<i64>(1, 16384 / p.N), [&](i64 r0, i64 r1) {
      for (i64 i = r0; i < r1; ++i) {
        float* c = p.C + i * p.ldc;
        for (int u = 0; u < sp.tk - 1; ++u) {
          const float* q = partial.data() + u * p.M * p.N + i * p.N;
          for (i64 j = 0; j < p.N; ++j) c[j] += q[j];
        }
      }
      epilogue_rows(p, r0, r1);
    });
  }
}

}  // namespace

PackedB::PackedB(bool tb, const float* B, i64 ldb, i64 K, i64 N)
    : uk_(&pick_kernel()), K_(K), N_(N), data_(nullptr) {
  const int NR = uk_->nr;
  kc_ = balanced_block(std::max<i64>(K, 1), uk_->kc, 8);
  panels_ = ceil_div(N, NR);
  const i64 n = std::max<i64>(std::max<i64>(K, 1) * panels_ * NR, 16);  // never a 0-byte request
  data_ = static_cast<float*>(std::aligned_alloc(64, (size_t)round_up(n * 4, 64)));
  if (!data_) out_of_memory();
  // block pc holds the rows [pc, pc + kc) of every panel: its panels start at pc * panels * NR
  for (i64 pc = 0; pc < K; pc += kc_)
    gemm::pack_b(tb, B, ldb, pc, 0, std::min(kc_, K - pc), N, NR, data_ + pc * panels_ * NR);
}

PackedB::~PackedB() { std::free(data_); }

void PackedB::multiply(i64 M, const float* A, i64 lda, float beta, float* C, i64 ldc,
                       const float* bias) const {
  if (M <= 0 || N_ <= 0) return;
  const MicroKernel& uk = *uk_;
  const int MR = uk.mr, NR = uk.nr;
  if (K_ == 0) {
    Problem p{false, false, M, N_, 0, 1.f, A, lda, nullptr, 0, beta, C, ldc,
              GemmEpilogue{bias, bias ? BIAS_COL : BIAS_NONE, ACT_NONE}};
    return scale_only(p, 1);
  }
  // Row blocks of a few panels, B panels outer (as gemm_slice with few row panels): each B panel
  // is loaded into L1 once per row block and used by all its row panels. A is packed only when
  // enough B panels reuse it, as in gemm_slice (an RNN's backward step, dgates @ W_hh with N = H,
  // spent 5 % of its time packing A for 4 panels).
  const i64 rows_per_block = kFewRowPanels * MR;
  const bool pack = panels_ > 4;
  float* abuf = nullptr;
  if (pack && !(abuf = Workspace::grow(tls_ws.a, tls_ws.a_cap, round_up(std::min(M, rows_per_block), MR) * kc_)))
    out_of_memory();
  for (i64 i0 = 0; i0 < M; i0 += rows_per_block) {
    const i64 mc = std::min(rows_per_block, M - i0);
    for (i64 pc = 0; pc < K_; pc += kc_) {
      const i64 kc = std::min(kc_, K_ - pc);
      const bool first = pc == 0, last = pc + kc == K_;
      if (pack) gemm::pack_a(false, A, lda, i0, pc, mc, kc, MR, abuf);
      const float* bblk = data_ + pc * panels_ * NR;
      for (i64 jr = 0; jr < N_; jr += NR) {
        const int nr = (int)std::min<i64>(NR, N_ - jr);
        const TileStore st{1.f, first ? beta : 1.f, last && bias ? bias + jr : nullptr, nullptr, false,
                           /*b_padded=*/true};
        for (i64 ir = 0; ir < mc; ir += MR) {
          const int mr = (int)std::min<i64>(MR, mc - ir);
          // A panel: packed (k-major, stride MR) or in place (row-major)
          const float* ap = pack ? abuf + ir * kc : A + (i0 + ir) * lda + pc;
          uk.fn(kc, ap, pack ? 1 : lda, pack ? MR : 1, bblk + (jr / NR) * kc * NR, NR, C + (i0 + ir) * ldc + jr, ldc,
                mr, nr, st);
        }
      }
    }
  }
}

void sgemm(i64 batch, bool ta, bool tb, i64 M, i64 N, i64 K, float alpha, const float* A, i64 lda,
           i64 sa, const float* B, i64 ldb, i64 sb, float beta, float* C, i64 ldc, i64 sc,
           const GemmEpilogue& ep) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  const MicroKernel& uk = pick_kernel();
  int nt = available_threads();
  // Below ~0.5 MFLOP a thread wake-up costs more than the split saves.
  if (M * N * std::max<i64>(K, 1) < 256 * 1024) nt = 1;

  auto item = [&](i64 b, int threads) {
    Problem p{ta, tb, M, N, K, alpha, A + b * sa, lda, B + b * sb, ldb, beta, C + b * sc, ldc, ep};
    gemm_one(uk, p, threads);
  };
  // Whole items per thread when there are enough of them to balance; otherwise items one after
  // another, each split across the threads. stride_c == 0 (every item accumulates into the same
  // C) must run in order.
  const bool per_item = nt > 1 && batch > 1 && sc != 0 && (batch % nt == 0 || batch >= 4 * nt);
  if (per_item) {
    std::atomic<bool> failed{false};
    parallel_for(batch, 1, [&](i64 b0, i64 b1) {
      for (i64 b = b0; b < b1; ++b) {
        try {
          item(b, 1);
        } catch (...) {
          failed = true;
        }
      }
    });
    if (failed) out_of_memory();
  } else {
    for (i64 b = 0; b < batch; ++b) item(b, nt);
  }
}

}  // namespace kn

KN_BIND(gemm) {
  m.def(
      "sgemm",
      [](kn::i64 batch, bool ta, bool tb, kn::i64 M, kn::i64 N, kn::i64 K, float alpha, kn::uptr A,
         kn::i64 lda, kn::i64 sa, kn::uptr B, kn::i64 ldb, kn::i64 sb, float beta, kn::uptr C,
         kn::i64 ldc, kn::i64 sc, kn::uptr bias, int bias_mode, int act) {
        KN_CHECK(batch >= 0 && M >= 0 && N >= 0 && K >= 0, "sgemm: negative size (batch=", batch,
                 ", M=", M, ", N=", N, ", K=", K, ")");
        KN_CHECK(bias_mode >= kn::BIAS_NONE && bias_mode <= kn::BIAS_ROW,
                 "sgemm: unknown bias_mode ", bias_mode);
        KN_CHECK(act == kn::ACT_NONE || act == kn::ACT_RELU, "sgemm: unknown activation ", act);
        if (batch == 0 || M == 0 || N == 0) return;
        KN_CHECK(C != 0, "sgemm: C is a null pointer");
        KN_CHECK(ldc >= N, "sgemm: ldc=", ldc, " < N=", N);
        KN_CHECK(bias_mode == kn::BIAS_NONE || bias != 0, "sgemm: bias_mode ", bias_mode,
                 " needs a bias pointer");
        if (K > 0) {
          KN_CHECK(A != 0 && B != 0, "sgemm: A or B is a null pointer");
          KN_CHECK(lda >= (ta ? M : K), "sgemm: lda=", lda, " too small for ",
                   ta ? "A^T stored K x M" : "A stored M x K", " (M=", M, ", K=", K, ")");
          KN_CHECK(ldb >= (tb ? K : N), "sgemm: ldb=", ldb, " too small for ",
                   tb ? "B^T stored N x K" : "B stored K x N", " (K=", K, ", N=", N, ")");
        }
        kn::GemmEpilogue ep{kn::ptr<const float>(bias), bias_mode, act};
        kn::sgemm(batch, ta, tb, M, N, K, alpha, kn::ptr<const float>(A), lda, sa,
                  kn::ptr<const float>(B), ldb, sb, beta, kn::ptr<float>(C), ldc, sc, ep);
      },
      KN_NOGIL);
}
