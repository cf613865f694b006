"""FailoverCounters against a real Redis that is stopped, hung and restarted under it: each fallback
mode, what reaches Redis when it is back, and that nothing waits on a dead Redis."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import pytest

from polyroute.core.errors import QuotaExceeded, RateLimited, Unavailable
from polyroute.governance.counters_failover import FailoverCounters
from polyroute.governance.limits import Subject, periods
from polyroute.governance.redis_counters import RedisCounters
from tests.helpers.services import RedisServer, own_redis  # noqa: F401

TIMEOUT = 0.25
RETRY = 0.2


def counters(rs: RedisServer, mode: str) -> tuple[FailoverCounters, list[str]]:
    c = FailoverCounters(RedisCounters(rs.url, timeout=TIMEOUT), mode, retry_interval=RETRY)
    seen: list[str] = []
    c.listeners.append(seen.append)
    return c, seen


async def until(cond: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def redis_status(rs: RedisServer, sid: str) -> dict[str, float]:
    fresh = RedisCounters(rs.url)  # another instance's view: what Redis itself holds
    try:
        return await fresh.status(sid, time.time())
    finally:
        await fresh.close()


async def test_local_mode_enforces_per_process_then_replays_into_redis(own_redis: RedisServer) -> None:  # noqa: F811
    c, seen = counters(own_redis, "local")
    await c.seed({})
    key = [Subject("key:a", "key 'a'", rpm=3, daily=1.0)]
    # Before the outage: $0.60 spent on Redis, and one reservation still in flight.
    for _ in range(2):
        r = await c.reserve(key, 0, 0.3, time.time(), 600)
        await c.settle(r, 0, 0.3)
    in_flight = await c.reserve(key, 0, 0.2, time.time(), 600)
    assert in_flight.backend == "redis"

    own_redis.stop(kill=True)
    await c.settle(in_flight, 0, 0.1)  # fails: waits for Redis, and switches to the fallback
    assert c.down and seen == ["local"] and c.transitions == {"local": 1, "redis": 0}
    ok, detail = await c.check()
    assert not ok and "redis unreachable" in detail and "per-process memory counters" in detail

    # The same limits, on this process's memory: a full rpm bucket of 3, and the $0.70 this
    # process knows was spent counts against the $1 daily budget.
    local = await c.reserve(key, 0, 0.1, time.time(), 600)
    assert local.backend == "memory"
    with pytest.raises(QuotaExceeded):
        await c.reserve(key, 0, 0.25, time.time(), 600)
    await c.settle(local, 0, 0.05)
    await c.reserve(key, 0, 0.0, time.time(), 600)
    await c.reserve(key, 0, 0.0, time.time(), 600)
    with pytest.raises(RateLimited):
        await c.reserve(key, 0, 0.0, time.time(), 600)
    assert (await c.status("key:a", time.time()))["spent_day"] == pytest.approx(0.75)

    own_redis.start()  # persistent: the spend from before the outage is still there
    await until(lambda: not c.down)
    assert seen == ["local", "redis"]
    st = await redis_status(own_redis, "key:a")
    # 0.60 before + 0.10 (in-flight reservation settled during the outage) + 0.05 (on memory).
    assert st["spent_day"] == pytest.approx(0.75) and st["reserved_day"] == pytest.approx(0.0)
    assert (await c.check()) == (True, "redis")
    # Shared again: the next reservations are on Redis, which sees the replayed spend, and whose
    # rpm bucket is still the one the 3 requests before the outage emptied.
    with pytest.raises(QuotaExceeded):
        await c.reserve(key, 0, 0.3, time.time(), 600)
    with pytest.raises(RateLimited):
        await c.reserve(key, 0, 0.2, time.time(), 600)
    r = await c.reserve([Subject("key:a", "key 'a'", daily=1.0)], 0, 0.2, time.time(), 600)
    assert r.backend == "redis"
    await c.settle(r, 0, 0.2)
    await c.close()
    assert (await redis_status(own_redis, "key:a"))["spent_day"] == pytest.approx(0.95)


async def test_open_mode_enforces_nothing_but_counts_the_spend(own_redis: RedisServer) -> None:  # noqa: F811
    c, seen = counters(own_redis, "open")
    key = [Subject("key:o", "key 'o'", rpm=1, daily=0.1), Subject("team:t", "team 't'", monthly=0.1)]
    await c.reserve(key, 0, 0.0, time.time(), 600)
    own_redis.stop()
    results = [await c.reserve(key, 0, 0.05, time.time(), 600) for _ in range(5)]  # over rpm and budgets
    assert [r.backend for r in results] == ["open"] * 5 and seen == ["open"]
    for r in results:
        await c.settle(r, 0, 0.05)
    assert c.fallback_gauge() == [(("open",), 1.0)]
    own_redis.start()
    await until(lambda: not c.down)
    assert c.fallback_gauge() == [(("open",), 0.0)]
    for sid in ("key:o", "team:t"):
        st = await redis_status(own_redis, sid)
        assert st["spent_day"] == pytest.approx(0.25) and st["spent_month"] == pytest.approx(0.25)
    with pytest.raises(QuotaExceeded):  # enforced again, on Redis, which has the outage's spend
        await c.reserve(key, 0, 0.0, time.time(), 600)
    with pytest.raises(RateLimited):
        await c.reserve([Subject("key:o", "key 'o'", rpm=1)], 0, 0.0, time.time(), 600)
    await c.close()


async def test_closed_mode_refuses_with_a_retryable_503(own_redis: RedisServer) -> None:  # noqa: F811
    c, _ = counters(own_redis, "closed")
    key = [Subject("key:c", "key 'c'", daily=1.0)]
    held = await c.reserve(key, 0, 0.5, time.time(), 600)
    own_redis.stop()
    with pytest.raises(Unavailable) as exc:
        await c.reserve(key, 0, 0.1, time.time(), 600)
    err = exc.value
    assert err.status == 503 and err.retryable and err.code == "counters_unavailable"
    assert err.retry_after == RETRY and str(own_redis.port) not in err.message
    t = time.monotonic()
    with pytest.raises(Unavailable):
        await c.reserve(key, 0, 0.1, time.time(), 600)
    assert time.monotonic() - t < 0.05  # refused at once: no call to the dead Redis
    await c.settle(held, 0, 0.4)  # the reservation taken on Redis waits for it
    own_redis.start()
    await until(lambda: not c.down)
    st = await redis_status(own_redis, "key:c")
    assert st["spent_day"] == pytest.approx(0.4) and st["reserved_day"] == pytest.approx(0.0)
    await c.close()


async def test_a_hung_redis_costs_one_timeout_and_lost_answers_are_released(own_redis: RedisServer) -> None:  # noqa: F811
    c, seen = counters(own_redis, "local")
    key = [Subject("key:h", "key 'h'", rpm=100, daily=10.0)]
    kept = await c.reserve(key, 0, 0.3, time.time(), 600)
    assert own_redis.proc is not None
    own_redis.proc.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    try:
        t = time.monotonic()
        # Its answer is lost: Redis may still run it. Either way nothing must stay reserved for it.
        lost = await c.reserve(key, 0, 0.2, time.time(), 600)
        first = time.monotonic() - t
        assert lost.backend == "memory" and seen == ["local"]
        assert first < TIMEOUT + 0.5, first
        t = time.monotonic()
        for _ in range(20):
            await c.settle(await c.reserve(key, 0, 0.01, time.time(), 600), 0, 0.01)
        assert time.monotonic() - t < 0.1  # no request waits on Redis while it is known down
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)
    await until(lambda: not c.down)
    st = await redis_status(own_redis, "key:h")
    # Only `kept` is still reserved; the 20 settled on memory reached Redis.
    assert st["reserved_day"] == pytest.approx(0.3) and st["spent_day"] == pytest.approx(0.2)
    await c.settle(kept, 0, 0.3)
    await c.settle(kept, 0, 0.3)  # settling twice changes nothing
    st = await redis_status(own_redis, "key:h")
    assert st["reserved_day"] == pytest.approx(0.0) and st["spent_day"] == pytest.approx(0.5)
    await c.close()


async def test_a_settlement_replayed_after_it_ran_counts_once(own_redis: RedisServer) -> None:  # noqa: F811
    r = RedisCounters(own_redis.url)
    key = [Subject("key:x", "key 'x'", daily=1.0)]
    res = await r.reserve(key, 0, 0.5, time.time(), 600)
    job = r._job(res, 0, 0.25)
    await r.settle(res, 0, 0.25)
    r.pending.append(job)  # as if its answer had been lost after it ran
    assert await r.replay() == 1
    st = await r.status("key:x", time.time())
    assert st["spent_day"] == pytest.approx(0.25) and st["reserved_day"] == pytest.approx(0.0)
    assert await r.add_spent({("key:x", periods(time.time())[0]): 0.1}, "b1")
    assert not await r.add_spent({("key:x", periods(time.time())[0]): 0.1}, "b1")  # same batch: once
    assert (await r.status("key:x", time.time()))["spent_day"] == pytest.approx(0.35)
    await r.close()


async def test_start_with_redis_down_then_seed_when_it_comes(own_redis: RedisServer) -> None:  # noqa: F811
    day, month = periods(time.time())
    own_redis.stop()
    c, seen = counters(own_redis, "local")
    await c.seed({("key:s", day): 0.4, ("key:s", month): 0.9})  # the ledger's totals: must not raise
    assert c.down and seen == ["local"]
    key = [Subject("key:s", "key 's'", daily=1.0)]
    with pytest.raises(QuotaExceeded):  # the seed counts on the fallback too
        await c.reserve(key, 0, 0.7, time.time(), 600)
    await c.settle(await c.reserve(key, 0, 0.1, time.time(), 600), 0, 0.1)
    own_redis.start()
    await until(lambda: not c.down)
    st = await redis_status(own_redis, "key:s")
    assert st["spent_day"] == pytest.approx(0.5) and st["spent_month"] == pytest.approx(1.0)
    await c.close()


async def test_redis_back_empty_gets_the_seed_again_then_the_replay(own_redis: RedisServer) -> None:  # noqa: F811
    day, month = periods(time.time())
    c, _ = counters(own_redis, "local")
    await c.seed({("key:e", day): 0.4, ("key:e", month): 0.4})
    own_redis.stop()
    assert own_redis.proc is None
    for f in own_redis.root.rglob("*.aof*"):  # lose the data: Redis restarted without it
        f.unlink()
    key = [Subject("key:e", "key 'e'", daily=1.0)]
    with pytest.raises(Exception):  # noqa: B017 - a fresh RedisCounters has no fallback
        await c.remote.status("key:e", time.time())
    await c.settle(await c.reserve(key, 0, 0.1, time.time(), 600), 0, 0.1)
    assert c.down
    own_redis.start()
    await until(lambda: not c.down)
    st = await redis_status(own_redis, "key:e")
    assert st["spent_day"] == pytest.approx(0.5) and st["spent_month"] == pytest.approx(0.5)
    await c.close()
