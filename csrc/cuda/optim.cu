// Fused multi-tensor optimizer steps on the GPU: the CUDA twins of csrc/cpu/optim.cpp (same names,
// same arguments; see docs/KERNEL_CONTRACT.md "Optimizer kernels"):
//   sgd_step, adam_step (Adam and AdamW), rmsprop_step, adagrad_step, adadelta_step
//
// Why multi-tensor: a model has many small parameters (the course CNN: 8 tensors, most under
// 10K elements). One kernel per parameter per step is launch-bound (~5 us each); here the pointer
// lists travel in the kernel's argument block (a TensorList, < 4 KiB: no device buffer, no copy,
// and the launch can be captured into a CUDA graph), and one launch updates up to kMaxTensors
// tensors. Each block owns one chunk of kChunk elements of one tensor; block -> (tensor, chunk)
// comes from a prefix table of chunk counts, searched once per block.
//
// The elementwise math is the CPU file's, operation by operation, in float32; per-tensor scalars
// (bias corrections, step sizes) are computed on the host in double exactly as the CPU does.
// nvcc may fuse a*b+c into one FMA where the CPU rounds twice, so the two backends agree to float
// rounding, not bit for bit.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/kn.h"
#include "common/optim_args.h"
#include "cuda/layer_common.cuh"

