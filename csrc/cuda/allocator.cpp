// Device memory for kernelnet._cuda: a caching allocator, Buffer, copies, device queries.
//
// Why a cache: cudaMalloc/cudaFree cost tens of microseconds and cudaFree synchronises the whole
// device. A training step allocates the same activation/gradient sizes every iteration, so freed
// blocks are kept in per-size-class free lists and handed out again: after the first step a
// training loop does no cudaMalloc/cudaFree at all (tests check this via _allocator_stats()).
//
// Size classes: below 1 MiB sizes round up to 512 bytes; from 1 MiB on to the next of
// 2^k * {1, 1.25, 1.5, 1.75}, so at most 25 % of a block is wasted and similar sizes share blocks.
// A block is only reused for the same class (no splitting: simple, and enough for the repeated
// shapes of training). On out-of-memory the cache is released and cudaMalloc retried once; if that
// fails too, kernelnet._cuda.OutOfMemoryError (a MemoryError) names the request and the usage.
//
// Stream ordering: all work runs on the legacy default stream (cuda_check.h), so a block released
// while kernels that use it are still queued may be handed out at once: any later use is queued
// after them.
//
// Graph capture (graph.cpp): blocks allocated while a thread captures come from, and go back to,
// that graph's own pool, never the shared cache: a replay writes into every block the capture
// used, so no eager tensor may get one while the graph lives. (Inside the capture a freed block
// may serve a later request: the captured kernels run in capture order.) When the graph dies, its
// free blocks join the shared cache and its live ones (tensors still referenced) follow when freed.
#include "cuda/allocator.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/cuda_check.h"

