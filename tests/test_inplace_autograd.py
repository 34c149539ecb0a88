"""In-place ops inside the autograd graph (ops/inplace.py): `out += identity`, `x.relu_()`,
`nn.ReLU(inplace=True)` on tensors autograd records, with PyTorch's values and gradients.

Each program is written once for both libraries (L is kernelnet or torch) and returns the tensors
to compare: outputs and gradients against PyTorch's CPU build when it is installed, and against
finite differences of the same program where noted (so they also run without torch).
"""
import numpy as np
import pytest

import kernelnet as kn
from _coreutil import torch

RNG = np.random.default_rng(7)
X = RNG.standard_normal((4, 3)).astype(np.float32)
W1 = RNG.standard_normal((3, 3)).astype(np.float32)
W2 = RNG.standard_normal((3, 3)).astype(np.float32)


_KN_DEVICE = ["cpu"]  # where the kernelnet side runs (the `device` fixture sets it); torch runs on the CPU


def _dev(L):
    return _KN_DEVICE[0] if L is kn else "cpu"


def _t(L, data, **kw):
    return L.tensor(data, device=_dev(L), **kw)


def _leaves(L):
    x = _t(L, X.copy(), requires_grad=True)
    w1 = _t(L, W1.copy(), requires_grad=True)
    w2 = _t(L, W2.copy(), requires_grad=True)
    return x, w1, w2


def residual(L):  # ResNet's block: out = f(x); out += identity; relu
    x, w1, w2 = _leaves(L)
    out = (x @ w1).tanh() @ w2
    out += x
    out.relu_()
    out.sum().backward()
    return [out, x.grad, w1.grad, w2.grad]


def chain_of_inplace_ops(L):
    x, w1, w2 = _leaves(L)
    y = x @ w1
    y += 1.0
    y *= x
    y.sub_(x @ w2)
    y.pow_(2)  # saves its input (the previous value), which stays intact
    y.clamp_(-2.0, 3.0)
    y.sigmoid_()  # saves its result: the last in-place op here
    y.sum().backward()
    return [y, x.grad, w1.grad, w2.grad]


def consumers_before_the_write(L):  # ops recorded before keep the old history and values
    x, w1, w2 = _leaves(L)
    y = x @ w1
    z = y * 3.0 + y.exp()  # exp saves its result only: y may be written afterwards (PyTorch too)
    y.mul_(x)
    (z.sum() + (y * y).sum()).backward()
    return [z, y, x.grad, w1.grad]


def plain_tensor_takes_a_gradient_path(L):  # acc = zeros; acc += w: acc joins the graph
    x, w1, w2 = _leaves(L)
    acc = L.zeros(4, 3, device=_dev(L))
    for w in (w1, w2):
        acc += x @ w
    (acc * acc).sum().backward()
    return [acc, x.grad, w1.grad, w2.grad]


def retain_grad_follows_the_tensor(L):
    x, w1, w2 = _leaves(L)
    y = x @ w1
    y.retain_grad()
    y.mul_(2.0)
    (y * y).sum().backward()
    return [y.grad, w1.grad]


def inplace_layers_in_a_model(L):
    L.manual_seed(0)
    nn = L.nn
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(inplace=True), nn.Linear(8, 8), nn.LeakyReLU(0.1, inplace=True),
                          nn.Linear(8, 2), nn.ELU(inplace=True)).to(_dev(L))
    with L.no_grad():  # the same weights in both libraries
        for i, p in enumerate(model.parameters()):
            p.copy_(_t(L, np.random.default_rng(i).standard_normal(tuple(p.shape)).astype(np.float32)))
    x = _t(L, X.copy(), requires_grad=True)
    out = model(x)
    out.sum().backward()
    return [out, x.grad] + [p.grad for p in model.parameters()]


def assignment_into_the_graph(L):  # y[idx] = v, as PyTorch records it (CopySlices / index_put_)
    x, w1, w2 = _leaves(L)
    v = _t(L, [5.0, -1.0, 2.0], requires_grad=True)
    y = x @ w1
    y[0] = v  # a row from a tensor that requires grad
    y[:, 1] = 0.5  # a column from a number
    y[_t(L, [2, 3]), 2] = (x @ w2)[0, :2]  # integer-array indices
    y[y > 1.5] = 1.5  # a mask
    z = L.zeros(4, 3, device=_dev(L))
    z[1:3] = x[1:3] * 2  # a plain tensor written from the graph joins it
    ((y + z) ** 2).sum().backward()
    return [y, z, x.grad, w1.grad, w2.grad, v.grad]


