// Zero-copy exchange of device tensors with PyTorch / CuPy through DLPack capsules.
//
//   to_dlpack(ptr, shape, strides, dtype, device_id, owner) -> PyCapsule "dltensor" (kDLCUDA)
//       `owner` (the kernelnet Buffer / Tensor) is kept alive until the consumer calls the deleter
//       (or, if the capsule is never consumed, until the capsule dies).
//   from_dlpack(capsule or object with __dlpack__) -> (ptr, shape, strides, dtype, device_id, owner)
//       `owner` holds the producer's DLManagedTensor and calls its deleter when released, so the
//       kernelnet tensor built on ptr must keep `owner` alive.
// Both sides use the legacy default stream (cuda_check.h), so no stream synchronisation is needed;
// for __dlpack__ producers we ask for stream 1 (the legacy default stream in the DLPack protocol).
#include <Python.h>

#include <vector>

#include "common/dlpack.h"
#include "cuda/cuda_check.h"

namespace kn {
namespace {

struct ExportCtx {
  std::vector<int64_t> shape, strides;
  PyObject* owner;
};

void export_deleter(DLManagedTensor* t) {
  auto* ctx = static_cast<ExportCtx*>(t->manager_ctx);
  if (Py_IsInitialized()) {  // the consumer may free from any thread, without the GIL
    PyGILState_STATE st = PyGILState_Ensure();
    PyObject *type, *value, *tb;  // the owner's deallocation runs Python code: keep a pending error
    PyErr_Fetch(&type, &value, &tb);
    Py_XDECREF(ctx->owner);
    PyErr_Restore(type, value, tb);
    PyGILState_Release(st);
  }
  delete ctx;
  delete t;
}

void capsule_destructor(PyObject* cap) {
  // Called when the capsule dies. A consumer renames a capsule it took to "used_dltensor" and
  // becomes responsible for calling the deleter; otherwise we must.
  // Capsules also die while an exception propagates (frame clean-up): keep that exception.
  // (PyCapsule_IsValid sets no error, so there is nothing of ours to clear.)
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  if (PyCapsule_IsValid(cap, "dltensor")) {
    auto* t = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
    if (t && t->deleter) t->deleter(t);
  }
  PyErr_Restore(type, value, tb);
}

DLDataType dl_dtype(int dtype) {
  switch (dtype) {
    case F32: return DLDataType{kDLFloat, 32, 1};
    case I64: return DLDataType{kDLInt, 64, 1};
    case BOOL: return DLDataType{kDLBool, 8, 1};
  }
  throw ArgError(str_cat("to_dlpack: unknown dtype code ", dtype));
}

py::object to_dlpack(uptr p, const std::vector<i64>& shape, const std::vector<i64>& strides, int dtype,
                     int device_id, py::object owner) {
  KN_CHECK(shape.size() == strides.size(), "to_dlpack: shape has ", shape.size(), " dims, strides ",
           strides.size());
  const DLDataType dt = dl_dtype(dtype);  // may throw: before the owner is referenced
  auto* ctx = new ExportCtx{shape, strides, owner.ptr()};
  Py_XINCREF(ctx->owner);
  auto* t = new DLManagedTensor{};
  t->dl_tensor.data = ptr<void>(p);
  t->dl_tensor.device = DLDevice{kDLCUDA, device_id};
  t->dl_tensor.ndim = (int32_t)shape.size();
  t->dl_tensor.dtype = dt;
  t->dl_tensor.shape = ctx->shape.empty() ? nullptr : ctx->shape.data();
  t->dl_tensor.strides = ctx->strides.empty() ? nullptr : ctx->strides.data();
  t->dl_tensor.byte_offset = 0;
  t->manager_ctx = ctx;
  t->deleter = export_deleter;
  PyObject* cap = PyCapsule_New(t, "dltensor", capsule_destructor);
  if (!cap) {
    export_deleter(t);
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(cap);
}

// Keeps an imported tensor's memory alive; calls the producer's deleter when released.
struct DLPackOwner {
  DLManagedTensor* t = nullptr;
  ~DLPackOwner() {
    if (t && t->deleter) t->deleter(t);
  }
};

py::tuple from_dlpack(py::object obj) {
  if (!PyCapsule_CheckExact(obj.ptr()) && py::hasattr(obj, "__dlpack__")) {
    try {
      obj = obj.attr("__dlpack__")(py::arg("stream") = 1);
    } catch (py::error_already_set&) {
      obj = obj.attr("__dlpack__")();
    }
  }
  KN_CHECK(PyCapsule_CheckExact(obj.ptr()), "from_dlpack: expected a DLPack capsule or an object with __dlpack__");
  PyObject* cap = obj.ptr();
  KN_CHECK(PyCapsule_IsValid(cap, "dltensor"),
           "from_dlpack: the capsule was already consumed (or is a versioned DLPack capsule)");
  auto* t = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
  const DLTensor& d = t->dl_tensor;
  KN_CHECK(d.device.device_type == kDLCUDA || d.device.device_type == kDLCUDAManaged,
           "from_dlpack: tensor is on DLPack device type ", (int)d.device.device_type,
           ", kernelnet._cuda takes CUDA tensors (use the CPU path for CPU tensors)");
  if (d.device.device_type == kDLCUDA) {  // kernelnet runs every kernel on the current device
    int cur = 0;
    KN_CUDA_CHECK(cudaGetDevice(&cur), "from_dlpack");
    KN_CHECK(d.device.device_id == cur, "from_dlpack: the tensor is on cuda:", d.device.device_id,
             " but kernelnet runs on cuda:", cur, "; copy it to cuda:", cur, " first");
  }
  int dtype = -1;
  if (d.dtype.lanes == 1) {
    if (d.dtype.code == kDLFloat && d.dtype.bits == 32) dtype = F32;
    else if (d.dtype.code == kDLInt && d.dtype.bits == 64) dtype = I64;
    else if ((d.dtype.code == kDLBool || d.dtype.code == kDLUInt) && d.dtype.bits == 8) dtype = BOOL;
  }
  KN_CHECK(dtype >= 0, "from_dlpack: unsupported dtype (code ", (int)d.dtype.code, ", bits ",
           (int)d.dtype.bits, ", lanes ", (int)d.dtype.lanes, "); kernelnet supports float32, int64, bool");
  py::list shape, strides;
  std::vector<i64> compact(d.ndim);
  i64 s = 1;
  for (int i = d.ndim - 1; i >= 0; --i) {
    compact[i] = s;
    s *= d.shape[i];
  }
  for (int i = 0; i < d.ndim; ++i) {
    shape.append(d.shape[i]);
    strides.append(d.strides ? d.strides[i] : compact[i]);
  }
  uptr p = (uptr)d.data + d.byte_offset;
  int dev = d.device.device_id;
  // take ownership: rename so the producer's capsule destructor does not free it
  PyCapsule_SetName(cap, "used_dltensor");
  auto owner = std::make_unique<DLPackOwner>();
  owner->t = t;
  py::object holder = py::cast(owner.release(), py::return_value_policy::take_ownership);
  return py::make_tuple(p, shape, strides, dtype, dev, holder);
}

}  // namespace
}  // namespace kn

KN_BIND(dlpack) {
  using namespace kn;
  py::class_<DLPackOwner>(m, "_DLPackOwner", "Keeps memory imported through DLPack alive");
  m.def("to_dlpack", &to_dlpack, py::arg("ptr"), py::arg("shape"), py::arg("strides"), py::arg("dtype"),
        py::arg("device_id"), py::arg("owner"));
  m.def("from_dlpack", &from_dlpack, py::arg("obj"));
}
