"""Limit and budget counters in Redis, shared by every gateway instance and worker.

The same algorithm as MemoryCounters (GCRA buckets, reserve-then-settle budgets), run as Lua
scripts so that checking and reserving all of a request's limits is one atomic step on the Redis
server, with Redis's clock as the only clock. One hash per key or team: `tat_req`, `tat_tok`,
`spent:<period>`, `res:<period>` (periods are UTC "YYYY-MM-DD" and "YYYY-MM"), kept 40 days.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from polyroute.core.errors import QuotaExceeded, RateLimited
from polyroute.governance.limits import WINDOW, Reservation, Subject, periods

PREFIX = "polyroute:gov:"
TTL_SECONDS = 40 * 86400

# KEYS: one hash per subject. ARGV: tokens, cost, day, month, window, then 5 per subject:
# rpm, tpm, daily, monthly, hard ("" for none).
# Returns {"ok", alert subject indexes...} | {"rate", wait, subject index, "rpm"|"tpm"}
#       | {"quota", subject index, "daily"|"monthly", spent, reserved}
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local tokens, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
local day, month, window = ARGV[3], ARGV[4], tonumber(ARGV[5])
local wait, why_i, why = 0, 0, ''
local alerts = {}
for i, key in ipairs(KEYS) do
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
for i, key in ipairs(KEYS) do
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
  redis.call('EXPIRE', key, ARGV[6 + #KEYS * 5])
end
local out = {'ok'}
for _, a in ipairs(alerts) do table.insert(out, a) end
return out
"""

# KEYS: subject hashes. ARGV: token delta (or ""), reserved cost, actual cost, day, month, window,
# then the tpm of each subject ("" for none).
_SETTLE = """
local delta, reserved, actual = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local day, month, window = ARGV[4], ARGV[5], tonumber(ARGV[6])
for i, key in ipairs(KEYS) do
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


def _arg(v: float | int | None) -> str:
    return "" if v is None else repr(v)


class RedisCounters:
    def __init__(self, url: str, *, prefix: str = PREFIX) -> None:
        import redis.asyncio as aioredis

        self.redis: Any = aioredis.from_url(url)
        self.prefix = prefix
        self._reserve = self.redis.register_script(_RESERVE)
        self._settle = self.redis.register_script(_SETTLE)
        # Reservations of this process not yet settled; released (at zero cost) after their hold.
        self._open: dict[int, Reservation] = {}
        self._last_sweep = 0.0

    def _key(self, sid: str) -> str:
        return self.prefix + sid

    async def reserve(
        self, subjects: Sequence[Subject], tokens: int, cost: float, wall: float, hold: float
    ) -> Reservation:
        now = time.monotonic()
        if now - self._last_sweep > 1.0:
            await self._sweep(now)
        day, month = periods(wall)
        args: list[str] = [str(tokens), repr(cost), day, month, repr(WINDOW)]
        for s in subjects:
            args += [_arg(s.rpm), _arg(s.tpm), _arg(s.daily), _arg(s.monthly), "1" if s.hard else "0"]
        args.append(str(TTL_SECONDS))
        out = [x.decode() if isinstance(x, bytes) else x for x in await self._reserve(
            keys=[self._key(s.id) for s in subjects], args=args)]  # fmt: skip
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
        res = Reservation(tuple(subjects), tokens, cost, day, month, now + hold, alerts)
        self._open[id(res)] = res
        return res

    async def settle(self, res: Reservation, tokens: int, cost: float) -> None:
        if self._open.pop(id(res), None) is None or res.settled:
            return
        res.settled = True
        await self._apply(res, tokens - res.tokens, cost)

    async def _apply(self, res: Reservation, delta: int | None, cost: float) -> None:
        args = [_arg(delta), repr(res.cost), repr(cost), res.day, res.month, repr(WINDOW)]
        args += [_arg(s.tpm) for s in res.subjects]
        await self._settle(keys=[self._key(s.id) for s in res.subjects], args=args)

    async def _sweep(self, now: float) -> None:
        self._last_sweep = now
        for rid, res in list(self._open.items()):
            if res.expires <= now:
                del self._open[rid]
                res.settled = True
                await self._apply(res, None, 0.0)

    async def seed(self, spent: dict[tuple[str, str], float]) -> None:
        """Load ledger totals once per month per Redis: instances started later must not add them
        again on top of what the running ones have been counting."""
        months = {p for (_, p) in spent if len(p) == 7} or {periods(time.time())[1]}
        for month in months:
            if not await self.redis.set(f"{self.prefix}seeded:{month}", "1", nx=True, ex=TTL_SECONDS):
                continue
            for (sid, period), usd in spent.items():
                if period.startswith(month):
                    await self.redis.hset(self._key(sid), f"spent:{period}", repr(usd))
                    await self.redis.expire(self._key(sid), TTL_SECONDS)

    async def status(self, subject_id: str, wall: float) -> dict[str, float]:
        day, month = periods(wall)
        v = await self.redis.hmget(self._key(subject_id), f"spent:{day}", f"res:{day}", f"spent:{month}", f"res:{month}")
        f = [float(x) if x is not None else 0.0 for x in v]
        return {"spent_day": f[0], "reserved_day": f[1], "spent_month": f[2], "reserved_month": f[3]}

    async def close(self) -> None:
        await self.redis.aclose()
