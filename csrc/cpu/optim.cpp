// Fused optimizer steps: one native call updates every parameter of a param group.
//
// Why fused: a Python loop over parameters costs several tensor ops (and allocations) per
// parameter per step; here each element is read and written once, and the whole group is split
// across threads as one flat index space (small tensors do not each pay a thread wake-up).
//
// Arithmetic follows PyTorch's single-tensor CPU implementations (torch/optim/*.py) operation
// by operation, in float32, with the per-step scalars (bias corrections, step sizes) computed in
// double as Python does, so trajectories agree with PyTorch to float32 rounding.
//
// Every function takes lists of pointers (Python ints) of equal length, one entry per parameter,
// plus `sizes` (elements per parameter). Gradients are read-only: weight decay and `maximize`
// change a local copy, as PyTorch's `grad.add(param, alpha=wd)` does. Optional state lists may
// be empty when the option that needs them is off. Signatures: docs/KERNEL_CONTRACT.md,
// "Optimizer kernels".
#include <algorithm>
#include <cmath>

#include "common/kn.h"
#include "common/optim_args.h"
#include "cpu/parallel.h"

namespace kn {
namespace {


// Run f(tensor_index, begin, end) over every element of every tensor, the concatenation split
// into contiguous chunks across threads.
template <typename F>
void for_segments(const SizeList& sizes, F&& f) {
  const size_t n = sizes.size();
  std::vector<i64> off(n + 1, 0);
  for (size_t i = 0; i < n; ++i) off[i + 1] = off[i] + sizes[i];
  parallel_for(off[n], 1 << 15, [&](i64 b, i64 e) {
    size_t t = size_t(std::upper_bound(off.begin(), off.end(), b) - off.begin()) - 1;
    while (b < e && t < n) {
      i64 se = std::min(e, off[t + 1]);
      if (se > b) f(t, b - off[t], se - off[t]);
      b = se;
      ++t;
    }
  });
}

// grad as PyTorch's update sees it: maybe negated (maximize), plus L2 weight decay.
inline float eff_grad(float g, float p, bool maximize, float wd) {
  if (maximize) g = -g;
  if (wd != 0.0f) g = g + wd * p;
  return g;
}

// ------------------------------------------------------------------------------------- SGD
void sgd_step(const PtrList& params, const PtrList& grads, const PtrList& bufs,
              const std::vector<bool>& buf_init, const SizeList& sizes, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize) {
  check_lists("sgd_step", sizes, {{"params", &params}, {"grads", &grads}},
              {{"momentum_buffers", &bufs}});
  const bool use_mom = momentum != 0.0;
  KN_CHECK(!use_mom || (bufs.size() == sizes.size() && buf_init.size() == sizes.size()),
           "sgd_step: momentum != 0 needs one momentum buffer and one init flag per parameter");
  const float wd = float(weight_decay), mom = float(momentum), damp1 = float(1.0 - dampening),
              neg_lr = float(-lr);
  for_segments(sizes, [&](size_t t, i64 b, i64 e) {
    float* p = ptr<float>(params[t]);
    const float* g = ptr<const float>(grads[t]);
    float* buf = use_mom ? ptr<float>(bufs[t]) : nullptr;
    const bool init = use_mom && buf_init[t];
    for (i64 i = b; i < e; ++i) {
      float d = eff_grad(g[i], p[i], maximize, wd);
      if (use_mom) {
        // First step: buf = grad (PyTorch clones it, no dampening); later buf = m*buf + (1-d)*g.
        float bv = init ? d : buf[i] * mom + d * damp1;
        buf[i] = bv;
        d = nesterov ? d + bv * mom : bv;
      }
      p[i] = p[i] + d * neg_lr;
    }
  });
}

// ----------------------------------------------------------------------------- Adam / AdamW
void adam_step(const PtrList& params, const PtrList& grads, const PtrList& exp_avgs,
               const PtrList& exp_avg_sqs, const PtrList& max_exp_avg_sqs, const SizeList& sizes,
               const std::vector<double>& steps, double lr, double beta1, double beta2, double eps,
               double weight_decay, bool decoupled, bool amsgrad, bool maximize) {
  // Per-tensor scalars, in double like PyTorch's Python-side arithmetic.
  const AdamScalars sc = adam_scalars("adam_step", params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, sizes,
                                      steps, lr, beta1, beta2, amsgrad);
  const std::vector<float>& neg_step_size = sc.neg_step_size;
  const std::vector<float>& bc2_sqrt = sc.bc2_sqrt;
  const float b1w = float(1.0 - beta1), b2 = float(beta2), b2w = float(1.0 - beta2),
              feps = float(eps);
  const float l2 = decoupled ? 0.0f : float(weight_decay);
  const float decay = decoupled ? float(1.0 - lr * weight_decay) : 1.0f;
  for_segments(sizes, [&](size_t t, i64 b, i64 e) {
    float* p = ptr<float>(params[t]);
    const float* g = ptr<const float>(grads[t]);
    float* m = ptr<float>(exp_avgs[t]);
    float* v = ptr<float>(exp_avg_sqs[t]);
    float* vmax = amsgrad ? ptr<float>(max_exp_avg_sqs[t]) : nullptr;
    const float nss = neg_step_size[t], bcs = bc2_sqrt[t];
    for (i64 i = b; i < e; ++i) {
      float pv = p[i];
      if (decoupled) pv = pv * decay;  // AdamW: param.mul_(1 - lr*wd) before the moments
      float gv = eff_grad(g[i], pv, maximize, l2);
      float mv = m[i] + b1w * (gv - m[i]);  // lerp_(grad, 1-beta1)
      float vv = v[i] * b2 + b2w * gv * gv;
      m[i] = mv;
      v[i] = vv;
      if (amsgrad) {
        vv = std::max(vmax[i], vv);
        vmax[i] = vv;
      }
      float denom = std::sqrt(vv) / bcs + feps;
      p[i] = pv + nss * (mv / denom);
    }
  });
}

// ---------------------------------------------------------------------------------- RMSprop
void rmsprop_step(const PtrList& params, const PtrList& grads, const PtrList& square_avgs,
                  const PtrList& grad_avgs, const PtrList& momentum_buffers, const SizeList& sizes,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize) {
  check_lists("rmsprop_step", sizes,
              {{"params", &params}, {"grads", &grads}, {"square_avgs", &square_avgs}},
              {{"grad_avgs", &grad_avgs}, {"momentum_buffers", &momentum_buffers}});
  KN_CHECK(!centered || grad_avgs.size() == sizes.size(), "rmsprop_step: centered needs grad_avgs");
  KN_CHECK(momentum <= 0 || momentum_buffers.size() == sizes.size(),
           "rmsprop_step: momentum > 0 needs momentum_buffers");
  const float a = float(alpha), aw = float(1.0 - alpha), feps = float(eps), wd = float(weight_decay),
              mom = float(momentum), neg_lr = float(-lr);
  const bool use_mom = momentum > 0;
  for_segments(sizes, [&](size_t t, i64 b, i64 e) {
    float* p = ptr<float>(params[t]);
    const float* g = ptr<const float>(grads[t]);
    float* sq = ptr<float>(square_avgs[t]);
    float* ga = centered ? ptr<float>(grad_avgs[t]) : nullptr;
    float* buf = use_mom ? ptr<float>(momentum_buffers[t]) : nullptr;
    for (i64 i = b; i < e; ++i) {
      float gv = eff_grad(g[i], p[i], maximize, wd);
      float s = sq[i] * a + aw * gv * gv;
      sq[i] = s;
      float avg;
      if (centered) {
        float gav = ga[i] + aw * (gv - ga[i]);
        ga[i] = gav;
        avg = std::sqrt(s + -1.0f * gav * gav);
      } else {
        avg = std::sqrt(s);
      }
      avg = avg + feps;
      if (use_mom) {
        float bv = buf[i] * mom + gv / avg;
        buf[i] = bv;
        p[i] = p[i] + neg_lr * bv;
      } else {
        p[i] = p[i] + neg_lr * (gv / avg);
      }
    }
  });
}

// ---------------------------------------------------------------------------------- Adagrad
void adagrad_step(const PtrList& params, const PtrList& grads, const PtrList& state_sums,
                  const SizeList& sizes, const std::vector<double>& steps, double lr,
                  double lr_decay, double weight_decay, double eps, bool maximize) {
  check_lists("adagrad_step", sizes,
              {{"params", &params}, {"grads", &grads}, {"state_sums", &state_sums}}, {});
  KN_CHECK(steps.size() == sizes.size(), "adagrad_step: steps has ", steps.size(),
           " entries but sizes has ", sizes.size());
  std::vector<float> neg_clr(sizes.size());
  for (size_t t = 0; t < sizes.size(); ++t) neg_clr[t] = float(-(lr / (1 + (steps[t] - 1) * lr_decay)));
  const float wd = float(weight_decay), feps = float(eps);
  for_segments(sizes, [&](size_t t, i64 b, i64 e) {
    float* p = ptr<float>(params[t]);
    const float* g = ptr<const float>(grads[t]);
    float* ss = ptr<float>(state_sums[t]);
    const float c = neg_clr[t];
    for (i64 i = b; i < e; ++i) {
      float gv = eff_grad(g[i], p[i], maximize, wd);
      float s = ss[i] + gv * gv;
      ss[i] = s;
      p[i] = p[i] + c * (gv / (std::sqrt(s) + feps));
    }
  });
}

// --------------------------------------------------------------------------------- Adadelta
void adadelta_step(const PtrList& params, const PtrList& grads, const PtrList& square_avgs,
                   const PtrList& acc_deltas, const SizeList& sizes, double lr, double rho,
                   double eps, double weight_decay, bool maximize) {
  check_lists("adadelta_step", sizes,
              {{"params", &params}, {"grads", &grads}, {"square_avgs", &square_avgs},
               {"acc_deltas", &acc_deltas}},
              {});
  const float r = float(rho), rw = float(1.0 - rho), feps = float(eps), wd = float(weight_decay),
              neg_lr = float(-lr);
  for_segments(sizes, [&](size_t t, i64 b, i64 e) {
    float* p = ptr<float>(params[t]);
    const float* g = ptr<const float>(grads[t]);
    float* sq = ptr<float>(square_avgs[t]);
    float* ad = ptr<float>(acc_deltas[t]);
    for (i64 i = b; i < e; ++i) {
      float gv = eff_grad(g[i], p[i], maximize, wd);
      float s = sq[i] * r + rw * gv * gv;
      sq[i] = s;
      float std_ = std::sqrt(s + feps);
      float delta = std::sqrt(ad[i] + feps) / std_ * gv;
      ad[i] = ad[i] * r + rw * delta * delta;
      p[i] = p[i] + neg_lr * delta;
    }
  });
}

}  // namespace

KN_BIND(optim) {
  namespace py = pybind11;
  using namespace py::literals;
  m.def("sgd_step", &sgd_step, "params"_a, "grads"_a, "momentum_buffers"_a, "buf_init"_a, "sizes"_a,
        "lr"_a, "momentum"_a, "dampening"_a, "weight_decay"_a, "nesterov"_a, "maximize"_a, KN_NOGIL);
  m.def("adam_step", &adam_step, "params"_a, "grads"_a, "exp_avgs"_a, "exp_avg_sqs"_a,
        "max_exp_avg_sqs"_a, "sizes"_a, "steps"_a, "lr"_a, "beta1"_a, "beta2"_a, "eps"_a,
        "weight_decay"_a, "decoupled"_a, "amsgrad"_a, "maximize"_a, KN_NOGIL);
  m.def("rmsprop_step", &rmsprop_step, "params"_a, "grads"_a, "square_avgs"_a, "grad_avgs"_a,
        "momentum_buffers"_a, "sizes"_a, "lr"_a, "alpha"_a, "eps"_a, "weight_decay"_a, "momentum"_a,
        "centered"_a, "maximize"_a, KN_NOGIL);
  m.def("adagrad_step", &adagrad_step, "params"_a, "grads"_a, "state_sums"_a, "sizes"_a, "steps"_a,
        "lr"_a, "lr_decay"_a, "weight_decay"_a, "eps"_a, "maximize"_a, KN_NOGIL);
  m.def("adadelta_step", &adadelta_step, "params"_a, "grads"_a, "square_avgs"_a, "acc_deltas"_a,
        "sizes"_a, "lr"_a, "rho"_a, "eps"_a, "weight_decay"_a, "maximize"_a, KN_NOGIL);
}

}  // namespace kn
