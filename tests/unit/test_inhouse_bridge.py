"""The thread -> event loop bridge: items arrive while the producer still runs, stop() stops it."""

from __future__ import annotations

import queue
import threading

import pytest

from polyroute.providers.inhouse.bridge import Emit, ThreadStream


class Scripted:
    """A producer that emits one item per command the test sends it (no timing involved)."""

    def __init__(self) -> None:
        self.commands: queue.Queue[str] = queue.Queue()
        self.stopped_at: int | None = None
        self.finished = threading.Event()

    def __call__(self, emit: Emit[int]) -> None:
        try:
            i = 0
            while True:
                cmd = self.commands.get(timeout=10)
                if cmd == "end":
                    return
                if cmd == "fail":
                    raise ValueError("producer failed")
                if emit(i):
                    self.stopped_at = i
                    return
                i += 1
        finally:
            self.finished.set()


async def test_items_arrive_while_the_producer_is_still_running() -> None:
    p = Scripted()
    run = ThreadStream(p)
    it = aiter(run)
    p.commands.put("item")
    assert await anext(it) == 0
    assert not p.finished.is_set()  # the producer is blocked waiting for its next command
    p.commands.put("item")
    assert await anext(it) == 1
    p.commands.put("end")
    with pytest.raises(StopAsyncIteration):
        await anext(it)
    await run.done
    assert p.finished.is_set()


async def test_stop_makes_emit_return_true_at_the_next_item() -> None:
    p = Scripted()
    run = ThreadStream(p)
    p.commands.put("item")
    assert await anext(aiter(run)) == 0
    run.stop()
    assert not run.done.done()  # the thread still runs until it tries to emit again
    p.commands.put("item")
    await run.done
    assert p.stopped_at == 1


async def test_producer_errors_reach_the_consumer() -> None:
    p = Scripted()
    run = ThreadStream(p)
    p.commands.put("fail")
    with pytest.raises(ValueError, match="producer failed"):
        async for _ in run:
            pass
    await run.done

