"""kernelnet.graphed: capture the kernels of a function once, then replay them without Python.

    def train_step(x, y):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()                         # an island: runs eagerly at every replay
        return loss

    batches = iter(loader)
    x0, y0 = next(batches)
    step = kernelnet.graphed(train_step, x0, y0)  # this call IS batch 0's training step
    running = step.outputs.item()
    for x, y in batches:
        loss = step(x, y)                        # copies x, y into the captured inputs and replays
        running += loss.item()

(warmup=N first calls the function N times eagerly, islands included: N real optimizer steps on
x0, y0. The default, 0, captures at once: the capture is the call's real step, as in eager mode.)

On a GPU the captured kernels are CUDA graphs: a replay is one launch per stretch between islands,
without the Python layer's per-op cost or the per-kernel launch cost (kernelnet.cuda.graphed is the
same function). On the CPU the native kernel calls are recorded and replayed in order, skipping
autograd, dispatch and argument checks; the arithmetic is the same, so a replay equals an eager call.

Islands: optimizer.step() and an LR scheduler's step() called while capturing run eagerly, now and
at every replay, between the captured stretches before and after them: their per-step scalars
(Adam's bias corrections, the learning rate) are computed in Python (island() and island_method()
make other calls islands).

What a replay repeats is exactly the kernels of the captured call, on the same memory. So:
- the inputs are copied into the captured input tensors (same shapes, dtypes and device);
- the returned tensors are the captured outputs, overwritten by each replay (clone to keep one);
- gradients go into the same .grad tensors each replay, as after zero_grad() (they are not
  accumulated across replays); a replay puts them back if .grad was set to None in between;
- dropout draws fresh masks each replay, as eager calls would (the generator's seed and offset
  are read by the kernels when they run, and the generator advances as in eager mode);
- Python code in the function (outside islands) does not run again: anything it decides from
  tensor values would be frozen, so reading a value on the host while capturing (.item(), .numpy(),
  bool(t)...) raises, as do copies between host and device, rebinding t.data, random draws other
  than dropout, and gradients accumulated into .grad tensors that existed before the capture (call
  zero_grad() inside the function). A refusal the function catches still fails the capture.
- tensors the function replaces (state["h"] = new) stay alive with the capture: a replay reads and
  writes the same memory, not the new objects. Only other threads run eagerly, unrecorded.
"""
import functools
import threading

from . import _dtype as D
from . import _device
from . import autograd
from . import tensor as _tensor_mod
from .tensor import Tensor

_lock = threading.Lock()
_capture = None  # the Capture in progress (one at a time, process-wide)

# Native functions that return a value and have no side effects: they run, and are not recorded.
_QUERIES = frozenset({"conv2d_output_size", "pool2d_output_size", "num_threads", "simd_active",
                      "simd_detected", "host_cache_info"})


class GraphCaptureError(RuntimeError):
    """What the captured function did cannot be replayed (see kernelnet.graphs)."""


def capturing():
    """True while kernelnet.graphed is capturing a function in this thread."""
    return active() is not None


def active():
    """The capture in progress in this thread, or None. Other threads (a DataLoader's prefetching
    worker, say) keep running eagerly, unrecorded and unrestricted, while one thread captures; so
    does an island (see island()) while it runs."""
    cap = _capture
    return cap if cap is not None and cap._mine() else None


def island(fn):
    """Run fn() now, eagerly, and again (its Python and its kernels) at each replay, between the
    captured kernels before and after it. The optimizers' step() and the LR schedulers' step()
    become islands when called while capturing: their per-step scalars are computed in Python."""
    cap = active() if _capture is not None else None
    if cap is None:
        return fn()
    return cap.island(fn)


def keep_alive(obj):
    """Keep obj (a host array whose address a kernel gets, say) alive as long as the capture in
    progress in this thread, if any: every replay reads it again."""
    cap = active() if _capture is not None else None
    if cap is not None:
        cap.kept.append(obj)


