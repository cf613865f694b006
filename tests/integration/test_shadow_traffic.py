"""Shadow traffic: mirrored after the client has its answer, stored, and judged into routing records."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from polyroute.cli import main
from polyroute.core import types as t
from polyroute.core.context import RequestContext
from polyroute.core.deployment import Deployment
from polyroute.core.policy import Policy
from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from polyroute.evaluation.shadow.policy import ShadowPolicy
from polyroute.learned_router.records import load_records
from tests.helpers.gateway import RunningGateway, run_gateway

MESSAGES: list[Any] = [{"role": "user", "content": "What is the boiling point of water in C?"}]


class Upstreams:
    def __init__(self, factory: Callable[..., EmulatorServer]) -> None:
        self.primary = factory("openai", behaviour=Behaviour(text="primary answer: 100"))
        self.candidate = factory("openai", behaviour=Behaviour(text="candidate answer: 100"))
        self.judge = factory("openai", behaviour=Behaviour(text="Rating: [[5]]"))

    def config(self, store: Path, shadow: str = "") -> str:
        return f"""
providers:
  up-primary: {{type: openai, api_key: k, base_url: "{self.primary.sdk_base_url}"}}
  up-candidate: {{type: openai, api_key: k, base_url: "{self.candidate.sdk_base_url}"}}
  up-judge: {{type: openai, api_key: k, base_url: "{self.judge.sdk_base_url}"}}
models:
  big:
    deployments: [{{provider: up-primary, model: gpt-4o, input_price: 2.5, output_price: 10}}]
    shadow: {{models: [small], sample_rate: 1.0, store: "{store}"{shadow}}}
  small:
    deployments: [{{provider: up-candidate, model: gpt-4o-mini, input_price: 0.15, output_price: 0.6}}]
  quiet:
    deployments: [{{provider: up-primary, model: gpt-4o}}]
    shadow: {{models: [small], sample_rate: 0.0, store: "{store}"}}
  judge:
    deployments: [{{provider: up-judge, model: gpt-4o, input_price: 5, output_price: 15}}]
"""


@pytest.fixture
def up(emulator_factory: Callable[..., EmulatorServer]) -> Upstreams:
    return Upstreams(emulator_factory)


class Recorder(Policy):
    """Every request any policy would see (governance included), as (api, model, stage)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    async def before(self, ctx: RequestContext, req: t.ChatRequest | t.EmbeddingRequest) -> None:
        self.seen.append((ctx.api, req.model, "before"))

    async def after(self, ctx: RequestContext) -> None:
        self.seen.append((ctx.api, ctx.model_asked, "after"))


class Observed:
    """Hooks on a running gateway: a gate in front of the candidate provider, and store events."""

    def __init__(self, gw: RunningGateway, gated: bool) -> None:
        self.events: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.stored = threading.Semaphore(0)
        self.policy = next(p for p in gw.gateway.policies if isinstance(p, ShadowPolicy))
        provider = gw.gateway.catalog.providers["up-candidate"]
        real_chat = provider.chat

        async def chat(req: t.ChatRequest, dep: Deployment) -> t.ChatResponse:
            self.entered.set()
            if gated:
                await asyncio.to_thread(self.release.wait, 30)
            self.events.append("candidate upstream asked")
            return await real_chat(req, dep)

        provider.chat = chat  # type: ignore[method-assign]
        store = self.policy.routes["big"].store
        real_write = store.write

        async def write(pair: dict[str, Any]) -> None:
            await real_write(pair)
            self.events.append("pair stored")
            self.stored.release()

        store.write = write  # type: ignore[method-assign]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "shadow" / "pairs.jsonl"


def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key="caller-key", max_retries=0, timeout=10)


def read_pairs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_client_is_answered_before_the_candidate_is_even_asked(up: Upstreams, store: Path) -> None:
    recorder = Recorder()
    with run_gateway(up.config(store), extra_policies=[recorder]) as gw:
        seen = Observed(gw, gated=True)
        # If the mirror were awaited on the request path, this call would wait for the gate,
        # which opens only after it returns: the client would time out.
        reply = client(gw).chat.completions.create(model="big", messages=MESSAGES, max_tokens=50)
        seen.events.append("client answered")
        assert reply.choices[0].message.content == "primary answer: 100"
        assert seen.entered.wait(10), "the mirror was never scheduled"
        assert up.candidate.requests == []
        seen.release.set()
        assert seen.stored.acquire(timeout=10)
        assert seen.events == ["client answered", "candidate upstream asked", "pair stored"]
        stats = seen.policy.stats["big"]
        # Mirrored calls pass no policy: only the caller's request was seen (not billed, not limited).
        assert recorder.seen == [("openai", "big", "before"), ("openai", "big", "after")]

    assert stats == {"sampled": 1, "skipped": 0, "mirrored": 1, "dropped": 0, "stored": 1, "failed": 0}
    (pair,) = read_pairs(store)
    assert pair["route"] == "big" and pair["prompt"] == MESSAGES[0]["content"]
    assert pair["messages"] == [{"role": "user", "content": [{"type": "text", "text": MESSAGES[0]["content"]}]}]
    primary, (candidate,) = pair["primary"], pair["candidates"]
    assert primary["model"] == "big" and primary["answer"] == "primary answer: 100" and not primary["stream"]
    assert candidate["model"] == "small" and candidate["answer"] == "candidate answer: 100"
    assert candidate["error"] is None and candidate["status"] == 200
    assert candidate["cost_usd"] == pytest.approx(
        (candidate["input_tokens"] * 0.15 + candidate["output_tokens"] * 0.6) / 1e6)
    assert primary["cost_usd"] == pytest.approx((primary["input_tokens"] * 2.5 + primary["output_tokens"] * 10) / 1e6)
    assert pair["shadow_cost_usd"] == candidate["cost_usd"] > 0
    # The candidate got the caller's request, model swapped, without streaming.
    body = up.candidate.requests[0].body
    assert body["model"] == "gpt-4o-mini" and not body.get("stream")
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 50
    assert body["messages"] == MESSAGES


