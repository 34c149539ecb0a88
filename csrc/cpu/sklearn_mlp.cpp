// Fused kernels for kernelnet.sklearn's MLP training loop (scikit-learn semantics).
//
// The MLP's GEMMs go through sgemm; what is left per mini-batch is fused here so one batch costs
// a handful of native calls instead of dozens of elementwise ones:
//   sk_act_forward    hidden activation in place (identity, logistic, tanh, relu)
//   sk_act_backward   delta *= f'(.) written in terms of the activation's output, as sklearn does
//   sk_output_loss    output activation in place + the batch's data loss + delta = (out - y) * sw
//   sk_adam_step      sklearn's Adam on the flat parameter vector, L2 folded into the gradient,
//   sk_sgd_step       sklearn's SGD (momentum, Nesterov) likewise;
//                     both also return ||W||^2 of the pre-update weights (the loss's L2 term).
// Codes: act 0 identity, 1 logistic, 2 tanh, 3 relu; output kind 0 identity/squared error,
// 1 logistic/binary log-loss, 2 softmax/log-loss, 3 exp/Poisson deviance.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/kn.h"
#include "cpu/parallel.h"

namespace kn {
namespace {

enum SkAct : int { SK_IDENTITY = 0, SK_LOGISTIC = 1, SK_TANH = 2, SK_RELU = 3 };
enum SkOut : int { SK_OUT_SQUARED = 0, SK_OUT_LOGISTIC = 1, SK_OUT_SOFTMAX = 2, SK_OUT_POISSON = 3 };

constexpr i64 kGrain = 1 << 14;

void act_forward(int act, uptr z_, i64 n) {
  KN_CHECK(n >= 0, "sk_act_forward: negative size");
  KN_CHECK(act >= 0 && act <= 3, "sk_act_forward: unknown activation code ", act);
  float* z = ptr<float>(z_);
  if (act == SK_IDENTITY) return;
  parallel_for(n, kGrain, [&](i64 b, i64 e) {
    switch (act) {
      case SK_LOGISTIC:
        for (i64 i = b; i < e; ++i) z[i] = 1.f / (1.f + std::exp(-z[i]));
        break;
      case SK_TANH:
        for (i64 i = b; i < e; ++i) z[i] = std::tanh(z[i]);
        break;
      case SK_RELU:
        for (i64 i = b; i < e; ++i) z[i] = z[i] > 0.f ? z[i] : 0.f;
        break;
    }
  });
}

void act_backward(int act, uptr z_, uptr d_, i64 n) {
  KN_CHECK(n >= 0, "sk_act_backward: negative size");
  KN_CHECK(act >= 0 && act <= 3, "sk_act_backward: unknown activation code ", act);
  const float* z = ptr<const float>(z_);
  float* d = ptr<float>(d_);
  if (act == SK_IDENTITY) return;
  parallel_for(n, kGrain, [&](i64 b, i64 e) {
    switch (act) {
      case SK_LOGISTIC:
        for (i64 i = b; i < e; ++i) d[i] *= z[i] * (1.f - z[i]);
        break;
      case SK_TANH:
        for (i64 i = b; i < e; ++i) d[i] *= 1.f - z[i] * z[i];
        break;
      case SK_RELU:  // sklearn: delta[Z == 0] = 0
        for (i64 i = b; i < e; ++i) d[i] = z[i] == 0.f ? 0.f : d[i];
        break;
    }
  });
}

// Sum of per-row values computed by row_fn(r) over [0, rows), deterministic for a given thread
// count: each thread sums its contiguous block in double, blocks are added in order.
template <typename F>
double row_sum(i64 rows, i64 grain, F&& row_fn) {
  std::vector<double> part(std::max(1, num_threads()) + 1, 0.0);
  // parallel_for hands thread t the t-th contiguous block, so summing part[] in order is stable.
  parallel_for(rows, grain, [&](i64 b, i64 e) {
    double s = 0.0;
    for (i64 r = b; r < e; ++r) s += row_fn(r);
    int t = 0;
#ifdef KN_HAVE_OPENMP
    t = omp_in_parallel() ? omp_get_thread_num() : 0;
#endif
    part[t] = s;
  });
  double total = 0.0;
  for (double p : part) total += p;
  return total;
}

// Output activation + loss + delta for rows x cols logits z (in place -> activations).
// y (targets, rows x cols) may be 0: then only the activation is applied (prediction).
// sw (per-row sample weights) may be 0 (all ones). delta may alias nothing; it gets (out-y)*sw.
// loss_out[0] <- sum over rows of sw_r * loss_r where the batch loss is loss_out / sum(sw),
// loss_r being sklearn's per-row term (squared: sum_c (y-p)^2 / (2 cols); log-losses: -sum_c
// y log p (+ (1-y) log(1-p) for logistic), probabilities clipped to [eps, 1-eps]; Poisson:
// sum_c y log(y/p) - y + p).
void output_loss(int kind, uptr z_, uptr y_, uptr sw_, uptr d_, i64 rows, i64 cols, double eps,
                 uptr loss_out) {
  KN_CHECK(rows >= 0 && cols > 0, "sk_output_loss: bad shape ", rows, "x", cols);
  KN_CHECK(kind >= 0 && kind <= 3, "sk_output_loss: unknown output kind ", kind);
  float* z = ptr<float>(z_);
  const float* y = ptr<const float>(y_);
  const float* sw = ptr<const float>(sw_);
  float* d = ptr<float>(d_);
  const double log_eps = std::log(eps), log_1m_eps = std::log1p(-eps);
  auto clip_log = [&](double lp) { return std::min(std::max(lp, log_eps), log_1m_eps); };
  double total = row_sum(rows, 1 + kGrain / cols, [&](i64 r) -> double {
    float* zr = z + r * cols;
    const float* yr = y ? y + r * cols : nullptr;
    double loss = 0.0;
    switch (kind) {
      case SK_OUT_SQUARED:
        if (yr)
          for (i64 c = 0; c < cols; ++c) {
            double diff = (double)zr[c] - yr[c];
            loss += diff * diff;
          }
        loss /= 2.0 * cols;
        break;
      case SK_OUT_POISSON:
        for (i64 c = 0; c < cols; ++c) {
          double p = std::exp((double)zr[c]);
          if (yr) loss += (yr[c] > 0 ? yr[c] * std::log(yr[c] / p) : 0.0) - yr[c] + p;
          zr[c] = (float)p;
        }
        break;
      case SK_OUT_LOGISTIC:
        for (i64 c = 0; c < cols; ++c) {
          double x = zr[c];
          // log p = -softplus(-x), log(1-p) = -softplus(x): no log(0) for large |x|
          double sp_neg = x < 0 ? -x + std::log1p(std::exp(x)) : std::log1p(std::exp(-x));
          double sp_pos = sp_neg + x;
          if (yr) loss -= yr[c] * clip_log(-sp_neg) + (1.0 - yr[c]) * clip_log(-sp_pos);
          zr[c] = (float)(1.0 / (1.0 + std::exp(-x)));
        }
        break;
      case SK_OUT_SOFTMAX: {
        float m = zr[0];
        for (i64 c = 1; c < cols; ++c) m = std::max(m, zr[c]);
        double s = 0.0;
        for (i64 c = 0; c < cols; ++c) s += std::exp((double)zr[c] - m);
        double lse = std::log(s);
        for (i64 c = 0; c < cols; ++c) {
          double lp = (double)zr[c] - m - lse;
          if (yr && yr[c] != 0.f) loss -= yr[c] * clip_log(lp);
          zr[c] = (float)std::exp(lp);
        }
        break;
      }
    }
    if (kind == SK_OUT_SQUARED && !yr) return 0.0;
    const float w = sw ? sw[r] : 1.f;
    if (yr && d) {
      float* dr = d + r * cols;
      for (i64 c = 0; c < cols; ++c) dr[c] = (zr[c] - yr[c]) * w;
    }
    return loss * w;
  });
  if (loss_out) *ptr<float>(loss_out) = (float)total;
}

// The effective gradient of parameter i: g*gscale, plus l2*p on the first n_decay entries (the
// coefficient matrices; intercepts are not penalised), exactly sklearn's (A^T delta + alpha W)/n.
// sq_out[0] <- sum of p^2 over the first n_decay entries, before the update.
void adam_step(uptr p_, uptr g_, uptr m_, uptr v_, i64 n, i64 n_decay, double gscale, double l2,
               double lr, double b1, double b2, double eps, uptr sq_out) {
  KN_CHECK(n >= 0 && n_decay >= 0 && n_decay <= n, "sk_adam_step: bad sizes n=", n, " n_decay=", n_decay);
  float* p = ptr<float>(p_);
  const float* g = ptr<const float>(g_);
  float* m = ptr<float>(m_);
  float* v = ptr<float>(v_);
  const float gs = (float)gscale, wd = (float)l2, fb1 = (float)b1, fb2 = (float)b2;
  const float c1 = (float)(1.0 - b1), c2 = (float)(1.0 - b2), flr = (float)lr, feps = (float)eps;
  double sq = row_sum((n + 1023) / 1024, 16, [&](i64 blk) -> double {
    i64 b = blk * 1024, e = std::min(n, b + 1024);
    float acc = 0.f;
    for (i64 i = b; i < e; ++i) {
      float pi = p[i];
      float gi = g[i] * gs;
      if (i < n_decay) {
        gi += wd * pi;
        acc += pi * pi;
      }
      float mi = fb1 * m[i] + c1 * gi;
      float vi = fb2 * v[i] + c2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = pi - flr * mi / (std::sqrt(vi) + feps);
    }
    return acc;
  });
  if (sq_out) *ptr<float>(sq_out) = (float)sq;
}

void sgd_step(uptr p_, uptr g_, uptr vel_, i64 n, i64 n_decay, double gscale, double l2, double lr,
              double momentum, bool nesterov, uptr sq_out) {
  KN_CHECK(n >= 0 && n_decay >= 0 && n_decay <= n, "sk_sgd_step: bad sizes n=", n, " n_decay=", n_decay);
  float* p = ptr<float>(p_);
  const float* g = ptr<const float>(g_);
  float* vel = ptr<float>(vel_);
  const float gs = (float)gscale, wd = (float)l2, mu = (float)momentum, flr = (float)lr;
  double sq = row_sum((n + 1023) / 1024, 16, [&](i64 blk) -> double {
    i64 b = blk * 1024, e = std::min(n, b + 1024);
    float acc = 0.f;
    for (i64 i = b; i < e; ++i) {
      float pi = p[i];
      float gi = g[i] * gs;
      if (i < n_decay) {
        gi += wd * pi;
        acc += pi * pi;
      }
      float vi = mu * vel[i] - flr * gi;  // sklearn: velocity = momentum * velocity - lr * grad
      vel[i] = vi;
      p[i] = pi + (nesterov ? mu * vi - flr * gi : vi);
    }
    return acc;
  });
  if (sq_out) *ptr<float>(sq_out) = (float)sq;
}

}  // namespace
}  // namespace kn

KN_BIND(sklearn_mlp) {
  using namespace kn;
  m.def("sk_act_forward", &act_forward, KN_NOGIL);
  m.def("sk_act_backward", &act_backward, KN_NOGIL);
  m.def("sk_output_loss", &output_loss, KN_NOGIL);
  m.def("sk_adam_step", &adam_step, KN_NOGIL);
  m.def("sk_sgd_step", &sgd_step, KN_NOGIL);
}
