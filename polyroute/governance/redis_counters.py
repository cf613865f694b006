"""Limit and budget counters in Redis, shared by every gateway instance and worker.

The same algorithm as MemoryCounters (GCRA buckets, reserve-then-settle budgets), run as Lua
scripts so that checking and reserving all of a request's limits is one atomic step on the Redis
server, with Redis's clock as the only clock. One hash per key or team: `tat_req`, `tat_tok`,
`spent:<period>`, `res:<period>` (periods are UTC "YYYY-MM-DD" and "YYYY-MM"), kept 40 days.

Each reservation also sets a marker key (`rsv:<token>`) that its settlement deletes, and a
settlement does nothing when the marker is gone. That makes a settlement safe to send again when
Redis did not answer (it may or may not have run), and lets a reserve whose answer was lost be
released later (a no-op if it never ran): such calls wait in `pending` and are replayed by
`replay()`, from the sweep while Redis answers, or by FailoverCounters when it is back.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

from polyroute.core.errors import QuotaExceeded, RateLimited
from polyroute.governance.limits import WINDOW, Reservation, Subject, periods

log = logging.getLogger("polyroute.governance")

PREFIX = "polyroute:gov:"
TTL_SECONDS = 40 * 86400
# A reservation's marker outlives its hold by a day: a settlement replayed after an outage shorter
# than that still finds it.
MARKER_GRACE = 86400
# Replayed spend batches are recognised (not added twice) for this long.
REPLAY_MARKER_TTL = 2 * 86400
# Settlements waiting for Redis; past this the oldest are dropped (logged): memory stays bounded.
MAX_PENDING = 100_000

# KEYS: one hash per subject, then the reservation's marker. ARGV: tokens, cost, day, month,
# window, then 5 per subject: rpm, tpm, daily, monthly, hard ("" for none); then the hash TTL and
# the marker TTL.
# Returns {"ok", alert subject indexes...} | {"rate", wait, subject index, "rpm"|"tpm"}
#       | {"quota", subject index, "daily"|"monthly", spent, reserved}
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local n = #KEYS - 1
local tokens, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
local day, month, window = ARGV[3], ARGV[4], tonumber(ARGV[5])
local wait, why_i, why = 0, 0, ''
local alerts = {}
for i = 1, n do
  local key = KEYS[i]
  local b = 5 + (i - 1) * 5
  local rpm, tpm = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local daily, monthly, hard = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), ARGV[b + 5] == '1'
  local s = redis.call('HMGET', key, 'tat_req', 'tat_tok', 'spent:' .. day, 'res:' .. day,
                       'spent:' .. month, 'res:' .. month)
  if rpm then
    local over = math.max(tonumber(s[1]) or 0, now) + window / rpm - now - window
    if over > 1e-9 and over > wait then wait, why_i, why = over, i, 'rpm' end
  end
  if tpm and tokens > 0 then
    local over = math.max(tonumber(s[2]) or 0, now) + math.min(tokens, tpm) * window / tpm - now - window
    if over > 1e-9 and over > wait then wait, why_i, why = over, i, 'tpm' end
  end
  local checks = {{daily, 3, 'daily', day}, {monthly, 5, 'monthly', month}}
  for _, c in ipairs(checks) do
    local limit = c[1]
    if limit then
      local spent, res = tonumber(s[c[2]]) or 0, tonumber(s[c[2] + 1]) or 0
      if spent + res + cost > limit + 1e-12 then
        if hard then
          return {'quota', tostring(i), c[3], tostring(spent), tostring(res)}
        end
        if redis.call('SET', key .. ':alerted:' .. c[4], '1', 'NX', 'EX', 3024000) then
          table.insert(alerts, tostring(i) .. ':' .. c[3] .. ':' .. tostring(spent) .. ':' .. tostring(res))
        end
      end
    end
  end
end
if wait > 0 then return {'rate', tostring(wait), tostring(why_i), why} end
for i = 1, n do
  local key = KEYS[i]
  local b = 5 + (i - 1) * 5
  local rpm, tpm = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  if rpm then
    local tat = tonumber(redis.call('HGET', key, 'tat_req')) or 0
    redis.call('HSET', key, 'tat_req', tostring(math.max(tat, now) + window / rpm))
  end
  if tpm and tokens > 0 then
    local tat = tonumber(redis.call('HGET', key, 'tat_tok')) or 0
    redis.call('HSET', key, 'tat_tok', tostring(math.max(tat, now) + tokens * window / tpm))
  end
  redis.call('HINCRBYFLOAT', key, 'res:' .. day, cost)
  redis.call('HINCRBYFLOAT', key, 'res:' .. month, cost)
  redis.call('EXPIRE', key, ARGV[6 + n * 5])
end
redis.call('SET', KEYS[n + 1], '1', 'EX', ARGV[7 + n * 5])
local out = {'ok'}
for _, a in ipairs(alerts) do table.insert(out, a) end
return out
"""

