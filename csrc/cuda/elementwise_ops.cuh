// Scalar definitions of the elementwise ops (csrc/common/ops.h), shared by the CUDA kernels.
// Semantics follow PyTorch and the CPU backend: NaN propagates through max/min/clamp/relu,
// round is half-to-even, integer division floors (Python //), comparisons give bool.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/division.h"
#include "common/ops.h"

namespace kn {

template <typename T>
__device__ __forceinline__ T bin_arith(int op, T a, T b);

template <>
__device__ __forceinline__ float bin_arith<float>(int op, float a, float b) {
  switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_POW: return powf(a, b);
    case B_MAX: return (a != a || b != b) ? NAN : (a > b ? a : b);
    case B_MIN: return (a != a || b != b) ? NAN : (a < b ? a : b);
    case B_FMOD: return fmodf(a, b);
    case B_REMAINDER: return remainder_float(a, b);
    case B_FLOOR_DIV: return floor_divide_float(a, b);
    default: return 0.f;
  }
}

template <>
__device__ __forceinline__ int64_t bin_arith<int64_t>(int op, int64_t a, int64_t b) {
  switch (op) {
    case B_ADD: return (int64_t)((uint64_t)a + (uint64_t)b);
    case B_SUB: return (int64_t)((uint64_t)a - (uint64_t)b);
    case B_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
    case B_DIV: case B_FLOOR_DIV: return floor_divide_int64(a, b);
    case B_BIT_AND: return a & b;
    case B_BIT_OR: return a | b;
    case B_BIT_XOR: return a ^ b;
    case B_FMOD: return fmod_int64(a, b);
    case B_REMAINDER: return remainder_int64(a, b);
    case B_POW: {
      if (b < 0) return a == 1 ? 1 : (a == -1 ? ((b & 1) ? -1 : 1) : 0);
      int64_t r = 1, base = a;
      while (b) {
        if (b & 1) r = (int64_t)((uint64_t)r * (uint64_t)base);
        base = (int64_t)((uint64_t)base * (uint64_t)base);
        b >>= 1;
      }
      return r;
    }
    case B_MAX: return a > b ? a : b;
    case B_MIN: return a < b ? a : b;
    default: return 0;
  }
}

// bool (uint8 0/1): arithmetic like PyTorch on bool tensors (add = or, mul = and, ...)
template <>
__device__ __forceinline__ uint8_t bin_arith<uint8_t>(int op, uint8_t a, uint8_t b) {
  switch (op) {
    case B_ADD: case B_MAX: return (a | b) ? 1 : 0;
    case B_SUB: case B_XOR: return (a ^ b) ? 1 : 0;
    case B_MUL: case B_MIN: return (a & b) ? 1 : 0;
    case B_DIV: return a;  // a / true
    case B_POW: return b ? a : 1;
    default: return 0;
  }
}

template <typename T>
__device__ __forceinline__ uint8_t bin_pred(int op, T a, T b) {
  switch (op) {
    case B_EQ: return a == b;
    case B_NE: return a != b;
    case B_LT: return a < b;
    case B_LE: return a <= b;
    case B_GT: return a > b;
    case B_GE: return a >= b;
    case B_AND: return (a != T(0)) && (b != T(0));
    case B_OR: return (a != T(0)) || (b != T(0));
    case B_XOR: return (a != T(0)) != (b != T(0));
    default: return 0;
  }
}

__device__ __forceinline__ float gelu_tanh_k() { return 0.7978845608028654f; }  // sqrt(2/pi)

