"""Version counters: an in-place write to a tensor that a backward still needs is refused at
backward() (PyTorch's check), instead of the gradient silently using the new values.

Each case is a small program written the same way for kernelnet and PyTorch; what PyTorch does
(raise or compute) is spelled out here and, when torch is installed, checked against it too.
"""
import numpy as np
import pytest

import kernelnet as kn
from _coreutil import torch


def _mul_then_write_input(L):  # x is saved by Mul for w's gradient
    w = L.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = L.tensor([4.0, 5.0, 6.0])
    y = (w * x).sum()
    x.add_(1)
    y.backward()
    return w.grad


def _add_then_write_input(L):  # Add's gradient does not read x: nothing to refuse
    w = L.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = L.tensor([4.0, 5.0, 6.0])
    y = (w + x).sum()
    x.add_(1)
    y.backward()
    return w.grad


def _write_through_data(L):  # .data has a counter of its own: the write is not seen (PyTorch too)
    w = L.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = L.tensor([4.0, 5.0, 6.0])
    y = (w * x).sum()
    x.data.mul_(2)
    y.backward()
    return w.grad


def _step_between_backwards(L):  # the classic: optimizer.step() between two backwards of one graph
    L.manual_seed(0)
    m = L.nn.Sequential(L.nn.Linear(4, 5), L.nn.ReLU(), L.nn.Linear(5, 1))
    opt = L.optim.SGD(m.parameters(), lr=0.1)
    loss = m(L.ones(2, 4)).sum()
    loss.backward(retain_graph=True)
    opt.step()
    loss.backward()
    return m[0].weight.grad


def _step_between_backwards_linear_model(L):  # x is data: Linear never needed w's values
    L.manual_seed(0)
    m = L.nn.Linear(4, 1)
    opt = L.optim.SGD(m.parameters(), lr=0.1)
    loss = m(L.ones(2, 4)).sum()
    loss.backward(retain_graph=True)
    opt.step()
    loss.backward()
    return m.weight.grad


def _setitem_into_base_of_saved_view(L):  # the counter is shared by a tensor and its views
    w = L.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = L.ones(4, 3)
    y = (w * x[1]).sum()
    x[0] = 5.0
    y.backward()
    return w.grad


def _matmul_input_refilled(L):  # an input buffer refilled before backward
    w = L.ones(3, 3, requires_grad=True)
    x = L.ones(2, 3)
    y = (x @ w).sum()
    x.copy_(L.zeros(2, 3))
    y.backward()
    return w.grad


def _matmul_weight_written_with_data_input(L):
    w = L.ones(3, 3, requires_grad=True)
    x = L.ones(2, 3)
    y = (x @ w).sum()
    with L.no_grad():
        w.mul_(2)
    y.backward()
    return w.grad


def _divisor_zeroed(L):
    w = L.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = L.tensor([4.0, 5.0, 6.0])
    y = (w / x).sum()
    x.zero_()
    y.backward()
    return w.grad


def _saved_output_written_under_no_grad(L):  # exp saves its result
    w = L.tensor([1.0, 2.0], requires_grad=True)
    y = w.exp()
    z = y.sum()
    with L.no_grad():
        y.mul_(2)
    z.backward()
    return w.grad


def _relu_input_written(L):  # relu's backward reads its result, as PyTorch's
    w = L.tensor([1.0, -2.0, 3.0], requires_grad=True)
    x = L.tensor([4.0, 5.0, 6.0])
    y = w * x
    z = y.relu()
    with L.no_grad():
        y.mul_(3)
    z.sum().backward()
    return w.grad


CASES = {
    "relu, input written": (_relu_input_written, False),
    # name: (program, PyTorch raises)
    "mul, input written": (_mul_then_write_input, True),
    "add, input written": (_add_then_write_input, False),
    "write through .data": (_write_through_data, False),
    "optimizer step between backwards": (_step_between_backwards, True),
    "step between backwards, linear model on data": (_step_between_backwards_linear_model, False),
    "setitem into the base of a saved view": (_setitem_into_base_of_saved_view, True),
    "matmul, input refilled with copy_": (_matmul_input_refilled, True),
    "matmul, weight written, data input": (_matmul_weight_written_with_data_input, False),
    "div, divisor zeroed": (_divisor_zeroed, True),
    "exp, saved output written": (_saved_output_written_under_no_grad, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_inplace_write_after_forward_raises_where_pytorch_does(name):
    program, raises = CASES[name]
    if raises:
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            program(kn)
    else:
        g = program(kn)
        assert g is not None and np.isfinite(g.numpy()).all()
    if torch is not None:  # the expectation above is PyTorch's behaviour
        if raises:
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                program(torch)
        else:
            np.testing.assert_allclose(program(kn).numpy(), program(torch).numpy(), rtol=1e-6)


def test_error_names_the_tensor_its_node_and_version():
    with pytest.raises(RuntimeError) as e:
        _mul_then_write_input(kn)
    msg = str(e.value)
    assert "[FloatTensor [3]]" in msg and "MulBackward" in msg and "now at version 1" in msg


def test_writes_before_the_forward_or_to_unsaved_tensors_pass():
    # writes happen all the time in a training loop (zero_grad, optimizer steps, buffers): only a
    # write to a saved tensor after its forward is refused
    w = kn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = kn.tensor([4.0, 5.0, 6.0])
    x.mul_(2)  # before the forward
    y = (w * x).sum()
    unrelated = kn.zeros(3)
    unrelated.add_(1)  # after it, to a tensor the graph does not hold
    y.backward()
    assert w.grad.numpy().tolist() == [8.0, 10.0, 12.0]


def test_version_is_shared_by_views_and_detach_but_not_data():
    x = kn.zeros(4, 3)
    assert x._version == 0
    v, d, dat = x[0:2], x.detach(), x.data
    v.add_(1)  # the fast in-place path (one kernel)
    assert (x._version, v._version, d._version, dat._version) == (1, 1, 1, 0)
    d.clamp_(0, 0.5)  # the general in-place path
    x[1] = 3.0  # setitem
    x.fill_(2)
    assert (x._version, v._version, d._version) == (4, 4, 4)
    dat.zero_()
    assert (x._version, dat._version) == (4, 1)
    fresh = kn.ones(3)
    assert fresh._version == 0
    fresh.mul_(2)  # no view was ever taken: the counter starts on the first write
    assert fresh._version == 1 and fresh[0:1]._version == 1


def test_optimizer_step_bumps_parameters_once_per_step():
    p = kn.nn.Parameter(kn.ones(3))
    opt = kn.optim.Adam([p], lr=0.1)
    p.grad = kn.ones(3)
    before = p._version
    opt.step()
    assert p._version == before + 1
    opt.step()
    assert p._version == before + 2


def test_gradient_is_right_when_the_write_is_allowed():
    # Add saves no values: the gradient must be that of the graph as it ran (ones), and the write
    # into x must not have leaked into anything autograd reads
    assert _add_then_write_input(kn).numpy().tolist() == [1.0, 1.0, 1.0]
    # x @ w with data x: d(sum)/dw reads only x, which was not written
    assert _matmul_weight_written_with_data_input(kn).numpy().tolist() == [[2.0] * 3] * 3


@pytest.mark.parametrize("layer", ["LSTM", "GRU"])
def test_recurrent_weights_are_checked(layer):
    kn.manual_seed(0)
    rnn = getattr(kn.nn, layer)(3, 4)
    out, _ = rnn(kn.randn(5, 2, 3))
    loss = out.sum()
    with kn.no_grad():
        rnn.weight_hh_l0.mul_(0.5)  # the recurrence's backward reads W_hh
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