namespace kn {
namespace {

struct GraphPool {
  std::unordered_map<std::size_t, std::vector<void*>> free_lists;  // class size -> free blocks
  std::size_t live = 0;       // blocks of the pool held by tensors
  bool graph_alive = true;
};

struct Cache {
  std::mutex mu;
  std::unordered_map<std::size_t, std::vector<void*>> free_lists;  // class size -> blocks
  std::unordered_map<void*, std::size_t> live;                     // block -> class size
  std::unordered_map<void*, GraphPool*> pool_of;                   // live graph-pool blocks
  std::size_t allocated = 0, peak = 0, cached = 0;
  std::int64_t n_malloc = 0, n_free = 0, n_reuse = 0;
};

// Never destroyed: Python may free Buffers after static destructors ran (interpreter exit), and
// cudaFree after the runtime shut down is an error. The driver reclaims everything at exit anyway.
Cache& cache() {
  static Cache* c = new Cache();
  return *c;
}

std::size_t size_class(std::size_t n) {
  const std::size_t kSmall = 1 << 20;
  if (n < kSmall) return (n + 511) & ~std::size_t(511);
  // Huge blocks are rare and a 25 % class would refuse requests that fit (70 GiB -> 80 GiB on an
  // 80 GB card): from 1 GiB up, round to the 2 MiB allocation granule only.
  const std::size_t kHuge = std::size_t(1) << 30, kGranule = std::size_t(2) << 20;
  if (n >= kHuge) return (n + kGranule - 1) & ~(kGranule - 1);
  std::size_t p = kSmall;
  while (p * 2 <= n) p *= 2;  // p = largest power of two <= n
  for (int q = 4; q <= 8; ++q) {
    std::size_t s = p / 4 * q;  // p, 1.25p, 1.5p, 1.75p, 2p
    if (s >= n) return s;
  }
  return 2 * p;
}

void release_cache_locked(Cache& c) {
  for (auto& kv : c.free_lists) {
    for (void* p : kv.second) {
      if (cudaFree(p) != cudaSuccess) cudaGetLastError();  // leave no stale error for the next op
      c.n_free++;
      c.cached -= kv.first;
    }
  }
  c.free_lists.clear();
}

thread_local GraphPool* t_capture_pool = nullptr;  // set while this thread captures a graph

// A block for a capture: from the pool's free list, else a fresh cudaMalloc (relaxed capture mode
// allows it; no cache flush and retry, which would synchronise the device).
void* pool_alloc(Cache& c, GraphPool* pool, std::size_t nbytes, std::size_t sz, const char* op) {
  void* p = nullptr;
  auto it = pool->free_lists.find(sz);
  if (it != pool->free_lists.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    c.cached -= sz;  // cuda_free counted it as cached when it came back to the pool
    c.n_reuse++;
  } else {
    cudaError_t e = cudaMalloc(&p, sz);
    if (e != cudaSuccess) {
      cudaGetLastError();
      std::string msg = str_cat(op, ": CUDA out of memory (", cudaGetErrorString(e), ") allocating ", nbytes,
                                " bytes while capturing a CUDA graph");
      if (e == cudaErrorMemoryAllocation) throw CudaOOM(msg);
      cuda_fail(e, op, "cudaMalloc (graph capture)", __FILE__, __LINE__);
    }
    c.n_malloc++;
  }
  pool->live++;
  c.pool_of[p] = pool;
  c.live[p] = sz;
  c.allocated += sz;
  c.peak = std::max(c.peak, c.allocated);
  return p;
}

}  // namespace

void* capture_pool_begin() {
  KN_CHECK(t_capture_pool == nullptr, "CUDA graph capture: this thread is already capturing");
  t_capture_pool = new GraphPool();
  return t_capture_pool;
}

void capture_pool_end() { t_capture_pool = nullptr; }

void capture_pool_release(void* pool_) {
  if (!pool_) return;
  auto* pool = static_cast<GraphPool*>(pool_);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  pool->graph_alive = false;
  for (auto& kv : pool->free_lists)
    for (void* p : kv.second) c.free_lists[kv.first].push_back(p);  // (already counted as cached)
  pool->free_lists.clear();
  if (pool->live == 0) delete pool;  // else the last live block's cuda_free deletes it
}

void* cuda_alloc(std::size_t nbytes, const char* op) {
  if (nbytes == 0) return nullptr;
  Cache& c = cache();
  std::size_t sz = size_class(nbytes);
  std::lock_guard<std::mutex> lock(c.mu);
  if (t_capture_pool) return pool_alloc(c, t_capture_pool, nbytes, sz, op);
  void* p = nullptr;
  auto it = c.free_lists.find(sz);
  if (it != c.free_lists.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    c.cached -= sz;
    c.n_reuse++;
  } else {
    // A request larger than the whole device never reaches cudaMalloc (on the first H100 run a
    // 1 PiB request crashed the process instead of failing; cause not yet isolated).
    static const std::size_t total = [] {
      std::size_t f = 0, t = 0;
      if (cudaMemGetInfo(&f, &t) != cudaSuccess) {
        cudaGetLastError();
        return std::size_t(0);
      }
      return t;
    }();
    if (total && sz > total)
      throw CudaOOM(str_cat(op, ": CUDA out of memory: ", nbytes, " bytes requested, the device has ",
                            total, " bytes"));
    cudaError_t e = cudaMalloc(&p, sz);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      if (cudaDeviceSynchronize() != cudaSuccess) cudaGetLastError();
      release_cache_locked(c);
      e = cudaMalloc(&p, sz);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      std::string msg = str_cat(op, ": CUDA out of memory (", cudaGetErrorString(e), ") allocating ",
                                nbytes, " bytes; kernelnet holds ", c.allocated,
                                " bytes in live tensors (cache emptied and retried)");
      if (e == cudaErrorMemoryAllocation) throw CudaOOM(msg);
      cuda_fail(e, op, "cudaMalloc", __FILE__, __LINE__);
    }
    c.n_malloc++;
  }
  c.live[p] = sz;
  c.allocated += sz;
  if (c.allocated > c.peak) c.peak = c.allocated;
  return p;
}

void cuda_free(void* p) {
  if (!p) return;
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.live.find(p);
  if (it == c.live.end()) return;  // not ours: never happens through Buffer
  std::size_t sz = it->second;
  c.live.erase(it);
  c.allocated -= sz;
  c.cached += sz;
  auto pit = c.pool_of.find(p);
  if (pit != c.pool_of.end()) {  // a graph's block: back to its pool while the graph lives
    GraphPool* pool = pit->second;
    c.pool_of.erase(pit);
    pool->live--;
    if (pool->graph_alive) {
      pool->free_lists[sz].push_back(p);
      return;
    }
    if (pool->live == 0) delete pool;
  }
  c.free_lists[sz].push_back(p);
}

int device_attribute(cudaDeviceAttr attr, int fallback) {
  int dev = 0, v = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, attr, dev) != cudaSuccess) {
    cudaGetLastError();  // not left for the next op's error check
    return fallback;
  }
  return v;
}

int num_sms() {
  static const int n = device_attribute(cudaDevAttrMultiProcessorCount, 80);
  return n;
}

int device_cc_major() {
  static const int n = device_attribute(cudaDevAttrComputeCapabilityMajor, 0);
  return n;
}