# KEYS: subject hashes, then the reservation's marker. ARGV: token delta (or ""), reserved cost,
# actual cost, day, month, window, then the tpm of each subject ("" for none).
# Returns 0 (nothing done) when the marker is gone: settled already, or never reserved.
_SETTLE = """
local n = #KEYS - 1
if redis.call('DEL', KEYS[n + 1]) == 0 then return 0 end
local delta, reserved, actual = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local day, month, window = ARGV[4], ARGV[5], tonumber(ARGV[6])
for i = 1, n do
  local key = KEYS[i]
  local tpm = tonumber(ARGV[6 + i])
  if delta and tpm then
    local tat = tonumber(redis.call('HGET', key, 'tat_tok')) or 0
    redis.call('HSET', key, 'tat_tok', tostring(tat + delta * window / tpm))
  end
  for _, p in ipairs({day, month}) do
    local res = tonumber(redis.call('HINCRBYFLOAT', key, 'res:' .. p, -reserved))
    if res < 0 then redis.call('HSET', key, 'res:' .. p, '0') end
    redis.call('HINCRBYFLOAT', key, 'spent:' .. p, actual)
  end
end
return 1
"""


# Once per marker: set these hash fields (seeding from the ledger) or add to them (replaying spend
# made while Redis was unreachable). KEYS: the marker, then subject hashes. ARGV: 'HSET' or
# 'HINCRBYFLOAT', marker TTL, hash TTL, then (subject index, field, value) triples.
_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then return 0 end
for j = 4, #ARGV, 3 do
  redis.call(ARGV[1], KEYS[tonumber(ARGV[j]) + 1], ARGV[j + 1], ARGV[j + 2])
