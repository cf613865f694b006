"""Canonical <-> Anthropic Messages (the provider adapter): request bodies, responses, streams."""

from __future__ import annotations

from typing import Any

import pytest

from polyroute.config.schema import ProviderConfig
from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    Anthropic,
    StreamTranslator,
    build_body,
    parse_message,
)


def req(messages: list[t.Message] | None = None, **kw: Any) -> t.ChatRequest:
    return t.ChatRequest(model="m", messages=messages or [user("hi")], **kw)


def user(text: str) -> t.Message:
    return t.Message(role="user", content=[t.TextPart(text=text)])


def test_messages_system_tool_results_and_merging() -> None:
    cc = {"type": "ephemeral"}
    messages = [
        t.Message(role="system", content=[t.TextPart(text="sys", cache_control=cc)]),
        user("a"),
        user("b"),
        t.Message(role="assistant", content=[
            t.Thinking(text="th", signature="S"),
            t.Thinking(text="", redacted_data="R"),
            t.Thinking(text="unsigned reasoning from another vendor"),
            t.TextPart(text=""),
            t.ToolCall(id="c1", name="f", arguments='{"x":1}'),
            t.ToolCall(id="c2", name="g", arguments=""),
        ]),
        t.Message(role="tool", content=[t.ToolResult(tool_call_id="c1", content=[t.TextPart(text="1")])]),
        t.Message(role="tool", content=[t.ToolResult(tool_call_id="c2", content=[t.TextPart(text="no")], is_error=True)]),
        t.Message(role="system", content=[t.TextPart(text="late system")]),
        user("next"),
    ]
    body, json_tool, _ = build_body(req(messages), "claude-x")
    assert json_tool is None
    assert body["model"] == "claude-x"
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert body["system"] == [{"type": "text", "text": "sys", "cache_control": cc}, {"type": "text", "text": "late system"}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "th", "signature": "S"},
            {"type": "redacted_thinking", "data": "R"},
            {"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 1}},
            {"type": "tool_use", "id": "c2", "name": "g", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "1"}]},
            {"type": "tool_result", "tool_use_id": "c2", "content": [{"type": "text", "text": "no"}], "is_error": True},
            {"type": "text", "text": "next"},
        ]},
    ]