// --------------------------------------------------------------------------- host <-> device copies
// Large copies go through two pinned staging buffers: the CPU copies chunk i+1 between pageable
// memory and one buffer while the DMA engine moves chunk i through the other.
namespace {
constexpr std::size_t kStageBytes = 8 << 20;
constexpr std::size_t kDirectCopyBelow = 1 << 20;

struct Staging {
  std::mutex mu;
  void* buf[2] = {nullptr, nullptr};
  cudaEvent_t ev[2];
  bool ok = false, tried = false;
  bool init() {
    if (tried) return ok;
    tried = true;
    for (int i = 0; i < 2; ++i) {
      if (cudaHostAlloc(&buf[i], kStageBytes, cudaHostAllocDefault) != cudaSuccess ||
          cudaEventCreateWithFlags(&ev[i], cudaEventDisableTiming) != cudaSuccess) {
        cudaGetLastError();
        return ok = false;
      }
    }
    return ok = true;
  }
};
Staging& staging() {
  static Staging* s = new Staging();
  return *s;
}
}  // namespace

void memcpy_htod(uptr dst, uptr src, i64 nbytes) {
  KN_CHECK(nbytes >= 0, "memcpy_htod: negative size ", nbytes);
  // While this thread captures: a small copy would run now on stream 0 (not in the graph) into a
  // pool block that captured kernels may rewrite; a large one would capture a memcpy from the
  // shared staging buffer and leave the staging events "captured" (cudaErrorCapturedEvent later).
  KN_CHECK(kStream == nullptr, "memcpy_htod: a host-to-device copy cannot be captured in a CUDA graph");
  if (nbytes == 0) return;
  Staging& s = staging();
  std::unique_lock<std::mutex> lock(s.mu);
  if ((std::size_t)nbytes < kDirectCopyBelow || !s.init()) {
    lock.unlock();
    KN_CUDA_CHECK(cudaMemcpy(ptr<void>(dst), ptr<const void>(src), nbytes, cudaMemcpyHostToDevice),
                  "memcpy_htod");
    return;
  }
  const char* h = ptr<const char>(src);
  char* d = ptr<char>(dst);
  int i = 0;
  for (i64 off = 0; off < nbytes; off += kStageBytes, i ^= 1) {
    std::size_t len = std::min<std::size_t>(kStageBytes, nbytes - off);
    KN_CUDA_CHECK(cudaEventSynchronize(s.ev[i]), "memcpy_htod");  // buffer i free again
    std::memcpy(s.buf[i], h + off, len);
    KN_CUDA_CHECK(cudaMemcpyAsync(d + off, s.buf[i], len, cudaMemcpyHostToDevice, kStream),
                  "memcpy_htod");
    KN_CUDA_CHECK(cudaEventRecord(s.ev[i], kStream), "memcpy_htod");
  }
}

void memcpy_dtoh(uptr dst, uptr src, i64 nbytes) {
  KN_CHECK(nbytes >= 0, "memcpy_dtoh: negative size ", nbytes);
  KN_CHECK(kStream == nullptr, "memcpy_dtoh: a device-to-host copy cannot be captured in a CUDA graph "
           "(it would read the memory now, before the captured kernels ever ran)");
  if (nbytes == 0) return;
  Staging& s = staging();
  std::unique_lock<std::mutex> lock(s.mu);
  if ((std::size_t)nbytes < kDirectCopyBelow || !s.init()) {
    lock.unlock();
    KN_CUDA_CHECK(cudaMemcpy(ptr<void>(dst), ptr<const void>(src), nbytes, cudaMemcpyDeviceToHost),
                  "memcpy_dtoh");
    return;
  }
  char* h = ptr<char>(dst);
  const char* d = ptr<const char>(src);
  i64 nchunks = (nbytes + kStageBytes - 1) / kStageBytes;
  auto issue = [&](i64 c) {
    std::size_t off = c * kStageBytes, len = std::min<std::size_t>(kStageBytes, nbytes - off);
    KN_CUDA_CHECK(cudaMemcpyAsync(s.buf[c & 1], d + off, len, cudaMemcpyDeviceToHost, kStream),
                  "memcpy_dtoh");
    KN_CUDA_CHECK(cudaEventRecord(s.ev[c & 1], kStream), "memcpy_dtoh");
  };
  issue(0);
  for (i64 c = 0; c < nchunks; ++c) {
    if (c + 1 < nchunks) issue(c + 1);
    KN_CUDA_CHECK(cudaEventSynchronize(s.ev[c & 1]), "memcpy_dtoh");
    std::size_t off = c * kStageBytes, len = std::min<std::size_t>(kStageBytes, nbytes - off);
    std::memcpy(h + off, s.buf[c & 1], len);
  }
}

}  // namespace kn

