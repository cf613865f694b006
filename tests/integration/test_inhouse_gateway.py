"""The in-house models behind a real gateway, driven by the official OpenAI SDK.

One gateway (one model load) serves the whole module: max_concurrency 1, max_queue 1. Tests that
must hold the only slot use a JSON schema that forbids the model from ending its answer before
about 1,500 tokens (many seconds on a CPU), so "still generating" is a fact, not a timing guess.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from polyroute.config.defaults import INHOUSE_CHAT, INHOUSE_EMBEDDING
from polyroute.providers.inhouse.provider import InHouse
from tests.helpers.gateway import RunningGateway, run_gateway

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = f"""
providers:
  local: {{type: inhouse, max_concurrency: 1, max_queue: 1}}
models:
  {INHOUSE_CHAT}:
    deployments: [{{provider: local, model: {INHOUSE_CHAT}}}]
  {INHOUSE_EMBEDDING}:
    kind: embedding
    deployments: [{{provider: local, model: {INHOUSE_EMBEDDING}}}]
"""

ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]
# A grammar-forced answer of >= 700 integers: it cannot end before ~1,500 tokens.
LONG_ANSWER: Any = {
    "type": "json_schema",
    "json_schema": {"name": "numbers", "schema": {"type": "array", "items": {"type": "integer"}, "minItems": 700}},
}


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with run_gateway(CONFIG) as g:
        yield g


def provider_of(gw: RunningGateway) -> InHouse:
    p = gw.gateway.catalog.providers["local"]
    assert isinstance(p, InHouse)
    return p


def sync_client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key="unused", max_retries=0, timeout=120)


def async_client(gw: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.openai_base, api_key="unused", max_retries=0, timeout=120)


async def until(cond: Callable[[], bool], within: float) -> float:
    """Seconds until `cond` held; fails if it did not within `within` seconds."""
    t0 = time.monotonic()
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110 - state owned by the gateway's thread, no event to await
            await asyncio.sleep(0.01)
    return time.monotonic() - t0


def test_chat_gives_a_generated_answer_with_real_usage(gw: RunningGateway) -> None:
    r = sync_client(gw).chat.completions.create(model=INHOUSE_CHAT, messages=ASK, max_tokens=12, temperature=0)
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert r.model == INHOUSE_CHAT
    assert r.usage is not None
    # the chat template (with SmolLM2's default system prompt) is counted by the model's tokenizer
    assert r.usage.prompt_tokens > 20
    assert 1 <= r.usage.completion_tokens <= 12
    if choice.finish_reason == "length":
        assert r.usage.completion_tokens == 12


def test_a_seed_makes_sampling_repeatable(gw: RunningGateway) -> None:
    c = sync_client(gw)
    answers = {
        c.chat.completions.create(model=INHOUSE_CHAT, messages=ASK, max_tokens=8, temperature=1.0, seed=1234)
        .choices[0].message.content
        for _ in range(2)
    }
    assert len(answers) == 1


def test_streaming_yields_chunks_a_finish_reason_and_usage(gw: RunningGateway) -> None:
    stream = sync_client(gw).chat.completions.create(
        model=INHOUSE_CHAT, messages=ASK, max_tokens=12, stream=True, stream_options={"include_usage": True}
    )
    texts: list[str] = []
    finishes: list[str] = []
    usage = None
    for chunk in stream:
        for ch in chunk.choices:
            if ch.delta.content:
                texts.append(ch.delta.content)
            if ch.finish_reason:
                finishes.append(ch.finish_reason)
        if chunk.usage is not None:
            usage = chunk.usage
    assert len(texts) >= 1 and "".join(texts).strip()
    assert len(finishes) == 1 and finishes[0] in ("stop", "length")
    assert usage is not None and 1 <= usage.completion_tokens <= 12 and usage.prompt_tokens > 20


def test_embeddings_are_384_dim_unit_vectors_that_rank_paraphrases_first(gw: RunningGateway) -> None:
    texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
        "How do I reset my password?",
        "I forgot my password, how can I change it?",
        "The stock market fell sharply today.",
    ]
    c = sync_client(gw)
    r = c.embeddings.create(model=INHOUSE_EMBEDDING, input=texts)  # the SDK asks for base64
    v = np.array([d.embedding for d in sorted(r.data, key=lambda d: d.index)])
    assert v.shape == (6, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    sim = v @ v.T
    assert sim[0, 1] > 0.6 and sim[3, 4] > 0.6  # paraphrases
    assert max(sim[0, 2], sim[0, 5], sim[3, 5], sim[1, 3]) < 0.3  # unrelated
    assert r.usage.prompt_tokens >= sum(len(x.split()) for x in texts)
    floats = c.embeddings.create(model=INHOUSE_EMBEDDING, input=texts[:1], encoding_format="float")
    np.testing.assert_allclose(floats.data[0].embedding, v[0], atol=1e-6)


async def test_requests_beyond_the_queue_get_a_clear_503_and_none_hang(gw: RunningGateway) -> None:
    prov = provider_of(gw)
    client = async_client(gw)
    holder = await client.chat.completions.create(
        model=INHOUSE_CHAT, messages=ASK, max_tokens=2000, stream=True, response_format=LONG_ANSWER
    )
    chunks = aiter(holder)
    await anext(chunks)  # generating: the only slot is taken
    others = [
        asyncio.create_task(client.chat.completions.create(model=INHOUSE_CHAT, messages=ASK, max_tokens=4))
        for _ in range(4)
    ]
    # one waits in the queue, the other three are refused at once
    await until(lambda: sum(t.done() for t in others) == 3, within=20)
    refused = [t.exception() for t in others if t.done()]
    assert prov.chat_slots.waiting == 1
    for err in refused:
        assert isinstance(err, openai.APIStatusError) and err.status_code == 503
        assert "is busy" in err.message and "max_queue 1" in err.message
        assert err.response.headers.get("retry-after") == "1"
    await holder.close()  # the holder's client leaves: its generation stops, the queued one runs
    async with asyncio.timeout(60):
        served = await next(t for t in others if not t.done())
    assert served.choices[0].message.content


async def test_a_closed_stream_frees_its_slot_promptly(gw: RunningGateway) -> None:
    prov = provider_of(gw)
    client = async_client(gw)
    holder = await client.chat.completions.create(
        model=INHOUSE_CHAT, messages=ASK, max_tokens=2000, stream=True, response_format=LONG_ANSWER
    )
    chunks = aiter(holder)
    for _ in range(3):
        await anext(chunks)
    assert prov.chat_slots.running == 1
    await holder.close()
    # Finishing the forced answer would take >10 s; a stopped generation frees the slot at once.
    freed_after = await until(lambda: prov.chat_slots.running == 0, within=5)
    assert freed_after < 5
    r = await client.chat.completions.create(model=INHOUSE_CHAT, messages=ASK, max_tokens=4)
    assert r.choices[0].message.content
