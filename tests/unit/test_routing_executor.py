"""The planner and the attempt loop, with scripted providers (no network) and an injected clock."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from polyroute.config.load import ConfigError, parse_config
from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.core.catalog import Catalog
from polyroute.core.context import RequestContext
from polyroute.core.deployment import Deployment
from polyroute.routing import executor
from polyroute.routing.planner import Router
from polyroute.routing.state import CLOSED, OPEN

PROVIDERS = """
providers:
  a: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1", breaker: {consecutive_failures: 3, cooldown: 10}}
  b: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1", breaker: {consecutive_failures: 3, cooldown: 10}}
  c: {type: deepseek, api_key: k, base_url: "http://127.0.0.1:9/v1"}
  n: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1", breaker: {enabled: false}}
"""

TWO = """
models:
  m:
    retry: {retries: 0, backoff_initial: 0, backoff_max: 1}
    deployments:
      - {provider: a, model: x, name: A}
      - {provider: b, model: x, name: B}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Outcome = BaseException | Callable[[], Any] | None


class Script:
    """A provider's scripted answers: queued outcomes first, then the default (success)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: deque[Outcome] = deque()
        self.default: Outcome = None
        self.calls = 0
        self.chunks = ["Hel", "lo"]

    def push(self, *outcomes: Outcome) -> None:
        self.queue.extend(outcomes)

    async def _outcome(self) -> None:
        self.calls += 1
        o = self.queue.popleft() if self.queue else self.default
        if isinstance(o, BaseException):
            raise o
        if callable(o):
            await o()

    async def chat(self, req: t.ChatRequest, dep: Deployment) -> t.ChatResponse:
        await self._outcome()
        msg = t.Message(role="assistant", content=[t.TextPart(text=f"from {self.name}")])
        return t.ChatResponse(id="c", model=dep.upstream_model, created=0, choices=[t.Choice(index=0, message=msg)],
                              usage=t.Usage(input_tokens=10, output_tokens=5))

    async def stream(self, req: t.ChatRequest, dep: Deployment) -> AsyncIterator[t.StreamEvent]:
        await self._outcome()
        yield t.StreamStart(id="s", model=dep.upstream_model, created=0)
        for c in self.chunks:
            if isinstance(c, BaseException):
                raise c
            if callable(c):
                await c()
                continue
            yield t.TextDelta(text=c)
        yield t.Finish(reason="stop")
        yield t.UsageEvent(usage=t.Usage(input_tokens=10, output_tokens=2))


def setup(models: str, providers: str = PROVIDERS) -> tuple[Router, Clock, dict[str, Script]]:
    catalog = Catalog(parse_config(providers + models, "<test>"))
    clock = Clock()
    scripts: dict[str, Script] = {}
    for name, prov in catalog.providers.items():
        s = scripts[name] = Script(name)
        prov.chat = s.chat  # type: ignore[method-assign]
        prov.stream = s.stream  # type: ignore[method-assign]
    return Router(catalog, clock=clock), clock, scripts


def req(text: str = "hello", model: str = "m", **kw: Any) -> t.ChatRequest:
    return t.ChatRequest(model=model, messages=[t.Message(role="user", content=[t.TextPart(text=text)])], **kw)


def opts(**kw: Any) -> t.RequestOptions:
    return t.RequestOptions(**kw)


async def chat(router: Router, r: t.ChatRequest) -> tuple[t.ChatResponse, RequestContext]:
    ctx = RequestContext("r", "openai")
    ctx.route = r.model
    resp, _, _ = await executor.run_chat(router, r, ctx)
    return resp, ctx


async def fails(router: Router, r: t.ChatRequest) -> tuple[e.GatewayError, RequestContext]:
    ctx = RequestContext("r", "openai")
    with pytest.raises(e.GatewayError) as info:
        await executor.run_chat(router, r, ctx)
    return info.value, ctx


def statuses(ctx: RequestContext) -> list[tuple[str, int]]:
    return [(a.deployment, a.status) for a in ctx.attempts]


# --- failover, client errors, breaker -----------------------------------------------------------


async def test_server_error_fails_over_and_every_attempt_is_recorded() -> None:
    router, _, s = setup(TWO)
    s["a"].push(e.UpstreamError("boom", provider="a"))
    resp, ctx = await chat(router, req())
    assert resp.choices[0].message.text() == "from b"
    assert statuses(ctx) == [("A", 502), ("B", 200)]
    assert ctx.attempts[0].error == "boom"
    assert ctx.attempts[1].cost == 0.0 and ctx.attempts[1].usage is not None
    assert ctx.deployment == "B" and ctx.provider == "b" and ctx.fallback_reason is None


async def test_client_error_goes_straight_back() -> None:
    router, _, s = setup(TWO)
    s["a"].push(e.InvalidRequest("bad tool schema", provider="a"))
    err, ctx = await fails(router, req())
    assert isinstance(err, e.InvalidRequest)
    assert s["b"].calls == 0
    assert statuses(ctx) == [("A", 400)]
    # Not a health failure.
    assert router.target("A").breaker.state(0) == CLOSED  # type: ignore[union-attr]


async def test_breaker_opens_skips_then_probes_and_closes() -> None:
    router, clock, s = setup(TWO)
    a = router.target("A")
    assert a is not None
    s["a"].default = e.UpstreamError("down", provider="a")
    for _ in range(3):
        _, ctx = await chat(router, req())
        assert statuses(ctx) == [("A", 502), ("B", 200)]
    assert a.breaker.state(clock()) == OPEN
    for _ in range(5):
        _, ctx = await chat(router, req())
        assert statuses(ctx) == [("B", 200)]  # a dead vendor costs nothing once detected
    assert s["a"].calls == 3
    clock.now += 10  # cooldown over: one probe, still failing -> open again (cooldown doubled)
    _, ctx = await chat(router, req())
    assert statuses(ctx) == [("A", 502), ("B", 200)]
    clock.now += 10
    _, ctx = await chat(router, req())
    assert statuses(ctx) == [("B", 200)]
    s["a"].default = None  # recovered
    clock.now += 10
    _, ctx = await chat(router, req())
    assert statuses(ctx) == [("A", 200)]
    assert a.breaker.state(clock()) == CLOSED


async def test_429_cools_down_without_tripping_the_breaker() -> None:
    router, clock, s = setup(TWO)
    a = router.target("A")
    assert a is not None
    for _ in range(5):
        s["a"].push(e.RateLimited("slow down", provider="a", retry_after=2.0))
        _, ctx = await chat(router, req())
        assert statuses(ctx) == [("A", 429), ("B", 200)]
        # Retry-After honoured: A is skipped until it passes.
        _, ctx = await chat(router, req())
        assert statuses(ctx) == [("B", 200)]
        clock.now += 2.0
    assert a.breaker.state(clock()) == CLOSED
    _, ctx = await chat(router, req())
    assert statuses(ctx) == [("A", 200)]


async def test_429_without_retry_after_uses_the_provider_cooldown() -> None:
    router, clock, s = setup(TWO)
    s["a"].push(e.RateLimited("slow down", provider="a"))
    await chat(router, req())
    clock.now += 0.9
    _, ctx = await chat(router, req())
    assert statuses(ctx) == [("B", 200)]
    clock.now += 0.1  # rate_limit_cooldown defaults to 1 s
    _, ctx = await chat(router, req())
    assert statuses(ctx) == [("A", 200)]


# --- capacity ----------------------------------------------------------------------------------


async def test_rpm_full_goes_to_next_at_once_and_all_full_is_429() -> None:
    router, clock, _ = setup("""
