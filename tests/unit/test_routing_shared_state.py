"""Shared routing state without a Redis server: the merge of latency averages, the breaker records
and how a local breaker follows them, and the `routing_state` config checks. (Redis itself:
tests/integration/test_shared_breaker.py.)"""

from __future__ import annotations

import time

import pytest

from polyroute.config.load import ConfigError, parse_config
from polyroute.config.schema import BreakerConfig, DeploymentConfig, RoutingStateConfig
from polyroute.routing.breaker import CircuitBreaker, NoBreaker
from polyroute.routing.redis_state import (
    MIN_WEIGHT,
    Record,
    RedisState,
    SharedBreaker,
    SharedLatency,
    aggregate,
    decode_field,
    encode_field,
    merge,
    shared_state,
)
from polyroute.routing.state import CLOSED, HALF_OPEN, OPEN

ME = "me"


def state() -> RedisState:
    return RedisState("redis://127.0.0.1:1/0", RoutingStateConfig(backend="redis"), instance=ME)


def breaker(rs: RedisState, consecutive: int = 3, cooldown: float = 10.0) -> SharedBreaker:
    b = rs.breaker("dep", BreakerConfig(consecutive_failures=consecutive, cooldown=cooldown, max_cooldown=120.0))
    assert isinstance(b, SharedBreaker)
    return b


# --- latency merge -------------------------------------------------------------------------------


def test_merge_weights_by_recent_samples() -> None:
    assert merge(None, 0.0, None) is None
    assert merge(0.5, 3.0, None) == 0.5
    assert merge(None, 0.0, (2.0, 4.0)) == 0.5  # others only: their weighted mean
    # Others: 4 samples averaging 0.5; here: 1 sample of 1.0 -> (2 + 1) / 5.
    assert merge(1.0, 1.0, (2.0, 4.0)) == pytest.approx(0.6)
    # An idle instance's own value barely counts next to busy ones.
    assert merge(10.0, 0.0, (5.0, 10.0)) == pytest.approx((5.0 + MIN_WEIGHT * 10.0) / (10.0 + MIN_WEIGHT))


def test_field_encoding_round_trips() -> None:
    raw = encode_field(0.25, 3.5, None, 0.0, 1000.0).encode()
    assert decode_field(raw) == (0.25, 3.5, None, 0.0, 1000.0)
    assert decode_field(b"garbage") is None
    assert decode_field(b"1 2 3 4 x") is None


def test_aggregate_takes_fresh_fields_of_others_only() -> None:
    now = 10_000.0
    fields = {
        b"me": encode_field(9.0, 100.0, 9.0, 100.0, now).encode(),  # this instance: excluded
        b"a": encode_field(0.2, 3.0, 0.1, 1.0, now - 1).encode(),
        b"b": encode_field(0.6, 1.0, None, 0.0, now - 29).encode(),
        b"idle": encode_field(5.0, 0.0, None, 0.0, now - 2).encode(),  # no recent samples: counts a little
        b"stale": encode_field(50.0, 50.0, 50.0, 50.0, now - 31).encode(),  # ignored
        b"gone": encode_field(50.0, 50.0, 50.0, 50.0, now - 301).encode(),  # ignored and purged
        b"broken": b"not a field",
    }
    agg = aggregate(fields, ME, now, 30.0)
    assert agg.latency is not None and agg.ttft is not None
    total, w = agg.latency
    assert w == pytest.approx(4.0 + MIN_WEIGHT)
    assert total / w == pytest.approx((0.2 * 3 + 0.6 + 5.0 * MIN_WEIGHT) / (4 + MIN_WEIGHT))
    assert agg.ttft == pytest.approx((0.1, 1.0))
    assert sorted(agg.fresh) == ["a", "b", "idle"]
    assert agg.gone == ["gone"]
    assert aggregate({}, ME, now, 30.0).latency is None


def test_shared_latency_reads_local_and_remote() -> None:
    s = SharedLatency()
    assert s.latency() is None and s.ttft() is None
    s.r_lat = (1.0, 2.0)  # others: 0.5 over 2 samples
    assert s.latency() == 0.5
    s.observe_latency(1.1)
    s.observe_latency(1.1)
    assert s.local() == (pytest.approx(1.1), None)
    assert s.latency() == pytest.approx((1.0 + 2 * 1.1) / 4)  # two new samples weigh 2
    assert s.ttft() is None
    # Publishing folds the new samples into a weight that decays with time.
    s.roll(100.0, 10.0)
    assert (s.w_lat, s.n_lat) == (2.0, 0)
    s.roll(110.0, 10.0)
    assert s.w_lat == pytest.approx(2.0 / 2.718281828, rel=1e-6)


