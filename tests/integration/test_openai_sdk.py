"""The official `openai` SDK against polyroute, over every OpenAI-family adapter via the emulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import openai
import pytest

from polyroute.emulators.behaviour import Behaviour, ToolCall
from polyroute.emulators.testing import EmulatorServer
from tests.helpers.gateway import RunningGateway, run_gateway

FAMILY = ["openai", "mistral", "deepseek", "xai", "vllm", "ollama", "llamacpp", "openai_compatible"]


def config(emu: EmulatorServer) -> str:
    providers = "\n".join(
        f"  p-{kind}: {{type: {kind}, base_url: '{emu.sdk_base_url}', api_key: sk-upstream-{kind}}}" for kind in FAMILY
    )
    models = "\n".join(
        f"  m-{kind}:\n    deployments: [{{provider: p-{kind}, model: gpt-4o-mini, input_price: 1, output_price: 2}}]"
        for kind in FAMILY
    )
    return f"""
providers:
{providers}
  p-azure: {{type: azure, base_url: '{emu.base_url}', api_key: az-key, api_version: '2024-10-21'}}
models:
{models}
  m-azure:
    deployments: [{{provider: p-azure, model: my-deployment}}]
  embed:
    kind: embedding
    deployments: [{{provider: p-openai, model: text-embedding-3-small}}]
"""


@pytest.fixture(scope="module")
def gw(polyroute_openai_emulator_session: EmulatorServer) -> Iterator[RunningGateway]:
    with run_gateway(config(polyroute_openai_emulator_session)) as g:
        yield g


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key="client-key", max_retries=0)


@pytest.mark.parametrize("kind", [*FAMILY, "azure"])
def test_chat_every_family_adapter(client: openai.OpenAI, openai_emulator: EmulatorServer, kind: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=f"m-{kind}", messages=[{"role": "user", "content": "hello there"}], max_tokens=20
    )
    reply = raw.parse()
    assert reply.model == f"m-{kind}"
    assert "hello there" in (reply.choices[0].message.content or "")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert raw.headers["x-polyroute-provider"] == f"p-{kind}"
    sent = openai_emulator.requests[-1]
    if kind == "azure":
        assert sent.path == "/openai/deployments/my-deployment/chat/completions"
        assert sent.headers.get("api-key") == "az-key"
    else:
        assert sent.headers.get("authorization") == f"Bearer sk-upstream-{kind}"
        assert sent.body["model"] == "gpt-4o-mini"
    # OpenAI proper takes max_completion_tokens; the rest of the family max_tokens.
    field = "max_completion_tokens" if kind in ("openai", "azure") else "max_tokens"
    assert sent.body[field] == 20


def test_streaming_with_usage(client: openai.OpenAI, openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(text="one two three four", chunks=4)
    chunks = list(
        client.chat.completions.create(
            model="m-openai", messages=[{"role": "user", "content": "x"}], stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_streaming_hides_usage_the_client_did_not_ask_for(client: openai.OpenAI, openai_emulator: EmulatorServer) -> None:
    chunks = list(client.chat.completions.create(model="m-openai", messages=[{"role": "user", "content": "x"}], stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    # ...while the gateway asked the upstream for it, to price the request exactly.
    assert openai_emulator.requests[-1].body["stream_options"] == {"include_usage": True}


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"tz": {"type": "string"}}}}},
]


def test_parallel_tool_calls_streamed_and_assembled_by_sdk_helper(client: openai.OpenAI, openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(tool_calls=(ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_time", {"tz": "CET"})))
    with client.chat.completions.stream(
        model="m-openai", messages=[{"role": "user", "content": "weather and time?"}], tools=TOOLS  # type: ignore[arg-type]
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    assert final.choices[0].finish_reason == "tool_calls"
    # The tool result goes back and the upstream receives a well-formed conversation.
    client.chat.completions.create(model="m-openai", tools=TOOLS, messages=[  # type: ignore[arg-type]
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "noon"},
    ])
    sent = openai_emulator.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert sent[2] == {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"}


def test_json_schema_output_parsed_by_sdk(client: openai.OpenAI, openai_emulator: EmulatorServer) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    openai_emulator.set_behaviour(json_output={"name": "Ada", "age": 36})
    reply = client.chat.completions.create(
        model="m-openai", messages=[{"role": "user", "content": "who?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}},
    )
    assert json.loads(reply.choices[0].message.content or "") == {"name": "Ada", "age": 36}
    sent = openai_emulator.requests[-1].body["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}


def test_embeddings_default_base64_and_float(client: openai.OpenAI, openai_emulator: EmulatorServer) -> None:
    r = client.embeddings.create(model="embed", input=["a", "b c"])  # SDK asks base64 by default
    assert len(r.data) == 2 and len(r.data[0].embedding) > 8 and isinstance(r.data[0].embedding[0], float)
    f = client.embeddings.create(model="embed", input="a", encoding_format="float")
    assert f.data[0].embedding == pytest.approx(r.data[0].embedding, rel=1e-6)
    assert r.usage.prompt_tokens > 0


def test_models_list(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"m-openai", "m-azure", "embed"} <= ids


def test_async_client_concurrent(gw: RunningGateway, openai_emulator: EmulatorServer) -> None:
    async def go() -> list[str]:
        client = openai.AsyncOpenAI(base_url=gw.openai_base, api_key="k", max_retries=0)
        async with client:
            replies = await asyncio.gather(*[
                client.chat.completions.create(model="m-openai", messages=[{"role": "user", "content": f"n{i}"}])
                for i in range(20)
            ])
            stream = await client.chat.completions.create(
                model="m-openai", messages=[{"role": "user", "content": "streamed"}], stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        return [r.choices[0].message.content or "" for r in replies] + [text]

    out = asyncio.run(go())
    assert all(f"n{i}" in out[i] for i in range(20)) and "streamed" in out[20]


def test_upstream_errors_mapped(client: openai.OpenAI, openai_emulator: EmulatorServer) -> None:
    openai_emulator.enqueue(Behaviour(status=400, error_message="bad thing"))
    with pytest.raises(openai.BadRequestError, match="bad thing"):
        client.chat.completions.create(model="m-openai", messages=[{"role": "user", "content": "x"}])
    openai_emulator.enqueue(Behaviour(status=500))
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="m-openai", messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 502 and "p-openai" in str(ei.value.message)


def test_mid_stream_disconnect_ends_with_error_event(client: openai.OpenAI, openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(text="a b c d e f", chunks=6, disconnect_after=3)
    got: list[str] = []
    with pytest.raises(openai.APIError, match="p-openai"):
        for c in client.chat.completions.create(model="m-openai", messages=[{"role": "user", "content": "x"}], stream=True):
            if c.choices:
                got.append(c.choices[0].delta.content or "")
    assert got and "".join(got) != "a b c d e f"
