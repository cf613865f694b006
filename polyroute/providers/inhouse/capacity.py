"""Admission control for a model that runs in this process: N running, M waiting, the rest refused.

A local model has a fixed throughput, so requests beyond it must not pile up until they time
out: they wait in a short FIFO queue, and beyond that they are refused at once with a retryable
503 (the executor then fails over to another deployment, and SDKs retry after `retry-after`).

A slot is released by whoever ends the work (the worker thread's completion), not by the
request that asked for it: a client that goes away must not free a slot that a generation is
still using.
"""

from __future__ import annotations

import asyncio
from collections import deque

from polyroute.core import errors as e


class Slots:
    def __init__(self, label: str, concurrency: int, queue: int, *, retry_after: float = 1.0) -> None:
        if concurrency < 1:
            raise ValueError(f"{label}: max_concurrency must be at least 1 (got {concurrency})")
        if queue < 0:
            raise ValueError(f"{label}: max_queue cannot be negative (got {queue})")
        self.label = label
        self.concurrency = concurrency
        self.queue = queue
        self.retry_after = retry_after
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if needed; raise `Unavailable` if the queue is full."""
        if self.running < self.concurrency and not self._waiters:
            self.running += 1
            return
        if self.waiting >= self.queue:
            raise e.Unavailable(
                f"{self.label} is busy: {self.running} running and {self.waiting} queued "
                f"(max_concurrency {self.concurrency}, max_queue {self.queue}); retry shortly",
                retry_after=self.retry_after,
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                # The slot was handed over just as this waiter was cancelled: pass it on.
                self.release()
            else:
                fut.cancel()
                self._remove(fut)
            raise

    def release(self) -> None:
        """Give the slot to the next waiter, or free it."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # `running` stays: the slot changes hands
                return
        self.running -= 1

    def _remove(self, fut: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(fut)
        except ValueError:
            pass
