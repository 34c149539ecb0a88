// Indexing kernels: index_select, index_add, gather, scatter_add (docs/KERNEL_CONTRACT.md).
//
// One thread per element of the larger side, consecutive threads on consecutive `inner` elements
// so global accesses coalesce. The accumulating kernels use atomicAdd (float): duplicate indices
// accumulate, in an order that is not fixed (float sums may differ in the last bits between runs).
// Indices were range-checked and wrapped by Python; the kernels still skip (or zero) an index out
// of range, because an illegal address would poison the whole CUDA context.
#include "cuda/cuda_check.h"

namespace kn {
namespace {

constexpr int kThreads = 256;

template <typename T, typename I>
__global__ void k_index_select(T* __restrict__ out, const T* __restrict__ src, I outer, I n_src, I inner,
                               const int64_t* __restrict__ idx, I n_idx) {
  I total = outer * n_idx * inner, stride = (I)gridDim.x * blockDim.x;
  for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    I i = e % inner, t = e / inner, j = t % n_idx, o = t / n_idx;
    int64_t k = idx[j];
    out[e] = (k >= 0 && k < (int64_t)n_src) ? src[(o * n_src + (I)k) * inner + i] : T(0);
  }
}

template <typename I>
__global__ void k_index_add(float* __restrict__ out, const float* __restrict__ src, I outer, I n_out,
                            I inner, const int64_t* __restrict__ idx, I n_idx) {
  I total = outer * n_idx * inner, stride = (I)gridDim.x * blockDim.x;
  for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    I i = e % inner, t = e / inner, j = t % n_idx, o = t / n_idx;
    int64_t k = idx[j];
    if (k >= 0 && k < (int64_t)n_out) atomicAdd(&out[(o * n_out + (I)k) * inner + i], src[e]);
  }
}

template <typename T, typename I>
__global__ void k_gather(T* __restrict__ out, const T* __restrict__ src, const int64_t* __restrict__ idx,
                         I outer, I n_src, I inner, I n_idx) {
  I total = outer * n_idx * inner, stride = (I)gridDim.x * blockDim.x;
  for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    I i = e % inner, o = e / inner / n_idx;
    int64_t k = idx[e];
    out[e] = (k >= 0 && k < (int64_t)n_src) ? src[(o * n_src + (I)k) * inner + i] : T(0);
  }
}

template <typename I>
__global__ void k_scatter_add(float* __restrict__ out, const float* __restrict__ src,
                              const int64_t* __restrict__ idx, I outer, I n_out, I inner, I n_idx) {
  I total = outer * n_idx * inner, stride = (I)gridDim.x * blockDim.x;
  for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    I i = e % inner, o = e / inner / n_idx;
    int64_t k = idx[e];
    if (k >= 0 && k < (int64_t)n_out) atomicAdd(&out[(o * n_out + (I)k) * inner + i], src[e]);
  }
}

// The 32-bit kernels step their counter by the grid's width (grid(): at most num_sms * 16 blocks of
// kThreads); below 2^31 by that much, the last step cannot overflow to a negative index.
bool fits32(i64 a, i64 b) {
  const i64 lim = (i64(1) << 31) - (i64)num_sms() * 16 * kThreads;
  return a < lim && b < lim;
}
unsigned grid(i64 n) { return grid_for(n, kThreads, (i64)num_sms() * 16); }

void check_sizes(const char* op, i64 outer, i64 n, i64 inner, i64 n_idx) {
  KN_CHECK(outer >= 0 && n >= 0 && inner >= 0 && n_idx >= 0, op, ": negative size (outer ", outer,
           ", n ", n, ", inner ", inner, ", n_idx ", n_idx, ")");
}

template <typename T>
void index_select_t(uptr out, uptr src, i64 outer, i64 n_src, i64 inner, uptr idx, i64 n_idx) {
  i64 total = outer * n_idx * inner;
  if (fits32(total, outer * n_src * inner))
    k_index_select<T, int32_t><<<grid(total), kThreads, 0, kStream>>>(
        ptr<T>(out), ptr<const T>(src), (int32_t)outer, (int32_t)n_src, (int32_t)inner,
        ptr<const int64_t>(idx), (int32_t)n_idx);
  else
    k_index_select<T, int64_t><<<grid(total), kThreads, 0, kStream>>>(
        ptr<T>(out), ptr<const T>(src), outer, n_src, inner, ptr<const int64_t>(idx), n_idx);
  KN_LAUNCH_CHECK("index_select");
}

void index_select(int dtype, uptr out, uptr src, i64 outer, i64 n_src, i64 inner, uptr idx, i64 n_idx) {
  check_sizes("index_select", outer, n_src, inner, n_idx);
  if (outer * n_idx * inner == 0) return;
  check_device_ptr("index_select", "the index", ptr<void>(idx));
  switch (dtype) {
    case F32: return index_select_t<uint32_t>(out, src, outer, n_src, inner, idx, n_idx);
    case I64: return index_select_t<uint64_t>(out, src, outer, n_src, inner, idx, n_idx);
    case BOOL: return index_select_t<uint8_t>(out, src, outer, n_src, inner, idx, n_idx);
  }
  KN_CHECK(false, "index_select: unknown dtype code ", dtype);
}