namespace {
// A device allocation owned by Python. The Tensor layer keeps the Buffer alive as long as any
// view of its memory; dropping the last reference returns the block to the cache.
struct Buffer {
  void* p = nullptr;
  kn::i64 nbytes = 0;
  explicit Buffer(kn::i64 n) : nbytes(n) {
    KN_CHECK(n >= 0, "Buffer: negative size ", n);
    p = kn::cuda_alloc((std::size_t)n, "Buffer");
  }
  ~Buffer() { kn::cuda_free(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};
}  // namespace

KN_BIND(memory) {
  using namespace kn;
  py::class_<Buffer>(m, "Buffer", "Device memory from kernelnet's caching allocator")
      .def(py::init<i64>(), py::arg("nbytes"))
      .def_property_readonly("ptr", [](const Buffer& b) { return (uptr)b.p; })
      .def_readonly("nbytes", &Buffer::nbytes)
      .def("__repr__", [](const Buffer& b) {
        return str_cat("<kernelnet._cuda.Buffer ", b.nbytes, " bytes at 0x", std::hex, (uptr)b.p, ">");
      });
  m.def("memcpy_htod", &memcpy_htod, py::arg("dst"), py::arg("src"), py::arg("nbytes"), KN_NOGIL);
  m.def("memcpy_dtoh", &memcpy_dtoh, py::arg("dst"), py::arg("src"), py::arg("nbytes"), KN_NOGIL);
  m.def(
      "memcpy_dtod",
      [](uptr dst, uptr src, i64 nbytes) {
        KN_CHECK(nbytes >= 0, "memcpy_dtod: negative size ", nbytes);
        if (nbytes == 0) return;
        KN_CUDA_CHECK(cudaMemcpyAsync(ptr<void>(dst), ptr<const void>(src), nbytes,
                                      cudaMemcpyDeviceToDevice, kStream),
                      "memcpy_dtod");
      },
      py::arg("dst"), py::arg("src"), py::arg("nbytes"), KN_NOGIL);
  m.def(
      "synchronize", [] { KN_CUDA_CHECK(cudaDeviceSynchronize(), "synchronize"); }, KN_NOGIL);
  m.def(
      "device_name",
      [](int i) {
        cudaDeviceProp p;
        KN_CUDA_CHECK(cudaGetDeviceProperties(&p, i), "device_name");
        return std::string(p.name);
      },
      py::arg("i") = 0);
  m.def(
      "device_capability",
      [](int i) {
        cudaDeviceProp p;
        KN_CUDA_CHECK(cudaGetDeviceProperties(&p, i), "device_capability");
        return py::make_tuple(p.major, p.minor);
      },
      py::arg("i") = 0);
  m.def("memory_allocated", [] {
    Cache& c = cache();
    std::lock_guard<std::mutex> l(c.mu);
    return (i64)c.allocated;
  });
  m.def("max_memory_allocated", [] {
    Cache& c = cache();
    std::lock_guard<std::mutex> l(c.mu);
    return (i64)c.peak;
  });
  m.def("memory_reserved", [] {
    Cache& c = cache();
    std::lock_guard<std::mutex> l(c.mu);
    return (i64)(c.allocated + c.cached);
  });
  m.def("reset_peak_memory_stats", [] {
    Cache& c = cache();
    std::lock_guard<std::mutex> l(c.mu);
    c.peak = c.allocated;
  });
  m.def("empty_cache", [] {
    Cache& c = cache();
    std::lock_guard<std::mutex> l(c.mu);
    // blocks may still be in use by queued kernels
    KN_CUDA_CHECK(cudaDeviceSynchronize(), "empty_cache");
    release_cache_locked(c);
  });
  m.def("_allocator_stats", [] {
    Cache& c = cache();
    std::lock_guard<std::mutex> l(c.mu);
    py::dict d;
    d["allocated"] = (i64)c.allocated;
    d["peak"] = (i64)c.peak;
    d["cached"] = (i64)c.cached;
    d["n_malloc"] = c.n_malloc;
    d["n_free"] = c.n_free;
    d["n_reuse"] = c.n_reuse;
    return d;
  });
  m.def("_size_class", [](i64 n) {
    KN_CHECK(n >= 0, "_size_class: negative size ", n);
    return (i64)size_class((std::size_t)n);
  });
}
