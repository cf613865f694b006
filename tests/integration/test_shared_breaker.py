"""Several gateway instances share breakers and latency averages through a real Redis.

Two gateways (real uvicorn servers on loopback, each with its own event loop) point at the same
Redis with `routing_state: {backend: redis}`; the official `openai` SDK is the client; vendors are
the protocol emulators. Breaker cooldowns run on an injected routing clock, so nothing waits for a
cooldown; the shared state's own exchange (every 50 ms here) is waited for by polling.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import openai
import pytest
import redis as redis_sync
from openai.types.chat import ChatCompletionMessageParam

from polyroute.emulators import Behaviour, EmulatorServer
from polyroute.routing.redis_state import RedisState, SharedBreaker, SharedLatency
from polyroute.routing.state import CLOSED, HALF_OPEN, OPEN
from tests.helpers.clock import Clock
from tests.helpers.gateway import RunningGateway, run_gateway
from tests.helpers.services import RedisServer, own_redis, redis, redis_url  # noqa: F401

pytestmark = pytest.mark.integration

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def config(primary: EmulatorServer, fallback: EmulatorServer, prefix: str, *, strategy: str = "priority",
           interval: float = 0.05) -> str:
    return f"""
providers:
  vendor-a:
    type: openai
    api_key: k
    base_url: "{primary.sdk_base_url}"
    breaker: {{consecutive_failures: 3, cooldown: 30}}
  vendor-b:
    type: anthropic
    api_key: k
    base_url: "{fallback.sdk_base_url}"
models:
  chat:
    strategy: {strategy}
    retry: {{retries: 0}}
    deployments:
      - {{provider: vendor-a, model: gpt-4o, name: primary}}
      - {{provider: vendor-b, model: claude-sonnet-4-5, name: fallback}}
routing_state:
  backend: redis
  redis_url: ${{REDIS_URL}}
  sync_interval: {interval}
  key_prefix: "{prefix}"
