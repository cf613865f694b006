"""The official `openai` SDK against polyroute with an Anthropic upstream and a Gemini upstream
(both emulated): text, the SDK's stream helper assembling tool-call deltas, tools round trips,
JSON schema output, reasoning, usage, errors; Gemini embeddings and image URLs (SSRF guard)."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from polyroute.emulators.behaviour import Behaviour, ToolCall
from polyroute.emulators.testing import EmulatorServer
from polyroute.providers.image_fetch import ALLOW_PRIVATE_ENV
from tests.helpers.gateway import RunningGateway, run_gateway

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
]
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]


def config(anth: EmulatorServer, gem: EmulatorServer) -> str:
    return f"""
providers:
  anth: {{type: anthropic, base_url: '{anth.base_url}', api_key: sk-ant-up, breaker: {{enabled: false}}}}
  gem: {{type: gemini, base_url: '{gem.base_url}', api_key: gm-up, breaker: {{enabled: false}}}}
models:
  claude:
    retry: {{retries: 0}}
    deployments: [{{provider: anth, model: claude-sonnet-4-5}}]
  gemini:
    retry: {{retries: 0}}
    deployments: [{{provider: gem, model: gemini-2.5-flash}}]
  claude-errors:
    retry: {{retries: 0}}
    deployments: [{{provider: anth, model: claude-haiku-4-5}}]
  gemini-errors:
    retry: {{retries: 0}}
    deployments: [{{provider: gem, model: gemini-2.5-pro}}]
  gemini-embed:
    kind: embedding
    deployments: [{{provider: gem, model: gemini-embedding-001}}]
