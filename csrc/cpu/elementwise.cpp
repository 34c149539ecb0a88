// Elementwise kernels: fill, strided copy, dtype cast, broadcasting binary ops, unary math and
// the unary ops' backward rules, where(). Contract: docs/KERNEL_CONTRACT.md, op codes: ops.h.
#include <cmath>
#include <cstring>

#include "common/kn.h"
#include "common/division.h"
#include "common/ops.h"
#include "cpu/nd_iter.h"

namespace kn {
namespace {

using u8 = std::uint8_t;

// Calls f with a typed null pointer for the dtype code, so templates see the element type.
template <typename F>
void dispatch_dtype(int dtype, const char* op, F&& f) {
  switch (dtype) {
    case F32: f((float*)nullptr); break;
    case I64: f((i64*)nullptr); break;
    case BOOL: f((u8*)nullptr); break;
    default: throw ArgError(str_cat(op, ": unknown dtype code ", dtype));
  }
}

// ---------------------------------------------------------------- fill / copy / cast
// value arrives as a double: bool stores value != 0 (NaN too, as PyTorch's bool(nan)); int64
// truncates and refuses what has no int64 (a cast of it is undefined behaviour). Integers past
// 2^53 lose bits in a double: Python fills int64 tensors through fill_int64.
void fill(int dtype, uptr out, i64 n, double value) {
  if (dtype == I64)
    KN_CHECK(value >= -9223372036854775808.0 && value < 9223372036854775808.0,
             "fill: value ", value, " cannot be converted to int64 without overflow");
  dispatch_dtype(dtype, "fill", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T v = std::is_same<T, u8>::value ? (T)(value != 0.0) : (T)value;
    T* o = ptr<T>(out);
    parallel_for(n, 1 << 16, [&](i64 b, i64 e) {
      for (i64 i = b; i < e; ++i) o[i] = v;
    });
  });
}

void fill_int64(uptr out, i64 n, i64 value) {
  KN_CHECK(n >= 0, "fill_int64: negative size ", n);
  i64* o = ptr<i64>(out);
  parallel_for(n, 1 << 16, [&](i64 b, i64 e) {
    for (i64 i = b; i < e; ++i) o[i] = value;
  });
}

void copy_strided(int dtype, uptr out, uptr src, const std::vector<i64>& shape,
                  const std::vector<i64>& strides) {
  dispatch_dtype(dtype, "copy_strided", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* o = ptr<T>(out);
    const T* s = ptr<const T>(src);
    for_each_row<1>(shape, {&strides}, [&](i64 pos, const i64* off, const i64* st, i64 len) {
      const T* p = s + off[0];
      T* q = o + pos;
      if (st[0] == 1) {
        std::memcpy(q, p, len * sizeof(T));
      } else {
        for (i64 j = 0; j < len; ++j) q[j] = p[j * st[0]];
      }
    });
  });
}

// dst (strided view) <- src (strided, broadcast allowed): the write side of x[...] = y and of
// in-place ops on non-contiguous tensors.
void assign_strided(int dtype, uptr dst, const std::vector<i64>& ds, uptr src,
                    const std::vector<i64>& ss, const std::vector<i64>& shape) {
  dispatch_dtype(dtype, "assign_strided", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* d = ptr<T>(dst);
    const T* s = ptr<const T>(src);
    for_each_row<2>(shape, {&ds, &ss}, [&](i64, const i64* off, const i64* st, i64 len) {
      T* q = d + off[0];
      const T* p = s + off[1];
      if (st[0] == 1 && st[1] == 1) {
        std::memmove(q, p, len * sizeof(T));
      } else {
        for (i64 j = 0; j < len; ++j) q[j * st[0]] = p[j * st[1]];
      }
    });
  });
}

void cast(int src_dtype, int dst_dtype, uptr out, uptr src, i64 n) {
  dispatch_dtype(src_dtype, "cast", [&](auto* stag) {
    using S = std::remove_pointer_t<decltype(stag)>;
    dispatch_dtype(dst_dtype, "cast", [&](auto* dtag) {
      using D = std::remove_pointer_t<decltype(dtag)>;
      const S* s = ptr<const S>(src);
      D* d = ptr<D>(out);
      parallel_for(n, 1 << 16, [&](i64 b, i64 e) {
        if constexpr (std::is_same_v<D, u8>) {
          for (i64 i = b; i < e; ++i) d[i] = s[i] != 0;
        } else {
          for (i64 i = b; i < e; ++i) d[i] = (D)s[i];
        }
      });
    });
  });
}

