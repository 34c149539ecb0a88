// Elementwise kernels of the core contract (docs/KERNEL_CONTRACT.md): fill, copy_strided, cast,
// binary, unary, unary_backward, where.
//
// Paths: (1) contiguous f32 -> float4 loads/stores (16-byte accesses are what reach full HBM
// bandwidth), tails done by the same threads with scalar accesses; (2) contiguous or broadcast
// scalar operands of other dtypes -> flat grid-stride loop; (3) general strided views -> n-d offset
// computation (launch.cuh). The op code is a run-time switch: the branch is uniform across the grid
// and these kernels are memory bound, so it costs nothing measurable and keeps compile time low.
#include "common/ops.h"
#include "cuda/elementwise_ops.cuh"
#include "cuda/launch.cuh"

namespace kn {
namespace {

// ----------------------------------------------------------------------------- functors
template <typename T, typename O, bool PRED>
struct BinaryF {
  int op;
  O* out;
  const T* a;
  const T* b;
  template <typename I>
  __device__ void operator()(i64 i, const I* off) const {
    T x = a[off[0]], y = b[off[1]];
    if (PRED) out[i] = (O)bin_pred<T>(op, x, y);
    else out[i] = (O)bin_arith<T>(op, x, y);
  }
};

struct UnaryF {
  int op;
  float* out;
  const float* a;
  float p0, p1;
  template <typename I>
  __device__ void operator()(i64 i, const I* off) const { out[i] = un_op(op, a[off[0]], p0, p1); }
};

struct NotF {
  uint8_t* out;
  const uint8_t* a;
  template <typename I>
  __device__ void operator()(i64 i, const I* off) const { out[i] = a[off[0]] ? 0 : 1; }
};

template <typename T>
struct WhereF {
  T* out;
  const uint8_t* c;
  const T* a;
  const T* b;
  template <typename I>
  __device__ void operator()(i64 i, const I* off) const { out[i] = c[off[0]] ? a[off[1]] : b[off[2]]; }
};

template <typename T>
struct AssignF {  // dst (strided) <- src (strided / broadcast)
  T* dst;
  const T* src;
  template <typename I>
  __device__ void operator()(i64, const I* off) const { dst[off[0]] = src[off[1]]; }
};

template <typename T>
struct CopyF {
  T* out;
  const T* src;
  template <typename I>
  __device__ void operator()(i64 i, const I* off) const { out[i] = src[off[0]]; }
};

// ----------------------------------------------------------------------------- float4 kernels
__global__ void k_binary_f32x4(int op, float* __restrict__ out, const float* __restrict__ a,
                               const float* __restrict__ b, i64 n, bool as, bool bs) {
  i64 n4 = n >> 2, stride = (i64)gridDim.x * blockDim.x;
  i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  float sa = as ? a[0] : 0.f, sb = bs ? b[0] : 0.f;
  for (i64 i = t; i < n4; i += stride) {
    float4 x = as ? make_float4(sa, sa, sa, sa) : reinterpret_cast<const float4*>(a)[i];
    float4 y = bs ? make_float4(sb, sb, sb, sb) : reinterpret_cast<const float4*>(b)[i];
    float4 r;
    r.x = bin_arith<float>(op, x.x, y.x);
    r.y = bin_arith<float>(op, x.y, y.y);
    r.z = bin_arith<float>(op, x.z, y.z);
    r.w = bin_arith<float>(op, x.w, y.w);
    reinterpret_cast<float4*>(out)[i] = r;
  }
  for (i64 i = (n4 << 2) + t; i < n; i += stride)
    out[i] = bin_arith<float>(op, as ? sa : a[i], bs ? sb : b[i]);
}

__global__ void k_unary_f32x4(int op, float* __restrict__ out, const float* __restrict__ a, i64 n,
                              float p0, float p1) {
  i64 n4 = n >> 2, stride = (i64)gridDim.x * blockDim.x;
  i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  for (i64 i = t; i < n4; i += stride) {
    float4 x = reinterpret_cast<const float4*>(a)[i];
    float4 r;
    r.x = un_op(op, x.x, p0, p1);
    r.y = un_op(op, x.y, p0, p1);
    r.z = un_op(op, x.z, p0, p1);
    r.w = un_op(op, x.w, p0, p1);
    reinterpret_cast<float4*>(out)[i] = r;
  }
  for (i64 i = (n4 << 2) + t; i < n; i += stride) out[i] = un_op(op, a[i], p0, p1);
}

// grad_in = grad_out * f'(x, y). x / y are read only when the op needs them (may be null).
__global__ void k_unary_backward(int op, float* __restrict__ gi, const float* __restrict__ go,
                                 const float* __restrict__ x, const float* __restrict__ y, i64 n,
                                 float p0, float p1, bool vec) {
  bool nx = un_bwd_needs_x(op), ny = un_bwd_needs_y(op);
  i64 stride = (i64)gridDim.x * blockDim.x;
  i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  i64 start = 0;
  if (vec) {
    i64 n4 = n >> 2;
    float4 z = make_float4(0.f, 0.f, 0.f, 0.f);
    for (i64 i = t; i < n4; i += stride) {
      float4 g = reinterpret_cast<const float4*>(go)[i];
      float4 xv = nx ? reinterpret_cast<const float4*>(x)[i] : z;
      float4 yv = ny ? reinterpret_cast<const float4*>(y)[i] : z;
      float4 r;
      r.x = un_grad(op, g.x, xv.x, yv.x, p0, p1);
      r.y = un_grad(op, g.y, xv.y, yv.y, p0, p1);
      r.z = un_grad(op, g.z, xv.z, yv.z, p0, p1);
      r.w = un_grad(op, g.w, xv.w, yv.w, p0, p1);
      reinterpret_cast<float4*>(gi)[i] = r;
    }
    start = n4 << 2;
  }
  for (i64 i = start + t; i < n; i += stride)
    gi[i] = un_grad(op, go[i], nx ? x[i] : 0.f, ny ? y[i] : 0.f, p0, p1);
}

template <typename T>
__global__ void k_fill(T* out, i64 n, T v) {
  i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = v;
}

__global__ void k_fill_f32x4(float* out, i64 n, float v) {
  i64 n4 = n >> 2, stride = (i64)gridDim.x * blockDim.x;
  i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  float4 v4 = make_float4(v, v, v, v);
  for (i64 i = t; i < n4; i += stride) reinterpret_cast<float4*>(out)[i] = v4;
  for (i64 i = (n4 << 2) + t; i < n; i += stride) out[i] = v;
}

template <typename S, typename D>
__device__ __forceinline__ D cast_one(S v) { return (D)v; }
template <>
__device__ __forceinline__ uint8_t cast_one<float, uint8_t>(float v) { return v != 0.f; }
template <>
__device__ __forceinline__ uint8_t cast_one<int64_t, uint8_t>(int64_t v) { return v != 0; }

template <typename S, typename D>
__global__ void k_cast(D* out, const S* src, i64 n) {
  i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = cast_one<S, D>(src[i]);
}

// ----------------------------------------------------------------------------- host side
int dtype_size(int dt, const char* op) {
  switch (dt) {
    case F32: return 4;
    case I64: return 8;
    case BOOL: return 1;
  }
  KN_CHECK(false, op, ": unknown dtype code ", dt);
  return 0;
}

template <typename T>
void binary_t(int op, uptr out, uptr a, uptr b, const Layout<2>& L) {
  if (is_compare(op))
    launch_map(
        "binary", BinaryF<T, uint8_t, true>{op, ptr<uint8_t>(out), ptr<const T>(a), ptr<const T>(b)}, L);
  else
    launch_map("binary", BinaryF<T, T, false>{op, ptr<T>(out), ptr<const T>(a), ptr<const T>(b)}, L);
}

void binary(int op, int dtype, uptr out, uptr a, const std::vector<i64>& as, uptr b,
            const std::vector<i64>& bs, const std::vector<i64>& shape) {
  KN_CHECK(op >= B_ADD && op <= kLastBinaryOp, "binary: unknown op code ", op);
  const std::vector<i64>* st[2] = {&as, &bs};
  Layout<2> L = make_layout<2>("binary", shape, st);
  if (L.numel == 0) return;
  switch (dtype) {
    case F32: {
      unsigned mask;
      if (!is_compare(op) && layout_flat(L, &mask) && aligned16(ptr<void>(out)) &&
          (L.scalar[0] || aligned16(ptr<void>(a))) && (L.scalar[1] || aligned16(ptr<void>(b)))) {
        k_binary_f32x4<<<map_grid((L.numel + 3) / 4), kMapThreads, 0, kStream>>>(
            op, ptr<float>(out), ptr<const float>(a), ptr<const float>(b), L.numel, L.scalar[0],
            L.scalar[1]);
        KN_LAUNCH_CHECK("binary");
      } else {
        binary_t<float>(op, out, a, b, L);
      }
      break;
    }
    case I64: binary_t<int64_t>(op, out, a, b, L); break;
    case BOOL: binary_t<uint8_t>(op, out, a, b, L); break;
    default: KN_CHECK(false, "binary: unknown dtype code ", dtype);
  }
}

void unary(int op, uptr out, uptr a, const std::vector<i64>& as, const std::vector<i64>& shape,
           double p0d, double p1d) {
  const float p0 = (float)p0d, p1 = (float)p1d;
  KN_CHECK(op >= U_NEG && op <= U_ERF, "unary: unknown op code ", op);
  const std::vector<i64>* st[1] = {&as};
  Layout<1> L = make_layout<1>("unary", shape, st);
  if (L.numel == 0) return;
  if (op == U_NOT) {
    launch_map("unary", NotF{ptr<uint8_t>(out), ptr<const uint8_t>(a)}, L);
    return;
  }
  if (L.contiguous[0] && aligned16(ptr<void>(out)) && aligned16(ptr<void>(a))) {
    k_unary_f32x4<<<map_grid((L.numel + 3) / 4), kMapThreads, 0, kStream>>>(
        op, ptr<float>(out), ptr<const float>(a), L.numel, p0, p1);
    KN_LAUNCH_CHECK("unary");
  } else {
    launch_map("unary", UnaryF{op, ptr<float>(out), ptr<const float>(a), p0, p1}, L);
  }
}

void unary_backward(int op, uptr gi, uptr go, uptr x, uptr y, i64 n, double p0d, double p1d) {
  const float p0 = (float)p0d, p1 = (float)p1d;
  KN_CHECK(op >= U_NEG && op <= U_ERF && op != U_NOT, "unary_backward: unsupported op code ", op);
  KN_CHECK(n >= 0, "unary_backward: negative size ", n);
  if (n == 0) return;
  KN_CHECK(!un_bwd_needs_x(op) || x, "unary_backward: op ", op, " needs the input x");
  KN_CHECK(!un_bwd_needs_y(op) || y, "unary_backward: op ", op, " needs the output y");
  bool vec = aligned16(ptr<void>(gi)) && aligned16(ptr<void>(go)) && aligned16(ptr<void>(x)) &&
             aligned16(ptr<void>(y));
  k_unary_backward<<<map_grid((n + 3) / 4), kMapThreads, 0, kStream>>>(
      op, ptr<float>(gi), ptr<const float>(go), ptr<const float>(x), ptr<const float>(y), n, p0, p1,
      vec);
  KN_LAUNCH_CHECK("unary_backward");
}

void where(int dtype, uptr out, uptr c, const std::vector<i64>& cs, uptr a,
           const std::vector<i64>& as, uptr b, const std::vector<i64>& bs,
           const std::vector<i64>& shape) {
  const std::vector<i64>* st[3] = {&cs, &as, &bs};
  Layout<3> L = make_layout<3>("where", shape, st);
  if (L.numel == 0) return;
  const uint8_t* cp = ptr<const uint8_t>(c);
  switch (dtype) {
    case F32: launch_map("where", WhereF<float>{ptr<float>(out), cp, ptr<const float>(a), ptr<const float>(b)}, L); break;
    case I64: launch_map("where", WhereF<int64_t>{ptr<int64_t>(out), cp, ptr<const int64_t>(a), ptr<const int64_t>(b)}, L); break;
    case BOOL: launch_map("where", WhereF<uint8_t>{ptr<uint8_t>(out), cp, ptr<const uint8_t>(a), ptr<const uint8_t>(b)}, L); break;
    default: KN_CHECK(false, "where: unknown dtype code ", dtype);
  }
}

void copy_strided(int dtype, uptr out, uptr src, const std::vector<i64>& shape,
                  const std::vector<i64>& ss) {
  int es = dtype_size(dtype, "copy_strided");
  const std::vector<i64>* st[1] = {&ss};
  Layout<1> L = make_layout<1>("copy_strided", shape, st);
  if (L.numel == 0) return;
  if (L.contiguous[0]) {
    KN_CUDA_CHECK(cudaMemcpyAsync(ptr<void>(out), ptr<const void>(src), L.numel * es,
                                  cudaMemcpyDeviceToDevice, kStream),
                  "copy_strided");
    return;
  }
  // a bit copy: the element size is all that matters
  switch (es) {
    case 4: launch_map("copy_strided", CopyF<uint32_t>{ptr<uint32_t>(out), ptr<const uint32_t>(src)}, L); break;
    case 8: launch_map("copy_strided", CopyF<uint64_t>{ptr<uint64_t>(out), ptr<const uint64_t>(src)}, L); break;
    default: launch_map("copy_strided", CopyF<uint8_t>{ptr<uint8_t>(out), ptr<const uint8_t>(src)}, L); break;
  }
}

// dst (strided view) <- src (strided, broadcast allowed): the write side of x[...] = y and of
// in-place ops on non-contiguous tensors. dst and src must not overlap (threads run in any order).
void assign_strided(int dtype, uptr dst, const std::vector<i64>& ds, uptr src,
                    const std::vector<i64>& ss, const std::vector<i64>& shape) {
  int es = dtype_size(dtype, "assign_strided");
  const std::vector<i64>* st[2] = {&ds, &ss};
  Layout<2> L = make_layout<2>("assign_strided", shape, st);
  if (L.numel == 0) return;
  if (L.contiguous[0] && L.contiguous[1]) {
    KN_CUDA_CHECK(cudaMemcpyAsync(ptr<void>(dst), ptr<const void>(src), L.numel * es,
                                  cudaMemcpyDeviceToDevice, kStream),
                  "assign_strided");
    return;
  }
  switch (es) {
    case 4: launch_map("assign_strided", AssignF<uint32_t>{ptr<uint32_t>(dst), ptr<const uint32_t>(src)}, L); break;
    case 8: launch_map("assign_strided", AssignF<uint64_t>{ptr<uint64_t>(dst), ptr<const uint64_t>(src)}, L); break;
    default: launch_map("assign_strided", AssignF<uint8_t>{ptr<uint8_t>(dst), ptr<const uint8_t>(src)}, L); break;
  }
}

template <typename S>
void cast_from(int dd, uptr out, uptr src, i64 n) {
  unsigned g = map_grid(n);
  const S* s = ptr<const S>(src);
  switch (dd) {
    case F32: k_cast<S, float><<<g, kMapThreads, 0, kStream>>>(ptr<float>(out), s, n); break;
    case I64: k_cast<S, int64_t><<<g, kMapThreads, 0, kStream>>>(ptr<int64_t>(out), s, n); break;
    case BOOL: k_cast<S, uint8_t><<<g, kMapThreads, 0, kStream>>>(ptr<uint8_t>(out), s, n); break;
    default: KN_CHECK(false, "cast: unknown dtype code ", dd);
  }
  KN_LAUNCH_CHECK("cast");
}

void cast(int sd, int dd, uptr out, uptr src, i64 n) {
  KN_CHECK(n >= 0, "cast: negative size ", n);
  int es = dtype_size(sd, "cast");
  dtype_size(dd, "cast");
  if (n == 0) return;
  if (sd == dd) {
    KN_CUDA_CHECK(cudaMemcpyAsync(ptr<void>(out), ptr<const void>(src), n * es,
                                  cudaMemcpyDeviceToDevice, kStream),
                  "cast");
    return;
  }
  switch (sd) {
    case F32: cast_from<float>(dd, out, src, n); break;
    case I64: cast_from<int64_t>(dd, out, src, n); break;
    default: cast_from<uint8_t>(dd, out, src, n); break;
  }
}

// As the CPU's fill: int64 truncates and refuses values it cannot hold; Python fills int64
// tensors through fill_int64 (a double loses integer bits past 2^53).
void fill(int dtype, uptr out, i64 n, double value) {
  KN_CHECK(n >= 0, "fill: negative size ", n);
  dtype_size(dtype, "fill");
  if (dtype == I64)
    KN_CHECK(value >= -9223372036854775808.0 && value < 9223372036854775808.0,
             "fill: value ", value, " cannot be converted to int64 without overflow");
  if (n == 0) return;
  switch (dtype) {
    case F32: {
      float v = (float)value;
      if (aligned16(ptr<void>(out)))
        k_fill_f32x4<<<map_grid((n + 3) / 4), kMapThreads, 0, kStream>>>(ptr<float>(out), n, v);
      else
        k_fill<float><<<map_grid(n), kMapThreads, 0, kStream>>>(ptr<float>(out), n, v);
      break;
    }
    case I64: k_fill<int64_t><<<map_grid(n), kMapThreads, 0, kStream>>>(ptr<int64_t>(out), n, (int64_t)value); break;
    case BOOL:
      KN_CUDA_CHECK(cudaMemsetAsync(ptr<void>(out), value != 0.0 ? 1 : 0, n, kStream), "fill");
      return;
  }
  KN_LAUNCH_CHECK("fill");
}

void fill_int64(uptr out, i64 n, i64 value) {
  KN_CHECK(n >= 0, "fill_int64: negative size ", n);
  if (n == 0) return;
  k_fill<int64_t><<<map_grid(n), kMapThreads, 0, kStream>>>(ptr<int64_t>(out), n, (int64_t)value);
  KN_LAUNCH_CHECK("fill_int64");
}

}  // namespace
}  // namespace kn

