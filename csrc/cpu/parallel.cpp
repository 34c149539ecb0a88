#include "cpu/parallel.h"

#include <cstdlib>

#include "common/kn.h"

namespace kn {

static int g_threads = 0;  // 0: not chosen yet

int num_threads() {
  if (g_threads <= 0) {
#ifdef KN_HAVE_OPENMP
    g_threads = omp_get_max_threads();
#else
    g_threads = 1;
#endif
    if (const char* env = std::getenv("KERNELNET_NUM_THREADS")) {
      int v = std::atoi(env);
      if (v > 0) g_threads = v;
    }
  }
  return g_threads;
}

void set_num_threads(int n) {
  KN_CHECK(n >= 1, "set_num_threads: need at least 1 thread, got ", n);
  g_threads = n;
#ifdef KN_HAVE_OPENMP
  omp_set_num_threads(n);
#endif
}

}  // namespace kn

KN_BIND(parallel) {
  m.def("num_threads", &kn::num_threads, "Threads the CPU kernels use");
  m.def("set_num_threads", &kn::set_num_threads, "Set the threads the CPU kernels use");
  m.def("set_flush_denormal", [](bool on) { kn::flush_denormal_flag() = on; },
        "Flush denormal floats to zero inside the CPU kernels (default on)");
  m.def("flush_denormal", [] { return kn::flush_denormal_flag().load(); });
#ifdef KN_HAVE_OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
}
