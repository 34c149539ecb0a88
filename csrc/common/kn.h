// kernelnet: what every native source file shares.
//
// - KN_CHECK(cond, msg...): argument/shape checks that become Python ValueError with the op name.
// - KN_BIND(family) { ... }: each kernel file registers its own pybind11 bindings, so adding a
//   kernel family is one new file and no edit to a central list (module.cpp runs the registry).
// - Pointers cross the Python boundary as integers (uintptr_t). The Python layer owns the memory
//   (numpy arrays on CPU, caching-allocator blocks on CUDA) and checks shapes, dtypes and devices
//   before it calls a kernel, so kernels can stay small; they still KN_CHECK what they rely on.
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common/denormal.h"

namespace kn {

namespace py = pybind11;
using i64 = std::int64_t;
using uptr = std::uintptr_t;

// Raised for bad arguments; pybind11 turns std::invalid_argument into ValueError.
struct ArgError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

using BindFn = void (*)(py::module_&);
struct Registrar {
  Registrar(const char* name, BindFn fn);
};
std::vector<std::pair<const char*, BindFn>>& registry();

template <typename T>
inline T* ptr(uptr p) { return reinterpret_cast<T*>(p); }

// Dtype codes shared with python/kernelnet/_dtype.py.
enum DType : int { F32 = 0, I64 = 1, BOOL = 2 };

}  // namespace kn

#define KN_CHECK(cond, ...)                                                              \
  do {                                                                                   \
    if (!(cond)) throw ::kn::ArgError(::kn::str_cat(__VA_ARGS__));                       \
  } while (0)

#define KN_CONCAT_(a, b) a##b
#define KN_CONCAT(a, b) KN_CONCAT_(a, b)
// Usage in a .cpp/.cu file:  KN_BIND(gemm) { m.def("sgemm", ...); }
#define KN_BIND(family)                                                                  \
  static void KN_CONCAT(kn_bind_, family)(::kn::py::module_ & m);                       \
  static ::kn::Registrar KN_CONCAT(kn_registrar_, family)(#family,                       \
                                                          &KN_CONCAT(kn_bind_, family)); \
  static void KN_CONCAT(kn_bind_, family)(::kn::py::module_ & m)

// Release the GIL while a kernel runs (DataLoader threads keep working meanwhile), and flush
// denormals to zero on this thread for the call (common/denormal.h says why).
#define KN_NOGIL ::kn::py::call_guard<::kn::py::gil_scoped_release, ::kn::FlushDenormalScope>()