def test_images() -> None:
    m = t.Message(role="user", content=[
        t.ImagePart(data="QUJD", media_type="image/jpeg"),
        t.ImagePart(url="data:image/gif;base64,R0lG"),
        t.ImagePart(url="https://example.com/a.png"),
    ])
    body, _, _ = build_body(req([m]), "c")
    assert [b["source"] for b in body["messages"][0]["content"]] == [
        {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"},
        {"type": "base64", "media_type": "image/gif", "data": "R0lG"},
        {"type": "url", "url": "https://example.com/a.png"},
    ]


def test_sampling_and_options() -> None:
    body, _, _ = build_body(req(temperature=1.7, top_p=0.5, top_k=5, stop=["X"], user="u", max_tokens=50), "c")
    assert body["temperature"] == 1.0  # OpenAI's 0..2 range clamped to Anthropic's 0..1
    assert body["top_p"] == 0.5 and body["top_k"] == 5
    assert body["stop_sequences"] == ["X"] and body["metadata"] == {"user_id": "u"} and body["max_tokens"] == 50
    assert "thinking" not in body


@pytest.mark.parametrize(
    ("effort", "budget", "max_tokens", "expected_max"),
    [
        ("low", 1024, None, DEFAULT_MAX_TOKENS),
        ("medium", 4096, None, DEFAULT_MAX_TOKENS + 4096),  # budget must stay below max_tokens
        ("high", 16384, 20000, 20000),
        ("high", 16384, 100, 16484),
    ],
)
def test_reasoning_effort_to_thinking_budget(effort: t.ReasoningEffort, budget: int, max_tokens: int | None, expected_max: int) -> None:
    body, _, _ = build_body(req(reasoning_effort=effort, max_tokens=max_tokens, temperature=0.2, top_k=3), "c")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == expected_max and body["max_tokens"] > budget
    # Thinking requires default sampling: temperature and top_k are not sent.
    assert "temperature" not in body and "top_k" not in body


def test_minimal_effort_means_no_thinking_and_explicit_budget_wins() -> None:
    assert "thinking" not in build_body(req(reasoning_effort="minimal"), "c")[0]
    body, _, _ = build_body(req(reasoning_effort="high", thinking_budget=2000, max_tokens=3000), "c")
    assert body["thinking"]["budget_tokens"] == 2000 and body["max_tokens"] == 3000


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (t.ToolChoice(mode="auto"), None, {"type": "auto"}),
        (t.ToolChoice(mode="none"), None, {"type": "none"}),
        (t.ToolChoice(mode="required"), None, {"type": "any"}),
        (t.ToolChoice(mode="tool", name="f"), False, {"type": "tool", "name": "f", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_tools_and_tool_choice(choice: t.ToolChoice | None, parallel: bool | None, expected: dict[str, Any]) -> None:
    tools = [t.Tool(name="f", description="d", parameters={"type": "object", "properties": {}}, cache_control={"type": "ephemeral"})]
    body, _, _ = build_body(req(tools=tools, tool_choice=choice, parallel_tool_calls=parallel), "c")
    assert body["tools"] == [
        {"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {}}, "cache_control": {"type": "ephemeral"}}
    ]
    assert body["tool_choice"] == expected


def test_json_schema_is_a_forced_tool_and_comes_back_as_text() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    rf = t.ResponseFormat(type="json_schema", schema=schema, name="answer")
    body, json_tool, wrapped = build_body(req(response_format=rf), "c")
    assert json_tool == "json_response" and not wrapped
    assert body["tools"][-1]["name"] == "json_response" and body["tools"][-1]["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"}
    d = {
        "id": "msg_1", "model": "c", "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "t1", "name": "json_response", "input": {"a": 1}}],
        "usage": {"input_tokens": 5, "output_tokens": 3},
    }
    r = parse_message(d, "c", json_tool, wrapped)
    assert r.choices[0].message.content == [t.TextPart(text='{"a":1}')]
    assert r.choices[0].finish_reason == "stop"


def test_json_with_client_tools_thinking_and_non_object_schema() -> None:
    tools = [t.Tool(name="json_response", parameters={"type": "object"})]
    body, json_tool, _ = build_body(req(tools=tools, response_format=t.ResponseFormat(type="json_object")), "c")
    assert json_tool == "json_response_"  # no clash with the client's own tool
    assert body["tool_choice"] == {"type": "any"}
    body, _, _ = build_body(req(reasoning_effort="low", response_format=t.ResponseFormat(type="json_object")), "c")
    assert "tool_choice" not in body  # forcing a tool is not allowed while thinking
    assert "json_response" in body["system"][-1]["text"]
    rf = t.ResponseFormat(type="json_schema", schema={"type": "array", "items": {"type": "string"}})
    body, json_tool, wrapped = build_body(req(response_format=rf), "c")
    assert wrapped and body["tools"][0]["input_schema"]["properties"]["value"] == rf.schema
    d = {"content": [{"type": "tool_use", "id": "t", "name": json_tool, "input": {"value": ["x"]}}], "stop_reason": "tool_use"}
    assert parse_message(d, "c", json_tool, wrapped).choices[0].message.text() == '["x"]'


def test_invalid_tool_arguments_are_a_client_error() -> None:
    m = t.Message(role="assistant", content=[t.ToolCall(id="c", name="f", arguments="[1]")])
    with pytest.raises(e.InvalidRequest):
        build_body(req([user("x"), m]), "c")


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons(stop: str, finish: str) -> None:
    content = [{"type": "tool_use", "id": "t", "name": "f", "input": {}}] if stop == "tool_use" else [{"type": "text", "text": "x"}]
    d = {"id": "m", "content": content, "stop_reason": stop, "stop_sequence": "END" if stop == "stop_sequence" else None}
    r = parse_message(d, "c")
    assert r.choices[0].finish_reason == finish
    assert r.choices[0].stop_sequence == ("END" if stop == "stop_sequence" else None)


def test_response_blocks_and_usage() -> None:
    d = {
        "id": "msg_1",
        "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "S"},
            {"type": "redacted_thinking", "data": "R"},
            {"type": "text", "text": "hi"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"b": 2, "a": 1}},
            {"type": "web_search_tool_result", "tool_use_id": "x", "content": []},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20},
    }
    r = parse_message(d, "c")
    assert r.id == "msg_1" and r.model == "claude-x"
    assert r.choices[0].message.content == [
        t.Thinking(text="hm", signature="S"),
        t.Thinking(text="", redacted_data="R"),
        t.TextPart(text="hi"),
        t.ToolCall(id="toolu_1", name="f", arguments='{"b":2,"a":1}'),
    ]
    # canonical input includes cache reads and writes: 10 + 100 + 20
    assert r.usage == t.Usage(input_tokens=130, output_tokens=5, cached_input_tokens=100, cache_write_tokens=20)


def feed_all(tr: StreamTranslator, events: list[dict[str, Any]]) -> list[t.StreamEvent]:
    out: list[t.StreamEvent] = []
    for d in events:
        out.extend(tr.feed(d["type"], d))
    return out


def test_stream_translation() -> None:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "SIG"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a":1}'}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    tr = StreamTranslator("p", "c", None, False)
    out = feed_all(tr, events)
    assert tr.finished
    assert out == [
        t.StreamStart(id="msg_1", model="claude-x", created=out[0].created, usage=t.Usage(input_tokens=14, output_tokens=1, cached_input_tokens=4)),  # type: ignore[union-attr]
        t.ThinkingDelta(text="hmm"),
        t.ThinkingDelta(signature="SIG"),
        t.TextDelta(text="Hi"),
        t.ToolCallStart(index=0, id="toolu_1", name="f"),
        t.ToolCallDelta(index=0, arguments='{"a":1}'),
        t.Finish(reason="tool_calls"),
        t.UsageEvent(usage=t.Usage(input_tokens=14, output_tokens=9, cached_input_tokens=4)),
    ]


def test_stream_json_tool_becomes_text_and_stop_sequence_is_kept() -> None:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3, "output_tokens": 0}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "json_response", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"a"'}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ":1}"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}},
        {"type": "message_stop"},
    ]
    out = feed_all(StreamTranslator("p", "c", "json_response", False), events)
    assert [ev for ev in out if isinstance(ev, t.TextDelta)] == [t.TextDelta(text='{"a"'), t.TextDelta(text=":1}")]
    assert not any(isinstance(ev, t.ToolCallStart) for ev in out)
    assert t.Finish(reason="stop") in out

    events = [
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3, "output_tokens": 0}}},
        {"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"}, "usage": {"output_tokens": 1}},
        {"type": "message_stop"},
    ]
    out = feed_all(StreamTranslator("p", "c", None, False), events)
    assert t.Finish(reason="stop", stop_sequence="END") in out