__device__ __forceinline__ float un_op(int op, float x, float p0, float p1) {
  switch (op) {
    case U_NEG: return -x;
    case U_EXP: return expf(x);
    case U_LOG: return logf(x);
    case U_TANH: return tanhf(x);
    case U_SIGMOID: return 1.f / (1.f + expf(-x));
    case U_RELU: return x < 0.f ? 0.f : x;
    case U_SQRT: return sqrtf(x);
    case U_ABS: return fabsf(x);
    case U_POWS: return powf(x, p0);
    case U_CLAMP: { const float y = x < p0 ? p0 : x; return y > p1 ? p1 : y; }  // lo > hi gives hi (PyTorch)
    case U_SIGN: return (float)((x > 0.f) - (x < 0.f));
    case U_RSQRT: return 1.f / sqrtf(x);
    case U_SIN: return sinf(x);
    case U_COS: return cosf(x);
    case U_LEAKY_RELU: return x > 0.f ? x : x * p0;
    case U_ELU: return x > 0.f ? x : p0 * expm1f(x);
    case U_GELU: return 0.5f * x * (1.f + erff(x * 0.7071067811865476f));
    case U_GELU_TANH: return 0.5f * x * (1.f + tanhf(gelu_tanh_k() * (x + 0.044715f * x * x * x)));
    case U_RECIP: return 1.f / x;
    case U_SQUARE: return x * x;
    case U_LOG1P: return log1pf(x);
    case U_EXPM1: return expm1f(x);
    case U_FLOOR: return floorf(x);
    case U_CEIL: return ceilf(x);
    case U_ROUND: return rintf(x);
    case U_SOFTPLUS: return x * p0 > p1 ? x : log1pf(expf(p0 * x)) / p0;
    case U_SILU: return x / (1.f + expf(-x));
    case U_ERF: return erff(x);
    default: return 0.f;
  }
}

// Which saved values the derivative of op needs (the others may be passed as 0).
__host__ __device__ __forceinline__ bool un_bwd_needs_y(int op) {
  return op == U_EXP || op == U_TANH || op == U_SIGMOID || op == U_SQRT || op == U_RSQRT ||
         op == U_ELU || op == U_RECIP || op == U_EXPM1;
}
__host__ __device__ __forceinline__ bool un_bwd_needs_x(int op) {
  return !(op == U_NEG || op == U_EXP || op == U_TANH || op == U_SIGMOID || op == U_SQRT ||
           op == U_RSQRT || op == U_RECIP || op == U_EXPM1 || op == U_SIGN || op == U_FLOOR ||
           op == U_CEIL || op == U_ROUND);
}

__device__ __forceinline__ float un_grad(int op, float g, float x, float y, float p0, float p1) {
  switch (op) {
    case U_NEG: return -g;
    case U_EXP: return g * y;
    case U_LOG: return g / x;
    case U_TANH: return g * (1.f - y * y);
    case U_SIGMOID: return g * y * (1.f - y);
    case U_RELU: return y > 0.f ? g : 0.f;  // from the result, as PyTorch (and the CPU kernel)
    case U_SQRT: return g / (2.f * y);
    case U_ABS: return g * (float)((x > 0.f) - (x < 0.f));
    case U_POWS: return p0 == 0.f ? 0.f : g * p0 * powf(x, p0 - 1.f);
    case U_CLAMP: return (x >= p0 && x <= p1) ? g : 0.f;
    case U_SIGN: case U_FLOOR: case U_CEIL: case U_ROUND: return 0.f;
    case U_RSQRT: return -0.5f * g * y * y * y;
    case U_SIN: return g * cosf(x);
    case U_COS: return -g * sinf(x);
    case U_LEAKY_RELU: return x > 0.f ? g : g * p0;
    case U_ELU: return x > 0.f ? g : g * (y + p0);
    case U_GELU: {
      float cdf = 0.5f * (1.f + erff(x * 0.7071067811865476f));
      float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
      return g * (cdf + x * pdf);
    }
    case U_GELU_TANH: {
      float k = gelu_tanh_k();
      float t = tanhf(k * (x + 0.044715f * x * x * x));
      return g * (0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * k * (1.f + 3.f * 0.044715f * x * x));
    }
    case U_RECIP: return -g * y * y;
    case U_SQUARE: return 2.f * g * x;
    case U_LOG1P: return g / (1.f + x);
    case U_EXPM1: return g * (y + 1.f);
    case U_SOFTPLUS: return x * p0 > p1 ? g : g / (1.f + expf(-p0 * x));
    case U_SILU: {
      float s = 1.f / (1.f + expf(-x));
      return g * s * (1.f + x * (1.f - s));
    }
    case U_ERF: return g * 1.1283791670955126f * expf(-x * x);
    default: return 0.f;
  }
}

}  // namespace kn
