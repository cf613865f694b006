"""The in-house provider's request handling, with scripted stand-ins for the models.

The real models are exercised in tests/integration/test_inhouse_gateway.py; here the fakes let
each test decide exactly when a token is produced, so queueing, cancellation and slot release
are checked without any timing.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from polyroute.config.defaults import INHOUSE_CHAT, INHOUSE_EMBEDDING
from polyroute.config.schema import DeploymentConfig, ProviderConfig
from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.core.deployment import Deployment
from polyroute.providers.inhouse import provider as provider_mod
from polyroute.providers.inhouse.provider import InHouse


class FakeChat:
    """Emits llama.cpp-shaped chunks, one content token per "tok" command from the test."""

    def __init__(self) -> None:
        self.commands: queue.Queue[str] = queue.Queue()
        self.bodies: list[dict[str, Any]] = []
        self.cancelled = threading.Event()
        self.returned = threading.Event()

    def generate(self, body: dict[str, Any], emit: Callable[[dict[str, Any]], bool]) -> None:
        self.bodies.append(body)
        base = {"id": "chatcmpl-f", "created": 1, "object": "chat.completion.chunk"}
        try:
            cmd = self.commands.get(timeout=10)
            if cmd == "too-long":
                emit({"error": {"code": 400, "message": "request exceeds the available context size",
                                "type": "exceed_context_size_error"}})
                return
            emit({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]})
            n = 0
            while cmd == "tok":
                if emit({**base, "choices": [{"index": 0, "delta": {"content": f"t{n}"}}]}):
                    self.cancelled.set()
                    return
                n += 1
                cmd = self.commands.get(timeout=10)
            emit({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            emit({**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n}})
        finally:
            self.returned.set()

    def close(self) -> None:
        pass


class FakeEmbedder:
    dimensions = 384

    def embed(self, texts: list[str], should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, int]:
        v = np.zeros((len(texts), 384), dtype=np.float32)
        for i, text in enumerate(texts):
            v[i, len(text) % 384] = 1.0
        return v, sum(len(x.split()) + 2 for x in texts)

    def close(self) -> None:
        pass


@pytest.fixture
def fake_chat(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeChat]:
    fake = FakeChat()
    monkeypatch.setattr(provider_mod, "_load_chat", lambda config: fake)
    monkeypatch.setattr(provider_mod, "_load_embedder", FakeEmbedder)
    yield fake


@pytest.fixture
async def prov(fake_chat: FakeChat) -> AsyncIterator[InHouse]:
    p = InHouse("local", ProviderConfig(type="inhouse", max_concurrency=1, max_queue=1, context_size=512))
    await p.start()
    yield p
    await p.close()


def dep(p: InHouse, model: str = INHOUSE_CHAT) -> Deployment:
    return Deployment(model, 0, p, DeploymentConfig(provider=p.name, model=model), input_price=None,
                      output_price=None, cached_input_price=None, cache_write_price=None)


def request(**kw: Any) -> t.ChatRequest:
    return t.ChatRequest(model="m", messages=[t.Message(role="user", content=[t.TextPart(text="hi")])], **kw)


async def wait_for(cond: Callable[[], bool]) -> None:
    """Wait for state another thread changes (bounded: a hang fails instead of blocking)."""
    async with asyncio.timeout(10):
        while not cond():  # noqa: ASYNC110 - changed from worker threads, no event to await
            await asyncio.sleep(0.005)


async def test_events_stream_while_the_model_is_still_generating(prov: InHouse, fake_chat: FakeChat) -> None:
    it = aiter(prov.stream(request(), dep(prov)))
    fake_chat.commands.put("tok")
    assert type(await anext(it)) is t.StreamStart
    assert await anext(it) == t.TextDelta(text="t0")
    assert not fake_chat.returned.is_set()  # the model is still waiting to produce token 2
    fake_chat.commands.put("end")
    rest = [ev async for ev in it]
    assert rest == [t.Finish(reason="stop"), t.UsageEvent(usage=t.Usage(input_tokens=5, output_tokens=1))]
    await wait_for(lambda: prov.chat_slots.running == 0)


async def test_non_streaming_chat_assembles_the_answer(prov: InHouse, fake_chat: FakeChat) -> None:
    for cmd in ("tok", "tok", "end"):
        fake_chat.commands.put(cmd)
    resp = await prov.chat(request(max_tokens=9, seed=3), dep(prov))
    assert resp.choices[0].message.text() == "t0t1" and resp.model == INHOUSE_CHAT
    assert resp.usage == t.Usage(input_tokens=5, output_tokens=2)
    assert fake_chat.bodies[0]["max_tokens"] == 9 and fake_chat.bodies[0]["seed"] == 3


async def test_beyond_concurrency_and_queue_requests_are_refused_at_once(prov: InHouse, fake_chat: FakeChat) -> None:
    holder = aiter(prov.stream(request(), dep(prov)))
    fake_chat.commands.put("tok")
    await anext(holder)  # running: holds the only slot
    queued = asyncio.create_task(prov.chat(request(), dep(prov)))
    await wait_for(lambda: prov.chat_slots.waiting == 1)
    with pytest.raises(e.Unavailable) as ei:
        await anext(aiter(prov.stream(request(), dep(prov))))
    assert ei.value.status == 503 and "busy" in ei.value.message and ei.value.retry_after
    fake_chat.commands.put("end")  # the holder finishes...
    assert [type(ev) async for ev in holder][-1] is t.UsageEvent
    fake_chat.commands.put("end")  # ...and the queued request runs next
    resp = await queued
    assert resp.choices[0].finish_reason == "stop"


async def test_closing_a_stream_stops_generation_at_the_next_token_and_only_then_frees_the_slot(
    prov: InHouse, fake_chat: FakeChat
) -> None:
    it = prov.stream(request(), dep(prov))
    fake_chat.commands.put("tok")
    await anext(aiter(it))
    await it.aclose()  # type: ignore[attr-defined]
    assert prov.chat_slots.running == 1  # the worker thread is still inside the model
    fake_chat.commands.put("tok")  # the model produces its next token, is told to stop...
    await wait_for(lambda: prov.chat_slots.running == 0)  # ...and the slot is free
    assert fake_chat.cancelled.is_set()


async def test_a_cancelled_non_streaming_request_stops_generation(prov: InHouse, fake_chat: FakeChat) -> None:
    task = asyncio.create_task(prov.chat(request(), dep(prov)))
    fake_chat.commands.put("tok")
    await wait_for(lambda: prov.chat_slots.running == 1 and len(fake_chat.bodies) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    fake_chat.commands.put("tok")
    await wait_for(lambda: prov.chat_slots.running == 0)
    assert fake_chat.cancelled.is_set()


async def test_model_errors_raise_before_the_first_event_so_the_gateway_can_fail_over(
    prov: InHouse, fake_chat: FakeChat
) -> None:
    fake_chat.commands.put("too-long")
    with pytest.raises(e.InvalidRequest, match="context size"):
        await anext(aiter(prov.stream(request(), dep(prov))))
    await wait_for(lambda: prov.chat_slots.running == 0)


async def test_embeddings_keep_input_order_and_count_tokens(prov: InHouse) -> None:
    req = t.EmbeddingRequest(model="e", inputs=["a", "bb bb", "c"])
    resp = await prov.embed(req, dep(prov, INHOUSE_EMBEDDING))
    assert [v.index(1.0) for v in resp.vectors] == [1, 5, 1]
    assert resp.usage.input_tokens == 3 + 4 + 3 and resp.model == INHOUSE_EMBEDDING


async def test_embeddings_cannot_be_shortened(prov: InHouse) -> None:
    req = t.EmbeddingRequest(model="e", inputs=["a"], dimensions=128)
    with pytest.raises(e.InvalidRequest, match="384 dimensions"):
        await prov.embed(req, dep(prov, INHOUSE_EMBEDDING))


async def test_a_model_of_the_wrong_kind_is_refused(prov: InHouse) -> None:
    with pytest.raises(e.InvalidRequest, match="embedding model"):
        await prov.chat(request(), dep(prov, INHOUSE_EMBEDDING))


def test_unknown_models_fail_at_start_up(fake_chat: FakeChat) -> None:
    p = InHouse("local", ProviderConfig(type="inhouse"))
    with pytest.raises(ValueError, match=r"no model 'llama-70b'.*Fix:"):
        p.add_deployment(dep(p, "llama-70b"))


async def test_a_model_that_fails_to_load_fails_start_up_with_its_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(config: ProviderConfig) -> FakeChat:
        raise RuntimeError("Failed to init server, please check the input params.")

    monkeypatch.setattr(provider_mod, "_load_chat", broken)
    p = InHouse("local", ProviderConfig(type="inhouse"))
    p.add_deployment(dep(p))
    with pytest.raises(RuntimeError, match="'smollm2-135m-instruct' failed to load: Failed to init server"):
        await p.start()
    with pytest.raises(e.Unavailable, match="could not be loaded: Failed to init server"):
        await p.chat(request(), dep(p))  # and if served anyway, requests get a clear 503
    await p.close()


async def test_start_loads_only_the_models_deployments_name(fake_chat: FakeChat) -> None:
    p = InHouse("local", ProviderConfig(type="inhouse"))
    p.add_deployment(dep(p, INHOUSE_EMBEDDING))
    await p.start()
    assert p._embedder.load_seconds is not None and p._chat.load_seconds is None
    await p.close()


def test_unsupported_features_are_reported() -> None:
    p = InHouse("local", ProviderConfig(type="inhouse"))
    req = request(tools=[t.Tool(name="f")], logprobs=True, n=2)
    assert p.unsupported(req) == ["tools", "logprobs", "n"]
    img = t.ChatRequest(model="m", messages=[t.Message(role="user", content=[t.ImagePart(url="http://x")])])
    assert p.unsupported(img) == ["image content"]
    js = request(response_format=t.ResponseFormat(type="json_schema", schema={"type": "object"}))
    assert p.unsupported(js) == []
