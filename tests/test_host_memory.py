"""The host caching allocator (csrc/cpu/host_memory.cpp, kernelnet.cpu): blocks are reused,
released only when every view is gone, aligned, bounded by the limit, and invisible to results."""
import gc

import numpy as np
import pytest

import kernelnet as kn
from kernelnet import _cpu


@pytest.fixture(autouse=True)
def fresh_cache():
    kn.cpu.empty_cache()
    yield
    kn.cpu.set_cache_limit(1 << 30)
    kn.cpu.empty_cache()


def test_freed_block_is_reused_for_the_same_size_class():
    a = kn.empty(300_000)
    addr = a.data_ptr()
    assert kn.cpu.memory_allocated() >= 1_200_000
    del a
    gc.collect()
    assert kn.cpu.memory_stats()["cached_blocks"] == 1
    b = kn.empty(299_000)  # a little smaller: same size class (classes are 1/8 of a power of two)
    assert b.data_ptr() == addr
    assert kn.cpu.memory_stats()["hits"] >= 1


def test_a_view_keeps_the_block_alive():
    a = kn.arange(100_000, dtype=kn.float32)
    view = a[10:20].numpy()
    addr = a.data_ptr()
    del a
    gc.collect()
    others = [kn.zeros(100_000) for _ in range(3)]  # none may get the block `view` still reads
    assert addr not in [o.data_ptr() for o in others]
    np.testing.assert_array_equal(view, np.arange(10, 20, dtype=np.float32))
    before = kn.cpu.memory_stats()["cached_blocks"]
    del view
    gc.collect()
    assert kn.cpu.memory_stats()["cached_blocks"] == before + 1


def test_large_buffers_are_aligned_and_reused_buffers_hold_new_values():
    for n in (16_384, 100_003, 1_500_000):
        t = kn.empty(n)
        assert t.data_ptr() % 64 == 0
        del t
        gc.collect()
        z = kn.zeros(n)  # recycled memory: zeros must really be zeros, ones really ones
        assert not z.numpy().any()
        o = kn.ones(n)
        assert o.numpy().min() == 1.0 and o.numpy().max() == 1.0
        del z, o


def test_limit_bounds_the_cache_and_zero_disables_it():
    kn.cpu.set_cache_limit(0)
    a = kn.empty(300_000)
    del a
    gc.collect()
    assert kn.cpu.memory_stats()["cached_bytes"] == 0
    kn.cpu.set_cache_limit(2_000_000)
    blocks = [kn.empty(300_000) for _ in range(4)]  # 4 x ~1.2 MB, only one fits under 2 MB
    del blocks
    gc.collect()
    assert 0 < kn.cpu.memory_stats()["cached_bytes"] <= 2_000_000
    with pytest.raises(ValueError, match="limit"):
        kn.cpu.set_cache_limit(-1)


def test_empty_cache_returns_everything_and_reserved_counts_both():
    a, b = kn.empty(200_000), kn.empty(400_000)
    del a
    gc.collect()
    assert kn.cpu.memory_reserved() == kn.cpu.memory_allocated() + kn.cpu.memory_stats()["cached_bytes"]
    kn.cpu.empty_cache()
    assert kn.cpu.memory_stats()["cached_bytes"] == 0
    assert kn.cpu.memory_allocated() >= 1_600_000
    del b


def test_host_alloc_rejects_negative_sizes():
    with pytest.raises(ValueError, match="host_alloc"):
        _cpu.host_alloc(-1)


def test_host_alloc_typed_arrays():
    for dt in (np.float32, np.int64, np.bool_, None):
        arr, addr = _cpu.host_alloc(48, dt)
        want = np.dtype(np.uint8 if dt is None else dt)
        assert arr.dtype == want and arr.shape == (48 // want.itemsize,)
        assert arr.ctypes.data == addr and addr % 64 == 0
        arr[:] = 1  # writable, and the whole block
    with pytest.raises(ValueError, match="whole number"):
        _cpu.host_alloc(10, np.float32)


def test_training_step_results_do_not_depend_on_the_cache():
    """Two identical runs, one with caching off: bit-identical losses (no stale data leaks)."""
    def run():
        kn.manual_seed(0)
        net = kn.nn.Sequential(kn.nn.Conv2d(1, 8, 3), kn.nn.ReLU(), kn.nn.Flatten(),
                               kn.nn.Linear(8 * 26 * 26, 10))
        opt = kn.optim.Adam(net.parameters(), lr=1e-3)
        x, y = kn.rand(16, 1, 28, 28), kn.randint(0, 10, (16,))
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = kn.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses
    cached = run()
    kn.cpu.set_cache_limit(0)
    kn.cpu.empty_cache()
    assert run() == cached
