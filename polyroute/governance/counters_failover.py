"""Limit and budget counters that keep serving while their Redis is unreachable.

FailoverCounters puts RedisCounters first and MemoryCounters behind it. The first Redis call that
fails (an error, or no answer within `governance.redis_timeout`) switches this process to its
fallback, chosen by `governance.redis_unavailable`:

- "local": the same limits and budgets on this process's memory counters. Rate-limit buckets
  start full; budgets start from what this process knows was spent (the ledger totals it was
  seeded with at start-up plus every settlement it made since, through Redis or not).
- "open": nothing is enforced; spend is still recorded and sent to Redis later.
- "closed": requests that need a reservation are refused with a retryable 503.

While falling back, no request waits on Redis: a background probe pings it every
`retry_interval` seconds. When it answers, what this process owes it is sent first — the ledger
seed (a no-op unless Redis came back empty), settlements of reservations taken on Redis before
the outage (each at most once, see redis_counters.py), and the spend settled on the fallback
(one batch, applied at most once) — and only then do requests use Redis again.

A reservation is settled on the counters that took it. Every transition logs a WARNING and calls
`listeners` (the metrics count them); `check()` is the /health/ready check (polyroute/ops/probes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from polyroute.core.errors import Unavailable
from polyroute.governance.limits import MemoryCounters, Reservation, Subject, periods
from polyroute.governance.redis_counters import RedisCounters

log = logging.getLogger("polyroute.governance")


@dataclass(frozen=True)
class _Batch:
    id: str  # applied at most once by Redis, so a batch whose answer was lost can be sent again
    spend: dict[tuple[str, str], float]
    requests: int
    usd: float


MODES = ("local", "open", "closed")
RETRY_INTERVAL = 1.0
# While Redis stays unreachable, a reminder is logged this often (the transition logs at once).
REMIND_EVERY = 300.0
_DESCRIBE = {
    "local": "limits and budgets are enforced by per-process memory counters",
    "open": "limits and budgets are NOT enforced",
    "closed": "requests of keys with limits or budgets are refused (503)",
}


class FailoverCounters:
    def __init__(
        self,
        remote: RedisCounters,
        mode: str = "local",
        *,
        retry_interval: float = RETRY_INTERVAL,
        memory: MemoryCounters | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        from redis.exceptions import RedisError

        self.remote = remote
        self.mode = mode
        self.retry_interval = retry_interval
        # Always kept current (seeded, and told of every settlement), so that "local" starts from
        # what this process knows was spent, and the admin API has an answer during an outage.
        self.memory = memory or MemoryCounters()
        self._outage: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self.down = False
        self.since = 0.0  # wall clock of the last switch to the fallback
        self.reason = ""
        # Switches so far, by destination: the fallback mode, or "redis" when it came back.
        self.transitions: dict[str, int] = {mode: 0, "redis": 0}
        self.listeners: list[Callable[[str], None]] = []
        # Spend settled off Redis, not yet sent: {(subject id, period): USD}; and the batch being
        # sent (its id makes sending it twice harmless).
        self._unsent: dict[tuple[str, str], float] = {}
        self._unsent_usd = 0.0
        self._unsent_requests = 0
        self._batch: _Batch | None = None
        self._seed: dict[tuple[str, str], float] | None = None
        self._reseed = False
        self._lock = asyncio.Lock()
        self._probe: asyncio.Task[None] | None = None
        self._reminded = 0.0
        self._last_replayed = 0.0
        self.replayed_usd = 0.0  # spend sent to Redis after being settled off it (logs, tests)

    # --- the Counters protocol ---------------------------------------------------------------------

    async def reserve(self, subjects: Sequence[Subject], tokens: int, cost: float, wall: float, hold: float) -> Reservation:
        if not self.down:
            try:
                return await self.remote.reserve(subjects, tokens, cost, wall, hold)
            except self._outage as exc:
                self._went_down(exc)
        if self.mode == "local":
            return await self.memory.reserve(subjects, tokens, cost, wall, hold)
        if self.mode == "open":
            day, month = periods(wall)
            return Reservation(tuple(subjects), tokens, cost, day, month, 0.0, backend="open")
        # Not the reason: it names Redis's address, which is none of the caller's business.
        raise Unavailable(
            "rate limits and budgets cannot be checked right now (their shared store is unreachable); "
            "retry shortly",
            code="counters_unavailable",
            retry_after=self.retry_interval,
        )

    async def settle(self, res: Reservation, tokens: int, cost: float) -> None:
        if res.settled:
            return
        if res.backend == "redis":
            if self.down:
                self.remote.settle_later(res, tokens, cost)
            else:
                try:
                    await self.remote.settle(res, tokens, cost)
                except self._outage as exc:
                    self._went_down(exc)  # the settlement waits in remote.pending
            self.memory.add_spent(res.subjects, res.day, res.month, cost)
            return
        if res.backend == "open":
            res.settled = True
            self.memory.add_spent(res.subjects, res.day, res.month, cost)
        else:
            await self.memory.settle(res, tokens, cost)
            if not res.settled:
                return  # not one of the memory counters' own (released after its hold)
        if cost:
            u = self._unsent
            for s in res.subjects:
                for p in (res.day, res.month):
                    u[(s.id, p)] = u.get((s.id, p), 0.0) + cost
            self._unsent_usd += cost
            self._unsent_requests += 1
        if not self.down:  # a request reserved during the outage, finished after it
            try:
                await self._flush()
            except self._outage as exc:
                self._went_down(exc)

    async def seed(self, spent: dict[tuple[str, str], float]) -> None:
        self._seed = dict(spent)
        await self.memory.seed(spent)
        try:
            await self.remote.seed(spent)
        except self._outage as exc:
            self._went_down(exc, at_start=True)

    async def status(self, subject_id: str, wall: float) -> dict[str, float]:
        if not self.down:
            try:
                return await self.remote.status(subject_id, wall)
            except self._outage as exc:
                self._went_down(exc)
        return await self.memory.status(subject_id, wall)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        if not self.down and (self._unsent or self._batch or self.remote.pending):
            with contextlib.suppress(*self._outage):
                await self._flush()
        usd = self._unsent_usd + (self._batch.usd if self._batch else 0.0)
        if usd or self.remote.pending:
            log.warning(
                "governance counters: closing with $%.4f of spend and %d settlement(s) not sent to Redis "
                "(unreachable); the ledger has them, Redis budgets undercount them this month",
                usd, len(self.remote.pending),
            )  # fmt: skip
        await self.remote.close()
        await self.memory.close()

    # --- health ------------------------------------------------------------------------------------

    async def check(self) -> tuple[bool, str]:
        """(ok, detail) for /health/ready: a PING while Redis is in use (a failure switches to the
        fallback at once), else why and since when this process is on its fallback."""
        if not self.down:
            try:
                await self.remote.ping()
                return True, "redis"
            except self._outage as exc:
                self._went_down(exc)
        return False, self.describe()

    def describe(self) -> str:
        if not self.down:
            return "redis"
        return (
            f"redis unreachable for {time.time() - self.since:.0f} s ({self.reason}): {_DESCRIBE[self.mode]} "
            f"(governance.redis_unavailable: {self.mode}) until it answers again"
        )

    # --- transitions -------------------------------------------------------------------------------

    def _went_down(self, exc: BaseException, *, at_start: bool = False) -> None:
        self.reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.down:
            return
        self.down = True
        self._reseed = True  # if Redis comes back empty, the ledger seed goes in again
        self.since = self._reminded = time.time()
        self.transitions[self.mode] += 1
        log.warning(
            "governance counters: Redis unreachable%s (%s): %s (governance.redis_unavailable: %s); "
            "retrying every %g s",
            " at start-up" if at_start else "", self.reason, _DESCRIBE[self.mode], self.mode, self.retry_interval,
        )  # fmt: skip
        self._notify(self.mode)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_loop(), name="polyroute-counters-probe")

    def _came_back(self, settlements: int) -> None:
        self.down = False
        self.transitions["redis"] += 1
        log.warning(
            "governance counters: Redis is back after %.1f s; sent it %d settlement(s) and $%.4f of spend "
            "made meanwhile; limits and budgets are shared again",
            time.time() - self.since, settlements, self._last_replayed,
        )  # fmt: skip
        self._notify("redis")

    def _notify(self, to: str) -> None:
        for fn in self.listeners:
            try:
                fn(to)
            except Exception:
                log.exception("counters transition listener failed")

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                # Pooled connections to the old server are dead: each would fail one call.
                await self.remote.reconnect()
                await self.remote.ping()
                await self._flush(recovering=True)
                return
            except self._outage as exc:
                self.reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.debug("governance counters: Redis still unreachable (%s)", self.reason)
            except Exception:
                log.exception("governance counters: checking whether Redis is back failed")
            now = time.time()
            if now - self._reminded >= REMIND_EVERY:
                self._reminded = now
                log.warning("governance counters: Redis still unreachable (%s): %s", self.describe(), self._owed())

    def _owed(self) -> str:
        usd = self._unsent_usd + (self._batch.usd if self._batch else 0.0)
        return f"${usd:.4f} of spend and {len(self.remote.pending)} settlement(s) wait to be sent to it"

    async def _flush(self, *, recovering: bool = False) -> None:
        """Send Redis what it is owed; with `recovering`, then switch back to it. Raises on an
        outage, keeping what was not confirmed for the next try."""
        async with self._lock:
            settlements = 0
            self._last_replayed = 0.0
            if recovering and self._reseed and self._seed is not None:
                # Before the spend below: seeding sets values, replaying adds to them.
                await self.remote.seed(self._seed)
                self._reseed = False
            # Loop until nothing is owed: requests finishing meanwhile may add more.
            while self.remote.pending or self._unsent or self._batch is not None:
                if self.remote.pending:
                    settlements += await self.remote.replay()
                if self._batch is None and self._unsent:
                    b = _Batch(self.remote.new_batch_id(), self._unsent, self._unsent_requests, self._unsent_usd)
                    self._batch = b
                    self._unsent, self._unsent_requests, self._unsent_usd = {}, 0, 0.0
                if self._batch is not None:
                    b = self._batch
                    await self.remote.add_spent(b.spend, b.id)
                    self._batch = None
                    self._last_replayed += b.usd
                    self.replayed_usd += b.usd
                    settlements += b.requests
            # No await between the loop's last check and this: nothing can be left behind.
            if recovering:
                self._came_back(settlements)

    # --- for the metrics ---------------------------------------------------------------------------

    def fallback_gauge(self) -> list[tuple[tuple[str, ...], float]]:
        """`polyroute_counters_fallback{mode}`: 1 while this process is on its fallback."""
        return [((self.mode,), 1.0 if self.down else 0.0)]