def island_method(method):
    """Decorator: the method runs as an island (see island()) when called while capturing. Its
    arguments are those of the captured call at every replay (a tensor argument is read anew)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if _capture is not None and active() is not None:
            return _capture.island(lambda: method(self, *args, **kwargs))
        return method(self, *args, **kwargs)
    wrapper._kn_island = True
    return wrapper


def _refuse(what):
    cap = active() if _capture is not None else None
    if cap is not None and cap.refused is None:  # raised again at the end of the capture, in case
        cap.refused = what                      # the function caught it (try: float(x) except: ...)
    raise GraphCaptureError(f"kernelnet.graphed: {what} while capturing. A replay runs only the captured "
                            "kernels, not the Python code, so this would be frozen at its captured value.")


class _Recorder:
    """Stands in for kernelnet._cpu while capturing on the CPU: runs each kernel and records it."""

    def __init__(self, mod, calls):
        self._mod, self._calls = mod, calls

    def __getattr__(self, name):
        f = getattr(self._mod, name)
        if not callable(f) or name in _QUERIES:
            return f
        calls = self._calls

        def record(*args, **kwargs):
            r = f(*args, **kwargs)
            if r is not None:
                raise GraphCaptureError(f"kernelnet.graphed: the native function {name} returned a value to "
                                        "Python while capturing; it cannot be replayed")
            calls.append((f, args, kwargs))
            return r
        return record


class _Capture:
    def __init__(self, device):
        self.device = device
        self.thread = threading.get_ident()
        self.calls = []          # CPU: (function, args, kwargs) in order
        self.retained = {}       # id -> storage: every storage whose address a kernel got while capturing
        self.made = set()        # ids of the storages allocated while capturing (kept by `retained`)
        self.kept = []           # host objects read by address (keep_alive)
        self.refused = None      # the first refusal, even if the function caught it
        self.grads = {}          # id(leaf) -> (leaf, grad tensor) assigned while capturing
        self.rng_used = 0        # Philox offsets consumed by dropout in one call
        self.rng_gen = None
        self.rng_primed = False  # CUDA: rng_state written for the capture-time run
        self.paused = False      # True while an island runs (it is not captured)
        self.segments = []       # CUDA: executed Graphs and island entries, in order
        self.graph = None        # CUDA: the Graph being captured
        self.clear = []          # leaves an island saw with a .grad that the function then set to None
        # [seed, base offset] read by the dropout kernels when they run (uint64 bits in int64)
        self.rng_state = Tensor._empty((2,), D.int64, device)
        self.recorder = _Recorder(_device._cpu, self.calls) if device.type == "cpu" else None

    def _mine(self):
        return not self.paused and threading.get_ident() == self.thread

    # hooks called by the rest of the library while this capture is active (in any thread: each
    # returns at once for threads other than the capturing one, and while an island runs)
    def backend(self, dev, mod):
        if not self._mine():
            return mod
        if dev != self.device:
            _refuse(f"running a kernel on {dev} in a function captured on {self.device}")
        return self.recorder if self.recorder is not None else mod

    def dropout_rng(self, generator, n):
        """(seed, offset, rng_state address) for a dropout kernel of n elements."""
        if self.rng_gen is None:
            self.rng_gen = generator
            if self.device.type == "cpu":  # the recording run draws for real: from the generator's position
                self.store_rng(generator)
        elif generator is not self.rng_gen:
            _refuse("drawing dropout masks from two different generators")
        rel = self.rng_used
        self.rng_used += (int(n) + 3) // 4 * 4 if n > 0 else 0
        return 0, rel, self.rng_state.data_ptr()

    def retain(self, storage, made):
        if self._mine():
            self.retained[id(storage)] = storage
            if made:
                self.made.add(id(storage))

    def host_read(self, t):
        if self._mine():
            _refuse("reading a tensor's value on the host (.item(), .numpy(), .tolist(), bool(), float()...)")

    def grad_assigned(self, leaf, before):
        if not self._mine():
            return
        if before is not None and id(leaf) not in self.grads and id(before._storage) not in self.made:
            _refuse("accumulating a gradient into a .grad tensor that existed before the capture (call "
                    "optimizer.zero_grad() inside the captured function)")
        self.grads[id(leaf)] = (leaf, leaf.grad)

    def _made_grads(self):
        """(leaf, .grad) now, for the leaves whose .grad is a tensor this capture made."""
        return [(leaf, leaf.grad) for leaf, _ in self.grads.values()
                if leaf.grad is not None and id(leaf.grad._storage) in self.made]

    def _island_grads(self):
        """What an island sees: (leaf, .grad) for the gradients this capture made, and (leaf, None)
        for the leaves it gave a gradient that the function then cleared (zero_grad() before the
        island): a replay puts back both, as the eager call would have them."""
        return [(leaf, leaf.grad) for leaf, _ in self.grads.values()
                if leaf.grad is None or id(leaf.grad._storage) in self.made]

    def final_grads(self):
        """Keep, for re-attachment by replays, the leaves whose .grad at the END of the capture is a
        tensor the capture made (not one the function replaced by a clamped copy, or that
        autograd.grad() restored from before the capture), and those the function cleared."""
        # an island re-attaches the gradients it saw; those the function cleared after it go back to None
        islands = [a for f, a, _ in self.calls if f is None] + [x for x in self.segments if isinstance(x, tuple)]
        seen = {id(leaf): leaf for entry in islands for leaf, g in entry[1] if g is not None}
        self.clear = [leaf for leaf in seen.values() if leaf.grad is None]
        self.grads = {id(leaf): (leaf, g) for leaf, g in self._made_grads()}

    def prime_rng(self):
        """CUDA: before the first capture-time run, point the dropout kernels at the generator's
        position (the whole call's draws are counted from there; the generator advances at the end)."""
        if self.rng_gen is not None and not self.rng_primed and self.recorder is None:
            self.store_rng(self.rng_gen)
            self.rng_primed = True

    def store_rng(self, gen):
        """Write gen's [seed, offset] into rng_state, the pair the dropout kernels read."""
        bits = _state_bits(gen)
        st = self.rng_state
        if self.recorder is not None:  # CPU: straight into storage (.numpy() would count as a host read)
            st._storage[st._offset:st._offset + 2] = bits
            return
        from .ops.creation import tensor as _tensor
        # an eager host-to-device write, also between two captured stretches (island() primes the
        # state while the capture is installed): paused, or the copy would be refused as captured
        paused, self.paused = self.paused, True
        try:
            st.copy_(_tensor(bits, dtype=D.int64, device=self.device))
        finally:
            self.paused = paused

    def island(self, fn):
        """Run fn eagerly between two captured stretches (module function island() says why)."""
        snapshot = self._island_grads()
        if self.recorder is None:  # CUDA: close this stretch and run it (a capture runs nothing)
            self.graph.capture_end()
            self.prime_rng()
            self.graph.replay()
            self.segments.append(self.graph)
            self.graph = None
        self.paused = True
        try:
            r = fn()
        finally:
            self.paused = False
        entry = (fn, snapshot, r)  # r: what the captured code after the island and the caller hold
        if self.recorder is None:
            self.segments.append(entry)
            self.graph = _device._backend_cuda(self.device).Graph()
            self.graph.capture_begin()
        else:
            self.calls.append((None, entry, None))
        return r


def _write_rng_state(cap):
    """Point the captured dropout kernels at the generator's current position, and advance the
    generator past what one call draws (as the eager call would)."""
    gen = cap.rng_gen
    if gen is None:
        return
    cap.store_rng(gen)
    gen._offset += cap.rng_used


def _run_island(entry):
    fn, snapshot, captured = entry
    for leaf, g in snapshot:  # the gradients the island saw while capturing (zero_grad may have run since)
        if leaf.grad is not g:
            leaf.grad = g
    _refresh(captured, fn())


def _refresh(captured, new):
    """Write an island's result at a replay into the tensors it returned while capturing: the
    captured kernels after the island and the caller (optimizer.step(closure)'s loss) hold those."""
    if isinstance(captured, Tensor):
        if new is captured:
            return
        if not isinstance(new, Tensor) or new._shape != captured._shape or new.dtype is not captured.dtype:
            got = f"{tuple(new.shape)} {new.dtype}" if isinstance(new, Tensor) else type(new).__name__
            raise GraphCaptureError(f"kernelnet.graphed: an island returned a {tuple(captured.shape)} "
                                    f"{captured.dtype} tensor while capturing but {got} at a replay")
        with autograd.no_grad():
            captured.detach().copy_(new.detach())
    elif isinstance(captured, (tuple, list)) and isinstance(new, (tuple, list)) and len(captured) == len(new):
        for c, n in zip(captured, new):
            _refresh(c, n)
    elif isinstance(captured, dict) and isinstance(new, dict):
        for k, c in captured.items():
            _refresh(c, new.get(k))


def _state_bits(gen):
    """The generator's [seed, offset] as int64 values with the uint64 bits the kernels read."""
    seed = gen._seed
    return [seed if seed < 2 ** 63 else seed - 2 ** 64, gen._offset]


def _set_hooks(cap):
    """Route the library's hooks to `cap` (or back to nothing): backend dispatch, tensor creation,
    host reads and gradient accumulation check `cap` only through these variables."""
    on = cap is not None
    _device._capture_backend = cap.backend if on else None
    _tensor_mod._capture_retain = cap.retain if on else None
    _tensor_mod._host_read_guard = cap.host_read if on else None
    autograd._capture_grad_hook = cap.grad_assigned if on else None


def _detached(out):
    if isinstance(out, Tensor):
        return out.detach() if out.grad_fn is not None else out
    if isinstance(out, (tuple, list)):
        r = [_detached(o) for o in out]
        return tuple(r) if isinstance(out, tuple) else r
    if isinstance(out, dict):
        return {k: _detached(v) for k, v in out.items()}
    return out


def _same_frozen(a, b):
    """Whether a replay may take non-tensor argument a in place of the captured b."""
    if a is b:
        return True
    try:
        import numpy as np
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
        return bool(a == b)
    except Exception:  # noqa: BLE001  (tensors inside containers, objects without ==)
        return False


class Graphed:
    """The callable kernelnet.graphed returns (see the module docstring)."""

    def __init__(self, fn, args, warmup=0):
        self._fn = fn
        self._tensor_pos = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        if not self._tensor_pos:
            raise ValueError("kernelnet.graphed: pass the function's sample tensors (its inputs), e.g. "
                             "graphed(step, x, y)")
        devs = {args[i].device for i in self._tensor_pos}
        if len(devs) != 1:
            raise ValueError(f"kernelnet.graphed: all input tensors must be on one device, got {sorted(map(str, devs))}")
        self.device = devs.pop()
        self._static = list(args)
        for i in self._tensor_pos:  # the captured inputs: private copies the replays read
            a = args[i]
            s = a.detach().clone()
            s.requires_grad = a.requires_grad
            # replays copy new inputs into this memory, which the recorded kernels read: an in-place
            # op on the input inside the function must write here (ops/inplace.py), not move the
            # tensor to new memory
            s._mark_shared()
            self._static[i] = s
        for _ in range(int(warmup)):
            fn(*self._static)
        for i in self._tensor_pos:  # the warm-up's input gradients are not the capture's
            self._static[i].grad = None
        self._outputs = self._capture()

    def _capture(self):
        global _capture
        cap = _Capture(self.device)
        with _lock:
            if _capture is not None:
                raise GraphCaptureError("kernelnet.graphed: another capture is in progress")
            _capture = cap
            _set_hooks(cap)
        try:
            if cap.recorder is None:  # CUDA: the kernels go into CUDA graphs, without running
                cap.graph = _device._backend_cuda(self.device).Graph()
                cap.graph.capture_begin()
                try:
                    out = self._fn(*self._static)
                except BaseException:
                    if cap.graph is not None:
                        cap.graph.capture_abort()  # the function's error is the one to report
                    raise
                cap.graph.capture_end()  # raises if CUDA refused something it recorded
            else:
                out = self._fn(*self._static)
        finally:
            with _lock:
                _capture = None
                _set_hooks(None)
        if cap.refused is not None:
            raise GraphCaptureError(f"kernelnet.graphed: {cap.refused} while capturing (the function caught "
                                    "the error, but the capture cannot be replayed)")
        cap.final_grads()
        out = _detached(out)  # backward outside the function is not replayed: it must not look possible
        self._cap = cap
        self._graph = None
        if cap.recorder is None:  # CUDA: run the last stretch once (the earlier ones ran at their island)
            cap.prime_rng()
            cap.graph.replay()
            cap.segments.append(cap.graph)
            cap.graph = None
            self._graph = cap.segments
            for leaf, g in cap.grads.values():
                leaf.grad = g
        if cap.rng_gen is not None:
            cap.rng_gen._offset += cap.rng_used  # the capture-time run drew its masks for real
        return out

    def _replay_kernels(self):
        if _capture is not None and active() is not None:
            _refuse("calling a graphed function (its replay would not be recorded)")
        cap = self._cap
        _write_rng_state(cap)
        if self._graph is not None:
            for seg in self._graph:
                if isinstance(seg, tuple):
                    _run_island(seg)
                else:
                    seg.replay()
        else:
            for f, args, kwargs in cap.calls:
                if f is None:
                    _run_island(args)
                else:
                    f(*args, **kwargs)
        for leaf, g in cap.grads.values():
            if leaf.grad is not g:
                leaf.grad = g
        for leaf in cap.clear:
            leaf.grad = None

    def __call__(self, *args):
        if len(args) != len(self._static):
            raise TypeError(f"kernelnet.graphed: expected {len(self._static)} arguments as captured, got {len(args)}")
        for i in self._tensor_pos:
            a, s = args[i], self._static[i]
            if not isinstance(a, Tensor) or a._shape != s._shape or a.dtype is not s.dtype:
                got = f"{type(a).__name__} {tuple(a.shape)} {a.dtype}" if isinstance(a, Tensor) else type(a).__name__
                raise ValueError(f"kernelnet.graphed: argument {i} must be a {s.dtype} tensor of shape "
                                 f"{tuple(s.shape)} as captured (a replay reuses the captured memory), got {got}")
            if a is not s:
                with autograd.no_grad():
                    s.copy_(a)
        for i, a in enumerate(args):
            if i not in self._tensor_pos and not _same_frozen(a, self._static[i]):
                raise ValueError(f"kernelnet.graphed: argument {i} differs from the captured value "
                                 f"{self._static[i]!r}; non-tensor arguments are frozen into the capture")
        self._replay_kernels()
        for i in self._tensor_pos:  # input gradients reach the caller's tensors, as in eager mode
            a, s = args[i], self._static[i]
            if a is not s and a.requires_grad and s.grad is not None:
                a.grad = s.grad
        return self._outputs

    @property
    def outputs(self):
        """What the function returned: the captured call's results until the first replay, then
        each replay's (the same tensors, overwritten)."""
        return self._outputs

    @property
    def num_islands(self):
        """Eager calls (optimizer or scheduler steps) between the captured stretches."""
        items = self._graph if self._graph is not None else [a for f, a, _ in self._cap.calls if f is None]
        return sum(1 for x in items if isinstance(x, tuple))

    @property
    def num_kernels(self):
        """Native calls one CPU replay makes (None on CUDA, where the graph holds them)."""
        return sum(1 for f, _, _ in self._cap.calls if f is not None) if self._graph is None else None


def graphed(fn, *args, warmup=0):
    """Capture fn(*args) (after `warmup` eager calls) and return a callable that replays it on new
    inputs of the same shapes: kernelnet.graphs explains what a replay repeats and what it refuses."""
    return Graphed(fn, args, warmup)