// ---------------------------------------------------------------- binary
// Row loop with the inner strides made compile-time 0/1 where possible: that is what lets the
// compiler vectorise the common cases (same shape, scalar operand, row broadcast).
template <typename O, typename T, typename F>
inline void binary_row(O* o, const T* a, i64 sa, const T* b, i64 sb, i64 n, F f) {
  if (sa == 1 && sb == 1) {
    for (i64 j = 0; j < n; ++j) o[j] = f(a[j], b[j]);
  } else if (sa == 1 && sb == 0) {
    const T bv = b[0];
    for (i64 j = 0; j < n; ++j) o[j] = f(a[j], bv);
  } else if (sa == 0 && sb == 1) {
    const T av = a[0];
    for (i64 j = 0; j < n; ++j) o[j] = f(av, b[j]);
  } else {
    for (i64 j = 0; j < n; ++j) o[j] = f(a[j * sa], b[j * sb]);
  }
}

template <typename O, typename T, typename F>
void binary_loop(uptr out, uptr a, const std::vector<i64>& as, uptr b, const std::vector<i64>& bs,
                 const std::vector<i64>& shape, F f) {
  O* o = ptr<O>(out);
  const T* pa = ptr<const T>(a);
  const T* pb = ptr<const T>(b);
  for_each_row<2>(shape, {&as, &bs}, [&](i64 pos, const i64* off, const i64* st, i64 len) {
    binary_row(o + pos, pa + off[0], st[0], pb + off[1], st[1], len, f);
  });
}

template <typename T>
inline T max_nan(T x, T y) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(x) || std::isnan(y)) return x + y;
  }
  return x > y ? x : y;
}
template <typename T>
inline T min_nan(T x, T y) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(x) || std::isnan(y)) return x + y;
  }
  return x < y ? x : y;
}

template <typename T>
void binary_typed(int op, uptr out, uptr a, const std::vector<i64>& as, uptr b,
                  const std::vector<i64>& bs, const std::vector<i64>& shape) {
  auto arith = [&](auto f) { binary_loop<T, T>(out, a, as, b, bs, shape, f); };
  auto cmp = [&](auto f) { binary_loop<u8, T>(out, a, as, b, bs, shape, f); };
  if constexpr (std::is_same_v<T, i64>) {
    // int64 arithmetic wraps (two's complement, as PyTorch): computed in uint64, where overflow is
    // defined; signed overflow is undefined behaviour the optimiser may exploit.
    using U = std::uint64_t;
    switch (op) {
      case B_ADD: return arith([](T x, T y) { return (T)((U)x + (U)y); });
      case B_SUB: return arith([](T x, T y) { return (T)((U)x - (U)y); });
      case B_MUL: return arith([](T x, T y) { return (T)((U)x * (U)y); });
      case B_BIT_AND: return arith([](T x, T y) { return (T)(x & y); });
      case B_BIT_OR: return arith([](T x, T y) { return (T)(x | y); });
      case B_BIT_XOR: return arith([](T x, T y) { return (T)(x ^ y); });
      case B_FMOD: return arith([](T x, T y) { return fmod_int64(x, y); });
      case B_REMAINDER: return arith([](T x, T y) { return remainder_int64(x, y); });
      case B_DIV:  // rounds toward -inf as Python's // (the Python layer uses it for //)
      case B_FLOOR_DIV: return arith([](T x, T y) { return floor_divide_int64(x, y); });
      case B_POW:
        // exact integer power by squaring, wrapping as PyTorch (a double pow loses bits past 2^53);
        // negative exponents: 1 and -1 have integer powers, |x| > 1 truncates to 0 (x = 0: refused
        // by the Python layer)
        return arith([](T x, T y) {
          if (y < 0) return (T)(x == 1 ? 1 : (x == -1 ? ((y & 1) ? -1 : 1) : 0));
          U r = 1, base = (U)x;
          for (std::uint64_t e = (std::uint64_t)y; e; e >>= 1) {
            if (e & 1) r *= base;
            base *= base;
          }
          return (T)r;
        });
      default: break;
    }
  }
  switch (op) {
    case B_ADD: return arith([](T x, T y) { return (T)(x + y); });
    case B_SUB: return arith([](T x, T y) { return (T)(x - y); });
    case B_MUL: return arith([](T x, T y) { return (T)(x * y); });
    case B_DIV:
      if constexpr (std::is_same_v<T, u8>) {
        return arith([](T x, T) { return x; });  // bool: x / true (an integer x / false would trap)
      } else {
        return arith([](T x, T y) { return (T)(x / y); });
      }
    case B_POW: return arith([](T x, T y) { return (T)std::pow(x, y); });
    case B_FMOD:
    case B_REMAINDER:
    case B_FLOOR_DIV:
      if constexpr (std::is_same_v<T, float>) {
        if (op == B_FMOD) return arith([](T x, T y) { return std::fmod(x, y); });
        if (op == B_REMAINDER) return arith([](T x, T y) { return remainder_float(x, y); });
        return arith([](T x, T y) { return floor_divide_float(x, y); });
      } else {
        throw ArgError(str_cat("binary: op ", op, " is not defined on bool"));
      }
    case B_MAX: return arith([](T x, T y) { return max_nan(x, y); });
    case B_MIN: return arith([](T x, T y) { return min_nan(x, y); });
    case B_EQ: return cmp([](T x, T y) { return (u8)(x == y); });
    case B_NE: return cmp([](T x, T y) { return (u8)(x != y); });
    case B_LT: return cmp([](T x, T y) { return (u8)(x < y); });
    case B_LE: return cmp([](T x, T y) { return (u8)(x <= y); });
    case B_GT: return cmp([](T x, T y) { return (u8)(x > y); });
    case B_GE: return cmp([](T x, T y) { return (u8)(x >= y); });
    case B_AND: return cmp([](T x, T y) { return (u8)((x != 0) && (y != 0)); });
    case B_OR: return cmp([](T x, T y) { return (u8)((x != 0) || (y != 0)); });
    case B_XOR: return cmp([](T x, T y) { return (u8)((x != 0) != (y != 0)); });
    default: throw ArgError(str_cat("binary: unknown op code ", op));
  }
}

