"""In-memory routing state for one gateway process (the default `RoutingState`)."""

from __future__ import annotations

import math
from collections import OrderedDict

from polyroute.config.schema import BreakerConfig, DeploymentConfig, RetryConfig, StickyConfig
from polyroute.routing.breaker import CircuitBreaker, NoBreaker
from polyroute.routing.state import Affinity, Breaker, Capacity, LatencyStats, RetryBudget
from polyroute.routing.window import Window

INF = math.inf
# Weight of the newest sample in the latency averages: about the last ten requests matter.
EWMA_ALPHA = 0.2


class MemoryLatency:
    __slots__ = ("_latency", "_ttft")

    def __init__(self) -> None:
        self._latency: float | None = None
        self._ttft: float | None = None

    def latency(self) -> float | None:
        return self._latency

    def ttft(self) -> float | None:
        return self._ttft

    def observe_latency(self, seconds: float) -> None:
        v = self._latency
        self._latency = seconds if v is None else v + EWMA_ALPHA * (seconds - v)

    def observe_ttft(self, seconds: float) -> None:
        v = self._ttft
        self._ttft = seconds if v is None else v + EWMA_ALPHA * (seconds - v)


class MemoryCapacity:
    """In-flight count, token buckets for RPM and TPM (refilled continuously, as vendors do),
    and a cool-down set by upstream 429s."""

    __slots__ = (
        "_cool_until",
        "_inflight",
        "_max_inflight",
        "_r_at",
        "_r_rate",
        "_requests",
        "_rpm",
        "_t_at",
        "_t_rate",
        "_tokens",
        "_tpm",
    )

    def __init__(self, rpm: int | None, tpm: int | None, max_concurrency: int | None) -> None:
        self._inflight = 0
        self._max_inflight = max_concurrency or 0
        self._rpm = float(rpm or 0)
        self._r_rate = self._rpm / 60.0
        self._requests = self._rpm
        self._r_at: float | None = None
        self._tpm = float(tpm or 0)
        self._t_rate = self._tpm / 60.0
        self._tokens = self._tpm
        self._t_at: float | None = None
        self._cool_until = -INF

    def inflight(self) -> int:
        return self._inflight

    def _refill(self, now: float) -> None:
        if self._rpm:
            if self._r_at is not None and now > self._r_at:
                self._requests = min(self._rpm, self._requests + (now - self._r_at) * self._r_rate)
            self._r_at = now
        if self._tpm:
            if self._t_at is not None and now > self._t_at:
                self._tokens = min(self._tpm, self._tokens + (now - self._t_at) * self._t_rate)
            self._t_at = now

    def acquire(self, now: float, tokens: int) -> bool:
        if now < self._cool_until:
            return False
        if self._max_inflight and self._inflight >= self._max_inflight:
            return False
        if self._rpm or self._tpm:
            self._refill(now)
            if self._rpm and self._requests < 1.0:
                return False
            # A request bigger than the whole bucket may go when the bucket is full.
            if self._tpm and self._tokens < min(tokens, self._tpm):
                return False
            self._requests -= 1.0
            self._tokens -= tokens
        self._inflight += 1
        return True

    def release(self) -> None:
        if self._inflight > 0:
            self._inflight -= 1

    def settle(self, now: float, tokens: int) -> None:
        if self._tpm and tokens:
            self._refill(now)
            self._tokens = min(self._tpm, self._tokens - tokens)

    def wait(self, now: float, tokens: int) -> float:
        w = self._cool_until - now if now < self._cool_until else 0.0
        if self._max_inflight and self._inflight >= self._max_inflight:
            return INF
        if self._rpm:
            r = self._requests
            if self._r_at is not None and now > self._r_at:
                r = min(self._rpm, r + (now - self._r_at) * self._r_rate)
            if r < 1.0:
                w = max(w, (1.0 - r) / self._r_rate)
        if self._tpm:
            tk = self._tokens
            if self._t_at is not None and now > self._t_at:
                tk = min(self._tpm, tk + (now - self._t_at) * self._t_rate)
            need = min(tokens, self._tpm)
            if tk < need:
                w = max(w, (need - tk) / self._t_rate)
        return w

    def cool_down(self, until: float) -> None:
        if until > self._cool_until:
            self._cool_until = until


