"""Routing state shared by several gateway instances through Redis (`routing_state: {backend: redis}`).

Every instance answers from its own in-memory state (polyroute/routing/memory.py), so the request
path never awaits Redis; a background task exchanges with Redis every `sync_interval` seconds.

Breakers. When a breaker here opens on its own outcomes, the record {at, state=open, until (wall
time), cooldown, reason, by} is written at once to the hash `<prefix>breaker:<deployment>`, only if
it is newer than the one there (a Lua script), with a TTL. Each sync reads the records of every
deployment; a newer record from another instance is applied at the next request that looks at the
breaker: open forces the local breaker open until the same wall time, with the same cooldown (so
each instance then probes on its own, once, and a failed probe doubles the fleet's cooldown).
A probe that succeeds anywhere writes state=closed, which closes the other instances' breakers at
their next sync. Records are ordered by their wall-clock `at`: hosts need synchronised clocks.

Latency. Each instance writes its own latency and time-to-first-token averages into the hash
`<prefix>latency:<deployment>`, one field per instance, with a sample weight (samples of the last
few seconds, decayed) and a timestamp. Each reads the other instances' fresh fields (updated in the
last `stale_after` seconds) and answers the weight-averaged value of theirs and its own, so
least-latency routing sees the fleet's view.

Not shared: capacity (rpm, tpm, max_concurrency, 429 cool-downs), retry budgets and sticky pins
stay per instance (docs/routing.md#several-instances).

When Redis is unreachable the instance keeps its local view (and its unsent breaker records, sent
once Redis is back), logs once per transition, and reports `routing_state` degraded on
/health/ready; other instances' latency values are dropped once older than `stale_after`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from polyroute.config.load import ConfigError
from polyroute.config.schema import (
    BreakerConfig,
    Config,
    DeploymentConfig,
    RetryConfig,
    RoutingStateConfig,
    StickyConfig,
)
from polyroute.routing.breaker import CircuitBreaker, NoBreaker
from polyroute.routing.memory import MemoryLatency, MemoryState
from polyroute.routing.state import CLOSED, OPEN, Affinity, Breaker, Capacity, LatencyStats, RetryBudget

log = logging.getLogger("polyroute.routing")

# A closed record only matters to instances still open: they read it within a sync or two.
CLOSED_TTL = 60.0
# An open record outlives its open period by this much, so an instance that starts (or reconnects)
# meanwhile begins with one half-open probe instead of full traffic.
OPEN_GRACE = 60.0
# An idle instance's average still counts, a little: when every instance is idle, the plain mean.
MIN_WEIGHT = 0.01
# Fields of instances silent for stale_after x this are deleted by whoever reads them.
PURGE_FACTOR = 10.0

# KEYS[1]: the breaker hash. ARGV: at, state, until, cooldown, reason, by, ttl (ms).
_WRITE_BREAKER = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'at'))
if cur and cur >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'at', ARGV[1], 'state', ARGV[2], 'until', ARGV[3], 'cooldown', ARGV[4],
           'reason', ARGV[5], 'by', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 1
"""

# KEYS: breaker hashes (ARGV[1] of them), then latency hashes. ARGV: that count, this instance's
# id, the latency hashes' TTL (s), then per latency hash this instance's new value ('' = none).
# Returns every hash's fields and values (after the writes) as one string: hashes separated by
# \x1e, fields and values by \x1f. One string parses in microseconds; the same as nested RESP
# replies costs the pure-Python parser milliseconds per sync.
_EXCHANGE = r"""
local nb, me, ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local out = {}
for i, key in ipairs(KEYS) do
  if i > nb then
    local v = ARGV[3 + i - nb]
    if v ~= '' then
      redis.call('HSET', key, me, v)
      redis.call('EXPIRE', key, ttl)
    end
  end
  out[i] = table.concat(redis.call('HGETALL', key), '\31')
end
return table.concat(out, '\30')
"""


