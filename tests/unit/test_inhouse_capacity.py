"""In-house admission control: N running, M queued in FIFO order, the rest refused at once."""

from __future__ import annotations

import asyncio

import pytest

from polyroute.core import errors as e
from polyroute.providers.inhouse.capacity import Slots


async def test_runs_up_to_concurrency_then_queues_then_refuses() -> None:
    slots = Slots("model x", concurrency=2, queue=1, retry_after=2.0)
    await slots.acquire()
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)  # let the waiter enqueue
    assert slots.running == 2 and slots.waiting == 1 and not waiter.done()
    with pytest.raises(e.Unavailable) as ei:
        await slots.acquire()
    err = ei.value
    assert err.status == 503 and err.retryable and err.retry_after == 2.0
    assert "model x is busy" in err.message and "max_concurrency 2" in err.message and "max_queue 1" in err.message
    slots.release()
    await waiter  # the freed slot went to the waiter
    assert slots.running == 2 and slots.waiting == 0


async def test_waiters_are_served_in_arrival_order() -> None:
    slots = Slots("m", concurrency=1, queue=3)
    await slots.acquire()
    order: list[int] = []

    async def take(i: int) -> None:
        await slots.acquire()
        order.append(i)

    tasks = [asyncio.create_task(take(i)) for i in range(3)]
    await asyncio.sleep(0)
    for _ in range(3):
        slots.release()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    slots = Slots("m", concurrency=1, queue=1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.waiting == 0
    slots.release()
    assert slots.running == 0
    await slots.acquire()  # the slot is free again, not leaked to the cancelled waiter


async def test_a_slot_handed_to_a_waiter_cancelled_at_that_moment_is_passed_on() -> None:
    slots = Slots("m", concurrency=1, queue=2)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert slots.running == 1 and slots.waiting == 0


async def test_zero_queue_refuses_immediately_when_full() -> None:
    slots = Slots("m", concurrency=1, queue=0)
    await slots.acquire()
    with pytest.raises(e.Unavailable):
        await slots.acquire()


def test_bad_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        Slots("m", concurrency=0, queue=1)
    with pytest.raises(ValueError, match="max_queue"):
        Slots("m", concurrency=1, queue=-1)