class MemoryRetryBudget:
    __slots__ = ("_floor", "_ratio", "_window")

    def __init__(self, config: RetryConfig) -> None:
        self._window = Window(config.budget_window)
        self._ratio = config.budget_ratio
        self._floor = config.budget_min_per_second * config.budget_window

    def request(self, now: float) -> None:
        self._window.add(now, 1, 0)

    def try_retry(self, now: float) -> bool:
        requests, retries = self._window.sums(now)
        if retries < self._floor + self._ratio * requests:
            self._window.add(now, 0, 1)
            return True
        return False


class MemoryAffinity:
    """A bounded LRU of pins with an idle TTL."""

    __slots__ = ("_max", "_pins", "_ttl")

    def __init__(self, config: StickyConfig) -> None:
        self._pins: OrderedDict[int, tuple[str, float]] = OrderedDict()
        self._ttl = config.ttl
        self._max = config.max_entries

    def get(self, key: int, now: float) -> str | None:
        pin = self._pins.get(key)
        if pin is None:
            return None
        if pin[1] < now:
            del self._pins[key]
            return None
        return pin[0]

    def put(self, key: int, target: str, now: float) -> None:
        pins = self._pins
        pins[key] = (target, now + self._ttl)
        pins.move_to_end(key)
        if len(pins) > self._max:
            pins.popitem(last=False)

    def __len__(self) -> int:
        return len(self._pins)


class Settings:
    """The settings each handle was made with. A handle asked for again with other settings (a
    config reload changed them) is made afresh; with the same settings, the one made is shared, so
    a reload keeps the health, latency, limits and pins of whatever it did not change."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str], object] = {}

    def changed(self, kind: str, key: str, settings: object) -> bool:
        old = self._made.get((kind, key), settings)
        self._made[(kind, key)] = settings
        return old != settings

    def keep_only(self, keys: set[str]) -> None:
        self._made = {k: v for k, v in self._made.items() if k[1] in keys}


class MemoryState:
    """Handles are shared by key: deployments configured with the same `name` share them. They
    are asked for when a router is built (start-up, reload), never per request."""

    def __init__(self) -> None:
        self.breakers: dict[str, Breaker] = {}
        self.latencies: dict[str, LatencyStats] = {}
        self.capacities: dict[str, Capacity] = {}
        self.budgets: dict[str, RetryBudget] = {}
        self.affinities: dict[str, Affinity] = {}
        self.settings = Settings()

    def breaker(self, key: str, config: BreakerConfig) -> Breaker:
        b = self.breakers.get(key)
        if self.settings.changed("breaker", key, config) or b is None:
            b = self.breakers[key] = CircuitBreaker(config) if config.enabled else NoBreaker()
        return b

    def latency(self, key: str) -> LatencyStats:
        s = self.latencies.get(key)
        if s is None:
            s = self.latencies[key] = MemoryLatency()
        return s

    def capacity(self, key: str, config: DeploymentConfig) -> Capacity:
        c = self.capacities.get(key)
        limits = (config.rpm, config.tpm, config.max_concurrency)
        if self.settings.changed("capacity", key, limits) or c is None:
            c = self.capacities[key] = MemoryCapacity(*limits)
        return c

    def retry_budget(self, key: str, config: RetryConfig) -> RetryBudget:
        b = self.budgets.get(key)
        if self.settings.changed("budget", key, config) or b is None:
            b = self.budgets[key] = MemoryRetryBudget(config)
        return b

    def affinity(self, key: str, config: StickyConfig) -> Affinity:
        a = self.affinities.get(key)
        if self.settings.changed("affinity", key, config) or a is None:
            a = self.affinities[key] = MemoryAffinity(config)
        return a

    def keep_only(self, deployments: set[str], routes: set[str]) -> None:
        for handles, keys in ((self.breakers, deployments), (self.latencies, deployments),
                              (self.capacities, deployments), (self.budgets, routes), (self.affinities, routes)):  # fmt: skip
            for k in [k for k in handles if k not in keys]:
                del handles[k]
        self.settings.keep_only(deployments | routes)