namespace kn {
namespace optim_cuda {


constexpr int kMaxTensors = 40;
constexpr int kThreads = 256;
constexpr i64 kChunk = kThreads * 16;  // elements per block

struct TensorList {
  int n;
  float* p[kMaxTensors];
  const float* g[kMaxTensors];
  float* s1[kMaxTensors];
  float* s2[kMaxTensors];
  float* s3[kMaxTensors];
  i64 size[kMaxTensors];
  int first_block[kMaxTensors + 1];  // tensor t owns blocks [first_block[t], first_block[t+1])
  float a[kMaxTensors];              // per-tensor scalars (step size, bias correction, init flag)
  float b[kMaxTensors];
};
static_assert(sizeof(TensorList) + 128 < 4096, "kernel arguments must stay under 4 KiB");

__device__ __forceinline__ float eff_grad(float g, float p, bool maximize, float wd) {
  if (maximize) g = -g;
  if (wd != 0.0f) g = g + wd * p;
  return g;
}

template <class Op>
__global__ void __launch_bounds__(kThreads) k_multi(const TensorList L, const Op op) {
  const int blk = blockIdx.x;
  int t = 0;
  while (t + 1 < L.n && L.first_block[t + 1] <= blk) ++t;  // <= 40 entries, once per block
  const i64 begin = (i64)(blk - L.first_block[t]) * kChunk;
  const i64 end = min(L.size[t], begin + kChunk);
  for (i64 i = begin + threadIdx.x; i < end; i += kThreads) op(L, t, i);
}

struct SgdOp {
  float wd, mom, damp1, neg_lr;
  bool use_mom, nesterov, maximize;
  __device__ void operator()(const TensorList& L, int t, i64 i) const {
    float* p = L.p[t];
    float d = eff_grad(L.g[t][i], p[i], maximize, wd);
    if (use_mom) {
      float* buf = L.s1[t];
      const bool init = L.a[t] != 0.f;
      float bv = init ? d : buf[i] * mom + d * damp1;
      buf[i] = bv;
      d = nesterov ? d + bv * mom : bv;
    }
    p[i] = p[i] + d * neg_lr;
  }
};

struct AdamOp {
  float b1w, b2, b2w, eps, l2, decay;
  bool decoupled, amsgrad, maximize;
  __device__ void operator()(const TensorList& L, int t, i64 i) const {
    float* p = L.p[t];
    float* m = L.s1[t];
    float* v = L.s2[t];
    float pv = p[i];
    if (decoupled) pv = pv * decay;
    float gv = eff_grad(L.g[t][i], pv, maximize, l2);
    float mv = m[i] + b1w * (gv - m[i]);
    float vv = v[i] * b2 + b2w * gv * gv;
    m[i] = mv;
    v[i] = vv;
    if (amsgrad) {
      float* vmax = L.s3[t];
      vv = fmaxf(vmax[i], vv);
      vmax[i] = vv;
    }
    float denom = sqrtf(vv) / L.b[t] + eps;  // b = sqrt(bias correction 2)
    p[i] = pv + L.a[t] * (mv / denom);       // a = -lr / bias correction 1
  }
};

struct RmspropOp {
  float a, aw, eps, wd, mom, neg_lr;
  bool centered, use_mom, maximize;
  __device__ void operator()(const TensorList& L, int t, i64 i) const {
    float* p = L.p[t];
    float* sq = L.s1[t];
    float gv = eff_grad(L.g[t][i], p[i], maximize, wd);
    float s = sq[i] * a + aw * gv * gv;
    sq[i] = s;
    float avg;
    if (centered) {
      float* ga = L.s2[t];
      float gav = ga[i] + aw * (gv - ga[i]);
      ga[i] = gav;
      avg = sqrtf(s + -1.0f * gav * gav);
    } else {
      avg = sqrtf(s);
    }
    avg = avg + eps;
    if (use_mom) {
      float* buf = L.s3[t];
      float bv = buf[i] * mom + gv / avg;
      buf[i] = bv;
      p[i] = p[i] + neg_lr * bv;
    } else {
      p[i] = p[i] + neg_lr * (gv / avg);
    }
  }
};

struct AdagradOp {
  float wd, eps;
  bool maximize;
  __device__ void operator()(const TensorList& L, int t, i64 i) const {
    float* p = L.p[t];
    float* ss = L.s1[t];
    float gv = eff_grad(L.g[t][i], p[i], maximize, wd);
    float s = ss[i] + gv * gv;
    ss[i] = s;
    p[i] = p[i] + L.a[t] * (gv / (sqrtf(s) + eps));  // a = -clr
  }
};

struct AdadeltaOp {
  float r, rw, eps, wd, neg_lr;
  bool maximize;
  __device__ void operator()(const TensorList& L, int t, i64 i) const {
    float* p = L.p[t];
    float* sq = L.s1[t];
    float* ad = L.s2[t];
    float gv = eff_grad(L.g[t][i], p[i], maximize, wd);
    float s = sq[i] * r + rw * gv * gv;
    sq[i] = s;
    float std_ = sqrtf(s + eps);
    float delta = sqrtf(ad[i] + eps) / std_ * gv;
    ad[i] = ad[i] * r + rw * delta * delta;
    p[i] = p[i] + neg_lr * delta;
  }
};

// Launch `op` over every tensor, kMaxTensors per launch. s1..s3 may be empty lists; a/b give the
// per-tensor scalars (may be empty).
template <class Op>
void run(const char* op_name, const Op& op, const PtrList& params, const PtrList& grads,
         const PtrList& s1, const PtrList& s2, const PtrList& s3, const SizeList& sizes,
         const std::vector<float>& a, const std::vector<float>& b) {
  const size_t n = sizes.size();
  for (size_t t = 0; t < n; ++t)  // all checked before the first launch: no half-updated group on error
    KN_CHECK(sizes[t] == 0 || (params[t] && grads[t]), op_name, ": null pointer for parameter ", t);
  size_t t0 = 0;
  while (t0 < n) {
    TensorList L{};
    i64 blocks = 0;
    int k = 0;
    for (; t0 < n && k < kMaxTensors; ++t0) {
      if (sizes[t0] == 0) continue;
      L.p[k] = ptr<float>(params[t0]);
      L.g[k] = ptr<const float>(grads[t0]);
      L.s1[k] = s1.empty() ? nullptr : ptr<float>(s1[t0]);
      L.s2[k] = s2.empty() ? nullptr : ptr<float>(s2[t0]);
      L.s3[k] = s3.empty() ? nullptr : ptr<float>(s3[t0]);
      L.size[k] = sizes[t0];
      L.a[k] = a.empty() ? 0.f : a[t0];
      L.b[k] = b.empty() ? 0.f : b[t0];
      L.first_block[k] = (int)blocks;
      blocks += (sizes[t0] + kChunk - 1) / kChunk;
      KN_CHECK(blocks < layer::kIntMax, op_name, ": parameters too large for one launch");
      ++k;
    }
    if (k == 0) break;
    L.n = k;
    L.first_block[k] = (int)blocks;
    k_multi<Op><<<(unsigned)blocks, kThreads, 0, kStream>>>(L, op);
    KN_LAUNCH_CHECK(op_name);
  }
}

void sgd_step(const PtrList& params, const PtrList& grads, const PtrList& bufs,
              const std::vector<bool>& buf_init, const SizeList& sizes, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize) {
  const char* op = "sgd_step";
  check_lists(op, sizes, {{"params", &params}, {"grads", &grads}}, {{"momentum_buffers", &bufs}});
  const bool use_mom = momentum != 0.0;
  KN_CHECK(!use_mom || (bufs.size() == sizes.size() && buf_init.size() == sizes.size()),
           "sgd_step: momentum != 0 needs one momentum buffer and one init flag per parameter");
  std::vector<float> init;
  if (use_mom)
    for (bool f : buf_init) init.push_back(f ? 1.f : 0.f);
  SgdOp o{float(weight_decay), float(momentum), float(1.0 - dampening), float(-lr), use_mom, nesterov,
          maximize};
  run(op, o, params, grads, use_mom ? bufs : PtrList{}, {}, {}, sizes, init, {});
}

void adam_step(const PtrList& params, const PtrList& grads, const PtrList& exp_avgs,
               const PtrList& exp_avg_sqs, const PtrList& max_exp_avg_sqs, const SizeList& sizes,
               const std::vector<double>& steps, double lr, double beta1, double beta2, double eps,
               double weight_decay, bool decoupled, bool amsgrad, bool maximize) {
  const char* op = "adam_step";
  const AdamScalars sc = adam_scalars(op, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, sizes, steps,
                                      lr, beta1, beta2, amsgrad);
  AdamOp o{float(1.0 - beta1), float(beta2), float(1.0 - beta2), float(eps),
           decoupled ? 0.0f : float(weight_decay), decoupled ? float(1.0 - lr * weight_decay) : 1.0f,
           decoupled, amsgrad, maximize};
  run(op, o, params, grads, exp_avgs, exp_avg_sqs, amsgrad ? max_exp_avg_sqs : PtrList{}, sizes, sc.neg_step_size, sc.bc2_sqrt);
}

void rmsprop_step(const PtrList& params, const PtrList& grads, const PtrList& square_avgs,
                  const PtrList& grad_avgs, const PtrList& momentum_buffers, const SizeList& sizes,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize) {
  const char* op = "rmsprop_step";
  check_lists(op, sizes, {{"params", &params}, {"grads", &grads}, {"square_avgs", &square_avgs}},
              {{"grad_avgs", &grad_avgs}, {"momentum_buffers", &momentum_buffers}});
  KN_CHECK(!centered || grad_avgs.size() == sizes.size(), "rmsprop_step: centered needs grad_avgs");
  KN_CHECK(momentum <= 0 || momentum_buffers.size() == sizes.size(),
           "rmsprop_step: momentum > 0 needs momentum_buffers");
  const bool use_mom = momentum > 0;
  RmspropOp o{float(alpha), float(1.0 - alpha), float(eps), float(weight_decay), float(momentum),
              float(-lr), centered, use_mom, maximize};
  run(op, o, params, grads, square_avgs, centered ? grad_avgs : PtrList{},
      use_mom ? momentum_buffers : PtrList{}, sizes, {}, {});
}

void adagrad_step(const PtrList& params, const PtrList& grads, const PtrList& state_sums,
                  const SizeList& sizes, const std::vector<double>& steps, double lr,
                  double lr_decay, double weight_decay, double eps, bool maximize) {
  const char* op = "adagrad_step";
  check_lists(op, sizes, {{"params", &params}, {"grads", &grads}, {"state_sums", &state_sums}}, {});
  KN_CHECK(steps.size() == sizes.size(), "adagrad_step: steps has ", steps.size(),
           " entries but sizes has ", sizes.size());
  std::vector<float> neg_clr(sizes.size());
  for (size_t t = 0; t < sizes.size(); ++t) neg_clr[t] = float(-(lr / (1 + (steps[t] - 1) * lr_decay)));
  AdagradOp o{float(weight_decay), float(eps), maximize};
  run(op, o, params, grads, state_sums, {}, {}, sizes, neg_clr, {});
}

void adadelta_step(const PtrList& params, const PtrList& grads, const PtrList& square_avgs,
                   const PtrList& acc_deltas, const SizeList& sizes, double lr, double rho,
                   double eps, double weight_decay, bool maximize) {
  const char* op = "adadelta_step";
  check_lists(op, sizes,
              {{"params", &params}, {"grads", &grads}, {"square_avgs", &square_avgs},
               {"acc_deltas", &acc_deltas}},
              {});
  AdadeltaOp o{float(rho), float(1.0 - rho), float(eps), float(weight_decay), float(-lr), maximize};
  run(op, o, params, grads, square_avgs, acc_deltas, {}, sizes, {}, {});
}

}  // namespace optim_cuda
}  // namespace kn

