"""Reverse-mode, define-by-run automatic differentiation with PyTorch's semantics.

Every differentiable op is a `Function` with a `forward(ctx, ...)` and a `backward(ctx, *grads)`
that both run native kernels. When an op runs with grad mode on and any input requires grad,
`Function.apply` records a `Node` that keeps the ctx (saved tensors) and the inputs; the output's
`grad_fn` points at it. `Tensor.backward()` walks the nodes in reverse topological order,
summing gradients per node output, and accumulates into the `.grad` of leaf tensors.
"""
import threading

_state = threading.local()

# kernelnet.tensor.Tensor and kernelnet.ops, bound on first use: both import this module, so they
# cannot be imported at its top; a function-level import costs ~1-2 us per call, on every op.
_Tensor = None
_ops = None
_capture_grad_hook = None  # set by kernelnet.graphs while capturing: sees every .grad assignment

# Counts in-place writes to any tensor (Tensor._bump_version). A tensor's version counter also
# keeps the count at its last write, so a backward tells whether a saved tensor was written since
# its forward from one number noted at the forward (no per-tensor snapshot on every op), and skips
# even that check when nothing at all was written in between (the common case).
_write_epoch = [0]
_saved_watch = None  # [tensor, saved?] while ops/inplace.py runs an op on `old`


def _bind_late():
    global _Tensor, _ops
    from .tensor import Tensor
    from . import ops
    _Tensor, _ops = Tensor, ops


def is_grad_enabled():
    return getattr(_state, "enabled", True)


def tracks(t):
    """Whether an op on t would be recorded (t requires grad and grad mode is on): ops whose
    forward is pure metadata (views) skip Function.apply's bookkeeping when it would not."""
    return t.requires_grad and getattr(_state, "enabled", True)


def _set_enabled(mode):
    _state.enabled = bool(mode)


class set_grad_enabled:
    """Context manager (and function) that sets grad mode, like torch.set_grad_enabled."""

    def __init__(self, mode):
        self.prev = is_grad_enabled()
        _set_enabled(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _set_enabled(self.prev)
        return False


class _GradMode:
    mode = True

    def __enter__(self):
        self.prev = is_grad_enabled()
        _set_enabled(self.mode)
        return self

    def __exit__(self, *exc):
        _set_enabled(self.prev)
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Disable gradient tracking inside a `with` block or a decorated function."""
    mode = False


class enable_grad(_GradMode):
    mode = True


class inference_mode(no_grad):
    def __init__(self, mode=True):
        self.mode = not mode


class Context:
    """What a Function's forward leaves for its backward (PyTorch's ctx)."""

    # class-level defaults instead of an __init__: a ctx is made for every op that runs through
    # Function.apply, and the constructor call was a measurable part of a small op's time
    saved_tensors = ()
    needs_input_grad = ()
    non_differentiable = ()
    # Which saved tensors the backward reads the values of (None: all). A forward that saves a
    # tensor only for another input's gradient sets it from needs_input_grad (x @ w with x plain
    # data reads only x), so an in-place write PyTorch allows (it would not have saved the tensor)
    # is not refused here either.
    saved_values_read = None
    saved_epoch = None  # _write_epoch when the op ran (set when it saved tensors and was recorded)

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors
        if _saved_watch is not None:  # ops/inplace.py asks whether its `old` is saved
            for t in tensors:
                if t is _saved_watch[0]:
                    _saved_watch[1] = True

    def mark_non_differentiable(self, *tensors):
        self.non_differentiable = tuple(id(t) for t in tensors)


class Node:
    """One recorded op in the graph: the Function, its ctx, and where each input's gradient goes."""

    __slots__ = ("fn", "ctx", "inputs", "n_outputs", "retained", "hooks", "__weakref__", "name")

    def __init__(self, fn, ctx, inputs, n_outputs):
        self.fn = fn
        self.ctx = ctx
        # per positional input, from when the op ran (Function.apply builds it): None where no
        # gradient goes (not a tensor, or one that does not require grad), the tensor itself for a
        # leaf (its .grad receives the gradient), else (node, output_nr, shape) of the op that made
        # it. Fixed here, as PyTorch's edges are: an in-place op later gives the input tensor a new
        # grad_fn, which this op's gradient must not follow. Holding no intermediate tensor also
        # frees those the backward does not read (only ctx keeps what it saved).
        self.inputs = inputs
        self.n_outputs = n_outputs
        # {output_nr: weak reference to the tensor} for retain_grad() on non-leaf outputs (weak: the
        # tensor points at this node through grad_fn, and a cycle would wait for the collector)
        self.retained = None
        self.hooks = None  # {output_nr: [hook]}: Tensor.register_hook on non-leaf outputs
        self.name = fn.__name__

    def __repr__(self):
        return f"<{self.name}Backward>"

    def next_functions(self):
        return tuple(e[0] if type(e) is tuple else None for e in self.inputs)


