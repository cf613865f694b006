"""The circuit breaker state machine (in-memory implementation of `state.Breaker`).

closed --(N consecutive health failures, or failure ratio over the window)--> open
open --(cooldown elapsed)--> half-open: exactly one probe request goes through
half-open --probe succeeds--> closed;  --probe fails--> open again, cooldown doubled (capped)

Outcomes of requests admitted before the breaker opened are ignored while it is open, so a burst
of in-flight failures cannot extend the cooldown; a late success in half-open state closes it.
"""

from __future__ import annotations

from polyroute.config.schema import BreakerConfig
from polyroute.routing.state import CLOSED, HALF_OPEN, OPEN
from polyroute.routing.window import Window


class CircuitBreaker:
    __slots__ = (
        "_base_cooldown",
        "_consecutive",
        "_cooldown",
        "_max_consecutive",
        "_max_cooldown",
        "_min_requests",
        "_opened_at",
        "_probe",
        "_ratio",
        "_state",
        "_window",
        "opened",
        "reason",
    )

    def __init__(self, config: BreakerConfig) -> None:
        self._max_consecutive = config.consecutive_failures
        self._ratio = config.failure_ratio
        self._min_requests = config.min_requests
        self._window = Window(config.window)
        self._base_cooldown = config.cooldown
        self._max_cooldown = max(config.max_cooldown, config.cooldown)
        self._state = CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._cooldown = config.cooldown
        self._probe = False
        # How many times it opened on its own outcomes, and why it last opened: for tests,
        # metrics, logs and the shared state (polyroute/routing/redis_state.py).
        self.opened = 0
        self.reason = ""

    def state(self, now: float) -> str:
        if self._state == OPEN and now >= self._opened_at + self._cooldown:
            return HALF_OPEN
        return self._state

    def allows(self, now: float) -> bool:
        s = self._state
        if s == CLOSED:
            return True
        if s == OPEN:
            return now >= self._opened_at + self._cooldown
        return not self._probe

    def admit(self, now: float) -> bool:
        s = self._state
        if s == CLOSED:
            return True
        if s == OPEN:
            if now < self._opened_at + self._cooldown:
                return False
            self._state = HALF_OPEN
            self._probe = False
        if self._probe:
            return False
        self._probe = True
        return True

    def success(self, now: float) -> None:
        self._consecutive = 0
        s = self._state
        if s == CLOSED:
            self._window.add(now, 1, 0)
        elif s == HALF_OPEN:
            self._state = CLOSED
            self._probe = False
            self._cooldown = self._base_cooldown
            self._window.clear()

    def failure(self, now: float) -> None:
        s = self._state
        if s == CLOSED:
            self._consecutive += 1
            self._window.add(now, 1, 1)
            if self._max_consecutive and self._consecutive >= self._max_consecutive:
                self._open(now, self._base_cooldown, "consecutive_failures")
                return
            total, failed = self._window.sums(now)
            if total >= self._min_requests and failed >= self._ratio * total:
                self._open(now, self._base_cooldown, "failure_ratio")
        elif s == HALF_OPEN:
            self._open(now, min(self._max_cooldown, self._cooldown * 2), "probe_failed")

    def abandon(self) -> None:
        if self._state == HALF_OPEN:
            self._probe = False

    def retry_in(self, now: float) -> float:
        s = self._state
        if s == OPEN:
            return max(0.0, self._opened_at + self._cooldown - now)
        if s == HALF_OPEN and self._probe:
            # The probe's answer decides; it is usually quick, so look again soon.
            return min(1.0, self._base_cooldown)
        return 0.0

    def _open(self, now: float, cooldown: float, reason: str) -> None:
        self._state = OPEN
        self._opened_at = now
        self._cooldown = cooldown
        self._probe = False
        self._consecutive = 0
        self.opened += 1
        self.reason = reason

    # --- driven by another instance's breaker (shared state) ---------------------------------

    @property
    def cooldown(self) -> float:
        """The current (last) cooldown: doubles after each failed probe."""
        return self._cooldown

    def force_open(self, now: float, remaining: float, cooldown: float, reason: str) -> None:
        """Open for `remaining` more seconds, as if opened earlier with `cooldown`, so a failed
        probe here doubles the same cooldown the fleet uses. Not counted in `opened`."""
        cooldown = min(self._max_cooldown, max(cooldown, remaining, 0.0))
        self._state = OPEN
        self._opened_at = now + max(remaining, 0.0) - cooldown
        self._cooldown = cooldown
        self._probe = False
        self._consecutive = 0
        self.reason = reason

    def force_close(self) -> None:
        """A probe succeeded elsewhere: closed, with a fresh window and the base cooldown."""
        self._state = CLOSED
        self._probe = False
        self._consecutive = 0
        self._cooldown = self._base_cooldown
        self._window.clear()


class NoBreaker:
    """`breaker: {enabled: false}`: always closed."""

    __slots__ = ()

    def state(self, now: float) -> str:
        return CLOSED

    def allows(self, now: float) -> bool:
        return True

    def admit(self, now: float) -> bool:
        return True

    def success(self, now: float) -> None:
        pass

    def failure(self, now: float) -> None:
        pass

    def abandon(self) -> None:
        pass

    def retry_in(self, now: float) -> float:
        return 0.0
