"""Fault injection: vendors die, throttle, fail in bursts, stall and disconnect; clients must not notice
while another deployment can serve.

Real HTTP everywhere: the official `openai` SDK -> gateway (uvicorn, loopback) -> protocol
emulators (an OpenAI one and an Anthropic one, i.e. two vendors). Breaker windows, cool-downs and
RPM buckets run on an injected clock, so nothing here waits for wall time to pass; the only real
timeouts are a stalled upstream (30 s) against a gateway timeout of 0.3-0.5 s.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from polyroute.core.context import RequestContext
from polyroute.core.policy import Policy
from polyroute.emulators import Behaviour, EmulatorServer
from polyroute.routing.planner import Router
from polyroute.routing.state import CLOSED, OPEN
from tests.helpers.clock import Clock
from tests.helpers.gateway import RunningGateway, run_gateway

pytestmark = pytest.mark.integration

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


class Recorder(Policy):
    """What the ledger sees: one row per finished request, attempts included."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    async def after(self, ctx: RequestContext) -> None:
        row = {
            "deployment": ctx.deployment,
            "status": ctx.status,
            "fallback_reason": ctx.fallback_reason,
            "attempts": [(a.deployment, a.status, a.error) for a in ctx.attempts],
        }
        with self._cond:
            self.rows.append(row)
            self._cond.notify_all()

    def wait_rows(self, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.rows) >= n, timeout), f"only {len(self.rows)} rows"
            return list(self.rows)


def yaml(a: EmulatorServer, b: EmulatorServer, *, a_extra: str = "", dep_a: str = "", route: str = "") -> str:
    return f"""
providers:
  vendor-a:
    type: openai
    api_key: k
    base_url: "{a.sdk_base_url}"
    breaker: {{consecutive_failures: 3, cooldown: 30}}
    {a_extra}
  vendor-b:
    type: anthropic
    api_key: k
    base_url: "{b.sdk_base_url}"
models:
  chat:
    retry: {{retries: 0}}
    {route}
    deployments:
      - {{provider: vendor-a, model: gpt-4o, name: A, {dep_a}}}
      - {{provider: vendor-b, model: claude-sonnet-4-5, name: B}}
"""


class Setup:
    def __init__(self, gw: RunningGateway, clock: Clock, recorder: Recorder) -> None:
        self.gw = gw
        self.clock = clock
        self.recorder = recorder
        self.client = openai.OpenAI(base_url=gw.openai_base, api_key="client-key", max_retries=0)

    @property
    def router(self) -> Router:
        return self.gw.gateway.router

    def breaker_state(self, name: str) -> str:
        x = self.router.target(name)
        assert x is not None
        return x.breaker.state(self.clock())

    def chat(self, **kw: Any) -> tuple[str, dict[str, str]]:
        r = self.client.chat.completions.with_raw_response.create(model="chat", messages=MSG, max_tokens=64, **kw)
        text = r.parse().choices[0].message.content or ""
        return text, dict(r.headers)

    def stream(self, **kw: Any) -> tuple[str, dict[str, str]]:
        with self.client.chat.completions.with_streaming_response.create(
            model="chat", messages=MSG, max_tokens=64, stream=True, **kw
        ) as resp:
            text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
            return text, dict(resp.headers)


def start(yaml_text: str) -> Generator[Setup, None, None]:
    clock = Clock()
    with run_gateway(yaml_text) as gw:
        gw.gateway.router.clock = clock
        rec = Recorder()
        gw.gateway.policies.append(rec)
        yield Setup(gw, clock, rec)


@pytest.fixture
def make(openai_emulator: EmulatorServer, anthropic_emulator: EmulatorServer) -> Iterator[Callable[..., Setup]]:
    gens: list[Generator[Setup, None, None]] = []

    def make_(**kw: str) -> Setup:
        g = start(yaml(openai_emulator, anthropic_emulator, **kw))
        gens.append(g)
        return next(g)

    yield make_
    for g in gens:
        g.close()


