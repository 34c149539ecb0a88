// One epoch of Rosenblatt's perceptron for kernelnet.sklearn.Perceptron, all one-vs-rest classes
// at once, with scikit-learn's SGD semantics (loss "perceptron" = hinge at threshold 0, constant
// learning rate eta0):
//   p = w_k . x + b_k;  if y_k * p <= 0:  w_k += eta * y_k * x (times class/sample weight), b_k too
// which is the course's  w += eta * (y - yhat) * x  with labels in {-1, +1} (up to a factor 2).
// Penalties as sklearn's _plain_sgd: L2 shrinks w by (1 - (1 - l1_ratio) * eta * alpha) before each
// step; L1 / elastic net applies the cumulative truncated-gradient penalty (Tsuruoka et al.) after it.
// Classes are independent problems, so threads own disjoint sets of classes and walk the samples
// in the same order; no synchronisation inside the epoch.
#include <algorithm>
#include <cmath>

#include "common/kn.h"
#include "cpu/parallel.h"

namespace kn {
namespace {

// X: n x d row-major floats. Y: n x K in {-1, +1}. order: the n_order sample indices of this
// epoch. sw: per-sample weights or 0. cw_pos/cw_neg: per-class weight for y=+1 / y=-1.
// W: K x d, b: K, active: K bytes (0 = class already converged, skipped).
// decay: L2 factor per sample (1 = none). l1_step: l1_ratio*eta*alpha per sample (0 = none),
// u0: the cumulative L1 penalty before this epoch, q: K x d cumulative applied penalty.
// loss_out: K floats <- sum over the epoch of max(0, -y p) per class.
// intercept_decay: scale of the intercept's updates (scikit-learn: 0.01 for sparse input, else 1).
void perceptron_epoch(uptr X_, i64 n, i64 d, uptr Y_, uptr order_, i64 n_order, uptr sw_,
                      uptr cw_pos_, uptr cw_neg_, uptr W_, uptr b_, uptr active_, i64 K, double eta,
                      double decay, double l1_step, double u0, uptr q_, bool fit_intercept,
                      uptr loss_out_, double intercept_decay) {
  KN_CHECK(n >= 0 && d >= 0 && K > 0 && n_order >= 0, "sk_perceptron_epoch: bad sizes n=", n,
           " d=", d, " K=", K, " n_order=", n_order);
  KN_CHECK(l1_step == 0.0 || q_ != 0, "sk_perceptron_epoch: L1 penalty needs the q buffer");
  const float* X = ptr<const float>(X_);
  const float* Y = ptr<const float>(Y_);
  const i64* order = ptr<const i64>(order_);
  const float* sw = ptr<const float>(sw_);
  const float* cwp = ptr<const float>(cw_pos_);
  const float* cwn = ptr<const float>(cw_neg_);
  float* W = ptr<float>(W_);
  float* B = ptr<float>(b_);
  const std::uint8_t* active = ptr<const std::uint8_t>(active_);
  float* q = ptr<float>(q_);
  float* loss_out = ptr<float>(loss_out_);
  for (i64 j = 0; j < n_order; ++j)
    KN_CHECK(order[j] >= 0 && order[j] < n, "sk_perceptron_epoch: sample index ", order[j],
             " out of range for ", n, " samples");
  const float fdecay = (float)decay;
  // One class per task: K is small (10 for digits), each task is a full pass over the data.
  parallel_for(K, (n_order * d > (1 << 15)) ? 1 : K, [&](i64 k0, i64 k1) {
    for (i64 k = k0; k < k1; ++k) {
      if (!active[k]) {
        loss_out[k] = 0.f;
        continue;
      }
      float* w = W + k * d;
      float* qk = q ? q + k * d : nullptr;
      float bk = B[k];
      double loss = 0.0;
      double u = u0;
      for (i64 j = 0; j < n_order; ++j) {
        const i64 i = order[j];
        const float* x = X + i * d;
        float p = bk;
        for (i64 f = 0; f < d; ++f) p += w[f] * x[f];
        const float y = Y[i * K + k];
        const float z = p * y;
        if (z <= 0.f) loss -= z;
        if (fdecay != 1.f)
          for (i64 f = 0; f < d; ++f) w[f] *= fdecay;
        if (z <= 0.f) {
          float upd = (float)eta * y * (y > 0 ? cwp[k] : cwn[k]) * (sw ? sw[i] : 1.f);
          if (upd != 0.f) {
            for (i64 f = 0; f < d; ++f) w[f] += upd * x[f];
            if (fit_intercept) bk += upd * (float)intercept_decay;
          }
        }
        if (l1_step != 0.0) {
          u += l1_step;
          const float fu = (float)u;
          for (i64 f = 0; f < d; ++f) {
            float z0 = w[f];
            if (z0 > 0.f) w[f] = std::max(0.f, z0 - (fu + qk[f]));
            else if (z0 < 0.f) w[f] = std::min(0.f, z0 + (fu - qk[f]));
            qk[f] += w[f] - z0;
          }
        }
      }
      B[k] = bk;
      loss_out[k] = (float)loss;
    }
  });
}

}  // namespace
}  // namespace kn

KN_BIND(sklearn_perceptron) { m.def("sk_perceptron_epoch", &kn::perceptron_epoch, KN_NOGIL); }
