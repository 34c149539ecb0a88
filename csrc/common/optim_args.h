// Argument lists and per-tensor scalars of the multi-tensor optimizer steps, shared by the CPU and
// CUDA backends (same checks, same messages, same double-precision scalars).
#pragma once
#include <cmath>
#include <initializer_list>
#include <utility>
#include <vector>

#include "common/kn.h"

namespace kn {

using PtrList = std::vector<uptr>;  // one data pointer per tensor
using SizeList = std::vector<i64>;  // elements per tensor

// `required` lists need one pointer per tensor; `optional` ones may also be empty.
inline void check_lists(const char* op, const SizeList& sizes,
                        std::initializer_list<std::pair<const char*, const PtrList*>> required,
                        std::initializer_list<std::pair<const char*, const PtrList*>> optional) {
  for (auto& [name, l] : required)
    KN_CHECK(l->size() == sizes.size(), op, ": ", name, " has ", l->size(), " pointers but sizes has ",
             sizes.size(), " entries");
  for (auto& [name, l] : optional)
    KN_CHECK(l->empty() || l->size() == sizes.size(), op, ": ", name, " has ", l->size(),
             " pointers; expected 0 or ", sizes.size());
  for (i64 s : sizes) KN_CHECK(s >= 0, op, ": negative size ", s);
}

// Adam's per-tensor scalars: -lr / (1 - beta1^step) and sqrt(1 - beta2^step), computed in double
// like PyTorch's Python-side arithmetic, after checking the lists adam_step receives.
struct AdamScalars {
  std::vector<float> neg_step_size, bc2_sqrt;
};

inline AdamScalars adam_scalars(const char* op, const PtrList& params, const PtrList& grads,
                                const PtrList& exp_avgs, const PtrList& exp_avg_sqs,
                                const PtrList& max_exp_avg_sqs, const SizeList& sizes,
                                const std::vector<double>& steps, double lr, double beta1, double beta2,
                                bool amsgrad) {
  check_lists(op, sizes,
              {{"params", &params}, {"grads", &grads}, {"exp_avgs", &exp_avgs}, {"exp_avg_sqs", &exp_avg_sqs}},
              {{"max_exp_avg_sqs", &max_exp_avg_sqs}});
  KN_CHECK(steps.size() == sizes.size(), op, ": steps has ", steps.size(), " entries but sizes has ",
           sizes.size());
  KN_CHECK(!amsgrad || max_exp_avg_sqs.size() == sizes.size(), op,
           ": amsgrad needs one max_exp_avg_sq buffer per parameter");
  const size_t n = sizes.size();
  AdamScalars s{std::vector<float>(n), std::vector<float>(n)};
  for (size_t t = 0; t < n; ++t) {
    KN_CHECK(steps[t] >= 1, op, ": step counts start at 1 (got ", steps[t], ")");
    const double bc1 = 1.0 - std::pow(beta1, steps[t]);
    const double bc2 = 1.0 - std::pow(beta2, steps[t]);
    s.neg_step_size[t] = float(-(lr / bc1));
    s.bc2_sqrt[t] = float(std::sqrt(bc2));
  }
  return s;
}

}  // namespace kn
