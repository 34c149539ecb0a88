"""Views (reshape/view/permute/transpose/expand/squeeze/unsqueeze/flatten/slicing) share memory
and match NumPy; integer and boolean indexing, setitem, and the joining/splitting ops."""
import numpy as np
import pytest

import kernelnet as kn
from _coreutil import arr, make, tonp, close, RNG


def _shares(a, b):
    return a._storage is b._storage


# ------------------------------------------------------------------ views
@pytest.mark.parametrize("layout", ["contig", "T", "step"])
@pytest.mark.parametrize("shape,new", [((3, 4), (12,)), ((3, 4), (2, 6)), ((3, 4), (4, -1)),
                                       ((2, 3, 4), (6, 4)), ((2, 3, 4), (2, 12)), ((1, 5), (5, 1)),
                                       ((2, 0, 3), (0, 6)), ((5,), (5, 1, 1)), ((1,), ()),
                                       ((2, 1, 3), (2, 3)), ((4, 6), (2, 2, 3, 2))])
def test_reshape_matches_numpy(shape, new, layout, device):
    a = arr(*shape)
    t = make(a, device, layout)
    r = t.reshape(new)
    close(r, a.reshape(new))
    if t.is_contiguous():
        assert _shares(r, t)
        close(t.view(new), a.reshape(new))


def test_view_of_noncontiguous_follows_pytorch_rule(device):
    a = arr(4, 6)
    t = make(a, device)
    tt = t.T  # (6, 4) with strides (1, 6)
    with pytest.raises(RuntimeError, match="view"):
        tt.view(24)
    # splitting a dim of a transposed view is fine (no copy)
    v = tt.view(3, 2, 4)
    close(v, a.T.reshape(3, 2, 4))
    assert _shares(v, t)
    # merging dims that are contiguous with each other inside a strided view
    s = make(arr(3, 4, 5), device)[:, :, ::2]  # (3, 4, 3) strides (20, 5, 2)
    with pytest.raises(RuntimeError):
        s.view(3, 12)
    p = make(arr(2, 3, 4), device).permute(1, 0, 2)  # (3, 2, 4): dims 1,2 mergeable? no: strides (4,12,1)
    close(p.reshape(3, 8), tonp(p).reshape(3, 8))
    q = make(arr(2, 3, 4), device)[:, 1:]  # (2, 2, 4) strides (12, 4, 1): last two merge
    w = q.view(2, 8)
    assert _shares(w, q)
    close(w, tonp(q).reshape(2, 8))


def test_random_reshape_views_against_numpy(device):
    rng = np.random.default_rng(5)
    for _ in range(40):
        shape = tuple(int(s) for s in rng.integers(1, 4, rng.integers(1, 5)))
        a = arr(*shape)
        perm = tuple(rng.permutation(len(shape)))
        t = make(a, device).permute(*perm)
        ap = a.transpose(perm)
        n = ap.size
        divs = [d for d in range(1, n + 1) if n % d == 0]
        d = int(rng.choice(divs))
        r = t.reshape(d, -1)
        close(r, ap.reshape(d, -1))
        # whenever kernelnet makes a view, it must be a faithful one (write-through check)
        if _shares(r, t):
            r2 = r.clone()
            r.fill_(0)
            assert np.all(tonp(t) == 0)
            r.copy_(r2)
            close(t, ap)


