#include "cpu/cpu_features.h"

#include <cstdlib>

#include "common/kn.h"

namespace kn {

static Simd detect() {
#if defined(KN_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx512) return Simd::Avx512;
  if (avx2) return Simd::Avx2;
#endif
  return Simd::Portable;
}

Simd detected_simd() {
  static Simd s = detect();
  return s;
}

const char* simd_name(Simd s) {
  switch (s) {
    case Simd::Avx512: return "avx512";
    case Simd::Avx2: return "avx2";
    default: return "portable";
  }
}

Simd simd_from_name(const std::string& name) {
  if (name == "avx512") return Simd::Avx512;
  if (name == "avx2") return Simd::Avx2;
  if (name == "portable" || name == "generic") return Simd::Portable;
  throw ArgError(str_cat("unknown SIMD path '", name, "' (expected avx512, avx2 or portable)"));
}

static Simd g_active = Simd::Portable;
static bool g_init = false;

void set_simd(Simd s) {
  KN_CHECK((int)s <= (int)detected_simd(), "SIMD path '", simd_name(s),
           "' is not supported by this CPU (best available: ", simd_name(detected_simd()), ")");
  g_active = s;
  g_init = true;
}

Simd active_simd() {
  if (!g_init) {
    g_active = detected_simd();
    if (const char* env = std::getenv("KERNELNET_SIMD")) {
      Simd want = simd_from_name(env);
      if ((int)want <= (int)detected_simd()) g_active = want;
    }
    g_init = true;
  }
  return g_active;
}

}  // namespace kn

KN_BIND(cpu_features) {
  m.def("simd_detected", [] { return std::string(kn::simd_name(kn::detected_simd())); });
  m.def("simd_active", [] { return std::string(kn::simd_name(kn::active_simd())); });
  m.def("set_simd", [](const std::string& s) { kn::set_simd(kn::simd_from_name(s)); },
        "Force a SIMD path: 'avx512', 'avx2' or 'portable'");
}