def served_by(headers: dict[str, str]) -> tuple[str | None, int]:
    return headers.get("x-polyroute-deployment"), int(headers.get("x-polyroute-attempts", "0"))


# --- a vendor dies ---------------------------------------------------------------------------


def test_vendor_killed_mid_run(emulator_factory: Callable[..., EmulatorServer], anthropic_emulator: EmulatorServer) -> None:
    a = emulator_factory("openai")
    port = a.port
    gen = start(yaml(a, anthropic_emulator))
    s = next(gen)
    try:
        concurrency, total, kill_at = 8, 240, 60
        done = 0
        lock = threading.Lock()
        killed = threading.Event()
        reached = threading.Event()
        results: list[tuple[str | None, int, bool]] = []

        def one(i: int) -> None:
            nonlocal done
            _, h = s.chat()
            with lock:
                done += 1
                results.append((*served_by(h), killed.is_set()))
                if done == kill_at:
                    reached.set()

        with ThreadPoolExecutor(concurrency) as pool:
            futures = [pool.submit(one, i) for i in range(total)]
            reached.wait(30)
            killed.set()  # first: a result marked "before" was certainly served before the kill
            a.stop()  # mid-run: requests are in flight to A as it goes away
            for f in futures:
                f.result()  # no client saw an error

        assert len(results) == total
        before = [r for r in results[:kill_at] if not r[2]]
        assert before and all(dep == "A" for dep, _, _ in before)
        # Failed attempts on the dead vendor: the breaker's 3, plus requests already in flight
        # (or admitted concurrently) when it opened.
        retried = [r for r in results if r[1] > 1]
        assert len(retried) <= 3 + concurrency
        assert s.breaker_state("A") == OPEN
        # After detection it costs nothing: one attempt, served by B.
        for _ in range(20):
            _, h = s.chat()
            assert served_by(h) == ("B", 1)
        rows = s.recorder.wait_rows(total + 20)
        dead_attempts = [a_ for row in rows for a_ in row["attempts"] if a_[0] == "A" and a_[1] != 200]
        assert 3 <= len(dead_attempts) <= 3 + concurrency
        assert all(row["status"] == 200 for row in rows)

        # Half-open after the cooldown: one probe, the vendor is still dead -> open again.
        s.clock.now += 30
        _, h = s.chat()
        assert served_by(h) == ("B", 2)
        assert s.breaker_state("A") == OPEN
        # The vendor comes back on the same address; the next probe closes the breaker.
        with EmulatorServer("openai", port=port):
            s.clock.now += 60  # the cooldown doubled after the failed probe
            _, h = s.chat()
            assert served_by(h) == ("A", 1)
            assert s.breaker_state("A") == CLOSED
    finally:
        gen.close()


# --- 429 storms --------------------------------------------------------------------------------


def test_429_storm_moves_traffic_and_honours_retry_after(
    make: Callable[..., Setup], openai_emulator: EmulatorServer, anthropic_emulator: EmulatorServer
) -> None:
    s = make()
    openai_emulator.set_behaviour(Behaviour.rate_limited(retry_after=5))
    for i in range(30):
        _, h = s.chat() if i % 2 else s.stream()
        assert served_by(h) == ("B", 2 if i == 0 else 1)
    assert len(openai_emulator.requests) == 1  # cooled down for the Retry-After
    s.clock.now += 5
    _, h = s.chat()
    assert served_by(h) == ("B", 2)  # A asked again once, still throttling
    assert len(openai_emulator.requests) == 2
    openai_emulator.set_behaviour(None)
    s.clock.now += 5
    _, h = s.chat()
    assert served_by(h) == ("A", 1)
    # 429 is a capacity signal, not a health failure.
    assert s.breaker_state("A") == CLOSED
    assert len(anthropic_emulator.requests) == 31


