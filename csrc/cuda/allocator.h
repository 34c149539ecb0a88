// Caching device-memory allocator for kernelnet._cuda (see allocator.cpp).
#pragma once
#include <cstddef>

namespace kn {

// Returns a device block of at least nbytes (nullptr for 0). Throws CudaOOM when the device is out
// of memory even after the cache was emptied. Blocks come back with cuda_free.
void* cuda_alloc(std::size_t nbytes, const char* op);
void cuda_free(void* p);

// CUDA graph capture (graph.cpp): between capture_pool_begin() and capture_pool_end() this thread's
// allocations come from a new pool owned by the graph; capture_pool_release(pool) when the graph
// is destroyed returns its free blocks to the shared cache (live ones follow when freed).
void* capture_pool_begin();
void capture_pool_end();
void capture_pool_release(void* pool);

// Scratch memory for one kernel call (split-K partials, two-pass reductions). The block goes back
// to the cache when the scope ends; the single stream orders its reuse after the kernels using it.
struct Workspace {
  void* p = nullptr;
  Workspace(std::size_t nbytes, const char* op) : p(cuda_alloc(nbytes, op)) {}
  ~Workspace() { cuda_free(p); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  template <typename T>
  T* as() const { return static_cast<T*>(p); }
};

}  // namespace kn