class Function:
    """Base class for differentiable ops: subclass with static forward(ctx, ...) and
    backward(ctx, *grad_outputs), then call `.apply(...)`.

    backward returns one gradient per positional input (None where there is none)."""

    # False for Functions whose ctx keeps no tensor (shapes, dims, flags only): their node may run
    # backward again without retain_graph=True, as PyTorch allows for nodes that saved nothing
    ctx_holds_tensors = True

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        if _Tensor is None:
            _bind_late()
        Tensor = _Tensor
        ctx = Context()
        needs = tuple([isinstance(a, Tensor) and a.requires_grad for a in args])
        ctx.needs_input_grad = needs
        prev = getattr(_state, "enabled", True)
        track = prev and True in needs
        if prev:  # forward runs without recording (ops inside it are not graph nodes)
            _state.enabled = False
            try:
                out = cls.forward(ctx, *args, **kwargs)
            finally:
                _state.enabled = True
        else:
            out = cls.forward(ctx, *args, **kwargs)
        if not track:
            return out
        if ctx.saved_tensors:
            ctx.saved_epoch = _write_epoch[0]  # backward checks the saved tensors if writes happen after
        inputs = tuple([(a if a.grad_fn is None else (a.grad_fn, a._output_nr, a._shape)) if need else None
                        for a, need in zip(args, needs)])
        if type(out) is Tensor or not isinstance(out, tuple):  # one output (most ops)
            node = Node(cls, ctx, inputs, 1)
            if isinstance(out, Tensor) and out.dtype.is_floating_point and id(out) not in ctx.non_differentiable:
                out.requires_grad = True
                out.grad_fn = node
                out._output_nr = 0
            return out
        node = Node(cls, ctx, inputs, len(out))
        for i, o in enumerate(out):
            if isinstance(o, Tensor) and o.dtype.is_floating_point and id(o) not in ctx.non_differentiable:
                o.requires_grad = True
                o.grad_fn = node
                o._output_nr = i
        return out


def check_saved_versions(node):
    """Refuse to run node's backward on a saved tensor written in place since its forward (an
    optimizer step between two backwards of a retained graph, an input buffer refilled before
    backward): its gradient would silently use the new values. PyTorch's check; its message's
    first words. Called only when some tensor was written since the forward (_write_epoch moved)."""
    ctx = node.ctx
    reads, since = ctx.saved_values_read, ctx.saved_epoch
    for i, t in enumerate(ctx.saved_tensors):
        if t is None or (reads is not None and not reads[i]):
            continue
        vc = t._vc
        if vc is not None and vc[1] > since:
            dt = {"float32": "FloatTensor", "int64": "LongTensor", "bool": "BoolTensor"}.get(
                str(t.dtype).rsplit(".", 1)[-1], "Tensor")
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: [{'cuda.' if t.device.type == 'cuda' else ''}{dt} {list(t._shape)}], which is "
                f"saved by {node.name}Backward, was written in place after the forward pass saved it (it is "
                f"now at version {vc[0]}). Hint: an in-place write (an optimizer step, x += ..., "
                "x[...] = ..., copy_) changed it before backward(); write to a clone, or run the forward again.")


def _topo_order(roots):
    """Nodes reachable from roots, each after every node that feeds gradient into it."""
    order, seen = [], set()
    for root in roots:
        if root is None or id(root) in seen:
            continue
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for e in node.inputs:
                if type(e) is tuple and id(e[0]) not in seen:
                    stack.append((e[0], False))
    order.reverse()  # roots first
    return order


