"""The OpenAI / Azure OpenAI emulator, driven by the official `openai` SDK."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall
from pydantic import BaseModel

from polyroute.emulators import Behaviour, EmulatorServer, ToolCall

from .rawhttp import request

pytestmark = pytest.mark.integration

USER: Any = [{"role": "user", "content": "Hello there, emulator!"}]
WEATHER_TOOLS: Any = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]


def client(emu: EmulatorServer, **kwargs: object) -> openai.OpenAI:
    options: dict = {"api_key": "sk-test", "max_retries": 0, "timeout": 5.0, **kwargs}
    return openai.OpenAI(base_url=emu.sdk_base_url, **options)


def test_echo_answer_usage_and_recording(openai_emulator: EmulatorServer) -> None:
    result = client(openai_emulator).chat.completions.create(model="gpt-4o-mini", messages=USER, user="u-1")
    assert result.object == "chat.completion"
    assert result.choices[0].message.content == "echo: Hello there, emulator!"
    assert result.choices[0].finish_reason == "stop"
    # Tokens are word runs and punctuation marks: "user" + "Hello there , emulator !" = 6 in,
    # "echo : Hello there , emulator !" = 7 out.
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (6, 7, 13)
    assert result.usage.prompt_tokens_details and result.usage.prompt_tokens_details.cached_tokens == 0
    recorded = openai_emulator.last_request
    assert recorded.method == "POST" and recorded.path == "/v1/chat/completions"
    assert recorded.header("authorization") == "Bearer sk-test"
    assert recorded.body["user"] == "u-1" and recorded.body["messages"] == USER


async def test_async_client(openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(text="canned answer")
    async with openai.AsyncOpenAI(base_url=openai_emulator.sdk_base_url, api_key="k", max_retries=0) as aclient:
        result = await aclient.chat.completions.create(model="gpt-4o", messages=USER)
        stream = await aclient.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
        pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert result.choices[0].message.content == "canned answer"
    assert "".join(pieces) == "canned answer"


def test_stream_with_include_usage_ends_with_usage_chunk(openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(chunks=3)
    chunks = list(client(openai_emulator).chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}))
    *body, last = chunks
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens == 7
    assert all(c.usage is None for c in body)
    assert body[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in body[1:-1]] == ["echo: Hell", "o there, ", "emulator!"]
    assert body[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1


def test_stream_helper_assembles_parallel_tool_calls(openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(tool_calls=[ToolCall("get_weather", {"city": "Paris", "days": [1, 2]}),
                                              ToolCall("get_time", {})])
    with client(openai_emulator).chat.completions.stream(
            model="gpt-4o-mini", messages=USER, tools=WEATHER_TOOLS) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    assert [(e.index, e.name, json.loads(e.arguments)) for e in done] == [
        (0, "get_weather", {"city": "Paris", "days": [1, 2]}), (1, "get_time", {})]
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls is not None and len(message.tool_calls) == 2
    assert all(call.id.startswith("call_") for call in message.tool_calls)


def test_streamed_tool_call_deltas_are_exact(openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(tool_calls=[ToolCall("get_weather", {"city": "Paris"})], chunks=2)
    chunks = list(client(openai_emulator).chat.completions.create(
        model="gpt-4o-mini", messages=USER, tools=WEATHER_TOOLS, stream=True))
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices[0].delta.tool_calls]
    functions = [d.function for d in deltas if d.function is not None]
    assert len(functions) == len(deltas) == 3
    first, *rest = deltas
    assert (first.index, first.type, functions[0].name, functions[0].arguments) == (0, "function",
                                                                                    "get_weather", "")
    assert first.id is not None
    assert all(d.id is None and d.type is None for d in rest) and all(f.name is None for f in functions[1:])
    assert "".join(f.arguments or "" for f in functions[1:]) == '{"city":"Paris"}'



@pytest.mark.parametrize("tool_choice, expected", [
    ("required", "get_weather"),
    ({"type": "function", "function": {"name": "get_time"}}, "get_time"),
])
def test_forced_tool_choice_calls_the_tool(openai_emulator: EmulatorServer, tool_choice: Any,
                                           expected: str) -> None:
    result = client(openai_emulator).chat.completions.create(
        model="gpt-4o-mini", messages=USER, tools=WEATHER_TOOLS, tool_choice=tool_choice)
    assert function_calls(result) == [(expected, {})]
    openai_emulator.set_behaviour(forced_tool_arguments={"city": "Oslo"})
    again = client(openai_emulator).chat.completions.create(
        model="gpt-4o-mini", messages=USER, tools=WEATHER_TOOLS, tool_choice="required")
    assert function_calls(again) == [("get_weather", {"city": "Oslo"})]


def function_calls(completion: ChatCompletion) -> list[tuple[str, Any]]:
    calls = completion.choices[0].message.tool_calls or []
    return [(c.function.name, json.loads(c.function.arguments)) for c in calls
            if isinstance(c, ChatCompletionMessageFunctionToolCall)]


def test_n_choices_non_streaming_and_streaming(openai_emulator: EmulatorServer) -> None:
    c = client(openai_emulator)
    result = c.chat.completions.create(model="gpt-4o-mini", messages=USER, n=3)
    assert [ch.index for ch in result.choices] == [0, 1, 2]
    assert result.usage is not None and result.usage.completion_tokens == 21
    with c.chat.completions.stream(model="gpt-4o-mini", messages=USER, n=2) as stream:
        final = stream.get_final_completion()
    assert [ch.message.content for ch in final.choices] == ["echo: Hello there, emulator!"] * 2


def test_logprobs(openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(text="Hi you")
    result = client(openai_emulator).chat.completions.create(model="gpt-4o-mini", messages=USER, logprobs=True,
                                                             top_logprobs=2)
    logprobs = result.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert [t.token for t in logprobs.content] == ["Hi", " you"]
    assert all(len(t.top_logprobs) == 2 for t in logprobs.content)


def test_json_object_and_parse_with_json_schema(openai_emulator: EmulatorServer) -> None:
    c = client(openai_emulator)
    result = c.chat.completions.create(model="gpt-4o-mini", response_format={"type": "json_object"},
                                       messages=[{"role": "user", "content": "Answer in JSON: hi"}])
    assert json.loads(result.choices[0].message.content or "") == {"echo": "Answer in JSON: hi"}

    class Weather(BaseModel):
        city: str
        degrees: float
        rainy: bool
        tags: list[str]

    parsed = c.chat.completions.parse(model="gpt-4o-mini", messages=USER, response_format=Weather)
    weather = parsed.choices[0].message.parsed
    assert isinstance(weather, Weather) and weather.city == "Hello there, emulator!"

    openai_emulator.set_behaviour(json_output={"city": "Rome", "degrees": 21.5, "rainy": False, "tags": ["sun"]})
    parsed = c.chat.completions.parse(model="gpt-4o-mini", messages=USER, response_format=Weather)
    assert parsed.choices[0].message.parsed == Weather(city="Rome", degrees=21.5, rainy=False, tags=["sun"])


def test_max_tokens_truncates_and_reasoning_and_cache_usage(openai_emulator: EmulatorServer) -> None:
    c = client(openai_emulator)
    short = c.chat.completions.create(model="gpt-4o-mini", messages=USER, max_completion_tokens=2)
    assert short.choices[0].message.content == "echo:" and short.choices[0].finish_reason == "length"
    openai_emulator.set_behaviour(thinking="one two three", cached_tokens=4)
    reasoned = c.chat.completions.create(model="o3-mini", messages=USER, reasoning_effort="low")
    usage = reasoned.usage
    assert usage is not None and usage.completion_tokens_details and usage.prompt_tokens_details
    assert usage.completion_tokens_details.reasoning_tokens == 3
    assert usage.completion_tokens == 7 + 3
    assert usage.prompt_tokens_details.cached_tokens == 4


def test_embeddings_default_base64_matches_float(openai_emulator: EmulatorServer) -> None:
    c = client(openai_emulator)
    default = c.embeddings.create(model="text-embedding-3-small", input=["hello world", "hello"])
    assert openai_emulator.last_request.body["encoding_format"] == "base64"
    floats = c.embeddings.create(model="text-embedding-3-small", input=["hello world", "hello"],
                                 encoding_format="float")
    assert len(default.data) == 2 and len(default.data[0].embedding) == 1536
    for a, b in zip(default.data, floats.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    # Texts sharing words are closer than unrelated texts.
    unrelated = c.embeddings.create(model="text-embedding-3-small", input="zebra quantum",
                                    encoding_format="float").data[0].embedding

    def dot(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True))

    assert dot(floats.data[0].embedding, floats.data[1].embedding) > dot(floats.data[0].embedding, unrelated)
    assert default.usage.prompt_tokens == 3

    raw = c.embeddings.create(model="text-embedding-3-large", input="x", dimensions=8, encoding_format="base64")
    vector = struct.unpack("<8f", base64.b64decode(raw.data[0].embedding))  # type: ignore[arg-type]
    assert sum(v * v for v in vector) == pytest.approx(1.0, abs=1e-5)


def test_models_list_and_retrieve(openai_emulator: EmulatorServer) -> None:
    c = client(openai_emulator)
    assert "gpt-4o-mini" in [m.id for m in c.models.list()]
    assert c.models.retrieve("gpt-4o").owned_by == "system"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("no-such-model")


def test_azure_deployment_paths(emulator_factory: Callable[..., EmulatorServer]) -> None:
    emu = emulator_factory("openai", api_key="azure-key")
    azure = openai.AzureOpenAI(azure_endpoint=emu.base_url, api_key="azure-key", api_version="2024-10-21",
                               max_retries=0)
    result = azure.chat.completions.create(model="prod-gpt", messages=USER)
    assert result.choices[0].message.content == "echo: Hello there, emulator!"
    recorded = emu.last_request
    assert recorded.path == "/openai/deployments/prod-gpt/chat/completions"
    assert recorded.query == {"api-version": "2024-10-21"} and recorded.header("api-key") == "azure-key"
    # The SDK drops Azure's leading prompt-filter chunk (object ""); the text must survive intact.
    stream = azure.chat.completions.create(model="prod-gpt", messages=USER, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: Hello there, emulator!"
    vectors = azure.embeddings.create(model="embed-deploy", input="hi")
    assert emu.last_request.path == "/openai/deployments/embed-deploy/embeddings"
    assert len(vectors.data[0].embedding) == 1536
    wrong = openai.AzureOpenAI(azure_endpoint=emu.base_url, api_key="nope", api_version="2024-10-21",
                               max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="prod-gpt", messages=USER)


def test_api_key_checked_only_when_configured(emulator_factory: Callable[..., EmulatorServer],
                                              openai_emulator: EmulatorServer) -> None:
    emu = emulator_factory("openai", api_key="sk-right")
    with pytest.raises(openai.AuthenticationError) as err:
        client(emu, api_key="sk-wrong").models.list()
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    assert client(emu, api_key="sk-right").models.list().data
    assert client(openai_emulator, api_key="anything").models.list().data


@pytest.mark.parametrize("status, exception", [
    (429, openai.RateLimitError),
    (500, openai.InternalServerError),
    (502, openai.InternalServerError),
    (503, openai.InternalServerError),
    (400, openai.BadRequestError),
])
def test_failure_statuses_map_to_sdk_exceptions(openai_emulator: EmulatorServer, status: int,
                                                exception: type[openai.APIStatusError]) -> None:
    openai_emulator.enqueue(Behaviour(status=status, retry_after=7))
    with pytest.raises(exception) as err:
        client(openai_emulator).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert err.value.status_code == status
    assert err.value.response.headers["retry-after"] == "7"
    assert isinstance(err.value.body, dict) and "message" in err.value.body
    # The queue held one failure: the next request is answered normally.
    assert client(openai_emulator).chat.completions.create(model="gpt-4o-mini", messages=USER).choices


def test_sdk_retries_honour_retry_after(openai_emulator: EmulatorServer) -> None:
    openai_emulator.enqueue(Behaviour.rate_limited(retry_after=0.05), Behaviour(status=503, retry_after=0.05))
    result = client(openai_emulator, max_retries=2).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert result.choices[0].message.content
    assert len(openai_emulator.requests) == 3
    assert openai_emulator.requests[1].header("x-stainless-retry-count") == "1"


def test_in_stream_error_event(openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(status=500, error_after=2)
    stream = client(openai_emulator).chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    seen = []
    with pytest.raises(openai.APIError, match="error while processing"):
        for chunk in stream:
            seen.append(chunk)
    assert len(seen) == 2


@pytest.mark.parametrize("body, fragment", [
    ({"model": "gpt-4o-mini"}, "Missing required parameter: 'messages'"),
    ({"messages": USER}, "you must provide a model parameter"),
    ({"model": "m", "messages": USER, "tool_choice": "required"}, "only allowed when 'tools' are specified"),
    ({"model": "m", "messages": USER, "response_format": {"type": "json_object"}}, "must contain the word 'json'"),
    ({"model": "m", "messages": USER, "stream_options": {"include_usage": True}}, "only allowed when 'stream'"),
    ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "Invalid value: 'robot'"),
])
def test_validation_errors(openai_emulator: EmulatorServer, body: dict, fragment: str) -> None:
    answer = request(openai_emulator.base_url, "POST", "/v1/chat/completions", body=body,
                     headers={"Authorization": "Bearer k"})
    assert answer.status == 400
    assert fragment in answer.json()["error"]["message"]
    assert openai_emulator.emulator.behaviours.snapshot()["queue"] == []


def test_invalid_json_body_is_a_400(openai_emulator: EmulatorServer) -> None:
    answer = request(openai_emulator.base_url, "POST", "/v1/chat/completions", raw=b"{nope",
                     headers={"Authorization": "Bearer k"})
    assert answer.status == 400 and answer.json()["error"]["type"] == "invalid_request_error"
