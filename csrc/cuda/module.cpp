// The CUDA backend module, kernelnet._cuda. Imported lazily by the Python layer: a machine with
// the module but no driver or GPU imports it fine and reports device_count() == 0.
#include <cuda_runtime.h>

#include "common/kn.h"
#include "cuda/cuda_check.h"

namespace kn {
std::vector<std::pair<const char*, BindFn>>& registry() {
  static std::vector<std::pair<const char*, BindFn>> r;
  return r;
}
Registrar::Registrar(const char* name, BindFn fn) { registry().emplace_back(name, fn); }
}  // namespace kn

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "kernelnet CUDA kernels";
  m.attr("__device_name__") = "cuda";
  // CUDA errors -> RuntimeError (kn::CudaError derives from std::runtime_error); out of memory ->
  // kernelnet._cuda.OutOfMemoryError, a MemoryError subclass, so `except MemoryError` works.
  // Module-local translators: pybind11 tries them before its global list, which this module shares
  // with _cpu (and with any other module built with the same pybind11 ABI, e.g. torch's), so
  // kernelnet's own exceptions are translated here, in this library's code. (The first H100 run
  // died with SIGSEGV whenever _cuda raised; this takes the shared list out of the suspects.)
  kn::py::register_local_exception<kn::CudaOOM>(m, "OutOfMemoryError", PyExc_MemoryError);
  kn::py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const kn::ArgError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const kn::CudaError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }  // anything else: pybind11's own translators
  });
  m.def("device_count", [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver" error
      return 0;
    }
    return n;
  });
  kn::py::list families;
  for (auto& [name, fn] : kn::registry()) {
    fn(m);
    families.append(name);
  }
  m.attr("__families__") = families;
}
