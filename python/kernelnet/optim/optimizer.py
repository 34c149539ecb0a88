"""Optimizer base class: param groups, per-parameter state, state_dict (PyTorch's format).

Subclasses gather the parameters of a group that have gradients and make ONE native call per
group (csrc/cpu/optim.cpp, mirrored by the CUDA module), see _fused.py.
"""
from collections.abc import MutableMapping
from copy import deepcopy
import itertools

import kernelnet as _kn
from .. import graphs as _graphs


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()


class _ParamState(MutableMapping):
    """``optimizer.state[param]``: keyed by parameter identity (tensors compare elementwise)."""

    def __init__(self):
        self._d = {}

    def __getitem__(self, p):
        try:
            return self._d[id(p)][1]
        except KeyError:
            raise KeyError(p) from None

    def __setitem__(self, p, v):
        self._d[id(p)] = (p, v)

    def __delitem__(self, p):
        del self._d[id(p)]

    def __iter__(self):
        return (p for p, _ in self._d.values())

    def __len__(self):
        return len(self._d)

    def __contains__(self, p):
        return id(p) in self._d


class _DefaultState(_ParamState):
    def __getitem__(self, p):
        if id(p) not in self._d:
            self._d[id(p)] = (p, {})
        return self._d[id(p)][1]


class Optimizer:
    def __init_subclass__(cls, **kwargs):
        # step() of every optimizer runs as an island of a kernelnet.graphed capture: its per-step
        # scalars (Adam's bias corrections, the learning rate) are computed again at each replay
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_kn_island", False):
            cls.step = _graphs.island_method(step)

    def __init__(self, params, defaults):
        self.defaults = defaults
        self.state = _DefaultState()
        self.param_groups = []
        if isinstance(params, _kn.Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            "but got " + type(params).__name__)
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for g in param_groups:
            self.add_param_group(g)

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __repr__(self):
        s = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            s += "\n" + f"Parameter Group {i}"
            for key in sorted(group.keys()):
                if key != "params":
                    s += "\n" + f"    {key}: {group[key]}"
        return s + "\n)"

    def add_param_group(self, param_group):
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, _kn.Tensor):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs. Please use a list instead.")
        else:
            param_group["params"] = list(params)
        for p in param_group["params"]:
            if not isinstance(p, _kn.Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is " + type(p).__name__)
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if p.dtype != _kn.float32:
                raise TypeError(f"{type(self).__name__}: parameters must be float32, got {p.dtype}")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            param_group.setdefault(name, default)
        ids = [id(p) for p in param_group["params"]]
        if len(set(ids)) != len(ids):
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        existing = set()
        for g in self.param_groups:
            existing.update(id(p) for p in g["params"])
        if existing & set(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = _kn.zeros_like(p.grad)

    def step(self, closure=None):
        raise NotImplementedError

    def _closure(self, closure):
        if closure is None:
            return None
        with _kn.enable_grad():
            return closure()

    # ------------------------------------------------------------------ state dict
    def state_dict(self):
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]} as in PyTorch."""
        index_of = {}
        start = 0
        groups = []
        for g in self.param_groups:
            for i, p in enumerate(g["params"], start):
                index_of.setdefault(id(p), i)
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = [index_of[id(p)] for p in g["params"]]
            start += len(packed["params"])
            groups.append(packed)
        state = {index_of[id(p)]: v for p, v in self.state.items() if id(p) in index_of}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, the optimizer has "
                             f"{len(groups)}")
        lens = [len(g["params"]) for g in groups]
        saved_lens = [len(g["params"]) for g in saved_groups]
        if any(a != b for a, b in zip(lens, saved_lens)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             f"optimizer's group (saved group sizes {saved_lens}, optimizer's {lens})")
        id_map = dict(zip(itertools.chain.from_iterable(g["params"] for g in saved_groups),
                          itertools.chain.from_iterable(g["params"] for g in groups)))
        new_state = _DefaultState()
        for k, v in state_dict["state"].items():
            k = int(k)
            if k not in id_map:
                continue
            p = id_map[k]
            new_state[p] = {name: self._cast_state(p, name, val) for name, val in v.items()}
        self.state = new_state
        new_groups = []
        for g, saved in zip(groups, saved_groups):
            saved["params"] = g["params"]
            new_groups.append(saved)
        self.param_groups = new_groups

    @staticmethod
    def _cast_state(p, name, value):
        if isinstance(value, _kn.Tensor):
            if tuple(value.shape) != tuple(p.shape) and value.dim() != 0:
                raise ValueError(f"optimizer state '{name}' has shape {tuple(value.shape)} but its parameter has "
                                 f"shape {tuple(p.shape)}")
            value = value.to(p.device)
            if value.dtype != p.dtype:
                value = value.to(p.dtype)
            return value.contiguous().clone()
        return value
