"""The circuit breaker state machine and its sliding window, on an injected clock."""

from __future__ import annotations

from polyroute.config.schema import BreakerConfig
from polyroute.routing.breaker import CircuitBreaker, NoBreaker
from polyroute.routing.state import CLOSED, HALF_OPEN, OPEN
from polyroute.routing.window import Window


def breaker(**kw: object) -> CircuitBreaker:
    return CircuitBreaker(BreakerConfig(**kw))  # type: ignore[arg-type]


def test_opens_after_consecutive_failures_and_refuses_until_cooldown() -> None:
    b = breaker(consecutive_failures=3, cooldown=10.0)
    now = 100.0
    for _ in range(2):
        assert b.admit(now)
        b.failure(now)
    assert b.state(now) == CLOSED
    assert b.admit(now)
    b.failure(now)
    assert b.state(now) == OPEN
    assert b.opened == 1
    assert not b.allows(now + 9.99)
    assert not b.admit(now + 9.99)
    assert b.retry_in(now + 4.0) == 6.0


def test_success_resets_the_consecutive_count() -> None:
    b = breaker(consecutive_failures=3, failure_ratio=1.0)  # the ratio rule is tested below
    for _ in range(10):
        b.failure(1.0)
        b.failure(1.0)
        b.success(1.0)
    assert b.state(1.0) == CLOSED


def test_half_open_lets_exactly_one_probe_through() -> None:
    b = breaker(consecutive_failures=1, cooldown=5.0)
    b.failure(0.0)
    assert b.state(5.0) == HALF_OPEN
    assert b.allows(5.0)
    assert b.admit(5.0)  # the probe
    assert not b.allows(5.0)
    assert not b.admit(5.0)
    b.success(5.5)
    assert b.state(5.5) == CLOSED
    assert b.admit(5.5) and b.admit(5.5)


def test_failed_probe_reopens_with_doubled_cooldown_capped() -> None:
    b = breaker(consecutive_failures=1, cooldown=5.0, max_cooldown=12.0)
    b.failure(0.0)
    assert b.admit(5.0)
    b.failure(5.0)
    assert b.state(5.0) == OPEN
    assert not b.admit(14.9)  # 5 + 10
    assert b.admit(15.0)
    b.failure(15.0)
    assert not b.admit(26.9)  # capped at 12
    assert b.admit(27.0)
    b.success(27.0)
    # Closing resets the cooldown to its base.
    b.failure(30.0)
    assert b.admit(35.0)


def test_abandoned_probe_frees_the_slot() -> None:
    b = breaker(consecutive_failures=1, cooldown=1.0)
    b.failure(0.0)
    assert b.admit(1.0)
    b.abandon()  # e.g. the probe got a 429: no verdict
    assert b.state(1.0) == HALF_OPEN
    assert b.admit(1.0)


def test_failure_ratio_over_the_window_opens() -> None:
    b = breaker(consecutive_failures=0, failure_ratio=0.5, min_requests=10, window=10.0)
    # Alternate: never two failures in a row, but half of them fail.
    for i in range(9):
        (b.failure if i % 2 else b.success)(1.0)
    assert b.state(1.0) == CLOSED  # 9 < min_requests
    b.failure(1.0)  # 10 outcomes, 5 failures
    assert b.state(1.0) == OPEN


def test_old_outcomes_leave_the_window() -> None:
    b = breaker(consecutive_failures=0, failure_ratio=0.5, min_requests=4, window=10.0)
    b.failure(0.0)
    b.failure(0.0)
    b.success(0.5)
    # 20 s later the old failures are gone: 1 failure out of 2 is under min_requests.
    b.success(20.0)
    b.failure(20.0)
    assert b.state(20.0) == CLOSED


def test_outcomes_while_open_do_not_extend_it() -> None:
    b = breaker(consecutive_failures=1, cooldown=5.0)
    b.failure(0.0)
    b.failure(4.0)  # an attempt admitted before the breaker opened, failing late
    assert b.admit(5.0)


def test_disabled_breaker_never_opens() -> None:
    b = NoBreaker()
    for _ in range(100):
        b.failure(0.0)
    assert b.admit(0.0) and b.state(0.0) == CLOSED


def test_window_sums_and_expiry() -> None:
    w = Window(10.0)
    w.add(0.0, 1, 0)
    w.add(5.0, 2, 1)
    assert w.sums(5.0) == (3, 1)
    assert w.sums(10.5) == (2, 1)  # the bucket of t=0 left the window
    assert w.sums(100.0) == (0, 0)
    w.add(100.0, 1, 1)
    assert w.sums(100.0) == (1, 1)