def test_permute_transpose_expand(device):
    a = arr(2, 3, 4)
    t = make(a, device)
    close(t.permute(2, 0, 1), a.transpose(2, 0, 1))
    close(t.permute(-1, 0, 1), a.transpose(2, 0, 1))
    close(t.transpose(0, 2), np.swapaxes(a, 0, 2))
    close(t.transpose(-1, -2), np.swapaxes(a, -1, -2))
    close(t.mT, np.swapaxes(a, -1, -2))
    m = arr(3, 4)
    close(make(m, device).T, m.T)
    close(make(m, device).t(), m.T)
    assert _shares(t.permute(2, 0, 1), t)
    e = make(arr(3, 1), device)
    x = e.expand(2, 3, 5)
    close(x, np.broadcast_to(tonp(e), (2, 3, 5)))
    assert x.stride()[0] == 0 and x.stride()[2] == 0
    close(e.expand(-1, 4), np.broadcast_to(tonp(e), (3, 4)))
    close(e.expand_as(kn.zeros(3, 2)), np.broadcast_to(tonp(e), (3, 2)))
    close(kn.broadcast_to(e, (3, 3)), np.broadcast_to(tonp(e), (3, 3)))
    # a view of an expanded tensor then made contiguous
    close(x.contiguous(), np.broadcast_to(tonp(e), (2, 3, 5)))


def test_squeeze_unsqueeze_flatten(device):
    a = arr(1, 3, 1, 2)
    t = make(a, device)
    close(t.squeeze(), a.squeeze())
    close(t.squeeze(0), a.squeeze(0))
    close(t.squeeze(-2), a.squeeze(2))
    close(t.squeeze(1), a)  # non-1 dim: unchanged
    close(t.unsqueeze(0), a[None])
    close(t.unsqueeze(-1), a[..., None])
    close(t.unsqueeze(2), np.expand_dims(a, 2))
    close(t.flatten(), a.reshape(-1))
    close(t.flatten(1), a.reshape(1, -1))
    close(t.flatten(1, 2), a.reshape(1, 3, 2))
    close(kn.tensor(5.0).flatten(), [5.0])
    close(t.unflatten(1, (3, 1)), a.reshape(1, 3, 1, 1, 2))
    # unsqueeze of a non-contiguous view is still a view
    u = make(arr(3, 4), device).T
    assert _shares(u.unsqueeze(1), u)
    close(u.unsqueeze(1), tonp(u)[:, None])


def test_movedim_narrow_flip_repeat(device):
    a = arr(2, 3, 4)
    t = make(a, device, "T")
    close(t.movedim(0, -1), np.moveaxis(a, 0, -1))
    close(t.narrow(2, 1, 2), a[:, :, 1:3])
    close(t.flip(0), a[::-1])
    close(t.flip((0, 2)), a[::-1, :, ::-1])
    close(t.repeat(2, 1, 3), np.tile(a, (2, 1, 3)))
    b = arr(3)
    close(make(b, device).repeat(2, 2), np.tile(b, (2, 2)))


# ------------------------------------------------------------------ basic indexing
BASIC = [
    (1,), (-1,), (slice(None, None, 2),), (slice(1, None, 3),), (slice(-3, -1),), (slice(5, 2),),
    (Ellipsis, 1), (None, 0), (1, None, slice(None, None, -1 + 2)), (slice(None), None, 2),
    (Ellipsis, None), (0, 1, 2), (Ellipsis,), (slice(None, None, 2), Ellipsis, slice(1, None, 2)),
    (-2, slice(None, None, 2), -1), (slice(0, 0),),
]


@pytest.mark.parametrize("idx", BASIC, ids=[str(i) for i in range(len(BASIC))])
@pytest.mark.parametrize("layout", ["contig", "T"])
def test_basic_indexing(idx, layout, device):
    a = arr(4, 5, 3)
    t = make(a, device, layout)
    r = t[idx]
    close(r, a[idx])
    assert _shares(r, t)


def test_indexing_writes_through_views(device):
    a = arr(4, 6)
    t = make(a.copy(), device)
    v = t[1::2, ::3]
    v.fill_(0)
    ref = a.copy()
    ref[1::2, ::3] = 0
    close(t, ref)
    t[0] = 5.0
    ref[0] = 5.0
    close(t, ref)
    t[:, -1] = make(np.arange(4.0), device)
    ref[:, -1] = np.arange(4.0)
    close(t, ref)
    t[..., 1:3] = make(np.ones((4, 1)), device)  # broadcast value
    ref[..., 1:3] = 1.0
    close(t, ref)
    tt = make(a.copy(), device, "T")
    tt[1:3, 0] = -1.0
    ra = a.copy()
    ra[1:3, 0] = -1
    close(tt, ra)


