// KN_HD marks a function that both the CPU sources (g++) and the CUDA kernels (nvcc) compile:
// host+device and force-inlined under nvcc, plain inline elsewhere.
#pragma once

#if defined(__CUDACC__)
#define KN_HD __host__ __device__ __forceinline__
#else
#define KN_HD inline
#endif
