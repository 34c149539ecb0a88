"""Seeds for data-side randomness, drawn from kernelnet's generators so that
``kernelnet.manual_seed(s)`` (or a DataLoader ``generator``) fixes shuffles and random transforms."""
import kernelnet as _kn


def draw_seed(generator=None):
    """A 62-bit integer drawn from ``generator`` (kernelnet's default generator when None)."""
    t = _kn.randint(0, 2 ** 62, (1,), generator=generator, dtype=_kn.int64)
    return int(t.item())