def run_backward(tensors, grad_tensors, retain_graph=False, inputs=None):
    """Accumulate d(sum(tensors * grad_tensors))/d(leaf) into each leaf's .grad."""
    if _Tensor is None:
        _bind_late()
    Tensor, ops = _Tensor, _ops

    grads = {}  # id(node) -> list of per-output gradients
    # backward(inputs=...) and autograd.grad(): only these leaves get a gradient (PyTorch leaves the
    # .grad of every other leaf as it is)
    only = None if inputs is None else {id(t) for t in inputs}
    # inputs that are not leaves get the gradient w.r.t. them in .grad when their node is reached
    # (before its backward runs), as PyTorch's backward(inputs=...) and autograd.grad() give it
    targets = {}
    for t in inputs or ():
        if t.grad_fn is not None:
            targets[(id(t.grad_fn), t._output_nr)] = t
    roots = []
    handed = set()  # storages already given to a leaf as .grad in this pass: clone, never alias
    # each leaf's gradient, summed over the paths that reach it, goes into .grad once at the end:
    # its hooks see the total once, as PyTorch's AccumulateGrad does
    leaf_grads = {}

    def to_leaf(leaf, g):
        if (only is not None and id(leaf) not in only) or not leaf.requires_grad:
            return  # (requires_grad_(False) after the forward: PyTorch's AccumulateGrad skips it too)
        entry = leaf_grads.get(id(leaf))
        if entry is None:
            leaf_grads[id(leaf)] = [leaf, g]
        else:
            entry[1] = ops.add(entry[1], g)
    for t, g in zip(tensors, grad_tensors):
        if not t.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        if g is None:
            if t.numel() != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; "
                                   f"got a tensor of shape {tuple(t.shape)}: pass gradient=")
            g = ops.ones_like(t)
        elif not isinstance(g, Tensor):
            g = ops.tensor(g, dtype=t.dtype, device=t.device)
        else:
            handed.add(id(g._storage))  # the caller's `gradient=`: a leaf's .grad gets a copy, never it
        if tuple(g.shape) != tuple(t.shape):
            raise RuntimeError(f"backward: gradient shape {tuple(g.shape)} does not match tensor shape {tuple(t.shape)}")
        if t.grad_fn is None:  # a leaf
            to_leaf(t, g)
            continue
        slot = grads.setdefault(id(t.grad_fn), [None] * t.grad_fn.n_outputs)
        nr = t._output_nr
        slot[nr] = g if slot[nr] is None else ops.add(slot[nr], g)
        roots.append(t.grad_fn)

    with no_grad():
        for node in _topo_order(roots):
            if node.ctx is None:
                raise RuntimeError(
                    "Trying to backward through the graph a second time (or directly access saved "
                    "tensors after they have already been freed). Specify retain_graph=True if you "
                    "need to backward through the graph a second time.")
            out_grads = grads.pop(id(node), None)
            if out_grads is None:
                continue
            since = node.ctx.saved_epoch
            if since is not None and _write_epoch[0] != since:
                check_saved_versions(node)
            if targets:
                for nr, g in enumerate(out_grads):
                    t = targets.get((id(node), nr))
                    if t is not None and g is not None:
                        t.grad = ops.copy._contiguous_copy(g) if t.grad is None else ops.add(t.grad, g)
            if node.hooks:  # before retain_grad's copy, as PyTorch runs it last
                for nr, hooks in node.hooks.items():
                    g = out_grads[nr]
                    if g is not None:
                        for h in list(hooks):
                            r = h(g)
                            if r is not None:
                                g = r
                        out_grads[nr] = g
                        handed.add(id(g._storage))  # a hook may keep it: a leaf's .grad gets a copy
            if node.retained:
                for nr, ref in node.retained.items():
                    t = ref()
                    if t is not None and out_grads[nr] is not None:
                        if t.grad is None:
                            g0 = out_grads[nr]  # dense, as a leaf's .grad (see _accumulate)
                            t.grad = g0 if g0.is_contiguous() else ops.copy._contiguous_copy(g0)
                            handed.add(id(t.grad._storage))  # visible as y.grad: leaves get a copy
                        else:
                            t.grad = ops.add(t.grad, out_grads[nr])
            in_grads = node.fn.backward(node.ctx, *out_grads)
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            if len(in_grads) < len(node.inputs):
                in_grads = tuple(in_grads) + (None,) * (len(node.inputs) - len(in_grads))
            for e, g in zip(node.inputs, in_grads):
                if e is None or g is None:
                    continue
                edge = type(e) is tuple  # the output of another recorded op, else a leaf
                shape = e[2] if edge else e._shape
                if g._shape != shape:
                    raise RuntimeError(f"{node.name}.backward returned a gradient of shape "
                                       f"{tuple(g.shape)} for an input of shape {tuple(shape)}")
                if edge:
                    fn, nr = e[0], e[1]
                    slot = grads.setdefault(id(fn), [None] * fn.n_outputs)
                    slot[nr] = g if slot[nr] is None else ops.add(slot[nr], g)
                else:
                    to_leaf(e, g)
            if not retain_graph and (node.fn.ctx_holds_tensors or node.ctx.saved_tensors):
                node.ctx = None  # frees what it saved; running it again raises (PyTorch's rule)
        for leaf, g in leaf_grads.values():
            _accumulate(leaf, g, handed)