def _hashes(blob: bytes | str, n: int) -> list[dict[str, str]]:
    """The exchange script's answer: one {field: value} per key."""
    text = blob.decode(errors="replace") if isinstance(blob, bytes) else blob
    parts = text.split("\x1e")
    if len(parts) != n:
        raise ValueError(f"the exchange script answered {len(parts)} hashes for {n} keys")
    out = []
    for part in parts:
        flat = part.split("\x1f") if part else []
        out.append(dict(zip(flat[::2], flat[1::2], strict=False)))
    return out


# --- configuration --------------------------------------------------------------------------------


def redis_url_of(cfg: Config) -> tuple[str | None, str]:
    """The Redis URL the routing state uses and the field it comes from."""
    rs = cfg.routing_state
    if rs is not None and rs.redis_url:
        return rs.redis_url, "routing_state.redis_url"
    g = cfg.governance
    if g is not None and g.redis_url:
        return g.redis_url, "governance.redis_url"
    return None, "routing_state.redis_url"


def check(cfg: Config, source: str) -> None:
    """Start-up checks of the `routing_state` section (called by the config loader)."""
    rs = cfg.routing_state
    if rs is None or rs.backend != "redis":
        return
    url, field = redis_url_of(cfg)
    if not url:
        raise ConfigError(source, field, "backend: redis needs a Redis URL",
                          "set routing_state.redis_url: redis://host:6379/0 (governance.redis_url is used when "
                          "this is unset), or use backend: memory")
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        # The URL itself is not repeated: it may carry a password.
        raise ConfigError(source, field, f"'{scheme or url[:12]}' is not a Redis URL scheme",
                          "write redis://[:password@]host:6379/0, rediss://... for TLS, or unix:///path.sock")
    if rs.stale_after < 2 * rs.sync_interval:
        raise ConfigError(source, "routing_state.stale_after",
                          f"{rs.stale_after:g} s is less than two sync intervals ({rs.sync_interval:g} s each), "
                          "so every other instance would look gone",
                          "raise stale_after (default 30) or lower sync_interval (default 0.25)")


def shared_state(cfg: Config) -> RedisState | None:
    """The shared routing state the config asks for; None for the in-memory default."""
    rs = cfg.routing_state
    if rs is None or rs.backend != "redis":
        return None
    url, _ = redis_url_of(cfg)
    if not url:  # the loader's check names the field; a Config built in code may skip it
        check(cfg, "config")
    assert url is not None
    return RedisState(url, rs)


# --- breakers -------------------------------------------------------------------------------------


class Record:
    """One breaker transition as stored in Redis."""

    __slots__ = ("at", "by", "cooldown", "reason", "state", "until")

    def __init__(self, at: float, state: str, until: float, cooldown: float, reason: str, by: str) -> None:
        self.at, self.state, self.until, self.cooldown, self.reason, self.by = at, state, until, cooldown, reason, by

    def args(self, ttl: float) -> list[str]:
        return [repr(self.at), self.state, repr(self.until), repr(self.cooldown), self.reason, self.by,
                str(max(1, int(ttl * 1000)))]

    @classmethod
    def decode(cls, h: Mapping[str, str]) -> Record | None:
        """From the stored hash; None when absent or malformed (another version wrote it)."""
        if not h:
            return None
        try:
            state = h["state"]
            if state not in (OPEN, CLOSED):
                return None
            return cls(float(h["at"]), state, float(h["until"]), float(h["cooldown"]), h["reason"], h["by"])
        except (KeyError, ValueError):
            return None

    def __repr__(self) -> str:
        return f"Record({self.state}, at={self.at:.3f}, until={self.until:.3f}, by={self.by})"