def test_int_tensor_index_is_advanced(device):
    a = arr(4, 5)
    t = make(a, device)
    close(t[kn.tensor(2)], a[2])
    close(t[kn.tensor(-1), 1], a[-1, 1])


# ------------------------------------------------------------------ advanced indexing
ADV = [
    lambda K: (K([0, 2, 2, 3]),),
    lambda K: (K([[0, 1], [3, 3]]),),
    lambda K: (K([-1, 0]),),
    lambda K: (slice(None), K([4, 0, 1])),
    lambda K: (K([0, 1, 2]), K([4, 0, 1])),
    lambda K: (K([[0], [3]]), K([1, 2, 4])),          # broadcast index arrays
    lambda K: (Ellipsis, K([2, 0])),
    lambda K: (1, K([0, 0, 3])),
    lambda K: (K([1, 3]), slice(1, 4)),
    lambda K: (K([], dtype=True),),
    lambda K: (None, K([2, 1])),
]


def _np_index(v, dtype=None):
    return np.array(v, dtype=np.int64)


@pytest.mark.parametrize("k", range(len(ADV)))
@pytest.mark.parametrize("layout", ["contig", "T"])
def test_integer_indexing(k, layout, device):
    a = arr(4, 5)
    t = make(a, device, layout)
    idx_k = ADV[k](lambda v, dtype=None: kn.tensor(np.array(v, dtype=np.int64), device=device))
    idx_n = ADV[k](_np_index)
    close(t[idx_k], a[idx_n])


def test_integer_indexing_3d_non_adjacent(device):
    a = arr(3, 4, 5)
    t = make(a, device)
    i, j = np.array([2, 0]), np.array([4, 1])
    close(t[kn.tensor(i), :, kn.tensor(j)], a[i, :, j])
    close(t[:, kn.tensor([1, 3]), kn.tensor([0, 2])], a[:, [1, 3], [0, 2]])
    close(t[kn.tensor([[0, 1]]), 1:3, kn.tensor([[4], [0]])], a[np.array([[0, 1]]), 1:3, np.array([[4], [0]])])


def test_rows_and_labels_pick(device):
    # the cross-entropy idiom x[arange(n), y]
    n, c = 7, 5
    a = arr(n, c)
    y = RNG.integers(0, c, n)
    t = make(a, device)
    close(t[kn.arange(n, device=device), kn.tensor(y, device=device)], a[np.arange(n), y])


def test_python_list_and_numpy_indices(device):
    a = arr(4, 5)
    t = make(a, device)
    close(t[[0, 3]], a[[0, 3]])
    close(t[np.array([1, 1])], a[np.array([1, 1])])
    close(t[:, [True, False, True, False, True]], a[:, [True, False, True, False, True]])


@pytest.mark.parametrize("layout", ["contig", "T"])
def test_boolean_indexing(layout, device):
    a = arr(4, 5)
    t = make(a, device, layout)
    m = a > 0
    close(t[make(m, device)], a[m])
    close(t[t > 0], a[a > 0])
    rows = np.array([True, False, True, True])
    close(t[make(rows, device)], a[rows])
    close(t[make(rows, device), 1:], a[rows, 1:])
    cols = np.array([False, True, True, False, False])
    close(t[:, make(cols, device)], a[:, cols])
    close(t[make(np.zeros(4, bool), device)], a[np.zeros(4, bool)])
    close(kn.masked_select(t, make(m, device)), a[m])


