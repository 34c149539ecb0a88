"""nn.Parameter: a Tensor that a Module registers as a learnable parameter (PyTorch semantics)."""
import kernelnet as _kn


class Parameter(_kn.Tensor):
    """A leaf tensor that requires grad by default and is picked up by ``Module.parameters()``.

    ``Parameter(data)`` shares ``data``'s storage, as ``torch.nn.Parameter`` does.
    """

    __slots__ = ()  # same layout as Tensor, so an existing tensor can be re-classed cheaply

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            data = _kn.empty(0)
        if not isinstance(data, _kn.Tensor):
            raise TypeError(f"Parameter: expected a kernelnet.Tensor, got {type(data).__name__}")
        t = data.detach()
        t.__class__ = cls
        t.requires_grad_(requires_grad)
        return t

    def __init__(self, *args, **kwargs):  # state is set up in __new__; skip Tensor.__init__
        pass

    @classmethod
    def _wrap(cls, t):  # used by Tensor.__deepcopy__: copy.deepcopy(model) keeps Parameters
        return cls(t, t.requires_grad)

    def __reduce__(self):
        t = _kn.Tensor.__reduce__(self)
        return (_rebuild_parameter, (t, self.requires_grad))

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def _rebuild_parameter(tensor_reduce, requires_grad):
    fn, args = tensor_reduce
    return Parameter(fn(*args), requires_grad)


class Buffer:
    """Marker accepted by Module.__setattr__ (``self.x = nn.Buffer(t)``), as in PyTorch >= 2.5."""

    def __init__(self, data, persistent=True):
        self.data = data
        self.persistent = persistent
