"""Runs a blocking producer in a worker thread and hands its items to the event loop as they come.

The producer gets `emit(item) -> bool` and calls it for each item; `emit` returns True once the
consumer has gone (closed or cancelled the iteration), and the producer must then stop soon.
Items cross threads with `loop.call_soon_threadsafe` into an `asyncio.Queue`, so the event loop
never blocks and never polls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")

Emit = Callable[[T], bool]


class _End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class ThreadStream(Generic[T]):
    """One producer run. Iterate it with `async for`; call `stop()` when the consumer leaves.

    `done` is the worker's completion future (resolved on the event loop when the thread has
    returned), for releasing whatever the run held only once the thread has really finished.
    """

    def __init__(self, produce: Callable[[Emit[T]], None], executor: Executor | None = None) -> None:
        self._produce = produce
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[T | _End] = asyncio.Queue()
        self._stopped = threading.Event()
        self.done: asyncio.Future[None] = self._loop.run_in_executor(executor, self._run)

    def stop(self) -> None:
        """Ask the producer to stop at its next item (safe to call more than once)."""
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _post(self, item: T | _End) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stopped.set()

    def _emit(self, item: T) -> bool:
        if self._stopped.is_set():
            return True
        self._post(item)
        return False

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._produce(self._emit)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            error = exc
        finally:
            self._post(_End(error))

    def __aiter__(self) -> ThreadStream[T]:
        return self

    async def __anext__(self) -> T:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # iterating again after the end ends again
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item