models:
  m:
    deployments:
      - {provider: a, model: x, name: A, rpm: 2}
      - {provider: b, model: x, name: B, rpm: 1}
""")
    served = []
    for _ in range(3):
        _, ctx = await chat(router, req())
        served.append(ctx.deployment)
        assert len(ctx.attempts) == 1
    assert served == ["A", "A", "B"]
    err, ctx = await fails(router, req())
    assert isinstance(err, e.RateLimited) and err.status == 429 and err.retryable
    assert err.retry_after == pytest.approx(30.0)  # A refills one request every 30 s
    assert ctx.attempts == []
    clock.now += 30
    _, ctx = await chat(router, req())
    assert ctx.deployment == "A"


async def test_max_concurrency_moves_to_next_and_frees_on_completion() -> None:
    router, _, s = setup("""
models:
  m:
    deployments:
      - {provider: a, model: x, name: A, max_concurrency: 1}
      - {provider: b, model: x, name: B}
""")
    release = asyncio.Event()
    started = asyncio.Event()

    async def hold() -> None:
        started.set()
        await release.wait()

    s["a"].push(hold)
    first = asyncio.create_task(chat(router, req()))
    await started.wait()
    _, ctx = await chat(router, req())
    assert statuses(ctx) == [("B", 200)]
    release.set()
    _, ctx1 = await first
    assert ctx1.deployment == "A"
    _, ctx = await chat(router, req())
    assert ctx.deployment == "A"
    assert router.target("A").capacity.inflight() == 0  # type: ignore[union-attr]


async def test_tpm_reserves_estimate_and_settles_actual_usage() -> None:
    router, _, _ = setup("""
