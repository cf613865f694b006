"""The Anthropic Messages emulator, driven by the official `anthropic` SDK."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from polyroute.emulators import Behaviour, EmulatorServer, ToolCall

from .rawhttp import request

pytestmark = pytest.mark.integration

MODEL = "claude-haiku-4-5"
USER: list[Any] = [{"role": "user", "content": "Hello there, Claude!"}]
TOOLS: list[Any] = [
    {"name": "get_weather", "description": "Weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
]
HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def client(emu: EmulatorServer, **kwargs: Any) -> anthropic.Anthropic:
    options: dict[str, Any] = {"api_key": "sk-ant-test", "max_retries": 0, "timeout": 5.0, **kwargs}
    return anthropic.Anthropic(base_url=emu.sdk_base_url, **options)


def test_create_echo_and_usage(anthropic_emulator: EmulatorServer) -> None:
    message = client(anthropic_emulator).messages.create(model=MODEL, max_tokens=64, messages=USER,
                                                        system="Be brief.")
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "echo: Hello there, Claude!"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    # "Be brief ." + "user" + "Hello there , Claude !" = 3 + 1 + 5 in; "echo : Hello there , Claude !" = 7 out.
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 7)
    assert message.usage.cache_read_input_tokens == 0 and message.usage.cache_creation_input_tokens == 0
    recorded = anthropic_emulator.last_request
    # Recent SDKs send the key as a bearer token; the API (and the emulator) also take x-api-key.
    assert "sk-ant-test" in (recorded.header("x-api-key"), (recorded.header("authorization") or "")[7:])
    assert recorded.header("anthropic-version")
    assert recorded.body["max_tokens"] == 64


async def test_async_create_and_stream(anthropic_emulator: EmulatorServer) -> None:
    async with anthropic.AsyncAnthropic(base_url=anthropic_emulator.sdk_base_url, api_key="k",
                                        max_retries=0) as aclient:
        message = await aclient.messages.create(model=MODEL, max_tokens=64, messages=USER)
        async with aclient.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream:
            texts = [t async for t in stream.text_stream]
            final = await stream.get_final_message()
    assert message.content[0].text == "".join(texts) == final.content[0].text  # type: ignore[union-attr]


def test_raw_stream_event_sequence(anthropic_emulator: EmulatorServer) -> None:
    anthropic_emulator.set_behaviour(chunks=2)
    events = list(client(anthropic_emulator).messages.create(model=MODEL, max_tokens=64, messages=USER,
                                                             stream=True))
    # The SDK drops ping events; the raw wire order (ping included) is checked against the transcripts.
    assert [e.type for e in events] == ["message_start", "content_block_start", "content_block_delta",
                                        "content_block_delta", "content_block_stop", "message_delta",
                                        "message_stop"]
    start, delta = events[0], events[-2]
    assert start.message.content == [] and start.message.stop_reason is None  # type: ignore[union-attr]
    assert start.message.usage.input_tokens == 6  # type: ignore[union-attr]
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens == 7  # type: ignore[union-attr]
    raw = request(anthropic_emulator.base_url, "POST", "/v1/messages", headers=HEADERS,
                  body={"model": MODEL, "max_tokens": 64, "stream": True, "messages": USER})
    assert [e["event"] for e in raw.sse()][:3] == ["message_start", "content_block_start", "ping"]
    assert all(e["event"] == e["data"]["type"] for e in raw.sse())


def test_stream_helper_final_message_with_thinking_and_tools(anthropic_emulator: EmulatorServer) -> None:
    anthropic_emulator.set_behaviour(text="Let me check.", tool_calls=[
        ToolCall("get_weather", {"city": "Paris", "nested": {"a": [1, 2]}}), ToolCall("get_time", {})])
    with client(anthropic_emulator).messages.stream(
            model=MODEL, max_tokens=4096, messages=USER, tools=TOOLS,
            thinking={"type": "enabled", "budget_tokens": 2048}) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    thinking, text, weather, clock = final.content
    assert thinking.thinking == "Thinking about: Hello there, Claude!" and thinking.signature  # type: ignore[union-attr]
    assert text.text == "Let me check."  # type: ignore[union-attr]
    assert weather.name == "get_weather" and weather.input == {"city": "Paris", "nested": {"a": [1, 2]}}  # type: ignore[union-attr]
    assert clock.input == {} and weather.id.startswith("toolu_")  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    plain = client(anthropic_emulator).messages.create(model=MODEL, max_tokens=4096, messages=USER, tools=TOOLS,
                                                       thinking={"type": "enabled", "budget_tokens": 2048})
    assert [b.type for b in plain.content] == [b.type for b in final.content]
    assert plain.usage.output_tokens == final.usage.output_tokens


@pytest.mark.parametrize("tool_choice, expected", [({"type": "any"}, "get_weather"),
                                                    ({"type": "tool", "name": "get_time"}, "get_time")])
def test_forced_tool_choice(anthropic_emulator: EmulatorServer, tool_choice: Any, expected: str) -> None:
    message = client(anthropic_emulator).messages.create(model=MODEL, max_tokens=64, messages=USER, tools=TOOLS,
                                                        tool_choice=tool_choice)
    assert [(b.type, b.name, b.input) for b in message.content] == [("tool_use", expected, {})]  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"


def test_count_tokens_matches_message_input(anthropic_emulator: EmulatorServer) -> None:
    c = client(anthropic_emulator)
    kwargs: dict[str, Any] = {"model": MODEL, "messages": USER, "system": "You are a scientist", "tools": TOOLS}
    counted = c.messages.count_tokens(**kwargs)
    message = c.messages.create(max_tokens=64, **kwargs)
    assert counted.input_tokens == message.usage.input_tokens > 0
    assert anthropic_emulator.requests[0].path == "/v1/messages/count_tokens"


def test_prompt_cache_creation_then_read(anthropic_emulator: EmulatorServer) -> None:
    c = client(anthropic_emulator)
    system: Any = [{"type": "text", "text": "A long shared system prompt " * 20,
                    "cache_control": {"type": "ephemeral"}}]
    counted = c.messages.count_tokens(model=MODEL, system=system, messages=USER).input_tokens
    first = c.messages.create(model=MODEL, max_tokens=64, system=system, messages=USER).usage
    second = c.messages.create(model=MODEL, max_tokens=64, system=system,
                               messages=[{"role": "user", "content": "Another question"}]).usage
    assert first.cache_creation_input_tokens == 101 and first.cache_read_input_tokens == 0
    assert first.cache_creation is not None and first.cache_creation.ephemeral_5m_input_tokens == 101
    assert first.input_tokens + first.cache_creation_input_tokens == counted
    assert second.cache_read_input_tokens == 101 and second.cache_creation_input_tokens == 0
    anthropic_emulator.reset()
    third = c.messages.create(model=MODEL, max_tokens=64, system=system, messages=USER).usage
    assert third.cache_read_input_tokens == 0
    anthropic_emulator.set_behaviour(cached_tokens=5)
    forced = c.messages.create(model=MODEL, max_tokens=64, messages=USER).usage
    assert forced.cache_read_input_tokens == 5 and forced.input_tokens == 1


def test_structured_output(anthropic_emulator: EmulatorServer) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    message = client(anthropic_emulator).messages.create(
        model=MODEL, max_tokens=64, messages=USER, output_config={"format": {"type": "json_schema", "schema": schema}})
    assert json.loads(message.content[0].text) == {"name": "Hello there, Claude!", "age": 0}  # type: ignore[union-attr]


def test_max_tokens_stop_reason(anthropic_emulator: EmulatorServer) -> None:
    message = client(anthropic_emulator).messages.create(model=MODEL, max_tokens=3, messages=USER)
    assert message.stop_reason == "max_tokens" and message.content[0].text == "echo: Hello"  # type: ignore[union-attr]


@pytest.mark.parametrize("status, exception, error_type", [
    (529, anthropic.OverloadedError, "overloaded_error"),
    (429, anthropic.RateLimitError, "rate_limit_error"),
    (500, anthropic.InternalServerError, "api_error"),
    (503, anthropic.ServiceUnavailableError, "api_error"),
])
def test_failures_map_to_sdk_exceptions(anthropic_emulator: EmulatorServer, status: int,
                                        exception: type[anthropic.APIStatusError], error_type: str) -> None:
    anthropic_emulator.enqueue(Behaviour(status=status, retry_after=3))
    with pytest.raises(exception) as err:
        client(anthropic_emulator).messages.create(model=MODEL, max_tokens=64, messages=USER)
    assert err.value.status_code == status
    assert err.value.response.headers["retry-after"] == "3"
    body = err.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == error_type
    assert err.value.request_id == body["request_id"]


def test_sdk_retries_overloaded(anthropic_emulator: EmulatorServer) -> None:
    anthropic_emulator.enqueue(Behaviour(status=529, retry_after=0.05))
    message = client(anthropic_emulator, max_retries=1).messages.create(model=MODEL, max_tokens=64, messages=USER)
    assert message.content and len(anthropic_emulator.requests) == 2


def test_in_stream_overloaded_error(anthropic_emulator: EmulatorServer) -> None:
    anthropic_emulator.set_behaviour(status=529, error_after=3)
    with pytest.raises(anthropic.APIStatusError) as err, \
            client(anthropic_emulator).messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream:
        stream.get_final_message()
    assert isinstance(err.value.body, dict) and err.value.body["error"]["type"] == "overloaded_error"


def test_authentication(emulator_factory: Callable[..., EmulatorServer]) -> None:
    emu = emulator_factory("anthropic", api_key="sk-ant-right")
    with pytest.raises(anthropic.AuthenticationError) as err:
        client(emu, api_key="sk-ant-wrong").messages.create(model=MODEL, max_tokens=8, messages=USER)
    assert err.value.body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}  # type: ignore[index]
    assert client(emu, api_key="sk-ant-right").messages.create(model=MODEL, max_tokens=8, messages=USER).content
    missing = request(emu.base_url, "POST", "/v1/messages", headers={"anthropic-version": "2023-06-01"},
                      body={"model": MODEL, "max_tokens": 8, "messages": USER})
    assert missing.status == 401 and missing.json()["error"]["message"] == "x-api-key header is required"


@pytest.mark.parametrize("body, headers, fragment", [
    ({"model": MODEL, "messages": USER}, HEADERS, "max_tokens: Field required"),
    ({"max_tokens": 5, "messages": USER}, HEADERS, "model: Field required"),
    ({"model": MODEL, "max_tokens": 5}, HEADERS, "messages: Field required"),
    ({"model": MODEL, "max_tokens": 5, "messages": USER}, {"x-api-key": "k"}, "anthropic-version"),
    ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, HEADERS,
     "messages.0.role"),
    ({"model": MODEL, "max_tokens": 1000, "messages": USER, "thinking": {"type": "enabled", "budget_tokens": 2000}},
     HEADERS, "`max_tokens` must be greater than `thinking.budget_tokens`"),
    ({"model": MODEL, "max_tokens": 5000, "messages": USER, "thinking": {"type": "enabled", "budget_tokens": 100}},
     HEADERS, "greater than or equal to 1024"),
    ({"model": MODEL, "max_tokens": 5, "messages": USER, "tool_choice": {"type": "any"}}, HEADERS,
     "tool_choice may only be specified while providing tools"),
])
def test_validation_errors(anthropic_emulator: EmulatorServer, body: dict, headers: dict, fragment: str) -> None:
    answer = request(anthropic_emulator.base_url, "POST", "/v1/messages", body=body, headers=headers)
    assert answer.status == 400, answer.text
    payload = answer.json()
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert fragment in payload["error"]["message"]
    assert answer.headers["request-id"] == payload["request_id"]


def test_models_list(anthropic_emulator: EmulatorServer) -> None:
    ids = [m.id for m in client(anthropic_emulator).models.list()]
    assert MODEL in ids
