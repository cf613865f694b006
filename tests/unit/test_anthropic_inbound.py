"""Anthropic Messages (inbound) <-> canonical: parsing, rendering, the SSE event sequence, errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event

from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.inbound.anthropic_messages import (
    AnthropicMessagesAPI,
    StreamRenderer,
    error_body,
    parse_count_tokens,
    parse_request,
    render_response,
)


def body(**kw: Any) -> bytes:
    base: dict[str, Any] = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    base.update(kw)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


def test_parse_full_request() -> None:
    cc = {"type": "ephemeral"}
    req = parse_request(
        body(
            system=[{"type": "text", "text": "be brief", "cache_control": cc}],
            messages=[
                {"role": "user", "content": [
                    {"type": "text", "text": "look", "cache_control": cc},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig1"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"b": 1, "a": 2}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "boom", "is_error": True},
                    {"type": "text", "text": "and now?"},
                ]},
            ],
            tools=[{"name": "f", "description": "d", "input_schema": {"type": "object"}, "cache_control": cc}],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
            stop_sequences=["END"], temperature=0.5, top_p=0.9, top_k=40,
            metadata={"user_id": "u-1"}, thinking={"type": "enabled", "budget_tokens": 2048},
            max_tokens=4000, stream=True,
        )
    )
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool", "user"]
    assert req.messages[0].content == [t.TextPart(text="be brief", cache_control=cc)]
    assert req.messages[1].content == [
        t.TextPart(text="look", cache_control=cc),
        t.ImagePart(data="AAAA", media_type="image/png"),
        t.ImagePart(url="https://x/y.png"),
    ]
    assert req.messages[2].content == [
        t.Thinking(text="hmm", signature="sig1"),
        t.Thinking(text="", redacted_data="opaque"),
        t.TextPart(text="calling"),
        t.ToolCall(id="toolu_1", name="f", arguments='{"b":1,"a":2}'),  # key order kept
    ]
    assert req.messages[3].content == [t.ToolResult(tool_call_id="toolu_1", content=[t.TextPart(text="boom")], is_error=True)]
    assert req.messages[4].content == [t.TextPart(text="and now?")]
    assert req.tools == [t.Tool(name="f", description="d", parameters={"type": "object"}, cache_control=cc)]
    assert req.tool_choice == t.ToolChoice(mode="required")
    assert req.parallel_tool_calls is False
    assert req.stop == ["END"] and req.temperature == 0.5 and req.top_p == 0.9 and req.top_k == 40
    assert req.user == "u-1" and req.thinking_budget == 2048 and req.max_tokens == 4000
    assert req.stream and req.include_usage


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, t.ToolChoice(mode="auto")),
        ({"type": "none"}, t.ToolChoice(mode="none")),
        ({"type": "any"}, t.ToolChoice(mode="required")),
        ({"type": "tool", "name": "f"}, t.ToolChoice(mode="tool", name="f")),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: t.ToolChoice) -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    req = parse_request(body(tools=tools, tool_choice=choice))
    assert req.tool_choice == expected
    assert req.parallel_tool_calls is None


def test_system_string_and_output_config() -> None:
    req = parse_request(
        body(system="sys", output_config={"effort": "max", "format": {"type": "json_schema", "schema": {"type": "object"}}})
    )
    assert req.messages[0] == t.Message(role="system", content=[t.TextPart(text="sys")])
    assert req.reasoning_effort == "high"
    assert req.response_format == t.ResponseFormat(type="json_schema", schema={"type": "object"}, name="response")


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"messages": []}, "messages"),
        ({"thinking": {"type": "enabled", "budget_tokens": 500}}, "budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 2000}, "budget_tokens"),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "document"),
        ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "x", "name": "f", "input": {}}]}]}, "assistant"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}, "file"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search_20250305"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
    ],
)
def test_invalid_requests(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(e.InvalidRequest) as exc:
        parse_request(body(**kw))
    assert needle in exc.value.message


def test_count_tokens_needs_no_max_tokens() -> None:
    req = parse_count_tokens(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hello world"}]}))
    assert req.messages[0].text() == "hello world"


# --- rendering ------------------------------------------------------------------------------


def response(parts: list[t.Part], finish: t.FinishReason | None, stop_sequence: str | None = None) -> t.ChatResponse:
    return t.ChatResponse(
        id="msg_1",
        model="upstream",
        created=0,
        choices=[t.Choice(index=0, message=t.Message(role="assistant", content=parts), finish_reason=finish, stop_sequence=stop_sequence)],
        usage=t.Usage(input_tokens=100, output_tokens=20, cached_input_tokens=30, cache_write_tokens=10, reasoning_tokens=5),
    )


def test_render_response_blocks_and_usage() -> None:
    r = response(
        [
            t.Thinking(text="hm", signature="s"),
            t.Thinking(text="", redacted_data="R"),
            t.TextPart(text="hello"),
            t.ToolCall(id="c1", name="f", arguments='{"x": 1}'),
        ],
        "tool_calls",
    )
    d = render_response(r, "alias")
    assert d["model"] == "alias" and d["type"] == "message" and d["role"] == "assistant"
    assert d["content"] == [
        {"type": "thinking", "thinking": "hm", "signature": "s"},
        {"type": "redacted_thinking", "data": "R"},
        {"type": "text", "text": "hello"},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 1}},
    ]
    assert d["stop_reason"] == "tool_use" and d["stop_sequence"] is None
    # Anthropic's input_tokens excludes cache reads and writes: 100 - 30 - 10.
    assert d["usage"] == {"input_tokens": 60, "output_tokens": 20, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 30}


@pytest.mark.parametrize(
    ("finish", "seq", "expected"),
    [
        ("stop", None, "end_turn"),
        ("stop", "END", "stop_sequence"),
        ("length", None, "max_tokens"),
        ("tool_calls", None, "tool_use"),
        ("content_filter", None, "refusal"),
        (None, None, "end_turn"),
    ],
)
def test_stop_reasons(finish: t.FinishReason | None, seq: str | None, expected: str) -> None:
    d = render_response(response([t.TextPart(text="x")], finish, seq), "m")
    assert d["stop_reason"] == expected
    assert d["stop_sequence"] == seq


def test_malformed_tool_arguments_are_kept_visible() -> None:
    d = render_response(response([t.ToolCall(id="c", name="f", arguments="{oops")], "tool_calls"), "m")
    assert d["content"][0]["input"] == {"_raw_arguments": "{oops"}


# --- streaming ------------------------------------------------------------------------------


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk.strip():
            continue
        lines = chunk.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), chunk
        out.append((lines[0][7:], orjson.loads(lines[1][6:])))
    return out


def run_stream(events: list[t.StreamEvent], req: t.ChatRequest | None = None) -> list[tuple[str, dict[str, Any]]]:
    r = StreamRenderer(req or parse_request(body()))
    raw = b"".join(r.render(ev) for ev in events) + r.done()
    sse = parse_sse(raw)
    for name, data in sse:
        assert data["type"] == name  # event name and payload type always agree
    return sse


def test_stream_sequence_text_thinking_tools() -> None:
    events: list[t.StreamEvent] = [
        t.StreamStart(id="msg_1", model="up", created=0),
        t.ThinkingDelta(text="let me "),
        t.ThinkingDelta(text="think"),
        t.ThinkingDelta(signature="SIG"),
        t.TextDelta(text="Hel"),
        t.TextDelta(text="lo"),
        t.ToolCallStart(index=0, id="c1", name="f"),
        t.ToolCallDelta(index=0, arguments='{"a":'),
        t.ToolCallDelta(index=0, arguments="1}"),
        t.ToolCallStart(index=1, id="c2", name="g"),
        t.ToolCallDelta(index=1, arguments="{}"),
        t.Finish(reason="tool_calls"),
        t.UsageEvent(usage=t.Usage(input_tokens=50, output_tokens=7, cached_input_tokens=20)),
    ]
    sse = run_stream(events)
    names = [n for n, _ in sse]
    assert names == [
        "message_start",
        "content_block_start", "ping", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]
    starts = [d for n, d in sse if n == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2, 3]
    assert [s["content_block"]["type"] for s in starts] == ["thinking", "text", "tool_use", "tool_use"]
    delta = sse[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": 30, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 20}

    # The official SDK's own accumulator assembles the same message the non-streaming API gives.
    snap = None
    bufs: dict[int, bytes] = {}
    for _, d in sse:
        if d["type"] != "ping":
            snap = accumulate_event(event=d, current_snapshot=snap, json_bufs=bufs)  # type: ignore[arg-type]
    assert snap is not None
    assert [b.type for b in snap.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert snap.content[0].thinking == "let me think" and snap.content[0].signature == "SIG"  # type: ignore[union-attr]
    assert snap.content[1].text == "Hello"  # type: ignore[union-attr]
    assert snap.content[2].input == {"a": 1} and snap.content[3].input == {}  # type: ignore[union-attr]
    assert snap.stop_reason == "tool_use"
    assert snap.usage.input_tokens == 30 and snap.usage.cache_read_input_tokens == 20 and snap.usage.output_tokens == 7


def test_stream_message_start_uses_upstream_input_usage_or_an_estimate() -> None:
    sse = run_stream([t.StreamStart(id="m", model="u", created=0, usage=t.Usage(input_tokens=12, cache_write_tokens=2)), t.Finish(reason="stop")])
    assert sse[0][1]["message"]["usage"]["input_tokens"] == 10
    assert sse[0][1]["message"]["usage"]["cache_creation_input_tokens"] == 2
    sse = run_stream([t.StreamStart(id="m", model="u", created=0), t.Finish(reason="stop")])
    assert sse[0][1]["message"]["usage"]["input_tokens"] > 0
    assert sse[0][1]["message"]["model"] == "m"  # the model the client asked for


def test_stream_stop_sequence_and_length() -> None:
    sse = run_stream([t.StreamStart(id="m", model="u", created=0), t.TextDelta(text="a"), t.Finish(reason="stop", stop_sequence="END")])
    assert sse[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    sse = run_stream([t.StreamStart(id="m", model="u", created=0), t.TextDelta(text="a"), t.Finish(reason="length")])
    assert sse[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_stream_redacted_thinking_and_other_choices() -> None:
    sse = run_stream(
        [
            t.StreamStart(id="m", model="u", created=0),
            t.ThinkingDelta(redacted_data="XYZ"),
            t.TextDelta(text="other choice", choice=1),
            t.TextDelta(text="ok"),
            t.Finish(reason="stop"),
        ]
    )
    starts = [d["content_block"] for n, d in sse if n == "content_block_start"]
    assert starts == [{"type": "redacted_thinking", "data": "XYZ"}, {"type": "text", "text": ""}]
    texts = [d["delta"]["text"] for n, d in sse if n == "content_block_delta"]
    assert texts == ["ok"]


def test_stream_error_event() -> None:
    r = StreamRenderer(parse_request(body()))
    raw = r.error(e.UpstreamOverloaded("busy"))
    assert parse_sse(raw) == [("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})]


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (e.InvalidRequest("x"), "invalid_request_error"),
        (e.AuthenticationFailed("x"), "authentication_error"),
        (e.PermissionDenied("x"), "permission_error"),
        (e.ModelNotFound("x"), "not_found_error"),
        (e.BodyTooLarge("x"), "request_too_large"),
        (e.RateLimited("x"), "rate_limit_error"),
        (e.QuotaExceeded("x"), "rate_limit_error"),
        (e.UpstreamError("x"), "api_error"),
        (e.UpstreamTimeout("x"), "api_error"),
        (e.UpstreamOverloaded("x"), "overloaded_error"),
        (e.Unavailable("x"), "overloaded_error"),
        (e.UnprocessableEntity("x"), "invalid_request_error"),
    ],
)
def test_error_types(err: e.GatewayError, kind: str) -> None:
    assert error_body(err) == {"type": "error", "error": {"type": kind, "message": "x"}}
    assert AnthropicMessagesAPI().error_body(err)["error"]["type"] == kind


def test_tool_call_signature_travels_as_a_thinking_block() -> None:
    d = render_response(response([t.ToolCall(id="c", name="f", arguments="{}", signature="GSIG")], "tool_calls"), "m")
    assert d["content"][0] == {"type": "thinking", "thinking": "", "signature": "GSIG"}
    assert d["content"][1]["type"] == "tool_use"
    sse = run_stream([t.StreamStart(id="m", model="u", created=0), t.ToolCallStart(index=0, id="c", name="f", signature="GSIG"),
                      t.ToolCallDelta(index=0, arguments="{}"), t.Finish(reason="tool_calls")])
    starts = [d["content_block"]["type"] for n, d in sse if n == "content_block_start"]
    assert starts == ["thinking", "tool_use"]
    assert {"type": "signature_delta", "signature": "GSIG"} in [d["delta"] for n, d in sse if n == "content_block_delta"]
    # sent back, it becomes the signature-only Thinking part the Gemini adapter re-attaches
    back = parse_request(body(messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": d["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c", "content": "ok"}]},
    ]))
    assert back.messages[1].content[0] == t.Thinking(text="", signature="GSIG")