void index_add(uptr out, uptr src, i64 outer, i64 n_out, i64 inner, uptr idx, i64 n_idx) {
  check_sizes("index_add", outer, n_out, inner, n_idx);
  i64 total = outer * n_idx * inner;
  if (total == 0) return;
  check_device_ptr("index_add", "the index", ptr<void>(idx));
  if (fits32(total, outer * n_out * inner))
    k_index_add<int32_t><<<grid(total), kThreads, 0, kStream>>>(
        ptr<float>(out), ptr<const float>(src), (int32_t)outer, (int32_t)n_out, (int32_t)inner,
        ptr<const int64_t>(idx), (int32_t)n_idx);
  else
    k_index_add<int64_t><<<grid(total), kThreads, 0, kStream>>>(
        ptr<float>(out), ptr<const float>(src), outer, n_out, inner, ptr<const int64_t>(idx), n_idx);
  KN_LAUNCH_CHECK("index_add");
}

template <typename T>
void gather_t(uptr out, uptr src, uptr idx, i64 outer, i64 n_src, i64 inner, i64 n_idx) {
  i64 total = outer * n_idx * inner;
  if (fits32(total, outer * n_src * inner))
    k_gather<T, int32_t><<<grid(total), kThreads, 0, kStream>>>(
        ptr<T>(out), ptr<const T>(src), ptr<const int64_t>(idx), (int32_t)outer, (int32_t)n_src,
        (int32_t)inner, (int32_t)n_idx);
  else
    k_gather<T, int64_t><<<grid(total), kThreads, 0, kStream>>>(
        ptr<T>(out), ptr<const T>(src), ptr<const int64_t>(idx), outer, n_src, inner, n_idx);
  KN_LAUNCH_CHECK("gather");
}

void gather(int dtype, uptr out, uptr src, uptr idx, i64 outer, i64 n_src, i64 inner, i64 n_idx) {
  check_sizes("gather", outer, n_src, inner, n_idx);
  if (outer * n_idx * inner == 0) return;
  check_device_ptr("gather", "the index", ptr<void>(idx));
  switch (dtype) {
    case F32: return gather_t<uint32_t>(out, src, idx, outer, n_src, inner, n_idx);
    case I64: return gather_t<uint64_t>(out, src, idx, outer, n_src, inner, n_idx);
    case BOOL: return gather_t<uint8_t>(out, src, idx, outer, n_src, inner, n_idx);
  }
  KN_CHECK(false, "gather: unknown dtype code ", dtype);
}

void scatter_add(uptr out, uptr src, uptr idx, i64 outer, i64 n_out, i64 inner, i64 n_idx) {
  check_sizes("scatter_add", outer, n_out, inner, n_idx);
  i64 total = outer * n_idx * inner;
  if (total == 0) return;
  check_device_ptr("scatter_add", "the index", ptr<void>(idx));
  if (fits32(total, outer * n_out * inner))
    k_scatter_add<int32_t><<<grid(total), kThreads, 0, kStream>>>(
        ptr<float>(out), ptr<const float>(src), ptr<const int64_t>(idx), (int32_t)outer,
        (int32_t)n_out, (int32_t)inner, (int32_t)n_idx);
  else
    k_scatter_add<int64_t><<<grid(total), kThreads, 0, kStream>>>(
        ptr<float>(out), ptr<const float>(src), ptr<const int64_t>(idx), outer, n_out, inner, n_idx);
  KN_LAUNCH_CHECK("scatter_add");
}

}  // namespace
}  // namespace kn

KN_BIND(index) {
  using namespace kn;
  m.def("index_select", &index_select, py::arg("dtype"), py::arg("out"), py::arg("src"),
        py::arg("outer"), py::arg("n_src"), py::arg("inner"), py::arg("idx"), py::arg("n_idx"), KN_NOGIL);
  m.def("index_add", &index_add, py::arg("out"), py::arg("src"), py::arg("outer"), py::arg("n_out"),
        py::arg("inner"), py::arg("idx"), py::arg("n_idx"), KN_NOGIL);
  m.def("gather", &gather, py::arg("dtype"), py::arg("out"), py::arg("src"), py::arg("idx"),
        py::arg("outer"), py::arg("n_src"), py::arg("inner"), py::arg("n_idx"), KN_NOGIL);
  m.def("scatter_add", &scatter_add, py::arg("out"), py::arg("src"), py::arg("idx"), py::arg("outer"),
        py::arg("n_out"), py::arg("inner"), py::arg("n_idx"), KN_NOGIL);
}
