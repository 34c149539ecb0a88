"""Module machinery: registration, traversal, state_dict errors, train/eval, repr identical to torch's."""
import numpy as np
import pytest
import torch

import kernelnet as kn
import kernelnet.nn as nn


def _pair_models():
    class TNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, 1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                                torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.25))
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(8, 8), torch.nn.Linear(8, 8), torch.nn.GELU()])
            self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(8, 2, bias=False), "b": torch.nn.LayerNorm(8)})
            self.emb = torch.nn.Embedding(5, 8, padding_idx=0)
            self.loss = torch.nn.CrossEntropyLoss()

    class KNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3, 1), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(4),
                                          nn.Dropout(0.25))
            self.blocks = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8), nn.GELU()])
            self.heads = nn.ModuleDict({"a": nn.Linear(8, 2, bias=False), "b": nn.LayerNorm(8)})
            self.emb = nn.Embedding(5, 8, padding_idx=0)
            self.loss = nn.CrossEntropyLoss()

    return TNet(), KNet()


def test_repr_identical_to_pytorch():
    t, k = _pair_models()
    assert repr(k)[1:] == repr(t)[1:]  # "KNet(" vs "TNet("
    for tm, km in [(torch.nn.Conv2d(1, 2, 3, padding="same"), nn.Conv2d(1, 2, 3, padding="same")),
                   (torch.nn.Conv2d(3, 6, (3, 5), 2, 1, 2, 3, False), nn.Conv2d(3, 6, (3, 5), 2, 1, 2, 3, False)),
                   (torch.nn.AvgPool2d(3, 2), nn.AvgPool2d(3, 2)), (torch.nn.AdaptiveAvgPool2d((1, 1)), nn.AdaptiveAvgPool2d((1, 1))),
                   (torch.nn.BatchNorm1d(3, momentum=None), nn.BatchNorm1d(3, momentum=None)),
                   (torch.nn.LeakyReLU(0.2), nn.LeakyReLU(0.2)), (torch.nn.ELU(), nn.ELU()),
                   (torch.nn.Softmax(dim=1), nn.Softmax(dim=1)), (torch.nn.LogSoftmax(1), nn.LogSoftmax(1)),
                   (torch.nn.Flatten(), nn.Flatten()), (torch.nn.Unflatten(1, (2, 3)), nn.Unflatten(1, (2, 3))),
                   (torch.nn.Identity(), nn.Identity()), (torch.nn.Tanh(), nn.Tanh()), (torch.nn.Sigmoid(), nn.Sigmoid()),
                   (torch.nn.Sequential(), nn.Sequential()), (torch.nn.ModuleList(), nn.ModuleList())]:
        assert repr(km) == repr(tm)


def test_traversal_names_match_pytorch():
    t, k = _pair_models()
    assert [n for n, _ in k.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in k.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in k.named_modules()] == [n for n, _ in t.named_modules()]
    assert [n for n, _ in k.named_children()] == [n for n, _ in t.named_children()]
    assert list(k.state_dict().keys()) == list(t.state_dict().keys())
    shapes_t = {n: tuple(v.shape) for n, v in t.state_dict().items()}
    shapes_k = {n: tuple(v.shape) for n, v in k.state_dict().items()}
    assert shapes_k == shapes_t
    assert len(list(k.parameters())) == len(list(t.parameters()))
    assert len(list(k.modules())) == len(list(t.modules()))