class SharedBreaker:
    """A local CircuitBreaker whose openings and recoveries are published, and which follows the
    other instances' records (applied lazily, at the next call that brings the router's `now`)."""

    __slots__ = ("_event_at", "_pending", "_seen_at", "_state", "inner", "key")

    def __init__(self, key: str, inner: CircuitBreaker, state: RedisState) -> None:
        self.key = key
        self.inner = inner
        self._state = state
        self._pending: Record | None = None
        # Wall time of the transition the local state derives from (a local one, or an applied record).
        self._event_at = 0.0
        # Newest record read from Redis.
        self._seen_at = 0.0

    @property
    def opened(self) -> int:
        return self.inner.opened

    @property
    def reason(self) -> str:
        return self.inner.reason

    # --- the Breaker protocol ---------------------------------------------------------------

    def state(self, now: float) -> str:
        if self._pending is not None:
            self._apply(now)
        return self.inner.state(now)

    def allows(self, now: float) -> bool:
        if self._pending is not None:
            self._apply(now)
        return self.inner.allows(now)

    def admit(self, now: float) -> bool:
        if self._pending is not None:
            self._apply(now)
        return self.inner.admit(now)

    def success(self, now: float) -> None:
        if self._pending is not None:
            self._apply(now)
        inner = self.inner
        if inner.state(now) == CLOSED:
            inner.success(now)
            return
        inner.success(now)
        if inner.state(now) == CLOSED:  # the half-open probe succeeded here
            self._publish(CLOSED, 0.0)

    def failure(self, now: float) -> None:
        if self._pending is not None:
            self._apply(now)
        inner = self.inner
        n = inner.opened
        inner.failure(now)
        if inner.opened != n:
            self._publish(OPEN, inner.retry_in(now))

    def abandon(self) -> None:
        self.inner.abandon()

    def retry_in(self, now: float) -> float:
        if self._pending is not None:
            self._apply(now)
        return self.inner.retry_in(now)

    # --- sharing ----------------------------------------------------------------------------

    def offer(self, rec: Record) -> None:
        """A record read from Redis (sync task); applied at the next call if it is news."""
        if rec.at <= self._seen_at:
            return
        self._seen_at = rec.at
        if rec.at > self._event_at and rec.by != self._state.instance:
            self._pending = rec

    def _apply(self, now: float) -> None:
        rec = self._pending
        self._pending = None
        if rec is None or rec.at <= self._event_at:
            return
        self._event_at = rec.at
        inner = self.inner
        if rec.state == OPEN:
            remaining = rec.until - time.time()
            if inner.state(now) == OPEN and inner.retry_in(now) >= remaining:
                return  # already open at least as long
            inner.force_open(now, remaining, rec.cooldown, rec.reason)
            log.info("breaker of %s opened by instance %s (%s) for %.1f s", self.key, rec.by, rec.reason,
                     max(remaining, 0.0))
        elif inner.state(now) != CLOSED:
            inner.force_close()
            log.info("breaker of %s closed: a probe succeeded on instance %s", self.key, rec.by)

    def _publish(self, state: str, remaining: float) -> None:
        wall = time.time()
        # Strictly newer than what the local state derives from, even if that record came from a
        # host whose clock runs ahead.
        at = max(wall, self._event_at + 1e-6)
        self._event_at = at
        inner = self.inner
        reason = inner.reason if state == OPEN else "probe_succeeded"
        self._state.publish(self.key, Record(at, state, wall + remaining if state == OPEN else 0.0,
                                             inner.cooldown, reason, self._state.instance))


# --- latency --------------------------------------------------------------------------------------

Remote = tuple[float, float]  # (sum of weight x value, sum of weights) of the other instances


def merge(local: float | None, weight: float, remote: Remote | None) -> float | None:
    """This instance's average combined with the others' (weighted by recent samples)."""
    if remote is None:
        return local
    total, w = remote
    if local is None:
        return total / w
    weight = max(weight, MIN_WEIGHT)
    return (total + weight * local) / (w + weight)


def encode_field(lat: float | None, w_lat: float, ttft: float | None, w_ttft: float, ts: float) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else repr(v)

    return f"{f(lat)} {w_lat!r} {f(ttft)} {w_ttft!r} {ts!r}"


