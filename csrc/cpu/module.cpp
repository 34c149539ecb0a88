// The CPU backend module, kernelnet._cpu. Every kernel file adds its functions with KN_BIND.
#include "common/kn.h"
#include "cpu/parallel.h"

namespace kn {
std::vector<std::pair<const char*, BindFn>>& registry() {
  static std::vector<std::pair<const char*, BindFn>> r;
  return r;
}
Registrar::Registrar(const char* name, BindFn fn) { registry().emplace_back(name, fn); }
}  // namespace kn

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "kernelnet CPU kernels";
  m.attr("__device_name__") = "cpu";
  kn::py::list families;
  for (auto& [name, fn] : kn::registry()) {
    fn(m);
    families.append(name);
  }
  m.attr("__families__") = families;
}
