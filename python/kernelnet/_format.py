"""repr() of tensors, in PyTorch's layout: tensor([[...]], device='cuda:0', requires_grad=True)."""
import numpy as np


def format_tensor(t):
    arr = t._host_array()
    extras = []
    if t.device.type != "cpu":
        extras.append(f"device='{t.device}'")
    if t.dtype.name == "int64" and arr.size == 0 or t.dtype.name == "bool" and arr.size == 0:
        extras.append(f"dtype=kernelnet.{t.dtype.name}")
    elif t.dtype.name not in ("float32", "int64", "bool"):
        extras.append(f"dtype=kernelnet.{t.dtype.name}")
    if arr.size == 0:
        extras.insert(0, f"size={tuple(arr.shape)}")
    if t.grad_fn is not None:
        extras.append(f"grad_fn=<{t.grad_fn.name}Backward>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    if arr.dtype == np.float32:
        finite = arr[np.isfinite(arr)]
        if finite.size and np.all(finite == np.round(finite)) and np.max(np.abs(finite)) < 1e8:
            fmt = lambda v: (f"{v:.0f}." if np.isfinite(v) else str(v))  # noqa: E731
        else:
            big = finite.size and (np.max(np.abs(finite)) >= 1e8 or np.min(np.abs(finite[finite != 0]), initial=1) < 1e-4)
            fmt = (lambda v: f"{v:.4e}") if big else (lambda v: f"{v:.4f}")  # noqa: E731
        body = np.array2string(arr, separator=", ", prefix="tensor(", threshold=1000, edgeitems=3,
                               formatter={"float_kind": fmt}, max_line_width=80)
    elif arr.dtype == np.bool_:
        body = np.array2string(arr, separator=", ", prefix="tensor(", threshold=1000, edgeitems=3,
                               formatter={"bool": lambda v: "True" if v else "False"})
    else:
        body = np.array2string(arr, separator=", ", prefix="tensor(", threshold=1000, edgeitems=3)
    if arr.size == 0:
        body = "[]"
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"
