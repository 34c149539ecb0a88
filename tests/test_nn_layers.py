"""Each nn layer, forward and backward, against torch.nn on awkward shapes (batch 1, odd sizes,
stride/padding), with torch's weights copied into ours."""
import numpy as np
import pytest
import torch

import kernelnet as kn
import kernelnet.nn as nn
import kernelnet.nn.functional as F
from _nn_util import assert_close, check_layer, to_kn, to_torch

rng = np.random.default_rng(1234)


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _has(mod):
    try:
        __import__(f"kernelnet.ops.{mod}")
        return True
    except ImportError:
        return False


needs_conv = pytest.mark.skipif(not _has("conv"), reason="kernelnet.ops.conv not in this build yet")
needs_pool = pytest.mark.skipif(not _has("pool"), reason="kernelnet.ops.pool not in this build yet")


@pytest.mark.parametrize("shape,fin,fout,bias", [((1, 5), 5, 3, True), ((7, 13), 13, 1, False),
                                                  ((2, 3, 9), 9, 4, True)])
def test_linear(shape, fin, fout, bias):
    check_layer(torch.nn.Linear(fin, fout, bias=bias), nn.Linear(fin, fout, bias=bias), rand(*shape))


@needs_conv
@pytest.mark.parametrize("n,c,h,w,k,ks,stride,pad,dil,groups,bias", [
    (1, 1, 28, 28, 32, 3, 1, 0, 1, 1, True),
    (2, 3, 9, 7, 5, 3, 2, 1, 1, 1, True),
    (1, 4, 8, 8, 6, (3, 1), (1, 2), (0, 1), 1, 2, False),
    (3, 2, 10, 11, 4, 3, 1, 2, 2, 1, True),
])
def test_conv2d(n, c, h, w, k, ks, stride, pad, dil, groups, bias):
    check_layer(torch.nn.Conv2d(c, k, ks, stride, pad, dil, groups, bias),
                nn.Conv2d(c, k, ks, stride, pad, dil, groups, bias), rand(n, c, h, w), rtol=1e-4, atol=1e-4)


@needs_conv
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv2d_string_padding(padding):
    check_layer(torch.nn.Conv2d(2, 3, (4, 3), padding=padding), nn.Conv2d(2, 3, (4, 3), padding=padding),
                rand(2, 2, 7, 6), atol=1e-4)


@needs_pool
@pytest.mark.parametrize("args", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=(2, 3), stride=(1, 2), ceil_mode=True)])
def test_max_pool2d(args):
    x = rand(2, 3, 9, 11)
    check_layer(torch.nn.MaxPool2d(**args), nn.MaxPool2d(**args), x)


@needs_pool
@pytest.mark.parametrize("args", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)])
def test_avg_pool2d(args):
    check_layer(torch.nn.AvgPool2d(**args), nn.AvgPool2d(**args), rand(1, 2, 9, 7))


@needs_pool
@pytest.mark.parametrize("out", [1, (3, 2), (5, 7)])
def test_adaptive_avg_pool2d(out):
    check_layer(torch.nn.AdaptiveAvgPool2d(out), nn.AdaptiveAvgPool2d(out), rand(2, 3, 9, 7))


@pytest.mark.parametrize("tl,kl,shape", [
    (torch.nn.ReLU(), nn.ReLU(), (3, 7)), (torch.nn.LeakyReLU(0.2), nn.LeakyReLU(0.2), (1, 5)),
    (torch.nn.ELU(0.7), nn.ELU(0.7), (4, 3)), (torch.nn.GELU(), nn.GELU(), (2, 9)),
    (torch.nn.GELU("tanh"), nn.GELU("tanh"), (2, 9)), (torch.nn.Tanh(), nn.Tanh(), (5,)),
    (torch.nn.Sigmoid(), nn.Sigmoid(), (2, 2, 3)), (torch.nn.Softmax(1), nn.Softmax(1), (3, 11)),
    (torch.nn.Softmax(0), nn.Softmax(0), (4, 3, 2)), (torch.nn.LogSoftmax(-1), nn.LogSoftmax(-1), (2, 3, 5)),
    (torch.nn.LogSoftmax(1), nn.LogSoftmax(1), (2, 6, 3)), (torch.nn.Identity(), nn.Identity(), (3,)),
    (torch.nn.Flatten(), nn.Flatten(), (2, 3, 4, 5)), (torch.nn.Flatten(0, 2), nn.Flatten(0, 2), (2, 3, 4, 5)),
    (torch.nn.Unflatten(1, (2, 6)), nn.Unflatten(1, (2, 6)), (3, 12)),
])
def test_activation_and_shape_layers(tl, kl, shape):
    check_layer(tl, kl, rand(*shape), copy=False)