models:
  m:
    deployments:
      - {provider: a, model: x, name: A, tpm: 1000}
      - {provider: b, model: x, name: B}
""")
    r = req("x" * 2000, max_tokens=100)  # ~500 prompt tokens + 100
    _, ctx = await chat(router, r)
    assert ctx.deployment == "A"
    # The answer used 15 tokens, so the ~600 reserved were given back except 15.
    _, ctx = await chat(router, r)
    assert ctx.deployment == "A"
    big = req("x" * 3600, max_tokens=100)  # ~1000: more than is left
    _, ctx = await chat(router, big)
    assert ctx.deployment == "B"


async def test_all_breakers_open_is_503_with_retry_after() -> None:
    router, clock, s = setup(TWO)
    s["a"].default = e.UpstreamError("down", provider="a")
    s["b"].default = e.UpstreamError("down", provider="b")
    for _ in range(3):
        err, _ = await fails(router, req())
        assert isinstance(err, e.AllProvidersFailed)
    err, ctx = await fails(router, req())
    assert isinstance(err, e.Unavailable) and err.status == 503
    assert err.retry_after == pytest.approx(10.0)
    assert ctx.attempts == []
    clock.now += 4
    err, _ = await fails(router, req())
    assert err.retry_after == pytest.approx(6.0)


# --- retries, backoff, budget, deadline ----------------------------------------------------------

ONE = """
models:
  m:
    retry: {{retries: {retries}, backoff_initial: 0.1, backoff_max: 2, budget_ratio: {ratio}, budget_min_per_second: {floor}}}
    deployments:
      - {{provider: n, model: x, name: A}}
"""


class Sleeps:
    """Backoff waits, recorded instead of slept; each moves the injected clock."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.clock: Clock | None = None

    async def sleep(self, d: float) -> None:
        self.waits.append(d)
        if self.clock is not None:
            self.clock.now += d


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    sl = Sleeps()
    monkeypatch.setattr(executor.asyncio, "sleep", sl.sleep)
    monkeypatch.setattr(executor, "jitter", lambda: 1.0)  # the upper end of the jitter range
    return sl


async def test_retries_with_exponential_backoff(sleeps: Sleeps) -> None:
    router, clock, s = setup(ONE.format(retries=3, ratio=1, floor=10))
    sleeps.clock = clock
    s["n"].push(e.UpstreamError("1", provider="n"), e.UpstreamTimeout("2", provider="n"), e.UpstreamOverloaded("3", provider="n"))
    _, ctx = await chat(router, req())
    assert statuses(ctx) == [("A", 502), ("A", 504), ("A", 503), ("A", 200)]
    assert sleeps.waits == pytest.approx([0.1, 0.2, 0.4])


async def test_retries_stop_when_the_breaker_opens(sleeps: Sleeps) -> None:
    router, clock, s = setup(TWO.replace("retries: 0", "retries: 5"))
    sleeps.clock = clock
    s["a"].default = e.UpstreamError("down", provider="a")
    s["b"].default = e.UpstreamError("down", provider="b")
    err, ctx = await fails(router, req())
    # Three passes over both, then both breakers are open: no fourth pass, no long wait.
    assert len(ctx.attempts) == 6 and len(sleeps.waits) == 2
    assert isinstance(err, e.AllProvidersFailed) and err.retry_after == pytest.approx(10.0)


async def test_backoff_waits_out_an_upstream_retry_after(sleeps: Sleeps) -> None:
    router, clock, s = setup(ONE.format(retries=2, ratio=1, floor=10))
    sleeps.clock = clock
    s["n"].push(e.RateLimited("slow", provider="n", retry_after=1.5))
    _, ctx = await chat(router, req())
    assert statuses(ctx) == [("A", 429), ("A", 200)]
    assert sleeps.waits == pytest.approx([1.5])


