"""A sliding time window of two counters, in fixed buckets (no per-event allocation)."""

from __future__ import annotations

BUCKETS = 10


class Window:
    """Counts (a, b) pairs over the last `span` seconds, at a resolution of span / 10."""

    __slots__ = ("_a", "_b", "_epochs", "_width")

    def __init__(self, span: float) -> None:
        self._width = span / BUCKETS
        self._epochs = [-1] * BUCKETS
        self._a = [0] * BUCKETS
        self._b = [0] * BUCKETS

    def add(self, now: float, a: int, b: int) -> None:
        epoch = int(now / self._width)
        i = epoch % BUCKETS
        if self._epochs[i] != epoch:
            self._epochs[i] = epoch
            self._a[i] = a
            self._b[i] = b
        else:
            self._a[i] += a
            self._b[i] += b

    def sums(self, now: float) -> tuple[int, int]:
        oldest = int(now / self._width) - BUCKETS
        a = b = 0
        epochs = self._epochs
        for i in range(BUCKETS):
            if epochs[i] > oldest:
                a += self._a[i]
                b += self._b[i]
        return a, b

    def clear(self) -> None:
        for i in range(BUCKETS):
            self._epochs[i] = -1
            self._a[i] = self._b[i] = 0
