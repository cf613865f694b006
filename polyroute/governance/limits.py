"""Rate limits and budgets: the counters behind them, and the one atomic check-and-reserve.

Rate limits use GCRA (the generic cell rate algorithm), i.e. a token bucket of capacity L that
refills continuously at L per minute, kept as one number per limit (the "theoretical arrival
time"). So for `rpm: L`: a burst of up to L requests passes at once, the sustained rate is L per
minute, and any window of W seconds admits at most L + L*W/60 requests. `tpm` is the same bucket
counted in tokens: a request needs room for its estimate (prompt estimate + max_tokens when set),
and at settlement the bucket is charged the tokens the provider reported, so a request that used
more than its estimate puts the bucket in debt and later requests wait.

Budgets are USD per UTC day and per UTC month. A request reserves its worst-case cost before the
call (see `Governance.estimate`), admitted only if spent + reserved + this reservation stays within
the budget; after the call the reservation is replaced by the cost the provider's usage implies.

Everything for one request — every limit of its key and of its team — is checked and reserved in
one step that cannot interleave with another request's: here, code with no `await` inside; for a
shared Redis, one Lua script over all the request's keys (see RedisCounters).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from polyroute.core.errors import QuotaExceeded, RateLimited

WINDOW = 60.0


@dataclass(frozen=True)
class Subject:
    """The limits of one key or team, as they are for this request."""

    id: str  # "key:<id>" or "team:<id>"
    label: str  # for messages: "key 'ci-bot'" / "team 'search'"
    rpm: int | None = None
    tpm: int | None = None
    daily: float | None = None
    monthly: float | None = None
    hard: bool = True


@dataclass
class Reservation:
    subjects: tuple[Subject, ...]
    tokens: int
    cost: float
    day: str
    month: str
    expires: float  # monotonic; an unsettled reservation is released after this
    alerts: list[str] = field(default_factory=list)
    settled: bool = False
    # Which counters hold it ("memory", "redis", or "open": nothing held, Redis was unreachable):
    # a reservation is settled where it was taken (counters_failover.py).
    backend: str = "memory"
    # Redis only: the id of its marker, which makes its settlement happen at most once.
    token: str = ""


_last_day: list[tuple[int, tuple[str, str]]] = [(-1, ("", ""))]


def periods(wall: float) -> tuple[str, str]:
    """("YYYY-MM-DD", "YYYY-MM") in UTC; formatted once per day (it is on the request path)."""
    n = int(wall // 86400)
    last = _last_day[0]
    if last[0] == n:
        return last[1]
    d = datetime.fromtimestamp(n * 86400, UTC)
    out = (d.strftime("%Y-%m-%d"), d.strftime("%Y-%m"))
    _last_day[0] = (n, out)
    return out


def period_starts(wall: float) -> tuple[float, float]:
    """UNIX times at which the current UTC day and month began."""
    d = datetime.fromtimestamp(wall, UTC)
    day = d.replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp(), day.replace(day=1).timestamp()


class Counters(Protocol):
    """Where limit and budget state lives: this process, or (for several instances) Redis."""

    async def reserve(self, subjects: Sequence[Subject], tokens: int, cost: float, wall: float, hold: float) -> Reservation:
        """Check every limit of every subject and reserve, all or nothing.

        Raises RateLimited (with retry_after) or QuotaExceeded. `hold` bounds how long the
        reservation lives if it is never settled (a request that vanished)."""
        ...

    async def settle(self, res: Reservation, tokens: int, cost: float) -> None:
        """Replace the reservation by what the request really used."""
        ...

    async def seed(self, spent: dict[tuple[str, str], float]) -> None:
        """Budget spending already in the ledger: {(subject id, day or month): USD}."""
        ...

    async def status(self, subject_id: str, wall: float) -> dict[str, float]:
        """Spent and reserved USD this day and month, for the admin API."""
        ...

    async def close(self) -> None: ...


class _State:
    __slots__ = ("budget", "tat_req", "tat_tok")

    def __init__(self) -> None:
        self.tat_req = 0.0
        self.tat_tok = 0.0
        # period ("2025-01-02" or "2025-01") -> [spent, reserved]
        self.budget: dict[str, list[float]] = {}


def _over(spent_reserved: list[float] | None, limit: float, cost: float) -> bool:
    if spent_reserved is None:
        return cost > limit
    return spent_reserved[0] + spent_reserved[1] + cost > limit + 1e-12


class MemoryCounters:
    """Counters in this process: exact for one instance with one worker."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._states: dict[str, _State] = {}
        self._open: dict[int, Reservation] = {}
        self._alerted: set[tuple[str, str]] = set()
        self._last_sweep = 0.0

    def _state(self, sid: str) -> _State:
        st = self._states.get(sid)
        if st is None:
            st = self._states[sid] = _State()
        return st

    async def reserve(self, subjects: Sequence[Subject], tokens: int, cost: float, wall: float, hold: float) -> Reservation:
        now = self._clock()
        if now - self._last_sweep > 1.0:
            self._sweep(now, wall)
        day, month = periods(wall)
        # Phase 1: check everything; nothing is changed until every check has passed. (Runs on
        # every governed request: state looked up once per subject, no per-limit tuples.)
        states = self._states
        wait = 0.0
        why = ""
        alerts: list[str] = []
        for s in subjects:
            st = states.get(s.id) or self._state(s.id)
            if s.rpm is not None:
                over = max(st.tat_req, now) + WINDOW / s.rpm - now - WINDOW
                if over > 1e-9 and over > wait:
                    wait, why = over, f"{s.label} is over its limit of {s.rpm} requests per minute"
            if s.tpm is not None and tokens > 0:
                # A request bigger than the whole bucket passes when the bucket is full.
                over = max(st.tat_tok, now) + min(tokens, s.tpm) * (WINDOW / s.tpm) - now - WINDOW
                if over > 1e-9 and over > wait:
                    wait, why = over, f"{s.label} is over its limit of {s.tpm} tokens per minute"
            if s.daily is not None and _over(st.budget.get(day), s.daily, cost):
                self._budget_reached(s, st, day, "daily", s.daily, cost, alerts)
            if s.monthly is not None and _over(st.budget.get(month), s.monthly, cost):
                self._budget_reached(s, st, month, "monthly", s.monthly, cost, alerts)
        if wait > 0:
            raise RateLimited(why, code="rate_limit_exceeded", retry_after=wait)
        # Phase 2: commit.
        for s in subjects:
            st = states[s.id]
            if s.rpm is not None:
                st.tat_req = max(st.tat_req, now) + WINDOW / s.rpm
            if s.tpm is not None and tokens > 0:
                st.tat_tok = max(st.tat_tok, now) + tokens * WINDOW / s.tpm
            b = st.budget
            d = b.get(day)
            if d is None:
                d = b[day] = [0.0, 0.0]
            d[1] += cost
            m = b.get(month)
            if m is None:
                m = b[month] = [0.0, 0.0]
            m[1] += cost
        res = Reservation(tuple(subjects), tokens, cost, day, month, now + hold, alerts)
        self._open[id(res)] = res
        return res

    def _budget_reached(
        self, s: Subject, st: _State, period: str, name: str, limit: float, cost: float, alerts: list[str]
    ) -> None:
        """A budget this request would exceed: refused (hard) or one alert per period."""
        used = st.budget.get(period, [0.0, 0.0])
        msg = (
            f"{s.label} has reached its {name} budget of ${limit:.2f} "
            f"(spent ${used[0]:.4f}, reserved ${used[1]:.4f}, this request up to ${cost:.4f})"
        )
        if s.hard:
            raise QuotaExceeded(msg, code="budget_exceeded")
        if (s.id, period) not in self._alerted:
            self._alerted.add((s.id, period))
            alerts.append(msg)

    async def settle(self, res: Reservation, tokens: int, cost: float) -> None:
        if self._open.pop(id(res), None) is None or res.settled:
            return
        res.settled = True
        self._apply(res, tokens, cost)

    def _apply(self, res: Reservation, tokens: int | None, cost: float) -> None:
        for s in res.subjects:
            st = self._state(s.id)
            if tokens is not None and s.tpm is not None:
                st.tat_tok += (tokens - res.tokens) * WINDOW / s.tpm
            for period in (res.day, res.month):
                b = st.budget.get(period)
                if b is None:  # rolled over (the sweep dropped the period) since the reservation
                    b = st.budget[period] = [0.0, 0.0]
                b[1] = max(0.0, b[1] - res.cost)
                b[0] += cost

    def _sweep(self, now: float, wall: float) -> None:
        self._last_sweep = now
        for rid, res in list(self._open.items()):
            if res.expires <= now:
                # Never settled: release the money held; the ledger has no row to count.
                del self._open[rid]
                res.settled = True
                self._apply(res, None, 0.0)
        day, month = periods(wall)
        for st in self._states.values():
            for p in [p for p in st.budget if p not in (day, month)]:
                del st.budget[p]
        self._alerted = {a for a in self._alerted if a[1] in (day, month)}

    async def seed(self, spent: dict[tuple[str, str], float]) -> None:
        for (sid, period), usd in spent.items():
            self._state(sid).budget.setdefault(period, [0.0, 0.0])[0] += usd

    def add_spent(self, subjects: Sequence[Subject], day: str, month: str, usd: float) -> None:
        """Spend settled elsewhere (on Redis), so this process's view of budgets stays current for
        when Redis is unreachable and these counters stand in (counters_failover.py)."""
        if not usd:
            return
        for s in subjects:
            st = self._state(s.id)
            for period in (day, month):
                st.budget.setdefault(period, [0.0, 0.0])[0] += usd

    async def status(self, subject_id: str, wall: float) -> dict[str, float]:
        day, month = periods(wall)
        st = self._states.get(subject_id)
        b = st.budget if st else {}
        d, m = b.get(day, [0.0, 0.0]), b.get(month, [0.0, 0.0])
        return {"spent_day": d[0], "reserved_day": d[1], "spent_month": m[0], "reserved_month": m[1]}

    async def close(self) -> None:
        pass

    def open_reservations(self) -> int:
        return len(self._open)