@pytest.mark.parametrize("cls,shape", [(1, (8, 3)), (1, (5, 4, 7)), (2, (4, 3, 5, 6)), (2, (2, 1, 3, 3))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_train_then_eval(cls, shape, momentum):
    tcls = torch.nn.BatchNorm1d if cls == 1 else torch.nn.BatchNorm2d
    kcls = nn.BatchNorm1d if cls == 1 else nn.BatchNorm2d
    C = shape[1]
    tl, kl = tcls(C, momentum=momentum), kcls(C, momentum=momentum)
    with torch.no_grad():
        tl.weight.uniform_(0.5, 1.5)
        tl.bias.uniform_(-0.5, 0.5)
    check_layer(tl, kl, rand(*shape), train=True)
    check_layer(tl, kl, rand(*shape) + 1.0, train=True, copy=False)  # running stats accumulate
    assert int(kl.num_batches_tracked.item()) == 2
    check_layer(tl, kl, rand(*shape), train=False, copy=False)


def test_batchnorm_no_running_stats_and_errors():
    check_layer(torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False),
                nn.BatchNorm2d(3, affine=False, track_running_stats=False), rand(2, 3, 4, 4), copy=False)
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(kn.zeros(2, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(kn.zeros(1, 3))


@pytest.mark.parametrize("shape,norm", [((4, 10), 10), ((2, 3, 5), (3, 5)), ((1, 7), 7)])
def test_layernorm(shape, norm):
    tl = torch.nn.LayerNorm(norm)
    with torch.no_grad():
        tl.weight.uniform_(0.5, 1.5)
        tl.bias.uniform_(-0.5, 0.5)
    check_layer(tl, nn.LayerNorm(norm), rand(*shape))


@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_embedding(padding_idx):
    tl = torch.nn.Embedding(10, 4, padding_idx=padding_idx)
    kl = nn.Embedding(10, 4, padding_idx=padding_idx)
    kl.load_state_dict({"weight": to_kn(tl.weight)})
    idx = np.array([[0, 3, 9], [9, 9, 1]], dtype=np.int64)
    yt = tl(torch.tensor(idx))
    yk = kl(kn.tensor(idx))
    assert_close(yk, yt)
    g = rand(2, 3, 4)
    yt.backward(torch.tensor(g))
    yk.backward(kn.tensor(g))
    assert_close(kl.weight.grad, tl.weight.grad)


def test_dropout_train_eval_and_scaling():
    kn.manual_seed(0)
    d = nn.Dropout(0.25)
    x = kn.ones(2000)
    y = d(x)
    vals = np.unique(y.numpy())
    assert len(vals) == 2 and vals[0] == 0.0 and abs(vals[1] - 1 / 0.75) < 1e-6
    frac = float((y.numpy() == 0).mean())
    assert 0.2 < frac < 0.3
    d.eval()
    assert np.array_equal(d(x).numpy(), x.numpy())
    xg = kn.ones(50, requires_grad=True)
    d.train()
    out = d(xg)
    out.sum().backward()
    assert np.array_equal(xg.grad.numpy(), out.detach().numpy())  # grad = mask
    assert np.array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())
    assert not nn.Dropout(1.0)(x).numpy().any()


def test_inplace_layers_write_into_their_input():
    """inplace=True means the input tensor holds the result afterwards (PyTorch)."""
    x = kn.ones(1000)
    y = nn.Dropout(0.5, inplace=True)(x)
    zeros = int((x == 0).sum().item())
    assert 350 < zeros < 650 and set(np.unique(x.numpy())) == {0.0, 2.0} and np.array_equal(y.numpy(), x.numpy())
    x = kn.ones(1000)
    F.dropout(x, 0.5, training=True, inplace=True)
    assert 350 < int((x == 0).sum().item()) < 650
    for layer, ref in ((nn.SiLU(inplace=True), torch.nn.SiLU()), (nn.ReLU(inplace=True), torch.nn.ReLU()),
                       (nn.ELU(inplace=True), torch.nn.ELU()), (nn.LeakyReLU(inplace=True), torch.nn.LeakyReLU())):
        v = np.linspace(-2, 2, 9).astype(np.float32)
        x = kn.tensor(v)
        layer(x)
        assert_close(x, ref(torch.tensor(v)))
    # a leaf that requires grad cannot be written in place (PyTorch's error); a tensor in the graph
    # is, and the write is recorded (tests/test_inplace_autograd.py)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        nn.Dropout(0.5, inplace=True)(kn.ones(10, requires_grad=True))
    h = kn.ones(10, requires_grad=True) * 1.0
    assert nn.Dropout(0.5, inplace=True)(h) is h


def test_dropout_same_seed_same_mask():
    kn.manual_seed(3)
    a = F.dropout(kn.ones(100), 0.5).numpy()
    kn.manual_seed(3)
    b = F.dropout(kn.ones(100), 0.5).numpy()
    assert np.array_equal(a, b)


@needs_conv
@needs_pool
def test_course_cnn_forward_backward_matches_torch():
    """The course listing's Net, weights copied from torch, dropout off: logits and every grad."""
    class TNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 32, 3, 1)
            self.conv2 = torch.nn.Conv2d(32, 64, 3, 1)
            self.fc1 = torch.nn.Linear(9216, 128)
            self.fc2 = torch.nn.Linear(128, 10)

        def forward(self, x):
            x = torch.nn.functional.relu(self.conv1(x))
            x = torch.nn.functional.relu(self.conv2(x))
            x = torch.nn.functional.max_pool2d(x, 2)
            x = torch.flatten(x, 1)
            x = torch.nn.functional.relu(self.fc1(x))
            return self.fc2(x)

    class KNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.conv1(x))
            x = F.relu(self.conv2(x))
            x = F.max_pool2d(x, 2)
            x = kn.flatten(x, 1)
            x = F.relu(self.fc1(x))
            return self.fc2(x)

    x = np.random.default_rng(0).random((3, 1, 28, 28)).astype(np.float32)
    labels = np.array([1, 7, 3])
    tn, kn_net = TNet(), KNet()
    kn_net.load_state_dict({k: to_kn(v) for k, v in tn.state_dict().items()})
    lt = torch.nn.functional.cross_entropy(tn(torch.tensor(x)), torch.tensor(labels))
    lk = nn.CrossEntropyLoss()(kn_net(kn.tensor(x)), kn.tensor(labels))
    assert_close(lk, lt, rtol=1e-5, atol=1e-5)
    lt.backward()
    lk.backward()
    tp = dict(tn.named_parameters())
    for name, p in kn_net.named_parameters():
        assert_close(p.grad, tp[name].grad, rtol=1e-3, atol=1e-5, what=name)