end
for i = 2, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
return 1
"""

Job = tuple[list[str], list[str]]  # keys and args of one _SETTLE call


def _arg(v: float | int | None) -> str:
    return "" if v is None else repr(v)


class RedisCounters:
    def __init__(self, url: str, *, prefix: str = PREFIX, timeout: float | None = None) -> None:
        """`timeout`: seconds any one Redis call (connecting included) may take; None: redis-py's."""
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # No retries inside the client: a reserve script sent again after its answer was lost
        # would reserve twice, and ten attempts would hold a request on a dead Redis for long.
        kwargs: dict[str, Any] = {"retry": Retry(NoBackoff(), 0)}
        if timeout is not None:
            kwargs.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        self.redis: Any = aioredis.from_url(url, **kwargs)
        self.prefix = prefix
        self._reserve = self.redis.register_script(_RESERVE)
        self._settle = self.redis.register_script(_SETTLE)
        self._once = self.redis.register_script(_ONCE)
        # Reservations of this process not yet settled; released (at zero cost) after their hold.
        self._open: dict[int, Reservation] = {}
        self._last_sweep = 0.0
        # Marker ids: unique across processes without asking Redis.
        self._tag = secrets.token_hex(6) + ":"
        self._seq = itertools.count(1)
        # Settlements (and releases of reserves whose outcome is unknown) Redis has not confirmed.
        self.pending: list[Job] = []
        self.dropped = 0

    def _key(self, sid: str) -> str:
        return self.prefix + sid

    async def reserve(
        self, subjects: Sequence[Subject], tokens: int, cost: float, wall: float, hold: float
    ) -> Reservation:
        now = time.monotonic()
        if now - self._last_sweep > 1.0:
            await self._sweep(now)
        day, month = periods(wall)
        token = f"{self._tag}{next(self._seq):x}"
        keys = [self._key(s.id) for s in subjects]
        keys.append(f"{self.prefix}rsv:{token}")
        args: list[str] = [str(tokens), repr(cost), day, month, repr(WINDOW)]
        for s in subjects:
            args += [_arg(s.rpm), _arg(s.tpm), _arg(s.daily), _arg(s.monthly), "1" if s.hard else "0"]
        args += [str(TTL_SECONDS), str(int(hold) + MARKER_GRACE)]
        try:
            raw = await self._reserve(keys=keys, args=args)
        except BaseException:
            # Timed out, connection lost or cancelled: the script may have run. Release it once
            # Redis answers; that is a no-op when it did not run (no marker).
            self._defer((keys, ["", repr(cost), "0.0", day, month, repr(WINDOW), *(_arg(s.tpm) for s in subjects)]))
            raise
        out = [x.decode() if isinstance(x, bytes) else x for x in raw]
        if out[0] == "rate":
            s = subjects[int(out[2]) - 1]
            what = f"{s.rpm} requests" if out[3] == "rpm" else f"{s.tpm} tokens"
            raise RateLimited(
                f"{s.label} is over its limit of {what} per minute", code="rate_limit_exceeded",
                retry_after=float(out[1]),
            )  # fmt: skip
        if out[0] == "quota":
            s = subjects[int(out[1]) - 1]
            usd = s.daily if out[2] == "daily" else s.monthly
            raise QuotaExceeded(
                f"{s.label} has reached its {out[2]} budget of ${usd or 0.0:.2f} (spent ${float(out[3]):.4f}, "
                f"reserved ${float(out[4]):.4f}, this request up to ${cost:.4f})",
                code="budget_exceeded",
            )
        alerts = []
        for a in out[1:]:
            i, name, spent, res_ = a.split(":")
            s = subjects[int(i) - 1]
            usd = s.daily if name == "daily" else s.monthly
            alerts.append(
                f"{s.label} has reached its {name} budget of ${usd or 0.0:.2f} (spent ${float(spent):.4f}, "
                f"reserved ${float(res_):.4f}, this request up to ${cost:.4f})"
            )
        res = Reservation(tuple(subjects), tokens, cost, day, month, now + hold, alerts, backend="redis", token=token)
        self._open[id(res)] = res
        return res

    async def settle(self, res: Reservation, tokens: int, cost: float) -> None:
        if self._open.pop(id(res), None) is None or res.settled:
            return
        res.settled = True
        await self._run(self._job(res, tokens - res.tokens, cost))

    def settle_later(self, res: Reservation, tokens: int, cost: float) -> None:
        """Queue the settlement for `replay` without trying Redis now (it is known to be down)."""
        if self._open.pop(id(res), None) is None or res.settled:
            return
        res.settled = True
        self._defer(self._job(res, tokens - res.tokens, cost))

    def _job(self, res: Reservation, delta: int | None, cost: float) -> Job:
        keys = [self._key(s.id) for s in res.subjects]
        keys.append(f"{self.prefix}rsv:{res.token}")
        args = [_arg(delta), repr(res.cost), repr(cost), res.day, res.month, repr(WINDOW)]
        args += [_arg(s.tpm) for s in res.subjects]
        return keys, args

    async def _run(self, job: Job) -> None:
        try:
            await self._settle(keys=job[0], args=job[1])
        except BaseException:
            self._defer(job)  # it may have run: the marker makes running it again harmless
            raise

    def _defer(self, job: Job) -> None:
        self.pending.append(job)
        if len(self.pending) > MAX_PENDING:
            del self.pending[0]
            self.dropped += 1
            if self.dropped == 1:
                log.error("governance counters: more than %d settlements wait for Redis; dropping the oldest "
                          "(their reservations stay counted in Redis until the period ends)", MAX_PENDING)

    async def replay(self) -> int:
        """Send the settlements Redis has not confirmed, oldest first (each takes effect at most
        once). On a failure, it and the ones after it stay queued and the error is raised."""
        jobs, self.pending = self.pending, []
        for i, job in enumerate(jobs):
            try:
                await self._settle(keys=job[0], args=job[1])
            except BaseException:
                self.pending[:0] = jobs[i:]
                raise
        return len(jobs)

    async def _sweep(self, now: float) -> None:
        self._last_sweep = now
        for rid, res in list(self._open.items()):
            if res.expires <= now:
                del self._open[rid]
                res.settled = True
                await self._run(self._job(res, None, 0.0))
        if self.pending:
            await self.replay()

    async def seed(self, spent: dict[tuple[str, str], float]) -> None:
        """Load ledger totals once per month per Redis: instances started later must not add them
        again on top of what the running ones have been counting."""
        months = {p for (_, p) in spent if len(p) == 7} or {periods(time.time())[1]}
        for month in sorted(months):
            entries = {k: v for k, v in spent.items() if k[1].startswith(month)}
            await self._set_once(f"{self.prefix}seeded:{month}", TTL_SECONDS, "HSET", entries)

    async def add_spent(self, spent: dict[tuple[str, str], float], batch: str) -> bool:
        """Add spend made elsewhere ({(subject id, period): USD}); a batch id is applied only once,
        so a batch whose answer was lost can be sent again. False: this batch was applied before."""
        return await self._set_once(f"{self.prefix}replay:{batch}", REPLAY_MARKER_TTL, "HINCRBYFLOAT", spent)

    async def _set_once(self, marker: str, marker_ttl: int, op: str, entries: dict[tuple[str, str], float]) -> bool:
        index: dict[str, int] = {}
        for sid, _ in entries:
            index.setdefault(sid, len(index) + 1)
        args = [op, str(marker_ttl), str(TTL_SECONDS)]
        for (sid, period), usd in entries.items():
            args += [str(index[sid]), f"spent:{period}", repr(usd)]
        return bool(await self._once(keys=[marker, *(self._key(sid) for sid in index)], args=args))

    def new_batch_id(self) -> str:
        return f"{self._tag}b{next(self._seq):x}"

    async def ping(self) -> None:
        await self.redis.ping()

    async def reconnect(self) -> None:
        """Drop pooled connections: after a Redis restart they are dead, and each would fail one call."""
        await self.redis.connection_pool.disconnect()

    async def status(self, subject_id: str, wall: float) -> dict[str, float]:
        day, month = periods(wall)
        v = await self.redis.hmget(self._key(subject_id), f"spent:{day}", f"res:{day}", f"spent:{month}", f"res:{month}")
        f = [float(x) if x is not None else 0.0 for x in v]
        return {"spent_day": f[0], "reserved_day": f[1], "spent_month": f[2], "reserved_month": f[3]}

    async def close(self) -> None:
        await self.redis.aclose()
