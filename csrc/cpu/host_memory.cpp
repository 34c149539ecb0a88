// Host memory for CPU tensors: a caching allocator, like the CUDA one but for RAM.
//
// Why: a training step allocates the same large activations and gradients every step (the course
// CNN at batch 128: ~20 MB buffers). Fresh large allocations come from mmap, and the kernel must
// zero every 4 KiB page on its first touch: a ReLU over 19 MB spent half its time in page faults
// (measured 6.0 vs 3.2 ms for three ReLUs). Blocks freed here are kept, bucketed by size class,
// and handed back to the next request of that class, so the steady state faults no pages.
// Large blocks are also 2 MiB aligned and advised as transparent huge pages, so a first touch
// faults once per 2 MiB instead of once per 4 KiB.
//
// Bindings:
//   host_alloc(nbytes, dtype=None) -> (numpy array of nbytes (uint8, or dtype), its address); 64-byte aligned; the memory
//                         returns to the cache when the array and every view of it are gone
//   host_cache_info() -> dict(cached_bytes, cached_blocks, allocated_bytes, limit_bytes, hits, misses)
//   host_empty_cache()   frees every cached block
//   host_set_cache_limit(nbytes)  most bytes kept cached (default: KERNELNET_CPU_CACHE_MB, else 1 GiB)
// Small blocks (< 64 KiB) bypass the cache: malloc serves them from its own free lists, no mmap.
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include <pybind11/numpy.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "common/kn.h"

namespace kn {
namespace {

constexpr size_t kSmall = 64 << 10;   // below this, plain malloc
constexpr size_t kHuge = 4 << 20;     // from this size, 2 MiB aligned + MADV_HUGEPAGE
constexpr size_t kHugeAlign = 2 << 20;

// Size classes: round up to 1/8 of the leading power of two (at most 12.5% slack), so that
// nearly-equal requests (a last, smaller batch) share blocks.
size_t size_class(size_t n) {
  if (n < kSmall) return n;
  size_t p = 1;
  while (p <= n / 2) p <<= 1;
  const size_t step = p / 8;
  return (n + step - 1) / step * step;
}

struct Cache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;  // size class -> blocks
  size_t cached = 0, blocks = 0, allocated = 0, hits = 0, misses = 0;
  size_t limit = default_limit();

  static size_t default_limit() {
    if (const char* s = std::getenv("KERNELNET_CPU_CACHE_MB")) {
      char* end = nullptr;
      long long mb = std::strtoll(s, &end, 10);
      if (end != s && mb >= 0) return (size_t)mb << 20;
    }
    return size_t(1) << 30;
  }
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: capsules may run after static teardown
  return *c;
}

void* fresh_block(size_t cls) {
  const size_t align = cls >= kHuge ? kHugeAlign : 64;
  void* p = std::aligned_alloc(align, (cls + align - 1) / align * align);
  if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (cls >= kHuge) madvise(p, cls, MADV_HUGEPAGE);  // advisory: ignored where THP is off
#endif
  return p;
}

void* acquire(size_t cls) {
  Cache& c = cache();
  if (cls >= kSmall) {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks.find(cls);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached -= cls;
      --c.blocks;
      ++c.hits;
      c.allocated += cls;
      return p;
    }
    ++c.misses;
  }
  void* p = cls >= kSmall ? fresh_block(cls) : std::aligned_alloc(64, (cls + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  if (cls >= kSmall) {
    std::lock_guard<std::mutex> lock(c.mu);
    c.allocated += cls;
  }
  return p;
}

void release(void* p, size_t cls) {
  Cache& c = cache();
  if (cls < kSmall) return std::free(p);
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.allocated -= cls;
    if (c.cached + cls <= c.limit) {
      c.free_blocks[cls].push_back(p);
      c.cached += cls;
      ++c.blocks;
      return;
    }
  }
  std::free(p);
}

void empty_cache() {
  Cache& c = cache();
  std::map<size_t, std::vector<void*>> drop;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    drop.swap(c.free_blocks);
    c.cached = 0;
    c.blocks = 0;
  }
  for (auto& [cls, v] : drop)
    for (void* p : v) std::free(p);
}

// A block and its size class, owned by the capsule that is the numpy array's base.
struct Block {
  void* p;
  size_t cls;
};

// dtype: the array's element type (nbytes must be a multiple of its size); None gives uint8.
// Tensor._empty passes its dtype so the array comes typed: a .view(dtype) in Python and a dtype
// parsed from a string here cost ~0.6 us of every tensor's creation.
py::tuple host_alloc(i64 nbytes, py::object dtype) {
  KN_CHECK(nbytes >= 0, "host_alloc: negative size ", nbytes);
  static const py::dtype kBytes("uint8");
  const py::dtype dt = dtype.is_none() ? kBytes : py::dtype::from_args(dtype);
  const i64 itemsize = (i64)dt.itemsize();
  KN_CHECK(itemsize > 0 && nbytes % itemsize == 0, "host_alloc: ", nbytes,
           " bytes is not a whole number of ", itemsize, "-byte elements");
  const size_t cls = size_class(std::max<size_t>((size_t)nbytes, 1));
  Block* b = new Block{acquire(cls), cls};
  py::capsule owner(b, [](void* v) {
    Block* blk = static_cast<Block*>(v);
    release(blk->p, blk->cls);
    delete blk;
  });
  py::array arr(dt, {(py::ssize_t)(nbytes / itemsize)}, {(py::ssize_t)itemsize}, b->p, owner);
  return py::make_tuple(arr, (uptr)b->p);
}

py::dict cache_info() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  py::dict d;
  d["cached_bytes"] = c.cached;
  d["cached_blocks"] = c.blocks;
  d["allocated_bytes"] = c.allocated;
  d["limit_bytes"] = c.limit;
  d["hits"] = c.hits;
  d["misses"] = c.misses;
  return d;
}

void set_limit(i64 nbytes) {
  KN_CHECK(nbytes >= 0, "host_set_cache_limit: negative limit ", nbytes);
  bool over;
  {
    std::lock_guard<std::mutex> lock(cache().mu);
    cache().limit = (size_t)nbytes;
    over = cache().cached > cache().limit;
  }
  if (over) empty_cache();  // simplest correct trim
}

}  // namespace
}  // namespace kn

KN_BIND(host_memory) {
  m.def("host_alloc", &kn::host_alloc, kn::py::arg("nbytes"), kn::py::arg("dtype") = kn::py::none());
  m.def("host_cache_info", &kn::cache_info);
  m.def("host_empty_cache", &kn::empty_cache);
  m.def("host_set_cache_limit", &kn::set_limit, kn::py::arg("nbytes"));
}