def advanced_index_then_inplace(L):  # y[idx] *= 2 reads a copy, writes it back
    x, w1, _ = _leaves(L)
    y = x @ w1
    y[_t(L, [0, 0, 3])] *= 2.0
    y.sum().backward()
    return [y, x.grad, w1.grad]


def overwrites_in_the_graph(L):  # zero_/fill_/copy_: the old values get no gradient, the source does
    x, w1, w2 = _leaves(L)
    y = x @ w1
    y.zero_()
    z = x @ w2
    z.copy_((x * x)[0])  # broadcast from a row
    u = x * 1.0
    u.fill_(2.5)
    ((y + 1) * z * u).sum().backward()
    return [y, z, u, x.grad, w1.grad, w2.grad]


PROGRAMS = [overwrites_in_the_graph, assignment_into_the_graph, advanced_index_then_inplace, residual, chain_of_inplace_ops, consumers_before_the_write, plain_tensor_takes_a_gradient_path,
            retain_grad_follows_the_tensor, inplace_layers_in_a_model]


@pytest.fixture
def on_device(device):
    _KN_DEVICE[0] = device
    yield device
    _KN_DEVICE[0] = "cpu"


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_matches_pytorch(program, on_device):
    if torch is None:
        pytest.skip("torch is not installed")
    ours, ref = program(kn), program(torch)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.detach().cpu().numpy(), b.detach().numpy(), rtol=1e-4, atol=1e-5)


def _finite_difference_grad(f, x0, eps=1e-3):
    g = np.zeros_like(x0, dtype=np.float64)
    for i in np.ndindex(x0.shape):
        xp, xm = x0.copy(), x0.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (f(xp) - f(xm)) / (2 * eps)
    return g


def test_residual_gradient_matches_finite_differences():
    # the same residual program, differentiated numerically in float64 (runs without torch)
    def loss(xv):
        out = np.tanh(xv @ W1.astype(np.float64)) @ W2.astype(np.float64) + xv
        return np.maximum(out, 0).sum()
    got = residual(kn)[1].numpy()
    np.testing.assert_allclose(got, _finite_difference_grad(loss, X.astype(np.float64)), rtol=1e-3, atol=1e-3)


def test_the_tensor_keeps_its_identity_and_joins_the_graph():
    x = kn.ones(3, requires_grad=True)
    y = x * 2
    ref = y
    y += x
    assert y is ref and y.grad_fn is not None and y._version == 1
    assert y.numpy(force=True).tolist() == [3.0, 3.0, 3.0]
    y.sum().backward()
    assert x.grad.numpy().tolist() == [3.0, 3.0, 3.0]


def test_writing_a_result_its_op_saved_keeps_the_saved_values():
    # sigmoid_ saves its result. PyTorch writes the next in-place op into that same memory and so
    # refuses the backward; here the next op gives y new memory and the saved result stays intact,
    # so the gradient is computed, and right (d/dx of sigmoid(2x) + 1 is 2 s (1 - s))
    x = kn.ones(3, requires_grad=True)
    y = x * 2
    y.sigmoid_()
    y.add_(1)
    y.sum().backward()
    s = 1.0 / (1.0 + np.exp(-2.0))
    np.testing.assert_allclose(x.grad.numpy(), [2 * s * (1 - s)] * 3, rtol=1e-6)
    # a plain write into the memory the result shares (under no_grad) is refused, as in PyTorch
    x.grad = None
    y = x * 2
    y.sigmoid_()
    with kn.no_grad():
        y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_an_earlier_op_that_saved_the_old_values_refuses_backward():
    x = kn.ones(3, requires_grad=True)
    w = kn.ones(3, requires_grad=True)
    y = x * 2
    z = y * w  # saves y for w's gradient
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def views_and_bases_written(L):
    """In-place ops through views (PyTorch's CopySlices): the base's history and every live view's
    follow the write."""
    x, w1, w2 = _leaves(L)
    y = x @ w1
    row = y[0]  # a view kept alive while its base is written
    y.add_(1.0)
    col = y[:, 1]
    col.mul_(w2[0, 1])  # a view written: y and row follow
    y[:, 2] *= 2.0  # getitem, in-place, setitem
    buf = L.zeros(2, 4, 3, device=_dev(L))
    buf[0].copy_(x * 2)  # a plain buffer filled through views joins the graph
    buf[1, :, 1:].add_(y[:, :2])
    flat = buf.view(-1)
    flat[:3] = w2[1]  # a view of a view
    loss = (y * y).sum() + (row * 3).sum() + (buf * buf).sum() + flat[5:9].sum()
    loss.backward()
    return [y, row, col, buf, x.grad, w1.grad, w2.grad]


