"""The routing state, behind small interfaces: breakers, latency, capacity, retry budgets, pins.

Strategies and the executor see only these protocols. Every method is synchronous and takes `now`
from the router's clock, so the hot path never awaits shared state and never holds a lock across
an await. The in-memory implementations (polyroute/routing/memory.py) serve one process; a shared
implementation (Redis, for several gateway instances) keeps the same interfaces by answering from
a local view that it reconciles in the background, and plugs in as `Router(state=...)`.

Handles are created once per deployment (or route) at start-up, so a request only calls methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from polyroute.config.schema import BreakerConfig, DeploymentConfig, RetryConfig, StickyConfig

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class Breaker(Protocol):
    """Circuit breaker of one deployment: closed -> open -> half-open (one probe) -> closed."""

    def state(self, now: float) -> str: ...

    def allows(self, now: float) -> bool:
        """Whether `admit` would let a request through now (no state change)."""
        ...

    def admit(self, now: float) -> bool:
        """Let one request through; in half-open state this claims the single probe."""
        ...

    def success(self, now: float) -> None: ...

    def failure(self, now: float) -> None:
        """A health failure: 5xx, 529, timeout, connection error."""
        ...

    def abandon(self) -> None:
        """An admitted request ended without a health verdict (429, client error, cancelled)."""
        ...

    def retry_in(self, now: float) -> float:
        """Seconds until a request may be admitted again (0 when it may now)."""
        ...


class LatencyStats(Protocol):
    """Exponentially weighted moving averages of one deployment's latency and time to first token."""

    def latency(self) -> float | None: ...

    def ttft(self) -> float | None: ...

    def observe_latency(self, seconds: float) -> None: ...

    def observe_ttft(self, seconds: float) -> None: ...


class Capacity(Protocol):
    """Requests in flight, RPM/TPM windows and Retry-After cool-downs of one deployment."""

    def inflight(self) -> int: ...

    def acquire(self, now: float, tokens: int) -> bool:
        """Take one request slot (and reserve `tokens` of TPM) if all limits allow it now."""
        ...

    def release(self) -> None:
        """The request taken by `acquire` is over (success, failure or cancellation)."""
        ...

    def settle(self, now: float, tokens: int) -> None:
        """Correct the TPM reservation by `tokens` (negative: give some back)."""
        ...

    def wait(self, now: float, tokens: int) -> float:
        """Seconds until `acquire` could succeed (0: now; inf: unknown, e.g. concurrency)."""
        ...

    def cool_down(self, until: float) -> None:
        """Send nothing here before `until` (upstream 429 / Retry-After)."""
        ...


class RetryBudget(Protocol):
    """Caps the share of a route's traffic that is retries."""

    def request(self, now: float) -> None: ...

    def try_retry(self, now: float) -> bool:
        """Spend one retry if the budget allows it."""
        ...


class Affinity(Protocol):
    """Sticky routing pins: conversation hash -> deployment key."""

    def get(self, key: int, now: float) -> str | None: ...

    def put(self, key: int, target: str, now: float) -> None: ...


class RoutingState(Protocol):
    """Creates the handles above; one instance per gateway."""

    def breaker(self, key: str, config: BreakerConfig) -> Breaker: ...

    def latency(self, key: str) -> LatencyStats: ...

    def capacity(self, key: str, config: DeploymentConfig) -> Capacity: ...

    def retry_budget(self, key: str, config: RetryConfig) -> RetryBudget: ...

    def affinity(self, key: str, config: StickyConfig) -> Affinity: ...

    def keep_only(self, deployments: set[str], routes: set[str]) -> None:
        """Forget the handles of deployments and routes not named (a reload removed them)."""
        ...