async def test_retry_after_longer_than_backoff_max_returns_at_once(sleeps: Sleeps) -> None:
    router, clock, s = setup(ONE.format(retries=2, ratio=1, floor=10))
    sleeps.clock = clock
    s["n"].push(e.RateLimited("slow", provider="n", retry_after=30))
    err, ctx = await fails(router, req())
    assert isinstance(err, e.RateLimited) and err.retry_after == 30
    assert sleeps.waits == [] and len(ctx.attempts) == 1


async def test_retry_budget_stops_a_retry_storm(sleeps: Sleeps) -> None:
    router, clock, s = setup(ONE.format(retries=2, ratio=0.1, floor=0))
    sleeps.clock = clock
    s["n"].default = e.UpstreamError("down", provider="n")
    attempts = 0
    for _ in range(100):
        _, ctx = await fails(router, req())
        attempts += len(ctx.attempts)
    # 100 requests, at most 10 % of them retried.
    assert 100 <= attempts <= 111


async def test_per_request_retries_override(sleeps: Sleeps) -> None:
    router, clock, s = setup(ONE.format(retries=3, ratio=1, floor=10))
    sleeps.clock = clock
    s["n"].push(e.UpstreamError("1", provider="n"))
    _err, ctx = await fails(router, req(options=opts(retries=0)))
    assert len(ctx.attempts) == 1


async def test_provider_timeout_fails_over_and_counts_against_health() -> None:
    router, _, s = setup(TWO, PROVIDERS.replace("a: {type: openai_compatible,", "a: {type: openai_compatible, timeouts: {total: 0.05},"))

    async def hang() -> None:
        await asyncio.Event().wait()

    s["a"].push(hang)
    _, ctx = await chat(router, req())
    assert statuses(ctx) == [("A", 504), ("B", 200)]
    assert "did not answer" in (ctx.attempts[0].error or "")


async def test_request_deadline_bounds_all_attempts_and_is_not_a_health_failure() -> None:
    router, clock, s = setup(TWO)

    async def hang() -> None:
        await asyncio.Event().wait()

    s["a"].push(hang)
    err, ctx = await fails(router, req(options=opts(timeout=0.05)))
    assert isinstance(err, e.UpstreamTimeout) and err.status == 504
    assert "deadline" in err.message
    assert statuses(ctx) == [("A", 504)]
    assert s["b"].calls == 0
    a = router.target("A")
    assert a is not None and a.capacity.inflight() == 0
    # Three deadline timeouts do not open the breaker (the request's patience ran out).
    for _ in range(3):
        s["a"].push(hang)
        await fails(router, req(options=opts(timeout=0.02)))
    assert a.breaker.state(clock()) == CLOSED


# --- fallbacks across models ---------------------------------------------------------------------

FALLBACKS = """
models:
  small:
    fallbacks: [large]
    retry: {retries: 0}
    deployments:
      - {provider: a, model: x, name: S, context_window: 1000}
  large:
    deployments:
      - {provider: b, model: y, name: L, context_window: 100000}
  vision-less:
    fallbacks: [large]
    deployments:
      - {provider: c, model: deepseek-chat, name: D}
  local:
    weak: true
    deployments:
      - {provider: b, model: tiny, name: W}
  guarded:
    fallbacks: [local]
    allow_weak_fallback: true
    retry: {retries: 0}
    deployments:
      - {provider: a, model: x, name: G}
"""


async def test_too_long_prompt_falls_back_to_a_larger_context_model() -> None:
    router, _, s = setup(FALLBACKS)
    _, ctx = await chat(router, req("short", model="small"))
    assert ctx.deployment == "S" and ctx.fallback_reason is None
    _, ctx = await chat(router, req("x" * 8000, model="small"))
    assert ctx.deployment == "L" and ctx.route == "large"
    assert ctx.fallback_reason == "context_length"
    assert s["a"].calls == 1  # the small model was never asked
    err, _ = await fails(router, req("x" * 8000, model="small", options=opts(fallbacks=False)))
    assert isinstance(err, e.InvalidRequest) and "context window of 1000" in err.message


async def test_fallback_rechecks_features() -> None:
    router, _, _ = setup(FALLBACKS)
    image = t.ChatRequest(
        model="vision-less",
        messages=[t.Message(role="user", content=[t.TextPart(text="what is it"), t.ImagePart(url="http://x/i.png")])],
    )
    _, ctx = await chat(router, image)
    assert ctx.deployment == "L" and ctx.fallback_reason == "unsupported_feature"