def views_of_op_outputs_written(L):
    """Views of a temporary op output (the base lives on through its views, as PyTorch's ._base),
    retain_grad() on tensors whose history a write through a view replaces."""
    x, w1, w2 = _leaves(L)
    h = (x @ w1).view(2, 6)  # the product itself is not held by the user
    a = h[0]
    a.retain_grad()
    h[:, 0] *= 0.5
    q, k = h[:, :3], h[:, 3:]
    q.mul_(2.0)
    y = (x @ w2).t()  # a non-contiguous view of a temporary
    y[0, :3] = w2[0] * 3  # ...written through a view of it: the base is the contiguous temporary
    h.retain_grad()
    h.add_(1.0)
    loss = (h * h).sum() + (a * k[0, 0]).sum() + (y * y).sum()
    loss.backward()
    return [h, a, y, a.grad, h.grad, x.grad, w1.grad, w2.grad]


def rnn_states_into_a_buffer(L):
    """An RNN loop writing each step's state into a preallocated output (outs[t].copy_(h))."""
    cell = L.nn.RNNCell(3, 4).to(_dev(L))
    with L.no_grad():
        for i, p in enumerate(cell.parameters()):
            p.copy_(_t(L, np.random.RandomState(i).randn(*p.shape).astype(np.float32) * 0.5))
    x = _t(L, np.random.RandomState(9).randn(5, 2, 3).astype(np.float32))
    outs, h = L.zeros(5, 2, 4, device=_dev(L)), L.zeros(2, 4, device=_dev(L))
    for step in range(5):
        h = cell(x[step], h)
        outs[step].copy_(h)
    (outs * outs).sum().backward()
    return [outs] + [p.grad for p in cell.parameters()]


@pytest.mark.parametrize("program", [views_and_bases_written, views_of_op_outputs_written, rnn_states_into_a_buffer],
                         ids=lambda p: p.__name__)
def test_writes_through_views_match_pytorch(program, on_device):
    if torch is None:
        pytest.skip("torch is not installed")
    for a, b in zip(program(kn), program(torch)):
        np.testing.assert_allclose(a.detach().cpu().numpy(), b.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_writes_through_views_refused_where_not_expressible():
    w = kn.ones(4, requires_grad=True)
    with pytest.raises(RuntimeError, match="view of a leaf Variable"):
        w[0:2].add_(1)
    w = kn.ones(4, requires_grad=True)
    d = kn.zeros(4, 3).t().data  # a base of its own, non-contiguous
    with pytest.raises(RuntimeError, match="non-contiguous"):
        d[0].add_(w)


def _aliases_see_the_write(L, alias):
    """A forward hook's detached copy, .data or a NumPy array of a tensor sees an in-place op on it
    (the memory is written, as in PyTorch), and the gradients stay right."""
    x = L.tensor([-1.0, 2.0, -3.0], requires_grad=True)
    w = L.tensor([1.0, 1.0, 1.0], requires_grad=True)
    y = x * 2
    a = {"detach": lambda: y.detach(), ".data": lambda: y.data}[alias]()
    y.mul_(w)  # mul keeps the old y for w's gradient: it gets a copy before the write
    y.relu_()
    (y * y).sum().backward()
    return [a, y, x.grad, w.grad]


@pytest.mark.parametrize("alias", ["detach", ".data"])
def test_aliases_without_grad_see_the_write(alias):
    ours = _aliases_see_the_write(kn, alias)
    assert ours[0].tolist() == [0.0, 4.0, 0.0]
    if torch is not None:
        for a, b in zip(ours, _aliases_see_the_write(torch, alias)):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-6)


def test_a_numpy_export_sees_the_write():
    t = kn.zeros(3)
    a = t.numpy()
    w = kn.ones(3, requires_grad=True)
    t += w  # t joins the graph; a aliases its memory, so the values are written there
    assert a.tolist() == [1.0, 1.0, 1.0] and t.grad_fn is not None
    (t * t).sum().backward()
    assert w.grad.tolist() == [2.0, 2.0, 2.0]