KN_BIND(optim_cuda) {
  namespace py = pybind11;
  using namespace py::literals;
  namespace oc = kn::optim_cuda;
  m.def("sgd_step", &oc::sgd_step, "params"_a, "grads"_a, "momentum_buffers"_a, "buf_init"_a, "sizes"_a,
        "lr"_a, "momentum"_a, "dampening"_a, "weight_decay"_a, "nesterov"_a, "maximize"_a, KN_NOGIL);
  m.def("adam_step", &oc::adam_step, "params"_a, "grads"_a, "exp_avgs"_a, "exp_avg_sqs"_a,
        "max_exp_avg_sqs"_a, "sizes"_a, "steps"_a, "lr"_a, "beta1"_a, "beta2"_a, "eps"_a,
        "weight_decay"_a, "decoupled"_a, "amsgrad"_a, "maximize"_a, KN_NOGIL);
  m.def("rmsprop_step", &oc::rmsprop_step, "params"_a, "grads"_a, "square_avgs"_a, "grad_avgs"_a,
        "momentum_buffers"_a, "sizes"_a, "lr"_a, "alpha"_a, "eps"_a, "weight_decay"_a, "momentum"_a,
        "centered"_a, "maximize"_a, KN_NOGIL);
  m.def("adagrad_step", &oc::adagrad_step, "params"_a, "grads"_a, "state_sums"_a, "sizes"_a, "steps"_a,
        "lr"_a, "lr_decay"_a, "weight_decay"_a, "eps"_a, "maximize"_a, KN_NOGIL);
  m.def("adadelta_step", &oc::adadelta_step, "params"_a, "grads"_a, "square_avgs"_a, "acc_deltas"_a,
        "sizes"_a, "lr"_a, "rho"_a, "eps"_a, "weight_decay"_a, "maximize"_a, KN_NOGIL);
}
