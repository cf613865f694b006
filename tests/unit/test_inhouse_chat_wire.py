"""In-house chat translation: canonical request -> llama.cpp body, llama.cpp chunks -> events."""

from __future__ import annotations

from typing import Any

import pytest

from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.providers.inhouse.chat_wire import (
    DEFAULT_MAX_TOKENS,
    ChunkReader,
    assemble,
    build_body,
    messages_to_llama,
)


def user(text: str) -> t.Message:
    return t.Message(role="user", content=[t.TextPart(text=text)])


def test_defaults_bound_the_answer_and_always_stream_with_usage() -> None:
    body = build_body(t.ChatRequest(model="m", messages=[user("hi")]), context_size=2048)
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["return_progress"] is True  # cancellation points while the prompt is read
    assert 0 <= body["temperature"] <= 1 and 0 < body["top_p"] <= 1
    assert "seed" not in body and "stop" not in body


def test_sampling_parameters_pass_through_and_max_tokens_is_capped_by_context() -> None:
    req = t.ChatRequest(
        model="m", messages=[user("hi")], max_tokens=100_000, temperature=0.0, top_p=0.5,
        stop=["\n\n", "END"], seed=7, presence_penalty=0.1, frequency_penalty=0.2,
    )
    body = build_body(req, context_size=512)
    assert body["max_tokens"] == 512
    assert body["temperature"] == 0.0 and body["top_p"] == 0.5
    assert body["stop"] == ["\n\n", "END"] and body["seed"] == 7
    assert body["presence_penalty"] == 0.1 and body["frequency_penalty"] == 0.2


def test_json_modes_become_llama_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    rf = t.ResponseFormat(type="json_schema", schema=schema, name="x")
    body = build_body(t.ChatRequest(model="m", messages=[user("hi")], response_format=rf), context_size=256)
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"schema": schema}}
    rf = t.ResponseFormat(type="json_object")
    body = build_body(t.ChatRequest(model="m", messages=[user("hi")], response_format=rf), context_size=256)
    assert body["response_format"] == {"type": "json_object"}


def test_messages_flatten_to_text_and_tool_traffic_becomes_readable_text() -> None:
    msgs = [
        t.Message(role="system", content=[t.TextPart(text="be brief")]),
        t.Message(role="user", content=[t.TextPart(text="look"), t.ImagePart(url="http://x/y.png")]),
        t.Message(
            role="assistant",
            content=[t.Thinking(text="hmm"), t.TextPart(text="calling"), t.ToolCall(id="c1", name="get", arguments='{"q":1}')],
        ),
        t.Message(role="tool", content=[t.ToolResult(tool_call_id="c1", name="get", content=[t.TextPart(text="42")])]),
    ]
    out = messages_to_llama(msgs)
    assert out[0] == {"role": "system", "content": "be brief"}
    assert out[1] == {"role": "user", "content": "look"}
    assert out[2]["role"] == "assistant" and "hmm" not in out[2]["content"]
    assert "calling" in out[2]["content"] and 'get with {"q":1}' in out[2]["content"]
    assert out[3]["role"] == "user" and "42" in out[3]["content"] and "get" in out[3]["content"]


def chunk(**kw: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "created": 123, "model": "/path/model.gguf", "object": "chat.completion.chunk", **kw}


CHUNKS = [
    chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}],
          prompt_progress={"total": 300, "cache": 0, "processed": 0, "time_ms": 0}),
    chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}],
          prompt_progress={"total": 300, "cache": 0, "processed": 256, "time_ms": 900}),
    chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}]),
    chunk(choices=[{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]),
    chunk(choices=[{"index": 0, "delta": {"content": "lo"}, "finish_reason": None}]),
    chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]),
    chunk(choices=[], usage={"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32,
                             "prompt_tokens_details": {"cached_tokens": 24}}),
]


def test_chunks_become_canonical_events_in_order() -> None:
    reader = ChunkReader("smollm2-135m-instruct", "local")
    assert reader.feed(CHUNKS[0]) == [] and not reader.started  # prompt progress is not an event
    events = [ev for c in CHUNKS for ev in reader.feed(c)]
    assert events == [
        t.StreamStart(id="chatcmpl-1", model="smollm2-135m-instruct", created=123),
        t.TextDelta(text="Hel"),
        t.TextDelta(text="lo"),
        t.Finish(reason="stop"),
        t.UsageEvent(usage=t.Usage(input_tokens=30, output_tokens=2, cached_input_tokens=24)),
    ]
    assert reader.finished


def test_length_finish_maps_to_length() -> None:
    reader = ChunkReader("m", "p")
    events = reader.feed(chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "length"}]))
    assert events[-1] == t.Finish(reason="length")


def test_context_overflow_is_the_callers_error_and_raised_before_any_event() -> None:
    reader = ChunkReader("m", "local")
    err = {"error": {"code": 400, "message": "request (431 tokens) exceeds the available context size (256 tokens)",
                     "type": "exceed_context_size_error"}}
    with pytest.raises(e.InvalidRequest) as ei:
        reader.feed(err)
    assert ei.value.status == 400 and ei.value.code == "context_length_exceeded"
    assert "exceeds the available context size" in ei.value.message and not reader.started


def test_server_errors_are_retryable_upstream_errors() -> None:
    with pytest.raises(e.UpstreamError):
        ChunkReader("m", "p").feed({"error": {"code": 500, "message": "boom", "type": "server_error"}})


def test_assemble_builds_a_whole_response() -> None:
    reader = ChunkReader("smollm2-135m-instruct", "local")
    resp = assemble([ev for c in CHUNKS for ev in reader.feed(c)], "smollm2-135m-instruct")
    assert resp.id == "chatcmpl-1" and resp.model == "smollm2-135m-instruct"
    assert resp.choices[0].message.text() == "Hello" and resp.choices[0].finish_reason == "stop"
    assert resp.usage == t.Usage(input_tokens=30, output_tokens=2, cached_input_tokens=24)