void binary(int op, int dtype, uptr out, uptr a, const std::vector<i64>& as, uptr b,
            const std::vector<i64>& bs, const std::vector<i64>& shape) {
  switch (dtype) {
    case F32: return binary_typed<float>(op, out, a, as, b, bs, shape);
    case I64: return binary_typed<i64>(op, out, a, as, b, bs, shape);
    case BOOL: return binary_typed<u8>(op, out, a, as, b, bs, shape);
    default: throw ArgError(str_cat("binary: unknown dtype code ", dtype));
  }
}

// ---------------------------------------------------------------- unary
inline float sigmoidf(float x) { return 1.f / (1.f + std::exp(-x)); }
constexpr float kSqrt2Inv = 0.70710678118654752f;
constexpr float kSqrt2OverPi = 0.79788456080286536f;

template <typename F>
void unary_loop(uptr out, uptr a, const std::vector<i64>& as, const std::vector<i64>& shape, F f) {
  float* o = ptr<float>(out);
  const float* pa = ptr<const float>(a);
  for_each_row<1>(shape, {&as}, [&](i64 pos, const i64* off, const i64* st, i64 len) {
    const float* p = pa + off[0];
    float* q = o + pos;
    if (st[0] == 1) {
      for (i64 j = 0; j < len; ++j) q[j] = f(p[j]);
    } else {
      for (i64 j = 0; j < len; ++j) q[j] = f(p[j * st[0]]);
    }
  });
}