async def test_fallback_on_failure_names_the_reason() -> None:
    router, _, s = setup(FALLBACKS)
    s["a"].push(e.UpstreamError("down", provider="a"))
    _, ctx = await chat(router, req(model="small"))
    assert statuses(ctx) == [("S", 502), ("L", 200)]
    assert ctx.fallback_reason == "upstream_error"


async def test_weak_fallback_is_flagged() -> None:
    router, _, s = setup(FALLBACKS)
    s["a"].push(e.UpstreamTimeout("slow", provider="a"))
    _, ctx = await chat(router, req(model="guarded"))
    assert ctx.deployment == "W" and ctx.route == "local"
    assert ctx.fallback_reason == "weak_model:timeout"


def test_weak_fallback_must_be_allowed_in_config() -> None:
    with pytest.raises(ConfigError) as info:
        setup("""
models:
  strong:
    fallbacks: [local]
    deployments: [{provider: a, model: x}]
  local:
    weak: true
    deployments: [{provider: b, model: tiny}]
""")
    assert "models.strong.fallbacks[0]" in str(info.value) and "allow_weak_fallback" in str(info.value)


async def test_request_models_list_replaces_fallbacks_and_fallbacks_can_be_off() -> None:
    router, _, s = setup(FALLBACKS)
    s["a"].default = e.UpstreamError("down", provider="a")
    _, ctx = await chat(router, req(model="guarded", options=opts(models=["large"])))
    assert ctx.deployment == "L"
    err, ctx = await fails(router, req(model="guarded", options=opts(fallbacks=False)))
    assert err.status == 502 and statuses(ctx) == [("G", 502)]
    err, _ = await fails(router, req(model="guarded", options=opts(models=["nope"])))
    assert isinstance(err, e.InvalidRequest) and "'nope'" in err.message


async def test_allowed_models_hook_for_governance() -> None:
    router, _, s = setup(FALLBACKS)
    ctx = RequestContext("r", "openai")
    ctx.allowed_models = frozenset({"large"})
    with pytest.raises(e.PermissionDenied):
        await executor.run_chat(router, req(model="small"), ctx)
    # A fallback the key may not use is skipped.
    ctx = RequestContext("r", "openai")
    ctx.allowed_models = frozenset({"small"})
    s["a"].push(e.UpstreamError("down", provider="a"))
    with pytest.raises(e.UpstreamError):
        await executor.run_chat(router, req(model="small"), ctx)
    assert s["b"].calls == 0


async def test_provider_filters_and_price_cap() -> None:
    router, _, _ = setup("""
models:
  m:
    deployments:
      - {provider: a, model: x, name: A, input_price: 10, output_price: 30}
      - {provider: b, model: x, name: B, input_price: 1, output_price: 2}
      - {provider: c, model: deepseek-chat, name: C}
""")
    _, ctx = await chat(router, req(options=opts(providers_excluded=["a"])))
    assert ctx.deployment == "B"
    _, ctx = await chat(router, req(options=opts(providers_allowed=["c"])))
    assert ctx.deployment == "C"
    _, ctx = await chat(router, req(options=opts(max_price_per_million=5)))
    assert ctx.deployment == "B"  # A is over the cap
    err, _ = await fails(router, req(options=opts(max_price_per_million=0.5)))
    assert isinstance(err, e.InvalidRequest) and "over the maximum" in err.message


async def test_sticky_key_keeps_a_conversation_on_one_deployment() -> None:
    router, _, _ = setup("""
models:
  m:
    strategy: weighted
    deployments:
      - {provider: a, model: x, name: A}
      - {provider: b, model: x, name: B}
""")
    for conv in ("c1", "c2", "c3", "c4"):
        seen = set()
        for _ in range(20):
            _, ctx = await chat(router, req(options=opts(sticky_key=conv)))
            seen.add(ctx.deployment)
        assert len(seen) == 1
    unpinned = set()
    for _ in range(60):
        _, ctx = await chat(router, req())
        unpinned.add(ctx.deployment)
    assert unpinned == {"A", "B"}


async def test_sticky_pin_moves_when_its_deployment_fails() -> None:
    router, _, s = setup("""
models:
  m:
    strategy: weighted
    sticky: {by: user}
    deployments:
      - {provider: a, model: x, name: A}
      - {provider: b, model: x, name: B}
""")
    _, ctx = await chat(router, req(user="u1"))
    first = ctx.deployment
    other = "B" if first == "A" else "A"
    s["a" if first == "A" else "b"].push(e.UpstreamError("down", provider="x"))
    _, ctx = await chat(router, req(user="u1"))
    assert ctx.deployment == other
    for _ in range(10):
        _, ctx = await chat(router, req(user="u1"))
        assert ctx.deployment == other


