"""Strategies, fallbacks and per-request control over real HTTP: the `openai` SDK -> gateway ->
emulators of two vendors (OpenAI and Anthropic)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from polyroute.core import types as t
from polyroute.core.context import RequestContext
from polyroute.core.policy import Policy
from polyroute.emulators import Behaviour, EmulatorServer
from tests.helpers.gateway import RunningGateway, run_gateway

pytestmark = pytest.mark.integration

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


def providers(a: EmulatorServer, b: EmulatorServer) -> str:
    return f"""
providers:
  vendor-a: {{type: openai, api_key: k, base_url: "{a.sdk_base_url}"}}
  vendor-b: {{type: anthropic, api_key: k, base_url: "{b.sdk_base_url}"}}
"""


@pytest.fixture
def gateway(openai_emulator: EmulatorServer, anthropic_emulator: EmulatorServer) -> Iterator[Callable[[str], RunningGateway]]:
    stack: list[Any] = []

    def start(models: str) -> RunningGateway:
        cm = run_gateway(providers(openai_emulator, anthropic_emulator) + models)
        stack.append(cm)
        return cm.__enter__()

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key="k", max_retries=0)


def call(c: openai.OpenAI, model: str = "chat", messages: list[Any] | None = None, **kw: Any) -> dict[str, str]:
    r = c.chat.completions.with_raw_response.create(model=model, messages=messages or MSG, max_tokens=32, **kw)
    r.parse()
    return dict(r.headers)


TWO = """
models:
  chat:
    strategy: {strategy}
    {extra}
    deployments:
      - {{provider: vendor-a, model: gpt-4o, name: A, weight: 3, input_price: 2.5, output_price: 10}}
      - {{provider: vendor-b, model: claude-sonnet-4-5, name: B, weight: 1, input_price: 0.5, output_price: 1}}
"""


def two(strategy: str, extra: str = "") -> str:
    return TWO.format(strategy=strategy, extra=extra)


def test_weighted_split(gateway: Callable[[str], RunningGateway], openai_emulator: EmulatorServer,
                        anthropic_emulator: EmulatorServer) -> None:
    gw = gateway(two("weighted"))
    gw.gateway.router.routes["chat"].strategy.random = random.Random(11).random
    c = client(gw)
    served = Counter(call(c)["x-polyroute-deployment"] for _ in range(400))
    assert 255 < served["A"] < 345 and served["A"] + served["B"] == 400
    assert len(openai_emulator.requests) == served["A"] and len(anthropic_emulator.requests) == served["B"]


def test_sticky_header_and_sticky_conversations(gateway: Callable[[str], RunningGateway]) -> None:
    gw = gateway(two("weighted", "sticky: {by: messages, messages: 1}"))
    c = client(gw)
    for conv in range(6):
        seen = {call(c, extra_headers={"x-polyroute-sticky-key": f"conv-{conv}"})["x-polyroute-deployment"] for _ in range(8)}
        assert len(seen) == 1
    # Config `sticky: {by: messages}`: the same opening keeps a conversation on one deployment.
    for conv in range(6):
        history: list[dict[str, Any]] = [{"role": "user", "content": f"conversation {conv} starts"}]
        seen = set()
        for turn in range(5):
            seen.add(call(c, messages=history)["x-polyroute-deployment"])
            history += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": f"turn {turn}"}]
        assert len(seen) == 1
    spread = {call(c, messages=[{"role": "user", "content": f"new {i}"}])["x-polyroute-deployment"] for i in range(40)}
    assert spread == {"A", "B"}


def test_least_latency_prefers_the_faster_vendor(gateway: Callable[[str], RunningGateway],
                                                 openai_emulator: EmulatorServer) -> None:
    gw = gateway(two("least-latency"))
    gw.gateway.router.routes["chat"].strategy.random = random.Random(3).random
    openai_emulator.set_behaviour(first_token_delay=0.3)  # ~100x the emulator's own latency
    c = client(gw)
    served = Counter(call(c)["x-polyroute-deployment"] for _ in range(60))
    # Each is measured once, then the fast one takes all but the explored few.
    assert served["B"] >= 52


def test_cost_strategy_and_price_cap(gateway: Callable[[str], RunningGateway]) -> None:
    gw = gateway(two("cost"))
    c = client(gw)
    assert {call(c)["x-polyroute-deployment"] for _ in range(5)} == {"B"}
    gw2 = gateway(two("priority"))
    c2 = client(gw2)
    assert call(c2)["x-polyroute-deployment"] == "A"
    assert call(c2, extra_headers={"x-polyroute-max-price": "2"})["x-polyroute-deployment"] == "B"
    with pytest.raises(openai.BadRequestError) as info:
        call(c2, extra_body={"polyroute": {"max_price_per_million": 0.01}})
    assert info.value.response.headers["x-should-retry"] == "false"


FALLBACKS = """
models:
  gpt-4o:
    retry: {retries: 0}
    fallbacks: [claude-sonnet]
    deployments:
      - {provider: vendor-a, model: gpt-4o, name: A, context_window: 2000}
  claude-sonnet:
    deployments:
      - {provider: vendor-b, model: claude-sonnet-4-5, name: B, context_window: 200000}
  house:
    weak: true
    deployments:
      - {provider: vendor-b, model: claude-haiku-4-5, name: H}
  guarded:
    retry: {retries: 0}
    fallbacks: [house]
    allow_weak_fallback: true
    deployments:
      - {provider: vendor-a, model: gpt-4o, name: G}
