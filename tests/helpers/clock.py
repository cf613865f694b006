"""A routing clock that tests move by hand (Router(clock=...)); a float is read atomically."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