@pytest.mark.parametrize(
    ("etype", "cls"),
    [("overloaded_error", e.UpstreamOverloaded), ("api_error", e.UpstreamError), ("rate_limit_error", e.RateLimited)],
)
def test_stream_error_event(etype: str, cls: type[e.GatewayError]) -> None:
    tr = StreamTranslator("p", "c", None, False)
    with pytest.raises(cls) as exc:
        tr.feed("error", {"type": "error", "error": {"type": etype, "message": "Overloaded"}})
    assert "Overloaded" in exc.value.message


def provider() -> Anthropic:
    return Anthropic("anth", ProviderConfig(type="anthropic", api_key="k"))


def test_provider_headers_urls_and_unsupported() -> None:
    p = provider()
    assert p.messages_url == "https://api.anthropic.com/v1/messages"
    assert p.headers == {"anthropic-version": "2023-06-01", "x-api-key": "k"}
    assert Anthropic("a", ProviderConfig(type="anthropic", base_url="http://h/v1/")).messages_url == "http://h/v1/messages"
    assert p.unsupported(req(n=2)) == ["n"]
    assert p.unsupported(req(logprobs=True)) == ["logprobs"]
    assert p.unsupported(req(response_format=t.ResponseFormat(type="json_schema", schema={}))) == []


@pytest.mark.parametrize(
    ("status", "cls", "retry_after"),
    [
        (429, e.RateLimited, 7.0),
        (529, e.UpstreamOverloaded, 7.0),
        (500, e.UpstreamError, 7.0),
        (400, e.InvalidRequest, None),
        (413, e.BodyTooLarge, None),
    ],
)
def test_error_mapping(status: int, cls: type[e.GatewayError], retry_after: float | None) -> None:
    raw = b'{"type":"error","error":{"type":"x","message":"vendor says no"}}'
    err = provider().map_error(status, raw, {"retry-after": "7"})
    assert type(err) is cls
    assert "vendor says no" in err.message
    assert err.retry_after == retry_after
