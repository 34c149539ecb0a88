"""A small progress bar (no tqdm dependency).

In a terminal it redraws one line per epoch in place (epoch, batch i/n, running loss, samples/s),
at most ~10 times a second so that drawing never costs training time. When the stream is not a
terminal (a pipe, a log file, CI) it prints no per-batch output at all, only the plain summary
line of each epoch, plus a plain progress line every ``plain_every`` seconds for long epochs.
"""
import sys
import time


def _is_tty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def format_rate(samples_per_s):
    if samples_per_s >= 1e4:
        return f"{samples_per_s / 1e3:.0f}k samples/s"
    if samples_per_s >= 1e3:
        return f"{samples_per_s / 1e3:.1f}k samples/s"
    return f"{samples_per_s:.0f} samples/s"


class ProgressBar:
    """``bar = ProgressBar(total_batches, prefix="epoch 1/10")``; ``bar.update(n_samples, loss)``
    after each batch; ``bar.close(summary_line)`` at the end of the epoch."""

    width = 24

    def __init__(self, total, prefix="", stream=None, enabled=True, tty=None, min_interval=0.1,
                 plain_every=30.0):
        self.total = max(int(total), 0)
        self.prefix = prefix
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = enabled
        self.tty = _is_tty(self.stream) if tty is None else bool(tty)
        self.min_interval = min_interval
        self.plain_every = plain_every
        self.count = 0
        self.samples = 0
        self.loss_sum = 0.0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_plain = self.start
        self._drawn = False

    @property
    def elapsed(self):
        return time.perf_counter() - self.start

    @property
    def rate(self):
        e = self.elapsed
        return self.samples / e if e > 0 else 0.0

    @property
    def mean_loss(self):
        return self.loss_sum / self.count if self.count else float("nan")

    def line(self):
        frac = self.count / self.total if self.total else 1.0
        fill = int(round(frac * self.width))
        bar = "#" * fill + "-" * (self.width - fill)
        return (f"{self.prefix} [{bar}] {self.count}/{self.total}  loss {self.mean_loss:.4f}  "
                f"{format_rate(self.rate)}")

    def update(self, n_samples, loss):
        self.count += 1
        self.samples += int(n_samples)
        self.loss_sum += float(loss)
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw >= self.min_interval or self.count == self.total:
                self._last_draw = now
                self.stream.write("\r" + self.line() + "\033[K")
                self.stream.flush()
                self._drawn = True
        elif self.plain_every and now - self._last_plain >= self.plain_every and self.count < self.total:
            self._last_plain = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def close(self, summary=None):
        if not self.enabled:
            return
        if self.tty and self._drawn:
            self.stream.write("\r\033[K")
        if summary is not None:
            self.stream.write(summary + "\n")
        self.stream.flush()