def test_setitem_advanced(device):
    a = arr(4, 5)
    t = make(a.copy(), device)
    ref = a.copy()
    t[kn.tensor([0, 2]), kn.tensor([1, 4])] = 9.0
    ref[[0, 2], [1, 4]] = 9.0
    close(t, ref)
    t[t > 1] = 0.0
    ref[ref > 1] = 0.0
    close(t, ref)
    t[kn.tensor([3, 1])] = make(np.arange(5.0), device)
    ref[[3, 1]] = np.arange(5.0)
    close(t, ref)
    t[:, kn.tensor([0])] = make(np.full((4, 1), -2.0), device)
    ref[:, [0]] = -2.0
    close(t, ref)
    # a non-contiguous destination
    tt = make(a.copy(), device, "T")
    tt[kn.tensor([1, 2])] = 4.0
    ra = a.copy()
    ra[[1, 2]] = 4.0
    close(tt, ra)


def test_index_select_gather_scatter_add(device):
    a = arr(4, 5)
    t = make(a, device, "T")
    idx = np.array([4, 0, 0, 2])
    close(t.index_select(1, kn.tensor(idx, device=device)), a[:, idx])
    close(kn.index_select(t, 0, kn.tensor([3, 1], device=device)), a[[3, 1]])
    gi = RNG.integers(0, 5, (4, 3))
    close(t.gather(1, kn.tensor(gi, device=device)), np.take_along_axis(a, gi, 1))
    gi0 = RNG.integers(0, 4, (2, 5))
    close(t.gather(0, kn.tensor(gi0, device=device)), np.take_along_axis(a, gi0, 0))
    # negative entries: x[idx] wraps them, but gather, scatter_add, index_select and embedding
    # refuse them, as in PyTorch (a -1 class index or token id is a bug, not "the last one")
    neg = kn.tensor([[-1, 0, 0, 0, 0]], device=device)
    with pytest.raises(IndexError, match="-1"):
        t.gather(0, neg)
    with pytest.raises(IndexError, match="-1"):
        kn.zeros(4, 5, device=device).scatter_add(0, neg, kn.ones(1, 5, device=device))
    with pytest.raises(IndexError, match="-1"):
        t.index_select(1, kn.tensor([-1], device=device))
    with pytest.raises(IndexError, match="-2"):
        kn.nn.Embedding(10, 3).to(device)(kn.tensor([1, -2], device=device))
    close(t[kn.tensor([-1], device=device)], a[[-1]])
    # an index smaller than the input outside dim reads the input's leading part (PyTorch)
    small = kn.tensor([[0, 3]], device=device)
    close(t.gather(1, small), np.take_along_axis(a[:1, :], np.array([[0, 3]]), 1))
    with pytest.raises(RuntimeError, match="Size does not match"):
        t.gather(1, kn.tensor([[0]] * 5, device=device))
    # integer gather
    ia = arr(3, 4, kind="int")
    close(make(ia, device).gather(1, kn.tensor([[0], [3], [1]], device=device)), np.take_along_axis(ia, np.array([[0], [3], [1]]), 1))
    # scatter_add accumulates duplicates
    base = arr(3, 4)
    src = arr(2, 4)
    si = np.array([[0, 2, 2, 1], [0, 0, 2, 1]])
    ref = base.copy()
    for j in range(2):
        for k in range(4):
            ref[si[j, k], k] += src[j, k]
    close(make(base, device).scatter_add(0, kn.tensor(si, device=device), make(src, device)), ref, tol=1e-6)
    s1 = np.array([[3, 3], [0, 1], [2, 2]])
    ref1 = base.copy()
    for j in range(3):
        for k in range(2):
            ref1[j, s1[j, k]] += 1.0
    close(make(base, device).scatter_add(1, kn.tensor(s1, device=device), kn.ones(3, 2, device=device)), ref1, tol=1e-6)


def test_where_and_masked_fill_broadcast(device):
    a = arr(3, 4)
    m = np.array([True, False, False, True])
    close(make(a, device).masked_fill(make(m, device), 0.0), np.where(m, 0.0, a))


def test_one_hot(device):
    y = np.array([0, 3, 1, 3])
    close(kn.one_hot(kn.tensor(y, device=device), 5), np.eye(5, dtype=np.int64)[y])
    close(kn.one_hot(kn.tensor(y, device=device)), np.eye(4, dtype=np.int64)[y])
    close(kn.one_hot(kn.tensor([[1], [0]], device=device), 2), np.eye(2, dtype=np.int64)[np.array([[1], [0]])])