KN_BIND(elementwise) {
  using namespace kn;
  m.def("fill", &fill, py::arg("dtype"), py::arg("out"), py::arg("n"), py::arg("value"), KN_NOGIL);
  m.def("fill_int64", &fill_int64, py::arg("out"), py::arg("n"), py::arg("value"), KN_NOGIL);
  m.def("copy_strided", &copy_strided, py::arg("dtype"), py::arg("out"), py::arg("src"),
        py::arg("shape"), py::arg("src_strides"), KN_NOGIL);
  m.def("assign_strided", &assign_strided, py::arg("dtype"), py::arg("dst"), py::arg("dst_strides"),
        py::arg("src"), py::arg("src_strides"), py::arg("shape"), KN_NOGIL);
  m.def("cast", &cast, py::arg("src_dtype"), py::arg("dst_dtype"), py::arg("out"), py::arg("src"),
        py::arg("n"), KN_NOGIL);
  m.def("binary", &binary, py::arg("op"), py::arg("dtype"), py::arg("out"), py::arg("a"),
        py::arg("a_strides"), py::arg("b"), py::arg("b_strides"), py::arg("shape"), KN_NOGIL);
  m.def("unary", &unary, py::arg("op"), py::arg("out"), py::arg("a"), py::arg("a_strides"),
        py::arg("shape"), py::arg("p0") = 0.0, py::arg("p1") = 0.0, KN_NOGIL);
  m.def("unary_backward", &unary_backward, py::arg("op"), py::arg("grad_in"), py::arg("grad_out"),
        py::arg("x"), py::arg("y"), py::arg("n"), py::arg("p0") = 0.0, py::arg("p1") = 0.0, KN_NOGIL);
  m.def("where", &where, py::arg("dtype"), py::arg("out"), py::arg("cond"), py::arg("cond_strides"),
        py::arg("a"), py::arg("a_strides"), py::arg("b"), py::arg("b_strides"), py::arg("shape"),
        KN_NOGIL);
}