def test_429_with_no_alternative_waits_out_a_short_retry_after(openai_emulator: EmulatorServer) -> None:
    gen = start(f"""
providers:
  vendor-a: {{type: openai, api_key: k, base_url: "{openai_emulator.sdk_base_url}"}}
models:
  chat:
    retry: {{retries: 2, backoff_initial: 0.01}}
    deployments: [{{provider: vendor-a, model: gpt-4o, name: A}}]
""")
    s = next(gen)
    try:
        s.gw.gateway.router.clock = __import__("time").monotonic  # a real wait, checked below
        openai_emulator.enqueue(Behaviour.rate_limited(retry_after=0.3))
        _, h = s.chat()
        assert served_by(h) == ("A", 2)
        first, second = openai_emulator.requests[-2:]
        assert second.received_at - first.received_at >= 0.29
        # A Retry-After longer than the backoff cap goes back to the client at once.
        openai_emulator.enqueue(Behaviour.rate_limited(retry_after=30))
        with pytest.raises(openai.RateLimitError) as info:
            s.chat()
        assert info.value.response.headers["retry-after"] == "30"
        assert info.value.response.headers.get("x-should-retry") is None
        assert len(openai_emulator.requests) == 3
    finally:
        gen.close()


# --- 5xx bursts ----------------------------------------------------------------------------------


def test_5xx_bursts(make: Callable[..., Setup], openai_emulator: EmulatorServer) -> None:
    s = make()
    # A short burst below the breaker's threshold: failed over, breaker stays closed.
    openai_emulator.enqueue(Behaviour.error(500), Behaviour.error(529))
    for _ in range(2):
        _, h = s.chat()
        assert served_by(h) == ("B", 2)
    _, h = s.chat()
    assert served_by(h) == ("A", 1)
    assert s.breaker_state("A") == CLOSED
    # A long burst: the breaker opens after 3 and A sees no more of it.
    openai_emulator.clear_requests()
    openai_emulator.enqueue(*[Behaviour.error(503)] * 20)
    for i in range(12):
        _, h = s.stream() if i % 3 == 0 else s.chat()
        assert served_by(h)[0] == "B"
    assert len(openai_emulator.requests) == 3
    assert s.breaker_state("A") == OPEN
    rows = s.recorder.wait_rows(15)
    assert [row["fallback_reason"] for row in rows] == [None] * 15  # failover within the model


# --- slow first token -------------------------------------------------------------------------------


def test_slow_first_token_fails_over(make: Callable[..., Setup], openai_emulator: EmulatorServer) -> None:
    s = make(a_extra="timeouts: {first_token: 0.3, total: 0.5}")
    stall = Behaviour(first_token_delay=30)
    openai_emulator.enqueue(stall)
    text, h = s.stream()
    assert served_by(h) == ("B", 2) and text
    openai_emulator.enqueue(stall)
    text, h = s.chat()
    assert served_by(h) == ("B", 2) and text
    rows = s.recorder.wait_rows(2)
    assert rows[0]["attempts"][0][:2] == ("A", 504)
    assert "first token" in rows[0]["attempts"][0][2]
    # Timeouts are health failures: the third opens the breaker.
    openai_emulator.enqueue(stall)
    s.stream()
    assert s.breaker_state("A") == OPEN
    _, h = s.stream()
    assert served_by(h) == ("B", 1)


# --- disconnects mid-stream ----------------------------------------------------------------------


def test_upstream_disconnect_before_content_fails_over(make: Callable[..., Setup], openai_emulator: EmulatorServer) -> None:
    s = make()
    for after in (0, 1):  # nothing sent, or only the opening (role) chunk
        openai_emulator.enqueue(Behaviour(disconnect_after=after))
        text, h = s.stream()
        assert served_by(h) == ("B", 2)
        assert text.startswith("echo")