"""


class Instance:
    def __init__(self, gw: RunningGateway, clock: Clock) -> None:
        self.gw = gw
        self.clock = clock
        gw.gateway.router.clock = clock
        self.client = openai.OpenAI(base_url=gw.openai_base, api_key="client-key", max_retries=0)

    @property
    def state(self) -> RedisState:
        s = self.gw.gateway.shared_state
        assert s is not None
        return s

    def breaker(self, name: str) -> SharedBreaker:
        x = self.gw.gateway.router.target(name)
        assert x is not None and isinstance(x.breaker, SharedBreaker)
        return x.breaker

    def breaker_state(self, name: str) -> str:
        return self.breaker(name).state(self.clock())

    def latency(self, name: str) -> SharedLatency:
        x = self.gw.gateway.router.target(name)
        assert x is not None and isinstance(x.latency, SharedLatency)
        return x.latency

    def chat(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        r = self.client.chat.completions.with_raw_response.create(
            model="chat", messages=MSG, max_tokens=16, extra_headers=headers
        )
        assert r.parse().choices[0].message.content
        return dict(r.headers)


@pytest.fixture
def pair(
    openai_emulator: EmulatorServer, anthropic_emulator: EmulatorServer, redis_url: str  # noqa: F811
) -> Iterator[Callable[..., tuple[Instance, Instance, str]]]:
    """Two instances of one configuration, sharing a Redis and a routing clock."""
    with ExitStack() as stack:

        def make(**kw: Any) -> tuple[Instance, Instance, str]:
            prefix = f"t-{uuid.uuid4().hex[:8]}:"
            text = config(openai_emulator, anthropic_emulator, prefix, **kw)
            clock = Clock()
            a = Instance(stack.enter_context(run_gateway(text, env={"REDIS_URL": redis_url})), clock)
            b = Instance(stack.enter_context(run_gateway(text, env={"REDIS_URL": redis_url})), clock)
            assert a.state.instance != b.state.instance
            return a, b, prefix

        yield make


def test_a_breaker_opened_on_one_instance_stops_the_others(
    pair: Callable[..., tuple[Instance, Instance, str]],
    openai_emulator: EmulatorServer,
    anthropic_emulator: EmulatorServer,
    redis_url: str,  # noqa: F811
) -> None:
    a, b, prefix = pair()
    primary = openai_emulator
    primary.set_behaviour(Behaviour.error(500, "the vendor is down"))
    # Only A sees the failures; every request is still answered, by the fallback.
    for _ in range(3):
        h = a.chat()
        assert h["x-polyroute-deployment"] == "fallback"
    assert len(primary.requests) == 3
    assert a.breaker_state("primary") == OPEN and a.breaker("primary").opened == 1
    client = redis_sync.Redis.from_url(redis_url)
    wait_for(lambda: client.exists(f"{prefix}breaker:primary") == 1, "A publishes its breaker")
    rec = client.hgetall(f"{prefix}breaker:primary")
    assert rec[b"state"] == b"open" and rec[b"by"] == a.state.instance.encode()
    assert rec[b"reason"] == b"consecutive_failures"

    # B has seen no failure and sent nothing; it follows A's breaker.
    wait_for(lambda: b.breaker_state("primary") == OPEN, "B's breaker of the primary opens")
    assert 29.0 < b.breaker("primary").retry_in(a.clock()) <= 30.0
    before = len(primary.requests)
    for _ in range(5):
        h = b.chat()
        assert h["x-polyroute-deployment"] == "fallback" and h["x-polyroute-attempts"] == "1"
    assert len(primary.requests) == before  # B never tried the dead vendor
    assert b.breaker("primary").opened == 0  # B did not open it on its own failures

    # The vendor recovers; after the cooldown each instance may probe. B's probe succeeds...
    primary.set_behaviour(Behaviour())
    a.clock.now += 31.0
    assert a.breaker_state("primary") == HALF_OPEN and b.breaker_state("primary") == HALF_OPEN
    h = b.chat()
    assert h["x-polyroute-deployment"] == "primary"
    assert b.breaker_state("primary") == CLOSED
    # ...and A closes too, without a probe of its own.
    wait_for(lambda: a.breaker_state("primary") == CLOSED, "A's breaker closes after B's successful probe")
    assert len(primary.requests) == before + 1
    for inst in (a, b, a, b):
        assert inst.chat()["x-polyroute-deployment"] == "primary"
    assert len(primary.requests) == before + 5
    assert anthropic_emulator.requests  # the fallback really served meanwhile


def test_least_latency_sees_the_fleets_averages(
    pair: Callable[..., tuple[Instance, Instance, str]], openai_emulator: EmulatorServer
) -> None:
    a, b, _ = pair(strategy="least-latency")
    for inst in (a, b):
        # No exploration: the order is the averages' alone.
        inst.gw.gateway.router.routes["chat"].strategy.random = lambda: 0.5
    slow = openai_emulator
    slow.set_behaviour(Behaviour(headers_delay=0.2))
    # A measures both: unmeasured deployments go first, in config order.
    assert a.chat()["x-polyroute-deployment"] == "primary"
    assert a.chat()["x-polyroute-deployment"] == "fallback"
    a_slow = a.latency("primary").local()[0]
    assert a_slow is not None and a_slow >= 0.2
    assert len(slow.requests) == 1

    # B has measured nothing; on its own it would try the unmeasured primary first. With A's
    # averages it goes to the fast deployment.
    wait_for(lambda: b.latency("primary").latency() is not None and b.latency("fallback").latency() is not None,
             "B reads A's averages")
    assert b.latency("primary").local() == (None, None)
    assert b.latency("primary").latency() == pytest.approx(a_slow)
    assert b.chat()["x-polyroute-deployment"] == "fallback"
    assert len(slow.requests) == 1

    # B measures the primary once, much slower: each instance's view is now a weighted mean of both.
    slow.set_behaviour(Behaviour(headers_delay=0.8))
    assert b.chat({"x-polyroute-providers-allowed": "vendor-a"})["x-polyroute-deployment"] == "primary"
    b_slow = b.latency("primary").local()[0]
    assert b_slow is not None and b_slow >= 0.8

    def between(v: float | None) -> bool:
        assert a_slow is not None and b_slow is not None
        return v is not None and a_slow + 0.05 < v < b_slow - 0.05

    wait_for(lambda: between(a.latency("primary").latency()), "A's view of the primary includes B's sample")
    assert between(b.latency("primary").latency())
    assert a.latency("primary").local()[0] == a_slow


def test_the_sync_loop_survives_a_redis_outage(
    openai_emulator: EmulatorServer,
    anthropic_emulator: EmulatorServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    own_redis: RedisServer,  # noqa: F811
) -> None:
    monkeypatch.setattr("polyroute.ops.routes.HEALTH_CACHE_SECONDS", 0.0)
    caplog.set_level(logging.INFO, logger="polyroute.routing")
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    text = config(openai_emulator, anthropic_emulator, prefix)
    with run_gateway(text, env={"REDIS_URL": own_redis.url}) as gw:
        inst = Instance(gw, Clock())
        state = inst.state

        def check() -> tuple[int, dict[str, Any]]:
            try:
                with urllib.request.urlopen(gw.base_url + "/health/ready", timeout=10) as r:
                    status, body = r.status, r.read()
            except urllib.error.HTTPError as exc:
                status, body = exc.code, exc.read()
            return status, json.loads(body)

        wait_for(lambda: state.connected is True, "first sync")
        status, ready = check()
        assert status == 200 and ready["checks"]["routing_state"]["ok"] is True

        own_redis.stop()
        wait_for(lambda: state.failures >= 3, "three failed syncs", timeout=20)
        status, ready = check()
        assert status == 200 and ready["status"] == "degraded"
        detail = ready["checks"]["routing_state"]["detail"]
        assert ready["checks"]["routing_state"]["ok"] is False and "unreachable" in detail
        down = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(down) == 1 and down[0].levelno == logging.WARNING  # once per transition

        # Requests are served and the local breaker works on its own meanwhile.
        openai_emulator.set_behaviour(Behaviour.error(500))
        for _ in range(3):
            assert inst.chat()["x-polyroute-deployment"] == "fallback"
        assert inst.breaker_state("primary") == OPEN

        own_redis.start()
        wait_for(lambda: state.connected is True, "sync after the outage", timeout=20)
        assert state._task is not None and not state._task.done()
        status, ready = check()
        assert status == 200 and ready["checks"]["routing_state"]["ok"] is True
        assert len([r for r in caplog.records if "reachable again" in r.getMessage()]) == 1
        # The breaker record queued during the outage reached Redis once it was back.
        client = redis_sync.Redis.from_url(own_redis.url)
        wait_for(lambda: client.hget(f"{prefix}breaker:primary", "state") == b"open", "the queued record")
        assert client.hget(f"{prefix}breaker:primary", "by") == state.instance.encode()