# --- breaker records -----------------------------------------------------------------------------


def test_record_decode_rejects_malformed() -> None:
    rec = Record(1.5, OPEN, 11.5, 10.0, "consecutive_failures", "a")
    args = rec.args(60.0)
    h = dict(zip(("at", "state", "until", "cooldown", "reason", "by"), args, strict=False))
    got = Record.decode(h)
    assert got is not None and (got.at, got.state, got.until, got.cooldown, got.by) == (1.5, OPEN, 11.5, 10.0, "a")
    assert args[-1] == "60000"
    assert Record.decode({}) is None
    assert Record.decode({**h, "state": "weird"}) is None
    assert Record.decode({**h, "until": "x"}) is None
    assert Record.decode({"state": "open"}) is None


def test_local_trip_is_published_with_wall_time_and_reason() -> None:
    rs = state()
    b = breaker(rs, consecutive=3, cooldown=10.0)
    for _ in range(2):
        b.failure(0.0)
    assert rs._outbox == {}
    before = time.time()
    b.failure(0.0)
    rec = rs._outbox["dep"]
    assert rec.state == OPEN and rec.by == ME and rec.reason == "consecutive_failures"
    assert rec.cooldown == 10.0
    assert before + 10.0 <= rec.until <= time.time() + 10.0
    assert b.state(0.0) == OPEN and b.opened == 1


def test_remote_open_forces_local_open_then_one_probe_here() -> None:
    rs = state()
    b = breaker(rs, cooldown=10.0)
    assert b.allows(0.0)
    b.offer(Record(time.time(), OPEN, time.time() + 30.0, 30.0, "consecutive_failures", "other"))
    # Applied at the next call, on the router's clock (here 100.0), without any failure here.
    assert b.state(100.0) == OPEN
    assert not b.allows(100.0)
    assert 29.0 < b.retry_in(100.0) <= 30.0
    assert b.opened == 0 and b.reason == "consecutive_failures"
    assert rs._outbox == {}  # following a record publishes nothing
    # Cooldown over: half-open, one probe; its success closes the breaker and is published.
    assert b.state(130.5) == HALF_OPEN
    assert b.admit(130.5)
    assert not b.admit(130.5)
    b.success(130.6)
    assert b.state(130.6) == CLOSED
    rec = rs._outbox["dep"]
    assert rec.state == CLOSED and rec.reason == "probe_succeeded" and rec.by == ME


def test_failed_probe_doubles_the_fleet_cooldown() -> None:
    rs = state()
    b = breaker(rs, cooldown=10.0)
    b.offer(Record(time.time(), OPEN, time.time() + 0.0, 20.0, "probe_failed", "other"))
    assert b.state(50.0) == HALF_OPEN  # the open period is over: probe first
    assert b.admit(50.0)
    b.failure(50.0)
    assert b.state(50.0) == OPEN and b.retry_in(50.0) == pytest.approx(40.0)
    rec = rs._outbox["dep"]
    assert rec.state == OPEN and rec.reason == "probe_failed" and rec.cooldown == pytest.approx(40.0)


def test_remote_close_closes_only_what_it_is_newer_than() -> None:
    rs = state()
    b = breaker(rs)
    t0 = time.time()
    b.offer(Record(t0, OPEN, t0 + 30.0, 30.0, "failure_ratio", "other"))
    assert b.state(0.0) == OPEN
    b.offer(Record(t0 - 5.0, CLOSED, 0.0, 10.0, "probe_succeeded", "x"))  # older than what we saw
    assert b.state(0.0) == OPEN
    b.offer(Record(t0 + 1.0, CLOSED, 0.0, 10.0, "probe_succeeded", "x"))
    assert b.state(0.0) == CLOSED and b.allows(0.0)
    # A local trip after that: a close record older than the trip does not undo it, a newer one does.
    for _ in range(3):
        b.failure(1.0)
    assert b.state(1.0) == OPEN
    trip = rs._outbox["dep"].at
    assert trip > t0 + 1.0  # ordered after the record it follows, whatever the clocks
    b.offer(Record(trip - 1e-7, CLOSED, 0.0, 10.0, "probe_succeeded", "x"))
    assert b.state(1.0) == OPEN
    b.offer(Record(trip + 1.0, CLOSED, 0.0, 10.0, "probe_succeeded", "x"))
    assert b.state(1.0) == CLOSED


