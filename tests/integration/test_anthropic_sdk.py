"""The official `anthropic` SDK against polyroute's `/v1/messages`, with (a) an Anthropic upstream
and (b) an OpenAI upstream (cross-format), both emulated: text, streams, tools, thinking, usage,
stop reasons, errors and count_tokens."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from polyroute.emulators.behaviour import Behaviour, ToolCall
from polyroute.emulators.testing import EmulatorServer
from tests.helpers.gateway import RunningGateway, run_gateway

WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def gw(
    polyroute_anthropic_emulator_session: EmulatorServer,
    polyroute_openai_emulator_session: EmulatorServer,
    polyroute_gemini_emulator_session: EmulatorServer,
) -> Iterator[RunningGateway]:
    anth, oai = polyroute_anthropic_emulator_session, polyroute_openai_emulator_session
    gem = polyroute_gemini_emulator_session
    # No retries and no breaker: each test sees exactly what its upstream did. Error tests use
    # their own deployments, so a 429's cool-down cannot leak into other tests.
    cfg = f"""
providers:
  anth: {{type: anthropic, base_url: '{anth.base_url}', api_key: sk-ant-upstream, breaker: {{enabled: false}}}}
  oai: {{type: openai, base_url: '{oai.sdk_base_url}', api_key: sk-oai-upstream, breaker: {{enabled: false}}}}
  gem: {{type: gemini, base_url: '{gem.base_url}', api_key: gm-upstream, breaker: {{enabled: false}}}}
models:
  claude:
    retry: {{retries: 0}}
    deployments: [{{provider: anth, model: claude-sonnet-4-5}}]
  gpt:
    retry: {{retries: 0}}
    deployments: [{{provider: oai, model: gpt-4o-mini}}]
  gemini:
    retry: {{retries: 0}}
    deployments: [{{provider: gem, model: gemini-2.5-flash}}]
  claude-errors:
    retry: {{retries: 0}}
    deployments: [{{provider: anth, model: claude-haiku-4-5}}]
  gpt-errors:
    retry: {{retries: 0}}
    deployments: [{{provider: oai, model: gpt-4o}}]