def test_default_init_matches_pytorch_distribution_and_seed():
    kn.manual_seed(7)
    a = nn.Linear(100, 50)
    kn.manual_seed(7)
    b = nn.Linear(100, 50)
    assert np.array_equal(a.weight.detach().numpy(), b.weight.detach().numpy())
    w = a.weight.detach().numpy()
    bound = 1 / np.sqrt(100)  # kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(w).max() <= bound + 1e-7 and np.abs(w).max() > 0.9 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.01
    bb = a.bias.detach().numpy()
    assert np.abs(bb).max() <= bound + 1e-7


@pytest.mark.parametrize("x_layout", ["contig", "T"])
def test_linear_gradients_on_both_paths(x_layout):
    """Linear takes a direct sgemm path for contiguous operands and the general view path otherwise
    (here: a transposed input, and a transposed incoming gradient): both against torch, all three
    gradients."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 5)).astype(np.float32)
    w, b = rng.standard_normal((4, 5)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    g = rng.standard_normal((6, 4)).astype(np.float32)
    tx = torch.tensor(a, requires_grad=True)
    tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    (torch.nn.functional.linear(tx, tw, tb) * torch.tensor(g)).sum().backward()
    if x_layout == "T":
        kx = kn.tensor(np.ascontiguousarray(a.T)).t()
        assert not kx.is_contiguous()
        kx.requires_grad_(True)
    else:
        kx = kn.tensor(a, requires_grad=True)
    kw, kb = kn.tensor(w, requires_grad=True), kn.tensor(b, requires_grad=True)
    ky = kn.nn.functional.linear(kx, kw, kb)
    if x_layout == "T":  # the gradient reaching Linear is a transposed view
        (ky.t() * kn.tensor(np.ascontiguousarray(g.T))).sum().backward()
    else:
        (ky * kn.tensor(g)).sum().backward()
    for k, t in ((kx, tx), (kw, tw), (kb, tb)):
        np.testing.assert_allclose(k.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-5)