def decode_field(raw: bytes | str) -> tuple[float | None, float, float | None, float, float] | None:
    """(latency, its weight, ttft, its weight, timestamp); None when malformed."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        a, wa, b, wb, ts = text.split()
        return (None if a == "-" else float(a), float(wa), None if b == "-" else float(b), float(wb), float(ts))
    except (ValueError, UnicodeDecodeError):
        return None


class Aggregate(NamedTuple):
    latency: Remote | None
    ttft: Remote | None
    fresh: list[str]  # other instances with fresh values
    gone: list[str]  # fields to delete


def aggregate(
    fields: Mapping[bytes, bytes] | Mapping[str, str], me: str, now: float, stale_after: float
) -> Aggregate:
    """The other instances' values of one deployment (a latency hash), fresh ones only: updated in
    the last `stale_after` seconds. A field silent for `stale_after` x PURGE_FACTOR belongs to an
    instance that is gone."""
    lat = [0.0, 0.0]
    ttft = [0.0, 0.0]
    fresh: list[str] = []
    gone: list[str] = []
    for k, raw in fields.items():
        name = k.decode() if isinstance(k, bytes) else k
        if name == me:
            continue
        v = decode_field(raw)
        if v is None:
            continue
        a, wa, b, wb, ts = v
        age = now - ts
        if age > stale_after:
            if age > stale_after * PURGE_FACTOR:
                gone.append(name)
            continue
        fresh.append(name)
        if a is not None and math.isfinite(a):
            w = max(wa, MIN_WEIGHT)
            lat[0] += w * a
            lat[1] += w
        if b is not None and math.isfinite(b):
            w = max(wb, MIN_WEIGHT)
            ttft[0] += w * b
            ttft[1] += w
    return Aggregate((lat[0], lat[1]) if lat[1] else None, (ttft[0], ttft[1]) if ttft[1] else None, fresh, gone)


class SharedLatency:
    """Local averages (as in memory), merged with the other instances' at read time."""

    __slots__ = ("inner", "n_lat", "n_ttft", "pushed_at", "r_lat", "r_ttft", "w_lat", "w_ttft")

    def __init__(self) -> None:
        self.inner = MemoryLatency()
        self.n_lat = self.n_ttft = 0  # samples since the last publish
        self.w_lat = self.w_ttft = 0.0  # decayed sample count as of the last publish
        self.pushed_at = 0.0
        self.r_lat: Remote | None = None
        self.r_ttft: Remote | None = None

    def latency(self) -> float | None:
        return merge(self.inner.latency(), self.w_lat + self.n_lat, self.r_lat)

    def ttft(self) -> float | None:
        return merge(self.inner.ttft(), self.w_ttft + self.n_ttft, self.r_ttft)

    def observe_latency(self, seconds: float) -> None:
        self.inner.observe_latency(seconds)
        self.n_lat += 1

    def observe_ttft(self, seconds: float) -> None:
        self.inner.observe_ttft(seconds)
        self.n_ttft += 1

    def local(self) -> tuple[float | None, float | None]:
        return self.inner.latency(), self.inner.ttft()

    def roll(self, now: float, tau: float) -> None:
        """Fold the new samples into the decayed weights (at publish time)."""
        f = math.exp(-(now - self.pushed_at) / tau) if self.pushed_at else 0.0
        self.w_lat = self.w_lat * f + self.n_lat
        self.w_ttft = self.w_ttft * f + self.n_ttft
        self.n_lat = self.n_ttft = 0
        self.pushed_at = now


# --- the state ------------------------------------------------------------------------------------


def _where(url: str) -> str:
    """host:port of a Redis URL, without credentials (for logs and health details)."""
    try:
        u = urlsplit(url)
        return u.path if u.scheme == "unix" else f"{u.hostname}:{u.port or 6379}"
    except ValueError:
        return "redis"