"""


@pytest.fixture(scope="module")
def gw(
    polyroute_anthropic_emulator_session: EmulatorServer, polyroute_gemini_emulator_session: EmulatorServer
) -> Iterator[RunningGateway]:
    with run_gateway(config(polyroute_anthropic_emulator_session, polyroute_gemini_emulator_session)) as g:
        yield g


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key="client-key", max_retries=0)


@pytest.fixture(params=["claude", "gemini"])
def upstream(
    request: pytest.FixtureRequest, anthropic_emulator: EmulatorServer, gemini_emulator: EmulatorServer
) -> tuple[str, EmulatorServer]:
    return (request.param, anthropic_emulator if request.param == "claude" else gemini_emulator)


def test_text(client: openai.OpenAI, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    r = client.chat.completions.create(
        model=model, messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
        temperature=0.4, stop=["ZZZ"],
    )
    assert r.model == model
    assert r.choices[0].message.content == "echo: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    sent = emu.last_request
    if model == "claude":
        assert sent.headers["x-api-key"] == "sk-ant-up"
        assert sent.body["system"] == [{"type": "text", "text": "be brief"}]
        assert sent.body["max_tokens"] == 4096  # Anthropic requires it: the documented default
        assert sent.body["temperature"] == 0.4 and sent.body["stop_sequences"] == ["ZZZ"]
    else:
        assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
        assert sent.headers["x-goog-api-key"] == "gm-up"
        assert sent.body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
        assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "hello there"}]}]
        assert sent.body["generationConfig"] == {"temperature": 0.4, "stopSequences": ["ZZZ"]}


def test_stream_helper_assembles_tool_calls(client: openai.OpenAI, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    emu.set_behaviour(text="Let me look.", tool_calls=[ToolCall("get_weather", {"city": "Paris", "unit": "C"}),
                                                       ToolCall("get_weather", {"city": "Rome"})])
    with client.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "weather in Paris and Rome?"}], tools=TOOLS,
        stream_options={"include_usage": True},
    ) as stream:
        kinds = {ev.type for ev in stream}
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.delta" in kinds
    msg = final.choices[0].message
    assert msg.content == "Let me look."
    assert msg.tool_calls is not None
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls]
    assert calls == [("get_weather", {"city": "Paris", "unit": "C"}), ("get_weather", {"city": "Rome"})]
    assert len({c.id for c in msg.tool_calls}) == 2
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.completion_tokens > 0
    if model == "gemini":
        # the schema went through the sanitizer: no additionalProperties for Gemini
        params = emu.last_request.body["tools"][0]["functionDeclarations"][0]["parameters"]
        assert "additionalProperties" not in params and params["properties"]["unit"]["enum"] == ["C", "F"]


def test_tools_round_trip(client: openai.OpenAI, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    emu.enqueue(Behaviour.tool_call("get_weather", {"city": "Oslo"}))
    first = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "weather in Oslo?"}], tools=TOOLS, tool_choice="required"
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]
    sent = emu.last_request.body
    if model == "claude":
        assert sent["tool_choice"] == {"type": "any"}
    else:
        assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}

    second = client.chat.completions.create(
        model=model, tools=TOOLS,
        messages=[
            {"role": "user", "content": "weather in Oslo?"},
            first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp": -3}'},
        ],
    )
    assert second.choices[0].finish_reason == "stop"
    sent = emu.last_request.body
    if model == "claude":
        assert sent["messages"][1]["content"][-1]["id"] == call.id
        assert sent["messages"][2] == {
            "role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": '{"temp": -3}'}]}],
        }
    else:
        assert sent["contents"][1]["parts"][-1]["functionCall"] == {"name": "get_weather", "args": {"city": "Oslo"}}
        # Gemini needs the function name: found from the earlier call with this id
        assert sent["contents"][2] == {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": -3}}}]}


def test_json_schema_output(client: openai.OpenAI, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    emu.set_behaviour(forced_tool_arguments={"name": "Ada", "age": 36, "tags": ["math"]})
    parsed = client.chat.completions.parse(
        model=model, messages=[{"role": "user", "content": "who?"}], response_format=Person
    )
    person = parsed.choices[0].message.parsed
    assert person is not None
    assert parsed.choices[0].finish_reason == "stop"
    sent = emu.last_request.body
    if model == "claude":
        assert person == Person(name="Ada", age=36, tags=["math"])
        # a forced call of the JSON tool, whose input schema is the client's schema
        assert sent["tool_choice"] == {"type": "tool", "name": "json_response"}
        assert sent["tools"][0]["input_schema"]["properties"]["age"] == {"title": "Age", "type": "integer"}
    else:
        assert sent["generationConfig"]["responseMimeType"] == "application/json"
        schema = sent["generationConfig"]["responseSchema"]
        assert schema["type"] == "OBJECT" and "additionalProperties" not in schema
        assert set(schema["required"]) == {"name", "age", "tags"}

    with client.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "who?"}], response_format=Person
    ) as stream:
        streamed = stream.get_final_completion().choices[0].message.parsed
    assert streamed == person


def test_reasoning_effort(client: openai.OpenAI, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    emu.set_behaviour(text="42", thinking="step by step")
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "meaning?"}], reasoning_effort="low", max_completion_tokens=500
    )
    assert r.choices[0].message.content == "42"
    extra = r.choices[0].message.model_extra or {}
    assert extra.get("reasoning_content") == "step by step"
    sent = emu.last_request.body
    if model == "claude":
        assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
        assert sent["max_tokens"] == 1524  # raised so the budget stays below max_tokens
        assert extra.get("reasoning_signature")  # returned so the client can send it back
    else:
        assert sent["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}
        assert r.usage is not None and r.usage.completion_tokens_details is not None
        reasoning = r.usage.completion_tokens_details.reasoning_tokens or 0
        assert 0 < reasoning < r.usage.completion_tokens


def test_thinking_signature_round_trip_to_anthropic(client: openai.OpenAI, anthropic_emulator: EmulatorServer) -> None:
    anthropic_emulator.set_behaviour(text="42", thinking="deep thought")
    r = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "q"}], reasoning_effort="low")
    history: Any = [{"role": "user", "content": "q"}, r.choices[0].message.model_dump(exclude_none=True), {"role": "user", "content": "and?"}]
    client.chat.completions.create(model="claude", reasoning_effort="low", messages=history)
    sig = (r.choices[0].message.model_extra or {})["reasoning_signature"]
    block = anthropic_emulator.last_request.body["messages"][1]["content"][0]
    assert block == {"type": "thinking", "thinking": "deep thought", "signature": sig}


def test_length_and_n(client: openai.OpenAI, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    emu.set_behaviour(text="a b c d e f g h", max_tokens_reached=True)
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    emu.set_behaviour(None)
    if model == "gemini":
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], n=2)
        assert [c.index for c in r.choices] == [0, 1]
        assert emu.last_request.body["generationConfig"]["candidateCount"] == 2
    else:
        with pytest.raises(openai.BadRequestError, match="does not support n"):
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], n=2)


def test_prompt_cache_usage_through_openai_format(client: openai.OpenAI, anthropic_emulator: EmulatorServer) -> None:
    content: Any = [{"type": "text", "text": "shared context " * 40, "cache_control": {"type": "ephemeral"}}]
    msgs: Any = [{"role": "system", "content": content}, {"role": "user", "content": "q"}]
    first = client.chat.completions.create(model="claude", messages=msgs)
    second = client.chat.completions.create(model="claude", messages=msgs)
    assert first.usage is not None and second.usage is not None
    # prompt_tokens include cache reads and writes, so they do not change between the two calls
    assert first.usage.prompt_tokens == second.usage.prompt_tokens
    assert first.usage.prompt_tokens_details is not None and second.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert 0 < (second.usage.prompt_tokens_details.cached_tokens or 0) < second.usage.prompt_tokens


def test_upstream_errors(client: openai.OpenAI, upstream: tuple[str, EmulatorServer]) -> None:
    model, emu = upstream
    model += "-errors"
    emu.enqueue(Behaviour.error(400, "bad field"))
    with pytest.raises(openai.BadRequestError, match="bad field"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    emu.enqueue(Behaviour.error(529 if model.startswith("claude") else 503))
    with pytest.raises(openai.APIStatusError) as busy:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert busy.value.status_code == 503 and busy.value.body["type"] == "overloaded_error"  # type: ignore[index]
    emu.enqueue(Behaviour.rate_limited(retry_after=2))
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert limited.value.response.headers["retry-after"] == "2"


def test_gemini_stream_cut_short_is_an_error(client: openai.OpenAI, gemini_emulator: EmulatorServer) -> None:
    gemini_emulator.enqueue(Behaviour(text="one two three four", chunks=4, disconnect_after=2))
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "x"}], stream=True):
            pass


def test_gemini_embeddings(client: openai.OpenAI, gemini_emulator: EmulatorServer) -> None:
    r = client.embeddings.create(model="gemini-embed", input=["alpha", "beta"], dimensions=8)
    assert [len(d.embedding) for d in r.data] == [8, 8]
    assert r.usage.prompt_tokens > 0
    sent = gemini_emulator.last_request
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.body["requests"][1] == {
        "model": "models/gemini-embedding-001", "content": {"parts": [{"text": "beta"}]}, "outputDimensionality": 8,
    }


@pytest.fixture
def image_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/cat.png")
                self.end_headers()
                return
            body = PNG if self.path == "/cat.png" else b"<html>not an image</html>"
            self.send_response(200)
            self.send_header("Content-Type", "image/png" if self.path == "/cat.png" else "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def image_message(url: str) -> Any:
    return [{"role": "user", "content": [{"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": {"url": url}}]}]


def test_gemini_image_url_to_loopback_is_refused(client: openai.OpenAI, image_server: str, gemini_emulator: EmulatorServer) -> None:
    for url in (f"{image_server}/cat.png", "http://169.254.169.254/latest/meta-data/x.png", "file:///etc/passwd"):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="gemini", messages=image_message(url))
    assert gemini_emulator.requests == []  # refused before any upstream call


def test_gemini_image_url_fetched_when_allowed(
    image_server: str, monkeypatch: pytest.MonkeyPatch,
    polyroute_anthropic_emulator_session: EmulatorServer, gemini_emulator: EmulatorServer,
) -> None:
    # The explicit test-only opt-in lets the fetcher reach the loopback image server.
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    with run_gateway(config(polyroute_anthropic_emulator_session, gemini_emulator)) as g:
        c = openai.OpenAI(base_url=g.openai_base, api_key="k", max_retries=0)
        c.chat.completions.create(model="gemini", messages=image_message(f"{image_server}/redirect"))
        part = gemini_emulator.last_request.body["contents"][0]["parts"][1]
        assert part == {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
        with pytest.raises(openai.BadRequestError, match="did not return an image"):
            c.chat.completions.create(model="gemini", messages=image_message(f"{image_server}/page.html"))