def test_streamed_answer_is_mirrored_after_the_stream_ends(up: Upstreams, store: Path) -> None:
    up.candidate.set_behaviour(text="candidate answer: 100", first_token_delay=1.0)
    with run_gateway(up.config(store)) as gw:
        seen = Observed(gw, gated=False)
        stream = client(gw).chat.completions.create(model="big", messages=MESSAGES, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        seen.events.append("client answered")
        assert text == "primary answer: 100"
        assert seen.stored.acquire(timeout=10)
    assert seen.events.index("client answered") < seen.events.index("pair stored")
    (pair,) = read_pairs(store)
    assert pair["primary"]["answer"] == "primary answer: 100"
    assert pair["primary"]["stream"] is True and pair["primary"]["ttft_ms"] is not None
    assert pair["candidates"][0]["latency_ms"] >= 1000  # the slow candidate's delay, off the client's path


def test_full_queue_drops_and_counts(up: Upstreams, store: Path) -> None:
    with run_gateway(up.config(store, ", max_queue: 1")) as gw:
        seen = Observed(gw, gated=True)
        c = client(gw)
        c.chat.completions.create(model="big", messages=MESSAGES)
        assert seen.entered.wait(10)
        c.chat.completions.create(model="big", messages=MESSAGES)  # the queue (1) is full: dropped
        c.chat.completions.create(model="quiet", messages=MESSAGES)  # sample_rate 0: never mirrored
        assert seen.policy.stats["big"] == {"sampled": 2, "skipped": 0, "mirrored": 1, "dropped": 1, "stored": 0, "failed": 0}
        seen.release.set()
        assert seen.stored.acquire(timeout=10)
        assert seen.policy.stats["quiet"]["sampled"] == 0
    assert len(read_pairs(store)) == 1
    assert len(up.candidate.requests) == 1


@pytest.fixture
def two_pairs(up: Upstreams, store: Path, tmp_path: Path) -> Iterator[Path]:
    cfg = tmp_path / "polyroute.yaml"
    cfg.write_text(up.config(store))
    up.candidate.enqueue(Behaviour(text="candidate answer: 100"), Behaviour(text="I don't know"))
    with run_gateway(up.config(store)) as gw:
        seen = Observed(gw, gated=False)
        for _ in range(2):
            client(gw).chat.completions.create(model="big", messages=MESSAGES)
            assert seen.stored.acquire(timeout=10)
    yield cfg


def test_compare_shadow_with_a_judge_writes_routing_records(up: Upstreams, store: Path, tmp_path: Path,
                                                            two_pairs: Path) -> None:
    # Pairs in order; per pair the primary is judged first, then the candidate.
    up.judge.enqueue(*(Behaviour(text=f"Rating: [[{r}]]") for r in (10, 10, 10, 1)))
    out = tmp_path / "out"
    assert main(["compare", "--shadow", str(store), "--judge", "judge", "--config", str(two_pairs),
                 "--concurrency", "1", "--out", str(out), "--quiet"]) == 0
    records = load_records(out / "routing.jsonl")
    assert [r.scores for r in records] == [{"big": 1.0, "small": 1.0}, {"big": 1.0, "small": 0.0}]
    pairs = read_pairs(store)
    assert records[1].costs == {"big": pairs[1]["primary"]["cost_usd"], "small": pairs[1]["candidates"][0]["cost_usd"]}
    assert {r.task for r in records} == {"shadow/big"} and records[0].prompt == MESSAGES[0]["content"]
    assert len(up.judge.requests) == 4
    assert "candidate answer: 100" in up.judge.requests[1].body["messages"][1]["content"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["small"]["mean_quality"] == 0.5 and summary["pairs"] == 2
    assert '<svg id="plot-cost-quality"' in (out / "report.html").read_text()


def test_compare_shadow_without_a_judge_scores_agreement(store: Path, tmp_path: Path, two_pairs: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["compare", "--shadow", str(store), "--match", "numeric", "--out", str(out), "--quiet"]) == 0
    assert "agreement with the primary" in capsys.readouterr().err
    records = load_records(out / "routing.jsonl")
    # "candidate answer: 100" agrees with "primary answer: 100" on the number; "I don't know" does not.
    assert [r.scores for r in records] == [{"big": 1.0, "small": 1.0}, {"big": 1.0, "small": 0.0}]


def test_answers_without_text_are_not_mirrored(up: Upstreams, store: Path) -> None:
    up.primary.enqueue(Behaviour.tool_call("get_weather", {"city": "Paris"}))
    tools: list[Any] = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with run_gateway(up.config(store)) as gw:
        policy = next(p for p in gw.gateway.policies if isinstance(p, ShadowPolicy))
        reply = client(gw).chat.completions.create(model="big", messages=MESSAGES, tools=tools)
        assert reply.choices[0].message.tool_calls
        assert policy.stats["big"]["skipped"] == 1 and policy.pending() == 0
    assert up.candidate.requests == [] and not store.exists()