void unary(int op, uptr out, uptr a, const std::vector<i64>& as, const std::vector<i64>& shape,
           double p0d, double p1d) {
  const float p0 = (float)p0d, p1 = (float)p1d;
  auto run = [&](auto f) { unary_loop(out, a, as, shape, f); };
  switch (op) {
    case U_NEG: return run([](float x) { return -x; });
    case U_EXP: return run([](float x) { return std::exp(x); });
    case U_LOG: return run([](float x) { return std::log(x); });
    case U_TANH: return run([](float x) { return std::tanh(x); });
    case U_SIGMOID: return run([](float x) { return sigmoidf(x); });
    case U_RELU: return run([](float x) { return x > 0.f ? x : (x == x ? 0.f : x); });
    case U_SQRT: return run([](float x) { return std::sqrt(x); });
    case U_ABS: return run([](float x) { return std::fabs(x); });
    case U_POWS: return run([p0](float x) { return std::pow(x, p0); });
    case U_CLAMP: return run([p0, p1](float x) { const float y = x < p0 ? p0 : x; return y > p1 ? p1 : y; });  // min(max(x, lo), hi): lo > hi gives hi, as PyTorch
    case U_SIGN: return run([](float x) { return (float)((x > 0.f) - (x < 0.f)); });
    case U_RSQRT: return run([](float x) { return 1.f / std::sqrt(x); });
    case U_SIN: return run([](float x) { return std::sin(x); });
    case U_COS: return run([](float x) { return std::cos(x); });
    case U_LEAKY_RELU: return run([p0](float x) { return x > 0.f ? x : x * p0; });
    case U_ELU: return run([p0](float x) { return x > 0.f ? x : p0 * std::expm1(x); });
    case U_GELU: return run([](float x) { return 0.5f * x * (1.f + std::erf(x * kSqrt2Inv)); });
    case U_GELU_TANH:
      return run([](float x) {
        return 0.5f * x * (1.f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
      });
    case U_RECIP: return run([](float x) { return 1.f / x; });
    case U_SQUARE: return run([](float x) { return x * x; });
    case U_LOG1P: return run([](float x) { return std::log1p(x); });
    case U_EXPM1: return run([](float x) { return std::expm1(x); });
    case U_FLOOR: return run([](float x) { return std::floor(x); });
    case U_CEIL: return run([](float x) { return std::ceil(x); });
    case U_ROUND: return run([](float x) { return std::nearbyint(x); });
    case U_SOFTPLUS:
      return run([p0, p1](float x) {
        return x * p0 > p1 ? x : std::log1p(std::exp(x * p0)) / p0;
      });
    case U_SILU: return run([](float x) { return x * sigmoidf(x); });
    case U_ERF: return run([](float x) { return std::erf(x); });
    case U_NOT: {
      u8* o = ptr<u8>(out);
      const u8* pa = ptr<const u8>(a);
      for_each_row<1>(shape, {&as}, [&](i64 pos, const i64* off, const i64* st, i64 len) {
        for (i64 j = 0; j < len; ++j) o[pos + j] = !pa[off[0] + j * st[0]];
      });
      return;
    }
    default: throw ArgError(str_cat("unary: unknown op code ", op));
  }
}

// grad_in = grad_out * f'(x), written with whichever of x (input) / y (output) is cheaper.
void unary_backward(int op, uptr gi_, uptr go_, uptr x_, uptr y_, i64 n, double p0d, double p1d) {
  const float p0 = (float)p0d, p1 = (float)p1d;
  float* gi = ptr<float>(gi_);
  const float* go = ptr<const float>(go_);
  // x or y may be omitted (0) by callers whose op needs only the other: alias it to a valid buffer
  // of n floats so the unconditional loads below stay in bounds even in an unoptimised build.
  const float* x = ptr<const float>(x_ ? x_ : (y_ ? y_ : go_));
  const float* y = ptr<const float>(y_ ? y_ : x_ ? x_ : go_);
  // The kernels see values, not pointers: every load is unconditional (so `x > 0 ? g : 0` is a
  // select, not a branch that mispredicts on random signs) and the restrict-qualified pointers let
  // the loop vectorise. Loads of x or y that an op does not use are dead code and vanish.
  auto run = [&](auto f) {
    parallel_for(n, 1 << 15, [&](i64 b, i64 e) {
      float* __restrict o = gi;
      const float* __restrict pg = go;
      const float* __restrict px = x;
      const float* __restrict py = y;
      for (i64 i = b; i < e; ++i) o[i] = f(pg[i], px[i], py[i]);
    });
  };
  switch (op) {
    case U_NEG: return run([=](float g, float xv, float yv) { return -g; });
    case U_EXP: return run([=](float g, float xv, float yv) { return g * yv; });
    case U_LOG: return run([=](float g, float xv, float yv) { return g / xv; });
    case U_TANH: return run([=](float g, float xv, float yv) { return g * (1.f - yv * yv); });
    case U_SIGMOID: return run([=](float g, float xv, float yv) { return g * yv * (1.f - yv); });
    // from the result, as PyTorch (relu(x) > 0 exactly when x > 0): the input may be freed or written
    case U_RELU: return run([=](float g, float xv, float yv) { return yv > 0.f ? g : 0.f; });
    case U_SQRT: return run([=](float g, float xv, float yv) { return g * 0.5f / yv; });
    case U_ABS: return run([=](float g, float xv, float yv) { return g * (float)((xv > 0.f) - (xv < 0.f)); });
    case U_POWS:
      return run([=](float g, float xv, float yv) { return p0 == 0.f ? 0.f : g * p0 * std::pow(xv, p0 - 1.f); });
    case U_CLAMP: return run([=](float g, float xv, float yv) { return (xv >= p0 && xv <= p1) ? g : 0.f; });
    case U_SIGN:
    case U_FLOOR:
    case U_CEIL:
    case U_ROUND: return run([](float, float, float) { return 0.f; });
    case U_RSQRT: return run([=](float g, float xv, float yv) { return g * -0.5f * yv * yv * yv; });
    case U_SIN: return run([=](float g, float xv, float yv) { return g * std::cos(xv); });
    case U_COS: return run([=](float g, float xv, float yv) { return -g * std::sin(xv); });
    case U_LEAKY_RELU: return run([=](float g, float xv, float yv) { return xv > 0.f ? g : g * p0; });
    case U_ELU: return run([=](float g, float xv, float yv) { return xv > 0.f ? g : g * (yv + p0); });
    case U_GELU:
      return run([=](float g, float xv, float yv) {
        float cdf = 0.5f * (1.f + std::erf(xv * kSqrt2Inv));
        float pdf = 0.3989422804014327f * std::exp(-0.5f * xv * xv);
        return g * (cdf + xv * pdf);
      });
    case U_GELU_TANH:
      return run([=](float g, float xv, float yv) {
        float v = xv;
        float inner = kSqrt2OverPi * (v + 0.044715f * v * v * v);
        float t = std::tanh(inner);
        float dinner = kSqrt2OverPi * (1.f + 3.f * 0.044715f * v * v);
        return g * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * dinner);
      });
    case U_RECIP: return run([=](float g, float xv, float yv) { return -g * yv * yv; });
    case U_SQUARE: return run([=](float g, float xv, float yv) { return 2.f * g * xv; });
    case U_LOG1P: return run([=](float g, float xv, float yv) { return g / (1.f + xv); });
    case U_EXPM1: return run([=](float g, float xv, float yv) { return g * (yv + 1.f); });
    case U_SOFTPLUS:
      return run([=](float g, float xv, float yv) { return xv * p0 > p1 ? g : g * sigmoidf(xv * p0); });
    case U_SILU:
      return run([=](float g, float xv, float yv) {
        float s = sigmoidf(xv);
        return g * (s + xv * s * (1.f - s));
      });
    case U_ERF:
      return run([=](float g, float xv, float yv) { return g * 1.1283791670955126f * std::exp(-xv * xv); });
    default: throw ArgError(str_cat("unary_backward: unknown op code ", op));
  }
}