def _accumulate(leaf, g, handed):
    """Put gradient g into leaf.grad."""
    ops = _ops
    if leaf._hooks:
        for h in leaf._hooks:
            r = h(g)
            if r is not None:
                g = r
        handed.add(id(g._storage))  # a hook saw (or returned) g and may keep it: .grad gets a copy
    if g.device != leaf.device:
        g = g.to(leaf.device)
    before = grad = leaf.grad
    if grad is None:
        # each leaf gets a buffer of its own: in-place updates of one .grad (clipping, zeroing)
        # must not leak into another leaf that received the same gradient tensor. A strided
        # gradient (sum's backward is an expand: every element one address) is made dense, or
        # x.grad[0] = 0 / x.grad.add_(t) would write every element at once (PyTorch's grads are dense).
        key = id(g._storage)
        if key in handed or not g.is_contiguous():
            leaf.grad = ops.copy._contiguous_copy(g)
        elif g.requires_grad:
            leaf.grad = g.detach()
        else:
            # the gradient tensor itself, as PyTorch's AccumulateGrad steals it (a detach() would
            # make a view per leaf per step). Nobody else holds it (`handed` gives any second taker
            # of its memory, the caller's gradient=, a retained .grad and hooks a copy), so later
            # gradients may be added into it in place, as PyTorch does
            leaf.grad = g
            g._accum_buffer = True
        handed.add(key)
    # grad += g in place, as PyTorch's AccumulateGrad does (no new buffer per accumulation; a
    # reference to .grad sees the sum, as there), where one kernel can (ops.elementwise's
    # binary_into_self). Only into a buffer autograd made itself (the sum below): a first gradient
    # may share storage with a tensor the user holds, which must not change.
    elif not (grad._accum_buffer and ops.elementwise.binary_into_self(ops.elementwise.ADD, grad, g)):
        leaf.grad = ops.add(grad, g).detach()
        leaf.grad._accum_buffer = True
    if _capture_grad_hook is not None:
        _capture_grad_hook(leaf, before)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    if _Tensor is None:
        _bind_late()
    Tensor = _Tensor
    if create_graph:
        raise NotImplementedError("create_graph=True (higher-order gradients) is not supported yet")
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors] * len(tensors) if grad_tensors is None else [grad_tensors]
    if isinstance(inputs, Tensor):
        inputs = [inputs]
    run_backward(list(tensors), list(grad_tensors), retain_graph=bool(retain_graph),
                 inputs=None if inputs is None else list(inputs))


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """torch.autograd.grad: gradients of outputs w.r.t. inputs, without touching .grad."""
    from .tensor import Tensor
    if isinstance(outputs, Tensor):
        outputs = [outputs]
    single = isinstance(inputs, Tensor)
    if single:
        inputs = [inputs]
    saved = [(t, t.grad) for t in inputs]
    for t in inputs:
        t.grad = None
    try:
        backward(outputs, grad_outputs, retain_graph=retain_graph, create_graph=create_graph, inputs=inputs)
        result = []
        for t in inputs:
            if t.grad is None and not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been used in the graph. Set allow_unused=True if this is the desired behavior.")
            result.append(t.grad)
    finally:
        for t, g in saved:
            t.grad = g
    return tuple(result)