"""


def test_fallback_across_models_for_context_length(gateway: Callable[[str], RunningGateway],
                                                    openai_emulator: EmulatorServer) -> None:
    c = client(gateway(FALLBACKS))
    h = call(c, model="gpt-4o")
    assert h["x-polyroute-model"] == "gpt-4o" and "x-polyroute-fallback-reason" not in h
    long = [{"role": "user", "content": "word " * 4000}]
    h = call(c, model="gpt-4o", messages=long)
    assert h["x-polyroute-model"] == "claude-sonnet" and h["x-polyroute-deployment"] == "B"
    assert h["x-polyroute-fallback-reason"] == "context_length"
    assert len(openai_emulator.requests) == 1  # the short-context model was never sent it
    with pytest.raises(openai.BadRequestError) as info:
        call(c, model="gpt-4o", messages=long, extra_headers={"x-polyroute-fallbacks": "false"})
    assert "context window of 2000" in str(info.value)


def test_fallback_on_outage_and_weak_fallback_is_flagged(gateway: Callable[[str], RunningGateway],
                                                          openai_emulator: EmulatorServer) -> None:
    c = client(gateway(FALLBACKS))
    openai_emulator.set_behaviour(status=503)
    h = call(c, model="gpt-4o")
    assert h["x-polyroute-model"] == "claude-sonnet" and h["x-polyroute-fallback-reason"] == "upstream_error"
    assert h["x-polyroute-attempts"] == "2"
    h = call(c, model="guarded")
    assert h["x-polyroute-model"] == "house"
    assert h["x-polyroute-fallback-reason"] == "weak_model:upstream_error"


def test_request_models_list_and_provider_filters(gateway: Callable[[str], RunningGateway],
                                                   openai_emulator: EmulatorServer) -> None:
    c = client(gateway(FALLBACKS))
    openai_emulator.set_behaviour(status=500)
    h = call(c, model="guarded", extra_body={"polyroute": {"models": ["claude-sonnet"]}})
    assert h["x-polyroute-model"] == "claude-sonnet"
    h = call(c, model="guarded", extra_headers={"x-polyroute-models": "claude-sonnet"})
    assert h["x-polyroute-model"] == "claude-sonnet"
    openai_emulator.set_behaviour(None)
    h = call(c, model="gpt-4o", extra_headers={"x-polyroute-providers-excluded": "vendor-a"})
    assert h["x-polyroute-deployment"] == "B"
    with pytest.raises(openai.BadRequestError, match=r"polyroute\.models"):
        call(c, model="gpt-4o", extra_body={"polyroute": {"models": ["no-such-model"]}})
    with pytest.raises(openai.BadRequestError, match="x-polyroute-timout"):
        call(c, model="gpt-4o", extra_headers={"x-polyroute-timout": "3"})


def test_failure_response_names_every_attempt(gateway: Callable[[str], RunningGateway],
                                              openai_emulator: EmulatorServer, anthropic_emulator: EmulatorServer) -> None:
    c = client(gateway(FALLBACKS))
    openai_emulator.set_behaviour(status=502)
    anthropic_emulator.set_behaviour(status=500)
    with pytest.raises(openai.InternalServerError) as info:
        call(c, model="gpt-4o")
    h = info.value.response.headers
    assert h["x-polyroute-attempts"] == "2" and h.get("x-should-retry") is None
    assert "vendor-a" in str(info.value) and "vendor-b" in str(info.value)
    # A client error goes straight back, marked as not worth retrying.
    openai_emulator.set_behaviour(status=422)
    with pytest.raises(openai.UnprocessableEntityError) as info2:
        call(c, model="gpt-4o")
    assert info2.value.response.headers["x-should-retry"] == "false"
    assert info2.value.response.headers["x-polyroute-attempts"] == "1"


class AllowOnly(Policy):
    """What governance does with a key restricted to some models."""

    def __init__(self, models: set[str]) -> None:
        self.models = frozenset(models)

    async def before(self, ctx: RequestContext, req: t.ChatRequest | t.EmbeddingRequest) -> None:
        ctx.allowed_models = self.models


def test_allowed_models_hook(gateway: Callable[[str], RunningGateway], openai_emulator: EmulatorServer) -> None:
    gw = gateway(FALLBACKS)
    gw.gateway.policies.append(AllowOnly({"gpt-4o"}))
    c = client(gw)
    with pytest.raises(openai.PermissionDeniedError):
        call(c, model="claude-sonnet")
    openai_emulator.set_behaviour(status=500)
    with pytest.raises(openai.InternalServerError):  # the fallback is not the key's to use
        call(c, model="gpt-4o")


def test_embeddings_fail_over(gateway: Callable[[str], RunningGateway], emulator_factory: Callable[..., EmulatorServer],
                              openai_emulator: EmulatorServer) -> None:
    other = emulator_factory("openai")
    gw = gateway(f"""
  vendor-c: {{type: openai, api_key: k, base_url: "{other.sdk_base_url}"}}
models:
  embed:
    kind: embedding
    deployments:
      - {{provider: vendor-a, model: text-embedding-3-small, name: E1}}
      - {{provider: vendor-c, model: text-embedding-3-small, name: E2}}
""")
    c = client(gw)
    openai_emulator.enqueue(Behaviour.error(500))
    r = c.embeddings.with_raw_response.create(model="embed", input=["a", "b"])
    assert r.headers["x-polyroute-deployment"] == "E2" and r.headers["x-polyroute-attempts"] == "2"
    assert len(r.parse().data) == 2
    r = c.embeddings.with_raw_response.create(model="embed", input="a")
    assert r.headers["x-polyroute-deployment"] == "E1"