// ---------------------------------------------------------------- where
void where(int dtype, uptr out, uptr cond, const std::vector<i64>& cs, uptr a,
           const std::vector<i64>& as, uptr b, const std::vector<i64>& bs,
           const std::vector<i64>& shape) {
  dispatch_dtype(dtype, "where", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* o = ptr<T>(out);
    const u8* c = ptr<const u8>(cond);
    const T* pa = ptr<const T>(a);
    const T* pb = ptr<const T>(b);
    for_each_row<3>(shape, {&cs, &as, &bs}, [&](i64 pos, const i64* off, const i64* st, i64 len) {
      for (i64 j = 0; j < len; ++j)
        o[pos + j] = c[off[0] + j * st[0]] ? pa[off[1] + j * st[1]] : pb[off[2] + j * st[2]];
    });
  });
}

}  // namespace
}  // namespace kn

KN_BIND(elementwise) {
  using namespace kn;
  m.def("fill", &fill, KN_NOGIL);
  m.def("fill_int64", &fill_int64, KN_NOGIL);
  m.def("copy_strided", &copy_strided, KN_NOGIL);
  m.def("cast", &cast, KN_NOGIL);
  m.def("assign_strided", &assign_strided, KN_NOGIL);
  m.def("binary", &binary, KN_NOGIL);
  m.def("unary", &unary, KN_NOGIL);
  m.def("unary_backward", &unary_backward, KN_NOGIL);
  m.def("where", &where, KN_NOGIL);
}