class RedisState:
    """A RoutingState: MemoryState handles, breakers and latency averages shared through Redis."""

    def __init__(self, url: str, config: RoutingStateConfig | None = None, *, instance: str | None = None) -> None:
        cfg = config or RoutingStateConfig(backend="redis", redis_url=url)
        self.url = url
        self.where = _where(url)
        self.interval = cfg.sync_interval
        self.stale_after = cfg.stale_after
        self.prefix = cfg.key_prefix
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.memory = MemoryState()
        self.breakers: dict[str, SharedBreaker] = {}
        self.latencies: dict[str, SharedLatency] = {}
        # Breaker records waiting to be written (the newest per deployment).
        self._outbox: dict[str, Record] = {}
        self._purge: dict[str, list[str]] = {}
        self._redis: Any = None
        self._write: Any = None
        self._exchange: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        # Sync outcome: for health and logs (one line per transition).
        self.connected: bool | None = None
        self.error: str | None = None
        self.down_since: float | None = None
        self.last_ok: float | None = None
        self.syncs = 0
        self.failures = 0
        self.others = 0  # other instances with fresh latency values

    # --- RoutingState -----------------------------------------------------------------------

    def breaker(self, key: str, config: BreakerConfig) -> Breaker:
        # Remade when asked with other settings (a reload), as MemoryState does.
        changed = self.memory.settings.changed("breaker", key, config)
        if not config.enabled:
            self.breakers.pop(key, None)
            return NoBreaker()
        b = self.breakers.get(key)
        if b is None or changed:
            b = self.breakers[key] = SharedBreaker(key, CircuitBreaker(config), self)
        return b

    def latency(self, key: str) -> LatencyStats:
        s = self.latencies.get(key)
        if s is None:
            s = self.latencies[key] = SharedLatency()
        return s

    # Capacity windows, retry budgets and pins stay in this process (module docstring).

    def capacity(self, key: str, config: DeploymentConfig) -> Capacity:
        return self.memory.capacity(key, config)

    def retry_budget(self, key: str, config: RetryConfig) -> RetryBudget:
        return self.memory.retry_budget(key, config)

    def affinity(self, key: str, config: StickyConfig) -> Affinity:
        return self.memory.affinity(key, config)

    def keep_only(self, deployments: set[str], routes: set[str]) -> None:
        # Only this process's handles: the records in Redis are other instances' too.
        self.memory.keep_only(deployments, routes)
        self.breakers = {k: b for k, b in self.breakers.items() if k in deployments}
        self.latencies = {k: s for k, s in self.latencies.items() if k in deployments}

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        timeout = max(1.0, 4 * self.interval)
        # No client-side retries: the loop itself retries at the next interval.
        self._redis = aioredis.from_url(self.url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                        retry=Retry(NoBackoff(), 0))
        self._write = self._redis.register_script(_WRITE_BREAKER)
        self._exchange = self._redis.register_script(_EXCHANGE)
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="polyroute-routing-state-sync")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._redis = self._redis, None
        if client is None:
            return
        # Best effort: send the last breaker records, and stop counting in the others' averages.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self._send_breakers()
                pipe = client.pipeline(transaction=False)
                for key in self.latencies:
                    pipe.hdel(self._key("latency", key), self.instance)
                await pipe.execute()
        with contextlib.suppress(Exception):
            await client.aclose()

    # --- health -----------------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """(ok, detail) for /health/ready: degraded while Redis cannot be reached."""
        if self.connected:
            return True, f"redis {self.where}; {self.others} other instance(s) seen"
        if self.connected is None:
            return True, f"redis {self.where}; first sync pending"
        since = f" for {time.time() - self.down_since:.0f} s" if self.down_since else ""
        return False, (f"redis {self.where} unreachable{since} ({self.error}); breakers and latency "
                       "from this instance only")

    # --- sync -------------------------------------------------------------------------------

    def _key(self, kind: str, deployment: str) -> str:
        return f"{self.prefix}{kind}:{deployment}"

    def publish(self, key: str, rec: Record) -> None:
        """Called on the request path: queue the record and wake the sync task (no await)."""
        self._outbox[key] = rec
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            wake.clear()  # before the exchange: a breaker that changes during it wakes the next one
            try:
                async with asyncio.timeout(max(2.0, 8 * self.interval)):
                    await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outage must never end the loop
                self._failed(exc)
            else:
                self._succeeded()
            # While Redis is down, retry about once a second rather than at every interval.
            wait = self.interval if self.connected else max(self.interval, 1.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await wake.wait()

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.connected is not False:
            self.down_since = time.time()
            log.warning("routing state: Redis at %s unreachable (%s); routing on this instance's own breakers "
                        "and latency until it is back", self.where, self.error)
        self.connected = False
        last = self.last_ok
        if last is not None and time.monotonic() - last > self.stale_after:
            for s in self.latencies.values():  # the others' values are too old to trust now
                s.r_lat = s.r_ttft = None

    def _succeeded(self) -> None:
        self.syncs += 1
        self.last_ok = time.monotonic()
        if self.connected is False:
            log.warning("routing state: Redis at %s reachable again after %.0f s; sharing breakers and latency",
                        self.where, time.time() - (self.down_since or time.time()))
        elif self.connected is None:
            log.info("routing state: sharing breakers and latency through Redis at %s as %s", self.where,
                     self.instance)
        self.connected = True
        self.error = None
        self.down_since = None

    async def _send_breakers(self) -> None:
        """Write the queued records (rare: breaker transitions), then forget those sent."""
        outbox = dict(self._outbox)
        now = time.time()
        for key, rec in outbox.items():
            ttl = rec.until - now + OPEN_GRACE if rec.state == OPEN else CLOSED_TTL
            await self._write(keys=[self._key("breaker", key)], args=rec.args(max(ttl, 1.0)))
            if self._outbox.get(key) is rec:  # unless a newer one was queued meanwhile
                del self._outbox[key]

    async def sync_once(self) -> None:
        """One exchange: write the breaker records and this instance's latency values, read the
        others'. One round trip (a few more when breakers changed or gone instances are purged)."""
        client = self._redis
        if client is None:
            raise RuntimeError("the routing state is not started")
        if self._outbox:
            await self._send_breakers()
        purge, self._purge = self._purge, {}
        for key, names in purge.items():
            await client.hdel(self._key("latency", key), *names)
        wall = time.time()
        tau = max(self.stale_after / 3.0, self.interval)
        b_keys = list(self.breakers)
        l_keys = list(self.latencies)
        values: list[str] = []
        for key in l_keys:
            s = self.latencies[key]
            lat, ttft = s.local()
            # Write when there are new samples, else often enough to stay fresh for the others.
            if (lat is not None or ttft is not None) and (s.n_lat or s.n_ttft or wall - s.pushed_at > tau / 3):
                s.roll(wall, tau)
                values.append(encode_field(lat, s.w_lat, ttft, s.w_ttft, wall))
            else:
                values.append("")
        if not b_keys and not l_keys:
            return
        # One script for all reads and latency writes: a pipeline of one command per key costs the
        # client several times more CPU (about 4 ms per sync for 50 deployments).
        keys = [self._key("breaker", k) for k in b_keys] + [self._key("latency", k) for k in l_keys]
        blob = await self._exchange(keys=keys, args=[len(b_keys), self.instance, int(self.stale_after * PURGE_FACTOR),
                                                     *values])
        reads = _hashes(blob, len(keys))
        for key, h in zip(b_keys, reads[: len(b_keys)], strict=True):
            got = Record.decode(h)
            b = self.breakers.get(key)
            if got is not None and b is not None:
                b.offer(got)
        now = time.time()
        others: set[str] = set()
        for key, h in zip(l_keys, reads[len(b_keys):], strict=True):
            s = self.latencies[key]
            agg = aggregate(h, self.instance, now, self.stale_after)
            s.r_lat, s.r_ttft = agg.latency, agg.ttft
            if agg.gone:
                self._purge[key] = agg.gone
            others.update(agg.fresh)
        self.others = len(others)