def test_a_leaf_that_requires_grad_is_refused():
    w = kn.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        w.add_(1)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        kn.nn.functional.relu(w, inplace=True)


def test_shape_growing_inplace_op_is_refused():
    y = kn.ones(3, requires_grad=True) * 1
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        y.add_(kn.ones(2, 3))


def test_under_no_grad_the_write_is_a_plain_write():
    x = kn.ones(3, requires_grad=True)
    y = x * 2
    with kn.no_grad():
        y.add_(1)
    assert y.grad_fn is not None and y._version == 1  # history unchanged, values written
    assert y.numpy(force=True).tolist() == [3.0, 3.0, 3.0]


def resnet_basic_block(L):
    """torchvision's BasicBlock as written there: ReLU(inplace=True) and out += identity."""
    nn = L.nn

    class BasicBlock(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)

        def forward(self, x):
            identity = x
            out = self.conv1(x)
            out = self.bn1(out)
            out = self.relu(out)
            out = self.conv2(out)
            out = self.bn2(out)
            out += identity
            out = self.relu(out)
            return out

    block = BasicBlock(4).to(_dev(L))
    with L.no_grad():
        for i, p in enumerate(block.parameters()):
            p.copy_(_t(L, np.random.default_rng(10 + i).standard_normal(tuple(p.shape)).astype(np.float32) * 0.5))
    x = _t(L, np.random.default_rng(3).standard_normal((2, 4, 6, 6)).astype(np.float32), requires_grad=True)
    out = block(x)
    (out * out).sum().backward()
    return [out, x.grad] + [p.grad for p in block.parameters()] + [block.bn1.running_mean, block.bn2.running_var]


def test_resnet_basic_block_matches_pytorch(on_device):
    if torch is None:
        pytest.skip("torch is not installed")
    ours, ref = resnet_basic_block(kn), resnet_basic_block(torch)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.detach().cpu().numpy(), b.detach().numpy(), rtol=2e-4, atol=2e-4)


def _cell_outputs_written(L, cell):
    m = getattr(L.nn, cell)(3, 4)
    with L.no_grad():
        for i, p in enumerate(m.parameters()):
            p.copy_(L.tensor(np.random.RandomState(i).randn(*p.shape).astype(np.float32) * 0.5))
    x = L.tensor(np.random.RandomState(0).randn(2, 3).astype(np.float32), requires_grad=True)
    if cell == "LSTMCell":
        h, c = m(x)
        c.mul_(2)  # the cell's backward reads its c and h outputs
        h.add_(1)
        loss = (h * h).sum() + (c * c).sum()
    else:
        h = m(x)
        h.mul_(3)
        loss = (h * h).sum()
    loss.backward()
    return [x.grad] + [p.grad for p in m.parameters()]


