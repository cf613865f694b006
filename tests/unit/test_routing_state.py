"""In-memory routing state: capacity (in-flight, RPM/TPM buckets, cool-down), retry budget,
latency averages and sticky pins."""

from __future__ import annotations

import math

from polyroute.config.schema import RetryConfig, StickyConfig
from polyroute.routing.memory import MemoryAffinity, MemoryCapacity, MemoryLatency, MemoryRetryBudget


def test_max_concurrency_counts_in_flight() -> None:
    c = MemoryCapacity(None, None, 2)
    assert c.acquire(0.0, 0) and c.acquire(0.0, 0)
    assert not c.acquire(0.0, 0)
    assert c.wait(0.0, 0) == math.inf
    c.release()
    assert c.inflight() == 1
    assert c.acquire(0.0, 0)


def test_rpm_bucket_refills_continuously() -> None:
    c = MemoryCapacity(60, None, None)  # one request per second
    for _ in range(60):
        assert c.acquire(0.0, 0)
        c.release()
    assert not c.acquire(0.0, 0)
    assert c.wait(0.0, 0) == 1.0
    assert not c.acquire(0.5, 0)
    assert c.acquire(1.0, 0)


def test_tpm_reserves_and_settles() -> None:
    c = MemoryCapacity(None, 600, None)  # 10 tokens per second
    assert c.acquire(0.0, 500)
    assert not c.acquire(0.0, 200)
    assert c.wait(0.0, 200) == 10.0
    c.settle(0.0, -400)  # used 100, reserved 500
    assert c.acquire(0.0, 200)
    # A request bigger than the whole bucket may go once the bucket is full.
    c2 = MemoryCapacity(None, 100, None)
    assert c2.acquire(0.0, 1000)
    assert not c2.acquire(0.0, 1000)


def test_cool_down_blocks_until_time() -> None:
    c = MemoryCapacity(None, None, None)
    c.cool_down(10.0)
    assert not c.acquire(9.0, 0)
    assert c.wait(9.0, 0) == 1.0
    c.cool_down(5.0)  # never shortens
    assert not c.acquire(9.9, 0)
    assert c.acquire(10.0, 0)


def test_retry_budget_caps_retries_as_share_of_requests() -> None:
    b = MemoryRetryBudget(RetryConfig(budget_ratio=0.1, budget_min_per_second=0.0, budget_window=10.0))
    for _ in range(100):
        b.request(1.0)
    allowed = sum(b.try_retry(1.0) for _ in range(50))
    assert allowed == 10
    # Once the window has moved on, the old requests no longer pay for retries.
    assert not b.try_retry(30.0)


def test_retry_budget_floor_allows_some_retries_at_low_traffic() -> None:
    b = MemoryRetryBudget(RetryConfig(budget_ratio=0.0, budget_min_per_second=0.5, budget_window=10.0))
    assert sum(b.try_retry(0.0) for _ in range(10)) == 5


def test_latency_ewma() -> None:
    s = MemoryLatency()
    assert s.latency() is None and s.ttft() is None
    s.observe_latency(1.0)
    assert s.latency() == 1.0
    s.observe_latency(2.0)
    assert abs((s.latency() or 0) - 1.2) < 1e-9
    s.observe_ttft(0.5)
    assert s.ttft() == 0.5


def test_affinity_lru_and_ttl() -> None:
    a = MemoryAffinity(StickyConfig(ttl=10.0, max_entries=2))
    a.put(1, "x", 0.0)
    a.put(2, "y", 0.0)
    assert a.get(1, 5.0) == "x"
    a.put(3, "z", 5.0)  # evicts the least recently put: 1
    assert a.get(1, 5.0) is None
    assert a.get(3, 5.0) == "z"
    assert a.get(2, 10.5) is None  # expired
    assert len(a) == 1