"""
    with run_gateway(cfg) as g:
        yield g


@pytest.fixture
def client(gw: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key="client-key", max_retries=0)


@pytest.fixture(params=["claude", "gpt"])
def upstream(
    request: pytest.FixtureRequest, anthropic_emulator: EmulatorServer, openai_emulator: EmulatorServer
) -> tuple[str, EmulatorServer]:
    """(gateway model, the emulator behind it), for tests that run against both upstreams."""
    return (request.param, anthropic_emulator if request.param == "claude" else openai_emulator)


def test_create_text(client: anthropic.Anthropic, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    msg = client.messages.create(
        model=model, max_tokens=64, system="be brief", messages=[{"role": "user", "content": "hello there"}],
        stop_sequences=["STOP"], metadata={"user_id": "user-42"},
        # this SDK version dropped sampling parameters from its signature; the API still takes them
        extra_body={"temperature": 0.5, "top_k": 7},
    )
    assert msg.model == model and msg.role == "assistant" and msg.type == "message"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "echo: hello there"  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    sent = emu.last_request
    if model == "claude":
        assert sent.path == "/v1/messages"
        assert sent.headers["x-api-key"] == "sk-ant-upstream" and sent.headers["anthropic-version"] == "2023-06-01"
        assert sent.body["system"] == [{"type": "text", "text": "be brief"}]
        assert sent.body["max_tokens"] == 64 and sent.body["stop_sequences"] == ["STOP"]
        assert sent.body["metadata"] == {"user_id": "user-42"}
        assert sent.body["temperature"] == 0.5 and sent.body["top_k"] == 7
    else:
        assert sent.body["temperature"] == 0.5 and "top_k" not in sent.body
        assert sent.body["messages"][0] == {"role": "system", "content": "be brief"}
        assert sent.body["max_completion_tokens"] == 64 and sent.body["stop"] == ["STOP"]
        assert sent.body["user"] == "user-42"


def test_stream_final_message_matches_create(client: anthropic.Anthropic, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    emu.set_behaviour(text="one two three four five", chunks=5)
    kwargs: dict[str, Any] = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "count"}]}
    created = client.messages.create(**kwargs)
    texts: list[str] = []
    with client.messages.stream(**kwargs) as stream:
        for text in stream.text_stream:
            texts.append(text)
        final = stream.get_final_message()
    assert len(texts) >= 2  # streamed in pieces, not in one block
    assert "".join(texts) == "one two three four five"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == created.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    # message_delta carries the exact usage, so the streamed total equals the non-streamed one
    assert final.usage.input_tokens == created.usage.input_tokens
    assert final.usage.output_tokens == created.usage.output_tokens > 0


def test_stream_raw_event_sequence(client: anthropic.Anthropic, anthropic_emulator: EmulatorServer) -> None:
    anthropic_emulator.set_behaviour(text="hi there", thinking="ponder", tool_calls=[ToolCall("get_weather", {"city": "Oslo"})])
    events: list[Any] = list(
        client.messages.create(
            model="claude", max_tokens=2048, stream=True, tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "weather?"}],
        )
    )
    kinds = [ev.type for ev in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    starts = [ev for ev in events if ev.type == "content_block_start"]
    assert [ev.content_block.type for ev in starts] == ["thinking", "text", "tool_use"]
    assert [ev.index for ev in starts] == [0, 1, 2]
    assert kinds.count("content_block_stop") == 3
    deltas = {ev.delta.type for ev in events if ev.type == "content_block_delta"}
    assert deltas == {"thinking_delta", "signature_delta", "text_delta", "input_json_delta"}
    assert events[0].message.usage.input_tokens > 0


def test_tools_round_trip(client: anthropic.Anthropic, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    emu.enqueue(Behaviour.tool_call("get_weather", {"city": "Paris"}))
    first = client.messages.create(
        model=model, max_tokens=256, tools=[WEATHER_TOOL],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "weather in Paris?"}],
    )
    assert first.stop_reason == "tool_use"
    calls = [b for b in first.content if b.type == "tool_use"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].input == {"city": "Paris"}
    sent = emu.last_request.body
    if model == "claude":
        assert sent["tools"][0]["input_schema"] == WEATHER_TOOL["input_schema"]
        assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    else:
        assert sent["tools"][0]["function"]["parameters"] == WEATHER_TOOL["input_schema"]
        assert sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is False

    second = client.messages.create(
        model=model, max_tokens=256, tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": calls[0].id, "content": "sunny, 21C"},
                {"type": "text", "text": "and tomorrow?"},
            ]},
        ],
    )
    assert second.stop_reason == "end_turn"
    sent = emu.last_request.body
    if model == "claude":
        assert sent["messages"][1]["content"][-1] == {"type": "tool_use", "id": calls[0].id, "name": "get_weather", "input": {"city": "Paris"}}
        assert sent["messages"][2]["content"] == [
            {"type": "tool_result", "tool_use_id": calls[0].id, "content": [{"type": "text", "text": "sunny, 21C"}]},
            {"type": "text", "text": "and tomorrow?"},
        ]
    else:
        assert sent["messages"][1]["tool_calls"][0]["id"] == calls[0].id
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21C"}
        assert sent["messages"][3] == {"role": "user", "content": "and tomorrow?"}


def test_tool_call_streamed_and_forced(client: anthropic.Anthropic, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    emu.set_behaviour(forced_tool_arguments={"city": "Lima"})
    with client.messages.stream(
        model=model, max_tokens=256, tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"}, messages=[{"role": "user", "content": "go"}],
    ) as stream:
        final = stream.get_final_message()
    calls = [b for b in final.content if b.type == "tool_use"]
    assert [(c.name, c.input) for c in calls] == [("get_weather", {"city": "Lima"})]
    assert final.stop_reason == "tool_use"
    sent = emu.last_request.body
    expected = {"type": "tool", "name": "get_weather"} if model == "claude" else {"type": "function", "function": {"name": "get_weather"}}
    assert sent["tool_choice"] == expected


def test_tool_result_error_flag(client: anthropic.Anthropic, anthropic_emulator: EmulatorServer) -> None:
    client.messages.create(
        model="claude", max_tokens=50, tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "X"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "no such city", "is_error": True}]},
        ],
    )
    block = anthropic_emulator.last_request.body["messages"][2]["content"][0]
    assert block == {"type": "tool_result", "tool_use_id": "toolu_9", "content": [{"type": "text", "text": "no such city"}], "is_error": True}


def test_thinking_round_trip_keeps_signature(client: anthropic.Anthropic, anthropic_emulator: EmulatorServer) -> None:
    anthropic_emulator.set_behaviour(text="42")
    first = client.messages.create(
        model="claude", max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "meaning of life?"}],
    )
    assert anthropic_emulator.last_request.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert [b.type for b in first.content] == ["thinking", "text"]
    thinking = first.content[0]
    assert thinking.thinking and thinking.signature  # type: ignore[union-attr]
    assert first.usage.output_tokens > 0

    with client.messages.stream(
        model="claude", max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "meaning of life?"}],
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[0].type == "thinking" and streamed.content[0].signature == thinking.signature  # type: ignore[union-attr]

    client.messages.create(
        model="claude", max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[
            {"role": "user", "content": "meaning of life?"},
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": "why?"},
        ],
    )
    back = anthropic_emulator.last_request.body["messages"][1]["content"][0]
    assert back == {"type": "thinking", "thinking": thinking.thinking, "signature": thinking.signature}  # type: ignore[union-attr]


def test_thinking_against_openai_upstream(client: anthropic.Anthropic, openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(thinking="hidden reasoning")
    msg = client.messages.create(
        model="gpt", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "think"}],
    )
    upstream_usage = openai_emulator.last_request  # the OpenAI answer counts reasoning inside completion tokens
    assert upstream_usage.body["max_completion_tokens"] == 4096
    assert msg.usage.output_tokens > len("echo: think") // 4  # reasoning tokens are inside output_tokens


def test_max_tokens_stop_reason(client: anthropic.Anthropic, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    emu.set_behaviour(text="a b c d e f g h i j k l m n o p", max_tokens_reached=True)
    msg = client.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert msg.stop_reason == "max_tokens"
    with client.messages.stream(model=model, max_tokens=5, messages=[{"role": "user", "content": "x"}]) as s:
        assert s.get_final_message().stop_reason == "max_tokens"


def test_prompt_cache_usage(client: anthropic.Anthropic, anthropic_emulator: EmulatorServer) -> None:
    system = [{"type": "text", "text": "long shared instructions " * 50, "cache_control": {"type": "ephemeral"}}]
    kwargs: dict[str, Any] = {"model": "claude", "max_tokens": 32, "system": system, "messages": [{"role": "user", "content": "q"}]}
    first = client.messages.create(**kwargs)
    assert anthropic_emulator.last_request.body["system"] == system  # cache_control kept
    assert first.usage.cache_creation_input_tokens and first.usage.cache_creation_input_tokens > 0
    assert first.usage.cache_read_input_tokens == 0
    second = client.messages.create(**kwargs)
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    # same prompt, same total; only its split between uncached, written and read changes
    total = lambda u: u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)  # noqa: E731
    assert total(first.usage) == total(second.usage)
    with client.messages.stream(**kwargs) as s:
        streamed = s.get_final_message().usage
    assert streamed.cache_read_input_tokens == second.usage.cache_read_input_tokens
    assert streamed.input_tokens == second.usage.input_tokens


def test_cached_tokens_from_openai_upstream(client: anthropic.Anthropic, openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(cached_tokens=4)
    msg = client.messages.create(model="gpt", max_tokens=32, messages=[{"role": "user", "content": "a b c d e f g h i j"}])
    # OpenAI's prompt_tokens include the cached ones; Anthropic's input_tokens exclude them.
    assert msg.usage.cache_read_input_tokens == 4
    with client.messages.stream(model="gpt", max_tokens=32, messages=[{"role": "user", "content": "a b c d e f g h i j"}]) as s:
        streamed = s.get_final_message().usage
    assert streamed.cache_read_input_tokens == 4 and streamed.input_tokens == msg.usage.input_tokens


def test_upstream_errors_in_anthropic_shape(client: anthropic.Anthropic, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    model += "-errors"
    emu.enqueue(Behaviour.error(400, "messages: bad thing"))
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "messages: bad thing" in bad.value.body["error"]["message"]  # type: ignore[index]

    emu.enqueue(Behaviour.error(529 if model.startswith("claude") else 503))
    with pytest.raises(anthropic.APIStatusError) as busy:
        client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert busy.value.status_code == 503
    assert busy.value.body["type"] == "error" and busy.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]

    emu.enqueue(Behaviour.rate_limited(retry_after=3))
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert limited.value.response.headers["retry-after"] == "3"
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_mid_stream_error_event(client: anthropic.Anthropic, anthropic_emulator: EmulatorServer) -> None:
    anthropic_emulator.enqueue(Behaviour(text="one two three four", chunks=4, status=529, error_after=5))
    got: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as exc:
        with client.messages.stream(model="claude", max_tokens=50, messages=[{"role": "user", "content": "x"}]) as s:
            for text in s.text_stream:
                got.append(text)
    # message_start, block start, ping, two deltas, then the error
    assert len(got) == 2 and "one two three four".startswith("".join(got))
    assert exc.value.body["type"] == "error" and exc.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_gateway_validation_errors(gw: RunningGateway, client: anthropic.Anthropic) -> None:
    data = json.dumps({"model": "claude", "messages": [{"role": "user", "content": "x"}]}).encode()
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(urllib.request.Request(f"{gw.base_url}/v1/messages", data=data, method="POST"), timeout=10)
    assert raw.value.code == 400
    assert json.loads(raw.value.read()) == {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}}
    with pytest.raises(anthropic.NotFoundError) as nf:
        client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="claude", max_tokens=5, messages=[{"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}],
        )


def test_count_tokens(client: anthropic.Anthropic, anthropic_emulator: EmulatorServer) -> None:
    short = client.messages.count_tokens(model="claude", messages=[{"role": "user", "content": "hi"}])
    long = client.messages.count_tokens(
        model="claude", system="you are a careful assistant", tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "tell me a long story about " * 20}],
    )
    assert 0 < short.input_tokens < long.input_tokens
    assert anthropic_emulator.requests == []  # answered locally: no upstream call
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.count_tokens(model="claude", messages=[])


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_upstream_tool_call_signature_round_trip(
    client: anthropic.Anthropic, gemini_emulator: EmulatorServer, stream: bool
) -> None:
    gemini_emulator.set_behaviour(thinking="plan", tool_calls=[ToolCall("get_weather", {"city": "Kyiv"})])
    kwargs: dict[str, Any] = {
        "model": "gemini", "max_tokens": 4096, "tools": [WEATHER_TOOL],
        "thinking": {"type": "enabled", "budget_tokens": 2048}, "messages": [{"role": "user", "content": "weather?"}],
    }
    if stream:
        with client.messages.stream(**kwargs) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(**kwargs)
    assert gemini_emulator.last_request.body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 2048, "includeThoughts": True}
    assert first.stop_reason == "tool_use"
    calls = [b for b in first.content if b.type == "tool_use"]
    assert [(c.name, c.input) for c in calls] == [("get_weather", {"city": "Kyiv"})]
    sigs = [b.signature for b in first.content if b.type == "thinking" and b.signature]
    assert len(sigs) == 1
    upstream_sig = sigs[0]
    gemini_emulator.set_behaviour(None)
    client.messages.create(
        model="gemini", max_tokens=4096, tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "cold"}]},
        ],
    )
    contents = gemini_emulator.last_request.body["contents"]
    call_part = next(p for p in contents[1]["parts"] if "functionCall" in p)
    # the thought signature Gemini put on its function call comes back on that call, unchanged
    assert call_part == {"functionCall": {"name": "get_weather", "args": {"city": "Kyiv"}}, "thoughtSignature": upstream_sig}
    assert contents[2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"result": "cold"}}}]
