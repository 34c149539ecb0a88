// Which SIMD path the CPU kernels take. Detected once from CPUID; KERNELNET_SIMD=avx512|avx2|
// portable forces a path (tests use it to run every path on one machine). Forcing a path the CPU
// cannot run is refused, never silently executed.
#pragma once
#include <string>

namespace kn {

enum class Simd { Portable = 0, Avx2 = 1, Avx512 = 2 };

Simd detected_simd();          // the best path this CPU supports
Simd active_simd();            // the path the kernels use now
void set_simd(Simd s);         // throws if the CPU cannot run s
const char* simd_name(Simd s);
Simd simd_from_name(const std::string& name);

}  // namespace kn
