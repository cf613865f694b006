"""Rate limits (GCRA) and budgets (reserve, then settle) in the in-memory counters."""

from __future__ import annotations

import asyncio

import pytest

from polyroute.core.errors import QuotaExceeded, RateLimited
from polyroute.governance.limits import MemoryCounters, Subject

WALL = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_rpm_burst_then_spacing_and_retry_after() -> None:
    clock = Clock()
    c = MemoryCounters(clock)
    s = [Subject("key:a", "key 'a'", rpm=6)]
    for _ in range(6):
        await c.reserve(s, 0, 0.0, WALL, 600)
    with pytest.raises(RateLimited) as exc:
        await c.reserve(s, 0, 0.0, WALL, 600)
    assert exc.value.retry_after == pytest.approx(10.0)  # one request every 60/6 s
    assert exc.value.status == 429 and exc.value.retryable
    clock.now += 9.9
    with pytest.raises(RateLimited):
        await c.reserve(s, 0, 0.0, WALL, 600)
    clock.now += 0.2
    await c.reserve(s, 0, 0.0, WALL, 600)


async def test_rpm_window_bound() -> None:
    """Any 60 s window admits at most 2L (burst L plus L refilled); sustained L per minute."""
    clock = Clock()
    c = MemoryCounters(clock)
    s = [Subject("key:a", "a", rpm=10)]
    admitted: list[float] = []
    for _ in range(1200):  # try every 0.5 s for 10 minutes
        try:
            await c.reserve(s, 0, 0.0, WALL, 600)
            admitted.append(clock.now)
        except RateLimited:
            pass
        clock.now += 0.5
    for i, t0 in enumerate(admitted):
        assert sum(1 for t in admitted[i:] if t < t0 + 60) <= 20
    assert len(admitted) <= 10 + 10 * 10 + 1


async def test_tpm_reserves_estimate_and_settles_actual() -> None:
    clock = Clock()
    c = MemoryCounters(clock)
    s = [Subject("key:a", "a", tpm=1000)]
    r = await c.reserve(s, 600, 0.0, WALL, 600)
    with pytest.raises(RateLimited):
        await c.reserve(s, 600, 0.0, WALL, 600)  # 1200 > 1000
    await c.settle(r, 100, 0.0)  # used far less: the difference comes back
    await c.reserve(s, 600, 0.0, WALL, 600)
    r3 = await c.reserve(s, 200, 0.0, WALL, 600)
    await c.settle(r3, 2200, 0.0)  # used far more: the bucket is in debt
    with pytest.raises(RateLimited) as exc:
        await c.reserve(s, 1, 0.0, WALL, 600)
    assert exc.value.retry_after is not None and exc.value.retry_after > 60


async def test_request_bigger_than_tpm_passes_on_a_full_bucket() -> None:
    c = MemoryCounters(Clock())
    await c.reserve([Subject("key:a", "a", tpm=100)], 5000, 0.0, WALL, 600)


async def test_budget_reserve_settle_and_refusal() -> None:
    c = MemoryCounters(Clock())
    s = [Subject("key:a", "key 'a'", daily=1.0)]
    r1 = await c.reserve(s, 0, 0.6, WALL, 600)
    with pytest.raises(QuotaExceeded) as exc:
        await c.reserve(s, 0, 0.6, WALL, 600)  # 0.6 reserved + 0.6 > 1.0
    assert exc.value.kind == "insufficient_quota" and not exc.value.retryable and "daily" in exc.value.message
    await c.settle(r1, 0, 0.1)  # it really cost 0.1
    r2 = await c.reserve(s, 0, 0.6, WALL, 600)
    await c.settle(r2, 0, 0.85)
    st = await c.status("key:a", WALL)
    assert st["spent_day"] == pytest.approx(0.95) and st["reserved_day"] == 0
    with pytest.raises(QuotaExceeded):
        await c.reserve(s, 0, 0.06, WALL, 600)
    await c.reserve(s, 0, 0.05, WALL, 600)
    # The next UTC day starts from zero; the month still counts.
    await c.reserve(s, 0, 0.9, WALL + 86400, 600)
    with pytest.raises(QuotaExceeded):
        await c.reserve([Subject("key:a", "a", monthly=1.5)], 0, 0.2, WALL + 86400, 600)


async def test_concurrent_reservations_never_overspend() -> None:
    c = MemoryCounters(Clock())
    s = [Subject("key:a", "a", daily=1.0), Subject("team:t", "t", monthly=10.0)]

    async def one() -> bool:
        try:
            res = await c.reserve(s, 0, 0.15, WALL, 600)
        except QuotaExceeded:
            return False
        await asyncio.sleep(0)
        await c.settle(res, 0, 0.15)
        return True

    results = await asyncio.gather(*(one() for _ in range(50)))
    assert sum(results) == 6  # floor(1.0 / 0.15)
    assert (await c.status("key:a", WALL))["spent_day"] == pytest.approx(0.9)


async def test_all_or_nothing_across_key_and_team() -> None:
    clock = Clock()
    c = MemoryCounters(clock)
    key = Subject("key:a", "a", rpm=100, daily=10.0)
    team = Subject("team:t", "t", rpm=1)
    await c.reserve([key, team], 0, 1.0, WALL, 600)
    with pytest.raises(RateLimited):
        await c.reserve([key, team], 0, 1.0, WALL, 600)
    st = await c.status("key:a", WALL)
    assert st["reserved_day"] == pytest.approx(1.0)  # the refused request reserved nothing


async def test_alert_mode_admits_and_alerts_once_per_period() -> None:
    c = MemoryCounters(Clock())
    s = [Subject("key:a", "a", daily=0.1, hard=False)]
    r = await c.reserve(s, 0, 0.5, WALL, 600)
    assert len(r.alerts) == 1 and "daily budget" in r.alerts[0]
    r2 = await c.reserve(s, 0, 0.5, WALL, 600)
    assert r2.alerts == []


async def test_unsettled_reservation_is_released_after_its_hold() -> None:
    clock = Clock()
    c = MemoryCounters(clock)
    s = [Subject("key:a", "a", daily=1.0)]
    await c.reserve(s, 0, 0.9, WALL, hold=30)
    with pytest.raises(QuotaExceeded):
        await c.reserve(s, 0, 0.9, WALL, 30)
    clock.now += 31
    await c.reserve(s, 0, 0.9, WALL, 30)
    assert c.open_reservations() == 1


async def test_seeded_spend_counts() -> None:
    c = MemoryCounters(Clock())
    await c.seed({("key:a", "2026-01-01"): 0.95, ("key:a", "2026-01"): 0.95})
    with pytest.raises(QuotaExceeded):
        await c.reserve([Subject("key:a", "a", daily=1.0)], 0, 0.1, WALL, 600)