def test_upstream_disconnect_after_content_ends_the_stream_cleanly(
    make: Callable[..., Setup], openai_emulator: EmulatorServer
) -> None:
    s = make()
    openai_emulator.enqueue(Behaviour(text="one two three four five six", disconnect_after=4))
    got: list[str] = []
    with pytest.raises(openai.APIError) as info:
        with s.client.chat.completions.with_streaming_response.create(
            model="chat", messages=MSG, stream=True
        ) as resp:
            assert served_by(dict(resp.headers)) == ("A", 1)
            for c in resp.parse():
                if c.choices and c.choices[0].delta.content:
                    got.append(c.choices[0].delta.content)
    assert got and "".join(got).startswith("one")
    assert "closed the stream" in str(info.value) or "connection" in str(info.value).lower()
    row = s.recorder.wait_rows(1)[0]
    assert row["attempts"][0][:2] == ("A", 502) and row["status"] == 502
    x = s.router.target("A")
    assert x is not None and x.capacity.inflight() == 0


def test_client_disconnect_cancels_the_upstream_call(make: Callable[..., Setup], openai_emulator: EmulatorServer) -> None:
    s = make()
    # 40 chunks a second apart: the upstream stream would run for 40 s if nobody cancelled it.
    openai_emulator.enqueue(Behaviour(text=" ".join(["word"] * 40), chunks=40, chunk_delay=1.0))
    with s.client.chat.completions.with_streaming_response.create(model="chat", messages=MSG, stream=True) as resp:
        first = next(c for c in resp.parse() if c.choices and c.choices[0].delta.content)
        assert first.choices[0].delta.content
    row = s.recorder.wait_rows(1, timeout=10)[0]  # within 10 s: cancelled, not run to its end
    assert row["attempts"][0][:2] == ("A", 499)
    x = s.router.target("A")
    assert x is not None and x.capacity.inflight() == 0
    assert s.breaker_state("A") == CLOSED  # the client leaving says nothing about the vendor


# --- capacity ------------------------------------------------------------------------------------


def test_deployment_at_max_concurrency_overflows_at_once(make: Callable[..., Setup], openai_emulator: EmulatorServer) -> None:
    s = make(dep_a="max_concurrency: 1")
    openai_emulator.enqueue(Behaviour(text=" ".join(["w"] * 30), chunks=30, chunk_delay=0.5))
    with s.client.chat.completions.with_streaming_response.create(model="chat", messages=MSG, stream=True) as held:
        assert served_by(dict(held.headers)) == ("A", 1)
        next(iter(held.parse()))
        # A is full while this stream is open: the next requests go to B with no failed attempt.
        for _ in range(3):
            _, h = s.chat()
            assert served_by(h) == ("B", 1)
    s.recorder.wait_rows(4)  # the held stream has finished (cancelled) and released its slot
    _, h = s.chat()
    assert served_by(h) == ("A", 1)


def test_rpm_limit_overflows_and_all_full_is_429(make: Callable[..., Setup], openai_emulator: EmulatorServer) -> None:
    s = make(dep_a="rpm: 3")
    served = [served_by(s.chat()[1]) for _ in range(6)]
    assert served == [("A", 1)] * 3 + [("B", 1)] * 3
    s.clock.now += 20  # one request's worth refilled
    assert served_by(s.chat()[1]) == ("A", 1)
    assert len(openai_emulator.requests) == 4


def test_all_deployments_full_is_429_with_retry_after(openai_emulator: EmulatorServer) -> None:
    gen = start(f"""
providers:
  vendor-a: {{type: openai, api_key: k, base_url: "{openai_emulator.sdk_base_url}"}}
models:
  chat:
    deployments: [{{provider: vendor-a, model: gpt-4o, name: A, rpm: 2}}]
""")
    s = next(gen)
    try:
        s.chat()
        s.chat()
        with pytest.raises(openai.RateLimitError) as info:
            s.chat()
        h = info.value.response.headers
        assert h["retry-after"] == "30"
        assert h.get("x-should-retry") is None  # retrying later can succeed
        assert "at capacity" in str(info.value)
        assert len(openai_emulator.requests) == 2
    finally:
        gen.close()