@pytest.mark.parametrize("cell", ["LSTMCell", "GRUCell"])
def test_recurrent_cell_outputs_written_in_place(cell):
    # the cell kernels' backward reads the states they returned: writing the returned tensors must
    # not change what it reads (it gave a silently wrong gradient once)
    if torch is None:
        pytest.skip("torch is not installed")
    for a, b in zip(_cell_outputs_written(kn, cell), _cell_outputs_written(torch, cell)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_rnn_cell_output_written_in_place_gives_the_right_gradient():
    # RNNCell(tanh) reads its output h in backward; PyTorch refuses this program (tanh saved h),
    # kernelnet keeps the values it read and computes the gradient: compare with the same program
    # written out of place
    def run(inplace):
        kn.manual_seed(0)
        m = kn.nn.RNNCell(3, 4)
        x = kn.tensor(np.random.RandomState(0).randn(2, 3).astype(np.float32), requires_grad=True)
        h = m(x)
        if inplace:
            h.mul_(3)
        else:
            h = h * 3
        (h * h).sum().backward()
        return x.grad.numpy()
    np.testing.assert_allclose(run(True), run(False), rtol=1e-6)


def test_graphed_function_writing_its_input_in_place():
    # a replay copies the new input into the memory the recorded kernels read; the in-place op in
    # the function must write there, not move the input tensor elsewhere (replays reused the
    # captured input once)
    w = kn.nn.Parameter(kn.tensor([2.0, 3.0]))

    def step(x):
        w.grad = None
        x.mul_(w)
        loss = (x * x).sum()
        loss.backward()
        return loss

    g = kn.graphed(step, kn.tensor([1.0, 1.0]))
    replayed = g(kn.tensor([5.0, 7.0])).item(), w.grad.tolist()
    w.grad = None
    eager = step(kn.tensor([5.0, 7.0])).item(), w.grad.tolist()
    assert replayed == eager == (541.0, [100.0, 294.0])


def test_self_passed_by_keyword_is_the_old_value():
    # y.addcmul_(tensor1=y, ...) reads y before the write, as a positional y does
    x = kn.ones(3, requires_grad=True)
    w = kn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 2
    y.addcmul_(tensor1=y, tensor2=w)  # y + y * w
    y.sum().backward()
    assert w.grad.tolist() == [2.0, 2.0, 2.0] and x.grad.tolist() == [4.0, 6.0, 8.0]


def test_graphed_function_updating_a_state_in_place():
    # a tensor that outlives the call (a recurrent state) is written where it is while capturing,
    # so replays update the same memory the caller holds
    def make():
        w = kn.nn.Parameter(kn.tensor([0.5, 2.0]))
        state = kn.zeros(2)

        def step(x):
            w.grad = None
            state.mul_(w)
            state.add_(x)
            loss = (state * state).sum()
            loss.backward()
            state.detach_()
            return loss
        return state, step
    state, step = make()
    eager = [step(kn.tensor([1.0, 1.0])).item() for _ in range(4)] + state.tolist()
    state, step = make()
    g = kn.graphed(step, kn.tensor([1.0, 1.0]))
    replayed = [g.outputs.item()] + [g(kn.tensor([1.0, 1.0])).item() for _ in range(3)] + state.tolist()
    assert replayed == eager


def test_fill_with_a_tensor_that_requires_grad():
    for L in ([kn, torch] if torch is not None else [kn]):
        x = L.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = x * 1
        y.fill_(x[1] * 2)
        b = L.zeros(3)
        b.fill_(x[0])
        ((y * y).sum() + b.sum()).backward()
        assert x.grad.tolist() == [3.0, 48.0, 0.0] and b.requires_grad


def test_numpy_in_a_loop_does_not_grow_the_sharers():
    t = kn.zeros(3)
    for _ in range(1000):
        t.numpy()
    assert len(t._vc[2]) <= 2


def test_gradient_accumulation_keeps_the_grad_object():
    # PyTorch adds later gradients into the .grad tensor a first backward made (here a sum over
    # two paths): a reference kept to it sees the total
    x = kn.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    g = x.grad
    y.backward()
    assert g is x.grad and g.tolist() == [4.0, 8.0]


def test_retain_grad_leaves_no_reference_cycle():
    import gc
    m = kn.nn.Linear(8, 8)
    x = kn.randn(4, 8)
    gc.collect()
    gc.disable()
    try:
        before = sum(1 for o in gc.get_objects() if type(o).__name__ == "Node")
        for _ in range(50):
            h = m(x)
            h.retain_grad()
            h.relu().sum().backward()
        del h
        after = sum(1 for o in gc.get_objects() if type(o).__name__ == "Node")
    finally:
        gc.enable()
    assert after - before <= 2  # freed by reference counting, without the cycle collector


def _hook_on_base_after_a_sibling_view_write(L):
    # every live view follows the base's new history, also one the write did not reach: a hook on
    # the base sees its gradient
    x = L.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * 1
    r0, r1 = y[0], y[1]
    r1.mul_(2)
    y.register_hook(lambda g: g * 0.5)
    ((r0 * 10).sum() + y.sum()).backward()
    return x.grad.tolist()


def test_hook_on_a_base_sees_every_view():
    ours = _hook_on_base_after_a_sibling_view_write(kn)
    assert ours == [[5.5, 5.5], [1.0, 1.0]]
    if torch is not None:
        assert ours == _hook_on_base_after_a_sibling_view_write(torch)


def test_rnn_state_detached_in_place_each_step():
    # the truncated-BPTT loop: h.detach_() on the returned state (a view of the layer's output)
    kn.manual_seed(0)
    lstm = kn.nn.LSTM(3, 4, batch_first=True)
    state = None
    for _ in range(3):
        out, state = lstm(kn.randn(2, 5, 3), state)
        out.sum().backward()
        for s in state:
            s.detach_()
    assert not state[0].requires_grad and lstm.weight_hh_l0.grad is not None