async def test_unknown_model_and_kind_mismatch() -> None:
    router, _, _ = setup(TWO)
    err, _ = await fails(router, req(model="nope"))
    assert isinstance(err, e.ModelNotFound) and err.status == 404


# --- streams -------------------------------------------------------------------------------------


async def collect(router: Router, r: t.ChatRequest) -> tuple[list[t.StreamEvent], RequestContext]:
    ctx = RequestContext("r", "openai")
    first, rest, _, _ = await executor.open_stream(router, r, ctx)
    events = [first]
    async for ev in rest:
        events.append(ev)
    return events, ctx


async def test_stream_fails_over_before_first_content() -> None:
    router, _, s = setup(TWO)
    s["a"].push(e.UpstreamOverloaded("529", provider="a"))
    events, ctx = await collect(router, req(stream=True))
    assert [a.status for a in ctx.attempts] == [503, 0]  # the stream's attempt is finished by the gateway
    assert ctx.deployment == "B" and ctx.ttft is not None
    assert "".join(ev.text for ev in events if isinstance(ev, t.TextDelta)) == "Hello"


async def test_stream_that_dies_after_its_opening_chunk_still_fails_over() -> None:
    router, _, s = setup(TWO)
    s["a"].chunks = [e.UpstreamError("reset", provider="a")]  # type: ignore[list-item]
    _events, ctx = await collect(router, req(stream=True))
    assert ctx.deployment == "B"
    assert ctx.attempts[0].status == 502


async def test_stream_idle_gap_ends_the_stream_and_counts_as_health_failure() -> None:
    router, _clock, s = setup(TWO, PROVIDERS.replace("a: {type: openai_compatible,", "a: {type: openai_compatible, timeouts: {idle: 0.05},"))

    async def stall() -> None:
        await asyncio.Event().wait()

    s["a"].chunks = ["first", stall]  # type: ignore[list-item]
    ctx = RequestContext("r", "openai")
    _first, rest, _, _ = await executor.open_stream(router, req(stream=True), ctx)
    got = [await anext(rest)]
    with pytest.raises(e.UpstreamTimeout, match="no stream chunk"):
        await anext(rest)
    await executor.close_quietly(rest)
    assert isinstance(got[0], t.TextDelta)
    a = router.target("A")
    assert a is not None and a.capacity.inflight() == 0
    assert a.breaker._consecutive == 1  # type: ignore[attr-defined]


async def test_stream_closed_by_client_releases_the_deployment() -> None:
    router, _, s = setup(TWO)
    s["a"].chunks = ["a", "b", "c"]
    ctx = RequestContext("r", "openai")
    _, rest, _, _ = await executor.open_stream(router, req(stream=True), ctx)
    await anext(rest)
    await executor.close_quietly(rest)  # what the gateway does when the client goes away
    a = router.target("A")
    assert a is not None and a.capacity.inflight() == 0
    assert a.breaker.state(0) == CLOSED


def test_in_house_models_count_as_weak_by_default() -> None:
    models = """
models:
  strong:
    fallbacks: [local]
    deployments: [{provider: a, model: x}]
  local:
    deployments: [{provider: house, model: smollm2-135m-instruct}]
"""
    providers = PROVIDERS + "  house: {type: inhouse}\n"
    with pytest.raises(ConfigError, match="allow_weak_fallback"):
        setup(models, providers)
    router, _, _ = setup(models.replace("fallbacks: [local]", "fallbacks: [local]\n    allow_weak_fallback: true"), providers)
    assert router.routes["local"].weak and not router.routes["strong"].weak
    # The in-house context size bounds its prompts unless the deployment says otherwise.
    assert router.routes["local"].targets[0].context_window == 2048


async def test_stream_never_iterated_still_frees_its_slot() -> None:
    import gc

    router, _, _ = setup(TWO)
    _, rest, _, _ = await executor.open_stream(router, req(stream=True), RequestContext("r", "openai"))
    a = router.target("A")
    assert a is not None and a.capacity.inflight() == 1
    del rest
    gc.collect()
    assert a.capacity.inflight() == 0