def test_shared_module_counted_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert len(list(seq.named_modules())) == 3
    assert list(seq.state_dict().keys()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_load_state_dict_from_torch_and_errors():
    t, k = _pair_models()
    sd = {n: kn.from_numpy(v.detach().numpy().copy()) for n, v in t.state_dict().items()}
    res = k.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert np.array_equal(k.blocks[1].weight.detach().numpy(), t.blocks[1].weight.detach().numpy())
    bad = dict(sd)
    del bad["blocks.0.bias"]
    bad["extra.weight"] = kn.zeros(2)
    with pytest.raises(RuntimeError) as ei:
        k.load_state_dict(bad)
    msg = str(ei.value)
    assert 'Error(s) in loading state_dict for KNet' in msg
    assert 'Missing key(s) in state_dict: "blocks.0.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in msg
    res = k.load_state_dict(bad, strict=False)
    assert res.missing_keys == ["blocks.0.bias"] and res.unexpected_keys == ["extra.weight"]
    # a key continuing past a parameter's name is unexpected too (PyTorch), not a match of "weight"
    nested = dict(sd)
    nested["blocks.1.weight.extra"] = kn.zeros(1)
    with pytest.raises(RuntimeError, match='Unexpected key.*"blocks.1.weight.extra"'):
        k.load_state_dict(nested)
    assert k.load_state_dict(nested, strict=False).unexpected_keys == ["blocks.1.weight.extra"]
    bad = dict(sd)
    bad["heads.a.weight"] = kn.zeros(3, 8)
    with pytest.raises(RuntimeError, match=r"size mismatch for heads\.a\.weight: copying a param with shape "
                                           r"kernelnet\.Size\(\[3, 8\]\) from checkpoint, the shape in current model is "
                                           r"kernelnet\.Size\(\[2, 8\]\)"):
        k.load_state_dict(bad)


def test_parameter_and_buffer_registration():
    m = nn.Module()
    m.w = nn.Parameter(kn.ones(2, 3))
    m.register_buffer("stat", kn.zeros(3))
    m.register_buffer("tmp", kn.zeros(1), persistent=False)
    m.child = nn.Linear(2, 2)
    assert set(m.state_dict()) == {"w", "stat", "child.weight", "child.bias"}
    assert [n for n, _ in m.named_buffers()] == ["stat", "tmp"]
    assert m.w.requires_grad and isinstance(m.w, kn.Tensor)
    with pytest.raises(TypeError, match="cannot assign"):
        m.w = kn.ones(2)
    with pytest.raises(KeyError, match="attribute 'child' already exists"):
        m.register_buffer("child", kn.zeros(1))
    with pytest.raises(KeyError, match="contain"):
        m.register_parameter("a.b", None)
    del m.w
    assert "w" not in dict(m.named_parameters())
    with pytest.raises(AttributeError):
        m.w
    assert repr(nn.Parameter(kn.zeros(2))).startswith("Parameter containing:\n")


def test_train_eval_zero_grad_apply_requires_grad():
    _, k = _pair_models()
    k.eval()
    assert all(not m.training for m in k.modules())
    k.train()
    assert all(m.training for m in k.modules())
    out = k.blocks[0](kn.randn(2, 8)).sum()
    out.backward()
    assert k.blocks[0].weight.grad is not None
    k.zero_grad()
    assert k.blocks[0].weight.grad is None
    k.blocks[0](kn.randn(2, 8)).sum().backward()
    k.zero_grad(set_to_none=False)
    assert np.all(k.blocks[0].weight.grad.numpy() == 0)
    seen = []
    k.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "KNet" and "Linear" in seen
    k.requires_grad_(False)
    assert not any(p.requires_grad for p in k.parameters())


def test_to_keeps_parameter_identity():
    lin = nn.Linear(3, 2)
    w = lin.weight
    assert lin.to("cpu") is lin and lin.weight is w
    lin.float()
    assert lin.weight is w


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear) and isinstance(seq[1:], nn.Sequential)
    assert len(seq[1:]) == 2
    seq.append(nn.Sigmoid())
    assert isinstance(seq[3], nn.Sigmoid)
    del seq[1]
    assert [type(m).__name__ for m in seq] == ["Linear", "Linear", "Sigmoid"]
    x = kn.randn(4, 2)
    y = seq(x)
    assert tuple(y.shape) == (4, 1)
    ml = nn.ModuleList([nn.Linear(1, 1) for _ in range(3)])
    ml.insert(1, nn.ReLU())
    assert isinstance(ml[1], nn.ReLU) and len(ml) == 4
    assert repr(ml).startswith("ModuleList(\n  (0): Linear")
    md = nn.ModuleDict({"x": nn.ReLU()})
    md["y"] = nn.Tanh()
    assert list(md.keys()) == ["x", "y"] and "y" in md
    with pytest.raises(IndexError):
        seq[5]


def test_forward_hooks():
    lin = nn.Linear(2, 2)
    calls = []
    h = lin.register_forward_hook(lambda m, inp, out: calls.append(tuple(out.shape)))
    lin(kn.randn(3, 2))
    h.remove()
    lin(kn.randn(3, 2))
    assert calls == [(3, 2)]


def test_deepcopy_and_pickle_keep_parameters():
    import copy
    import pickle
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    for m2 in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        w, w2 = m[0].weight, m2[0].weight
        assert isinstance(w2, nn.Parameter) and w2.requires_grad and w2 is not w
        assert np.array_equal(w2.detach().numpy(), w.detach().numpy())
        assert [n for n, _ in m2.named_buffers()] == [n for n, _ in m.named_buffers()]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 0.0, "nan", "inf-grad"])
def test_clip_grad_norm_matches_torch(norm_type):
    rng = np.random.default_rng(0)
    gs = [rng.standard_normal(s).astype(np.float32) * 3 for s in [(3, 4), (5,), (2, 2, 2)]]
    if isinstance(norm_type, str):  # a non-finite gradient: PyTorch scales every gradient by the
        gs[1][2] = np.nan if norm_type == "nan" else np.inf  # NaN (or 0) coefficient, so all turn NaN
        norm_type = 2.0
    gs[2][0] = 0.0  # zeros, for the 0-"norm"
    tp = [torch.nn.Parameter(torch.zeros(g.shape)) for g in gs]
    kp = [nn.Parameter(kn.zeros(*g.shape)) for g in gs]
    for t, k, g in zip(tp, kp, gs):
        t.grad = torch.tensor(g)
        k.grad = kn.tensor(g)
    nt = torch.nn.utils.clip_grad_norm_(tp, 1.5, norm_type)
    nk = nn.utils.clip_grad_norm_(kp, 1.5, norm_type)
    np.testing.assert_allclose(float(nk.item()), float(nt), rtol=1e-4)
    for t, k in zip(tp, kp):
        np.testing.assert_allclose(k.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-6)
    if not np.isfinite(float(nt)):
        return
    nn.utils.clip_grad_value_(kp, 0.1)
    assert max(float(np.abs(k.grad.numpy()).max()) for k in kp) <= 0.1 + 1e-7