# ------------------------------------------------------------------ joining / splitting
def test_cat_stack(device):
    a, b = arr(2, 3), arr(4, 3)
    close(kn.cat([make(a, device), make(b, device, "T")]), np.concatenate([a, b]))
    c = arr(2, 5)
    close(kn.cat([make(a, device), make(c, device, "step")], dim=-1), np.concatenate([a, c], -1))
    close(kn.cat([make(a, device), kn.zeros(0, 3, device=device)]), a)
    close(kn.cat([kn.zeros(0, device=device), make(a, device)]), a)  # legacy: 1-d empty skipped
    close(kn.cat([make(arr(2, kind="int"), device), make(arr(3), device)]).dtype is kn.float32, True)
    close(kn.stack([make(a, device), make(a, device, "T")]), np.stack([a, a]))
    close(kn.stack([make(a, device), make(a, device)], 1), np.stack([a, a], 1))
    close(kn.stack([make(a, device), make(a, device)], -1), np.stack([a, a], -1))
    close(kn.stack([kn.tensor(1.0), kn.tensor(2.0)]), [1.0, 2.0])
    close(kn.hstack([make(a, device), make(a, device)]), np.hstack([a, a]))


def test_split_chunk_unbind(device):
    a = arr(7, 4)
    t = make(a, device)
    for got, ref in zip(t.split(3), np.split(a, [3, 6])):
        close(got, ref)
    for got, ref in zip(t.split([2, 5]), np.split(a, [2])):
        close(got, ref)
    parts = t.chunk(3)
    assert [p.shape[0] for p in parts] == [3, 3, 1]
    parts = t.chunk(2, dim=1)
    for got, ref in zip(parts, np.split(a, 2, axis=1)):
        close(got, ref)
    assert all(_shares(p, t) for p in parts)
    for got, ref in zip(t.unbind(1), [a[:, i] for i in range(4)]):
        close(got, ref)


def test_zero_size_everything(device):
    z = kn.zeros(0, 4, device=device)
    assert tuple((z + 1).shape) == (0, 4)
    assert tuple(z.exp().shape) == (0, 4)
    assert tuple((z @ kn.ones(4, 2, device=device)).shape) == (0, 2)
    close(kn.ones(3, 0, device=device) @ kn.ones(0, 2, device=device), np.zeros((3, 2)))
    assert tuple(z[z > 0].shape) == (0,)
    assert tuple(z.T.contiguous().shape) == (4, 0)
    assert z.tolist() == []
    assert tuple(z.reshape(2, 0, 2).shape) == (2, 0, 2)
    assert tuple(kn.cat([z, z]).shape) == (0, 4)


def test_setitem_with_ints_and_separated_index_arrays(device):
    """x[0, :, [0, 1]] = v: the int is basic indexing (PyTorch), so the write lands where the same
    x[0, :, [0, 1]] reads; NumPy's rule (the int counted as advanced) wrote v transposed."""
    torch = pytest.importorskip("torch")
    for idx_fn, vshape in [(lambda M: (0, slice(None), [0, 1]), (3, 2)),
                           (lambda M: (1, slice(None), M.tensor([1, 2])), (3, 2)),
                           (lambda M: (slice(None), 1, [0, 3]), (2, 2)),
                           (lambda M: (0, slice(None), M.tensor([True, False, True, False])), (3, 2))]:
        v = np.arange(np.prod(vshape), dtype=np.float32).reshape(vshape) + 1
        k, t = kn.zeros(2, 3, 4, device=device), torch.zeros(2, 3, 4)
        k[idx_fn(kn)] = kn.tensor(v, device=device)
        t[idx_fn(torch)] = torch.tensor(v)
        assert k.tolist() == t.tolist()
        assert k[idx_fn(kn)].tolist() == v.tolist()