def test_own_records_and_shorter_opens_are_ignored() -> None:
    rs = state()
    b = breaker(rs, cooldown=10.0)
    for _ in range(3):
        b.failure(0.0)
    mine = rs._outbox["dep"]
    b.offer(mine)  # read back from Redis
    assert b.state(0.0) == OPEN and b.retry_in(0.0) == pytest.approx(10.0)
    b.offer(Record(time.time() + 1, OPEN, time.time() + 3.0, 10.0, "consecutive_failures", ME))  # ours: ignored
    assert b.retry_in(0.0) == pytest.approx(10.0)
    b.offer(Record(time.time() + 2, OPEN, time.time() + 2.0, 10.0, "consecutive_failures", "other"))
    assert b.retry_in(0.0) == pytest.approx(10.0)  # already open longer here


# --- handles and config --------------------------------------------------------------------------


def test_handles_are_remade_when_settings_change() -> None:
    rs = state()
    b1 = rs.breaker("d", BreakerConfig())
    assert rs.breaker("d", BreakerConfig()) is b1
    assert rs.breaker("d", BreakerConfig(cooldown=3.0)) is not b1
    assert isinstance(rs.breaker("d", BreakerConfig(enabled=False)), NoBreaker)
    assert "d" not in rs.breakers
    c1 = rs.capacity("d", DeploymentConfig(provider="p", model="m", rpm=10))
    assert rs.capacity("d", DeploymentConfig(provider="p", model="m", rpm=10, weight=2.0)) is c1
    assert rs.capacity("d", DeploymentConfig(provider="p", model="m", rpm=20)) is not c1
    assert rs.latency("d") is rs.latency("d")
    assert isinstance(CircuitBreaker(BreakerConfig()).cooldown, float)


def test_health_before_and_after_an_outage() -> None:
    rs = state()
    ok, detail = rs.health()
    assert ok and "first sync pending" in detail
    rs._failed(ConnectionError("refused"))
    ok, detail = rs.health()
    assert not ok and "127.0.0.1:1 unreachable" in detail and "refused" in detail
    rs._succeeded()
    assert rs.health()[0]


BASE = """
providers:
  p: {type: openai, api_key: k, base_url: "http://127.0.0.1:1/v1"}
models:
  m: {deployments: [{provider: p, model: gpt-4o}]}
"""


def test_config_redis_backend_needs_a_url() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + "routing_state: {backend: redis}\n", "gw.yaml", env={})
    assert exc.value.field == "routing_state.redis_url" and "redis://" in exc.value.fix
    assert str(exc.value).startswith("gw.yaml: routing_state.redis_url:")


def test_config_url_from_env_or_governance() -> None:
    cfg = parse_config(BASE + "routing_state: {backend: redis, redis_url: '${R}', sync_interval: 0.1}\n", "gw.yaml",
                       env={"R": "redis://:secret@cache:6380/2"})
    rs = shared_state(cfg)
    assert rs is not None and rs.url == "redis://:secret@cache:6380/2" and rs.interval == 0.1
    assert rs.where == "cache:6380"  # what logs and health show: no password
    cfg = parse_config(BASE + "governance: {redis_url: 'redis://gov:6379/0'}\nrouting_state: {backend: redis}\n",
                       "gw.yaml", env={})
    rs = shared_state(cfg)
    assert rs is not None and rs.url == "redis://gov:6379/0"
    assert shared_state(parse_config(BASE, "gw.yaml", env={})) is None


def test_config_rejects_bad_scheme_and_intervals() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + "routing_state: {backend: redis, redis_url: 'http://u:pw@x'}\n", "gw.yaml", env={})
    assert exc.value.field == "routing_state.redis_url" and "pw" not in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + "routing_state: {backend: redis, redis_url: 'redis://x', sync_interval: 1, stale_after: 1}\n",
                     "gw.yaml", env={})
    assert exc.value.field == "routing_state.stale_after"
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + "routing_state: {backend: redis, redis_url: 'redis://x', sync_interval: 0}\n", "gw.yaml",
                     env={})
    assert "routing_state.sync_interval" in exc.value.field
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + "routing_state: {backend: redis, redis: 'redis://x'}\n", "gw.yaml", env={})
    assert "unknown field" in exc.value.problem


def test_a_changed_routing_state_needs_a_restart() -> None:
    from polyroute.ops.reload import _restart_required

    before = parse_config(BASE, "gw.yaml", env={})
    after = parse_config(BASE + "routing_state: {backend: redis, redis_url: 'redis://x'}\n", "gw.yaml", env={})
    assert "routing_state" in _restart_required(before, after)
    assert _restart_required(after, after) == []
