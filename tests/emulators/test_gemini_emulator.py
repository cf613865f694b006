"""The Gemini emulator, driven by the official `google-genai` SDK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

from polyroute.emulators import Behaviour, EmulatorServer, ToolCall

from .rawhttp import request

pytestmark = [
    pytest.mark.integration,
    # google-genai's own aiohttp session class triggers this at import of its async client.
    pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning"),
]

MODEL = "gemini-2.5-flash"
WEATHER = types.Tool(function_declarations=[
    types.FunctionDeclaration(name="get_weather", description="Weather in a city", parameters=types.Schema(
        type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}, required=["city"])),
    types.FunctionDeclaration(name="get_time", description="Current time"),
])


# genai.Client closes its HTTP client when it is garbage-collected, even while `client.models`
# is still in use; the tests chain calls, so keep every client alive for the module's lifetime.
_CLIENTS: list[genai.Client] = []


def client(emu: EmulatorServer, api_key: str = "AIza-test", api_version: str = "v1beta", **options: Any) -> genai.Client:
    made = genai.Client(api_key=api_key, http_options=types.HttpOptions(
        base_url=emu.base_url, api_version=api_version, timeout=5000, **options))
    _CLIENTS.append(made)
    return made


def parts_of(response: types.GenerateContentResponse) -> list[types.Part]:
    assert response.candidates and response.candidates[0].content
    return response.candidates[0].content.parts or []


def test_generate_content_echo_and_usage(gemini_emulator: EmulatorServer) -> None:
    result = client(gemini_emulator).models.generate_content(
        model=MODEL, contents="Hello there, Gemini!",
        config=types.GenerateContentConfig(system_instruction="Be brief."))
    assert result.text == "echo: Hello there, Gemini!"
    candidate = result.candidates[0]  # type: ignore[index]
    assert candidate.finish_reason == types.FinishReason.STOP and candidate.content.role == "model"  # type: ignore[union-attr]
    usage = result.usage_metadata
    # In: "user" + "Hello there , Gemini !" and the system instruction, which the SDK sends with
    # role "user": "Be brief ." + "user" -> 1 + 5 + 3 + 1. Out: "echo : Hello there , Gemini !" = 7.
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (10, 7, 17)
    assert usage.thoughts_token_count is None
    recorded = gemini_emulator.last_request
    assert recorded.path == f"/v1beta/models/{MODEL}:generateContent"
    assert recorded.header("x-goog-api-key") == "AIza-test"
    assert recorded.body["systemInstruction"]["parts"][0]["text"] == "Be brief."


def test_default_sdk_api_version_v1_is_served(gemini_emulator: EmulatorServer) -> None:
    genai_client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=gemini_emulator.base_url))
    assert genai_client.models.generate_content(model=MODEL, contents="hi").text == "echo: hi"
    assert gemini_emulator.last_request.path == f"/v1/models/{MODEL}:generateContent"


def test_stream_chunks_and_final_usage(gemini_emulator: EmulatorServer) -> None:
    gemini_emulator.set_behaviour(chunks=3)
    chunks = list(client(gemini_emulator).models.generate_content_stream(model=MODEL, contents="Hello there"))
    assert len(chunks) == 3
    assert "".join(c.text or "" for c in chunks) == "echo: Hello there"
    assert [c.candidates[0].finish_reason for c in chunks][-1] == types.FinishReason.STOP  # type: ignore[index]
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])  # type: ignore[index]
    assert chunks[-1].usage_metadata.candidates_token_count == 4  # type: ignore[union-attr]
    assert chunks[0].usage_metadata.candidates_token_count is None  # type: ignore[union-attr]
    recorded = gemini_emulator.last_request
    assert recorded.path.endswith(":streamGenerateContent") and recorded.query == {"alt": "sse"}


async def test_async_client(gemini_emulator: EmulatorServer) -> None:
    aclient = client(gemini_emulator).aio
    result = await aclient.models.generate_content(model=MODEL, contents="async hello")
    pieces = [c.text async for c in await aclient.models.generate_content_stream(model=MODEL, contents="async hi")]
    assert result.text == "echo: async hello"
    assert "".join(p or "" for p in pieces) == "echo: async hi"


def test_function_calling_mode_any_and_explicit_calls(gemini_emulator: EmulatorServer) -> None:
    c = client(gemini_emulator)
    forced = types.GenerateContentConfig(tools=[WEATHER], tool_config=types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)))
    result = c.models.generate_content(model=MODEL, contents="weather?", config=forced)
    assert [(f.name, f.args) for f in result.function_calls or []] == [("get_weather", {})]

    only_time = types.GenerateContentConfig(tools=[WEATHER], tool_config=types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY,
                                                            allowed_function_names=["get_time"])))
    assert result.function_calls and c.models.generate_content(
        model=MODEL, contents="time?", config=only_time).function_calls[0].name == "get_time"  # type: ignore[index]

    gemini_emulator.set_behaviour(tool_calls=[ToolCall("get_weather", {"city": "Paris"}),
                                              ToolCall("get_time", {})], thinking="I should call tools.")
    parallel = c.models.generate_content(model=MODEL, contents="both", config=types.GenerateContentConfig(
        tools=[WEATHER]))
    parts = parts_of(parallel)
    assert [p.function_call.name for p in parts if p.function_call] == ["get_weather", "get_time"]
    assert parts[0].thought_signature and not parts[1].thought_signature
    assert parallel.usage_metadata.thoughts_token_count == 5  # type: ignore[union-attr]
    streamed = list(c.models.generate_content_stream(model=MODEL, contents="both",
                                                     config=types.GenerateContentConfig(tools=[WEATHER])))
    assert [f.args for chunk in streamed for f in chunk.function_calls or []] == [{"city": "Paris"}, {}]


def test_thoughts_are_returned_with_include_thoughts(gemini_emulator: EmulatorServer) -> None:
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True,
                                                                              thinking_budget=512))
    result = client(gemini_emulator).models.generate_content(model=MODEL, contents="think", config=config)
    parts = parts_of(result)
    assert [bool(p.thought) for p in parts] == [True, False]
    assert parts[0].text == "Thinking about: think" and parts[1].text == "echo: think"
    assert parts[1].thought_signature
    usage = result.usage_metadata
    assert usage is not None and usage.thoughts_token_count == 4
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count + 4  # type: ignore[operator]
    hidden = client(gemini_emulator).models.generate_content(model=MODEL, contents="think", config=types.
                                                             GenerateContentConfig(thinking_config=types.
                                                                                   ThinkingConfig(thinking_budget=512)))
    assert [bool(p.thought) for p in parts_of(hidden)] == [False]
    assert hidden.usage_metadata.thoughts_token_count == 4  # type: ignore[union-attr]


def test_json_mode_with_schema(gemini_emulator: EmulatorServer) -> None:
    class Recipe(BaseModel):
        name: str
        minutes: int
        vegan: bool

    result = client(gemini_emulator).models.generate_content(
        model=MODEL, contents="a recipe", config=types.GenerateContentConfig(response_mime_type="application/json",
                                                                           response_schema=Recipe))
    assert result.parsed == Recipe(name="a recipe", minutes=0, vegan=False)


def test_embeddings_and_count_tokens(gemini_emulator: EmulatorServer) -> None:
    c = client(gemini_emulator)
    texts: Any = ["first text", "second text"]
    result = c.models.embed_content(model="gemini-embedding-001", contents=texts)
    assert [len(e.values or []) for e in result.embeddings or []] == [3072, 3072]
    assert gemini_emulator.last_request.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    small = c.models.embed_content(model="text-embedding-004", contents="x",
                                   config=types.EmbedContentConfig(output_dimensionality=16))
    assert len(small.embeddings[0].values or []) == 16  # type: ignore[index]
    single = request(gemini_emulator.base_url, "POST", "/v1beta/models/text-embedding-004:embedContent",
                     body={"content": {"parts": [{"text": "x"}]}})
    assert len(single.json()["embedding"]["values"]) == 768
    counted = c.models.count_tokens(model=MODEL, contents="The quick brown fox.")
    assert counted.total_tokens == 1 + 5


@pytest.mark.parametrize("status, exception, status_name", [
    (429, errors.ClientError, "RESOURCE_EXHAUSTED"),
    (500, errors.ServerError, "INTERNAL"),
    (503, errors.ServerError, "UNAVAILABLE"),
])
def test_failures_map_to_sdk_errors(gemini_emulator: EmulatorServer, status: int,
                                    exception: type[errors.APIError], status_name: str) -> None:
    gemini_emulator.enqueue(Behaviour(status=status, retry_after=4))
    with pytest.raises(exception) as err:
        client(gemini_emulator).models.generate_content(model=MODEL, contents="x")
    assert err.value.code == status and err.value.status == status_name
    assert err.value.details["error"]["details"][0]["retryDelay"] == "4s"
    assert err.value.response is not None and err.value.response.headers["retry-after"] == "4"


def test_sdk_retry_options_retry_a_503(gemini_emulator: EmulatorServer) -> None:
    gemini_emulator.enqueue(Behaviour(status=503))
    retrying = client(gemini_emulator, retry_options=types.HttpRetryOptions(
        attempts=2, initial_delay=0.01, max_delay=0.02, jitter=0))
    assert retrying.models.generate_content(model=MODEL, contents="x").text == "echo: x"
    assert len(gemini_emulator.requests) == 2


def test_api_key_header_or_query(emulator_factory: Callable[..., EmulatorServer]) -> None:
    emu = emulator_factory("gemini", api_key="AIza-right")
    assert client(emu, api_key="AIza-right").models.generate_content(model=MODEL, contents="x").text
    with pytest.raises(errors.ClientError) as err:
        client(emu, api_key="AIza-wrong").models.generate_content(model=MODEL, contents="x")
    assert err.value.code == 400 and "API key not valid" in (err.value.message or "")
    body = {"contents": [{"parts": [{"text": "q"}]}]}
    path = f"/v1beta/models/{MODEL}:generateContent"
    assert request(emu.base_url, "POST", path, body=body, query={"key": "AIza-right"}).status == 200
    missing = request(emu.base_url, "POST", path, body=body)
    assert missing.status == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"


def _declare(parameters: dict[str, Any], key: str = "parameters") -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"functionDeclarations": [{"name": "noop"}, {"name": "f", key: parameters}]}]}


@pytest.mark.parametrize("parameters, field, unknown", [
    ({"type": "object", "additionalProperties": False}, "tools[0].function_declarations[1].parameters",
     "additionalProperties"),
    ({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
     "tools[0].function_declarations[1].parameters", "$schema"),
    ({"type": "object", "properties": {"a": {"type": "string"}, "b": {"$ref": "#/$defs/B"}}},
     "tools[0].function_declarations[1].parameters.properties[1].value", "$ref"),
    ({"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "object", "additional_properties": {}}}}},
     "tools[0].function_declarations[1].parameters.properties[0].value.items", "additional_properties"),
    ({"type": "object", "properties": {"n": {"anyOf": [{"type": "integer", "exclusiveMinimum": 0}]}}},
     "tools[0].function_declarations[1].parameters.properties[0].value.any_of[0]", "exclusiveMinimum"),
    ({"type": "object", "properties": {"c": {"const": "x"}}},
     "tools[0].function_declarations[1].parameters.properties[0].value", "const"),
])
def test_unsupported_schema_keywords_are_rejected(gemini_emulator: EmulatorServer, parameters: dict[str, Any],
                                                  field: str, unknown: str) -> None:
    answer = request(gemini_emulator.base_url, "POST", f"/v1beta/models/{MODEL}:generateContent",
                     body=_declare(parameters))
    assert answer.status == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert f'Unknown name "{unknown}" at \'{field}\': Cannot find field.' in error["message"]
    violations = error["details"][0]["fieldViolations"]
    assert {"field": field, "description": error["message"]} in violations
    assert gemini_emulator.emulator.behaviours.snapshot()["queue"] == []


def test_accepted_schemas(gemini_emulator: EmulatorServer) -> None:
    path = f"/v1beta/models/{MODEL}:generateContent"
    full = {"type": "object", "title": "T", "description": "d", "nullable": True, "required": ["a"],
            "propertyOrdering": ["a"], "minProperties": 1, "maxProperties": 3,
            "properties": {"a": {"type": "STRING", "enum": ["x"], "format": "enum", "minLength": 1, "maxLength": 2,
                                 "pattern": "x", "example": "x", "default": "x"},
                           "b": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1},
                                 "minItems": 0, "maxItems": 2, "any_of": [{"type": "integer"}]}}}
    assert request(gemini_emulator.base_url, "POST", path, body=_declare(full)).status == 200
    json_schema = {"type": "object", "additionalProperties": False, "$defs": {}, "properties": {}}
    assert request(gemini_emulator.base_url, "POST", path,
                   body=_declare(json_schema, key="parametersJsonSchema")).status == 200
    type_list = request(gemini_emulator.base_url, "POST", path,
                        body=_declare({"type": "object", "properties": {"a": {"type": ["string", "null"]}}}))
    assert type_list.status == 400 and "Proto field is not repeating" in type_list.json()["error"]["message"]


@pytest.mark.parametrize("body, fragment", [
    ({}, "contents is not specified"),
    ({"contents": [{"role": "user", "parts": []}]}, "contents.parts must not be empty"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "Please use a valid role"),
])
def test_validation_errors(gemini_emulator: EmulatorServer, body: dict[str, Any], fragment: str) -> None:
    answer = request(gemini_emulator.base_url, "POST", f"/v1beta/models/{MODEL}:generateContent", body=body)
    assert answer.status == 400 and fragment in answer.json()["error"]["message"]


def test_stream_without_alt_sse_is_one_json_array(gemini_emulator: EmulatorServer) -> None:
    gemini_emulator.set_behaviour(chunks=2)
    answer = request(gemini_emulator.base_url, "POST", f"/v1beta/models/{MODEL}:streamGenerateContent",
                     body={"contents": [{"parts": [{"text": "abc"}]}]})
    items = answer.json()
    assert isinstance(items, list) and len(items) == 2
    assert [i["candidates"][0].get("finishReason") for i in items] == [None, "STOP"]


def test_model_listing_and_unknown_action(gemini_emulator: EmulatorServer) -> None:
    names = [m.name for m in client(gemini_emulator).models.list()]
    assert f"models/{MODEL}" in names
    answer = request(gemini_emulator.base_url, "POST", f"/v1beta/models/{MODEL}:explode", body={})
    assert answer.status == 404 and answer.json()["error"]["status"] == "NOT_FOUND"
