// CUDA graphs for kernelnet.graphed (python/kernelnet/graphs.py): capture the kernels a Python
// function launches, then replay them with one launch.
//
//   g = Graph(); g.capture_begin(); ...kernels...; g.capture_end(); g.replay(); g.replay() ...
//
// Capture: the calling thread's kStream (cuda_check.h) becomes a private non-blocking stream in
// relaxed capture mode, so every launch and async copy of the existing kernel code is recorded
// instead of run; its allocations come from a pool the graph owns (allocator.cpp), because each
// replay writes the same blocks again. Copies between host and device refuse while capturing
// (allocator.cpp: a small one would run at once on stream 0, outside the graph), and so do the
// Python layer's host reads; a call CUDA itself refuses invalidates the capture, and capture_end()
// then discards it and raises. Replay: the graph runs on the private stream after all work queued so far on stream 0,
// and stream 0 waits for it (events), so eager code before and after sees the one-stream order.
#include <cuda_runtime.h>

#include "common/kn.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"

namespace kn {
namespace {

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  ~Graph() {
    if (capturing_) abandon_capture();
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
    if (before_) cudaEventDestroy(before_);
    if (after_) cudaEventDestroy(after_);
    if (stream_) cudaStreamDestroy(stream_);
    cudaGetLastError();  // a destructor reports nothing
    capture_pool_release(pool_);
  }

  void capture_begin() {
    const char* op = "Graph.capture_begin";
    KN_CHECK(!capturing_ && !exec_, op, ": this graph was already captured (make a new Graph)");
    KN_CHECK(kStream == nullptr, op, ": this thread is already capturing a graph");
    if (!stream_) {
      KN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), op);
      KN_CUDA_CHECK(cudaEventCreateWithFlags(&before_, cudaEventDisableTiming), op);
      KN_CUDA_CHECK(cudaEventCreateWithFlags(&after_, cudaEventDisableTiming), op);
    }
    // the capture stream starts after everything already queued (its inputs are being written)
    KN_CUDA_CHECK(cudaEventRecord(before_, nullptr), op);
    KN_CUDA_CHECK(cudaStreamWaitEvent(stream_, before_, 0), op);
    pool_ = capture_pool_begin();
    const cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed);
    if (e != cudaSuccess) {
      capture_pool_end();
      cudaGetLastError();
      cuda_fail(e, op, "cudaStreamBeginCapture", __FILE__, __LINE__);
    }
    kStream = stream_;
    capturing_ = true;
  }

  void capture_end() {
    const char* op = "Graph.capture_end";
    if (!capturing_) return;
    capturing_ = false;
    kStream = nullptr;
    capture_pool_end();
    cudaGraph_t g = nullptr;
    cudaError_t e = cudaStreamEndCapture(stream_, &g);
    if (e != cudaSuccess) {
      cudaGetLastError();
      if (g) cudaGraphDestroy(g);
      throw CudaError(str_cat(op, ": the capture failed (", cudaGetErrorName(e), ": ", cudaGetErrorString(e),
                              "): the captured function made a call a CUDA graph cannot hold, such as a "
                              "copy to the host or a synchronisation (see kernelnet.graphs)"));
    }
    graph_ = g;
    KN_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0), op);
  }

  void replay() {
    const char* op = "Graph.replay";
    KN_CHECK(exec_, op, ": nothing captured yet");
    KN_CHECK(kStream == nullptr, op, ": cannot replay a graph while capturing another");
    KN_CUDA_CHECK(cudaEventRecord(before_, nullptr), op);  // after the inputs were copied in
    KN_CUDA_CHECK(cudaStreamWaitEvent(stream_, before_, 0), op);
    KN_CUDA_CHECK(cudaGraphLaunch(exec_, stream_), op);
    KN_CUDA_CHECK(cudaEventRecord(after_, stream_), op);
    KN_CUDA_CHECK(cudaStreamWaitEvent(nullptr, after_, 0), op);  // eager work waits for the replay
  }

  bool captured() const { return exec_ != nullptr; }

  // The captured function raised: end the capture and drop what was recorded, raising nothing (the
  // function's own error is the one to report). Also run by the destructor.
  void abandon_capture() {
    if (!capturing_) return;
    capturing_ = false;
    kStream = nullptr;
    capture_pool_end();
    cudaGraph_t g = nullptr;
    if (cudaStreamEndCapture(stream_, &g) == cudaSuccess && g) cudaGraphDestroy(g);
    cudaGetLastError();
  }

 private:
  cudaStream_t stream_ = nullptr;
  cudaEvent_t before_ = nullptr, after_ = nullptr;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  void* pool_ = nullptr;
  bool capturing_ = false;
};

}  // namespace
}  // namespace kn

KN_BIND(graph) {
  using kn::Graph;
  namespace py = kn::py;
  py::class_<Graph>(m, "Graph", "A CUDA graph captured from kernelnet's kernels (kernelnet.graphed)")
      .def(py::init<>())
      .def("capture_begin", &Graph::capture_begin)
      .def("capture_end", &Graph::capture_end)
      .def("capture_abort", &Graph::abandon_capture)
      .def("replay", &Graph::replay, KN_NOGIL)
      .def_property_readonly("captured", &Graph::captured);
}
