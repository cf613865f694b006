"""OpenAI Chat Completions <-> canonical: parsing, rendering, streaming chunks."""

from __future__ import annotations

import orjson
import pytest

from polyroute.core import types as t
from polyroute.core.errors import InvalidRequest
from polyroute.inbound.openai_chat import StreamRenderer, parse_request, render_response


def body(**kw: object) -> bytes:
    base: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    base.update(kw)
    return orjson.dumps(base)


def test_parse_full_request() -> None:
    req = parse_request(
        body(
            messages=[
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "what is in"},
                                             {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            tool_choice={"type": "function", "function": {"name": "f"}},
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True}},
            max_completion_tokens=50, max_tokens=10, stop="END", n=2, seed=7, stream=True,
            stream_options={"include_usage": True}, reasoning_effort="low",
            polyroute={"fallbacks": False, "tags": ["team-a"]},
        )
    )
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.messages[1].content[1] == t.ImagePart(url="https://x/y.png", detail="low")
    assert req.messages[2].content == [t.ToolCall(id="c1", name="f", arguments='{"a":1}')]
    assert req.messages[3].content == [t.ToolResult(tool_call_id="c1", content=[t.TextPart(text="42")])]
    assert req.tool_choice == t.ToolChoice(mode="tool", name="f")
    assert req.response_format == t.ResponseFormat(type="json_schema", schema={"type": "object"}, name="x", strict=True)
    assert req.max_tokens == 50  # max_completion_tokens wins
    assert req.stop == ["END"] and req.n == 2 and req.stream and req.include_usage
    assert req.reasoning_effort == "low"
    assert req.options == t.RequestOptions(fallbacks=False, tags=["team-a"])


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ],
)
def test_parse_rejects(kw: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as ei:
        parse_request(body(**kw))
    assert ei.value.param == param


def test_render_response_maps_usage_and_tool_calls() -> None:
    resp = t.ChatResponse(
        id="r1", model="up", created=1,
        choices=[t.Choice(index=0, finish_reason="tool_calls", message=t.Message(role="assistant", content=[
            t.Thinking(text="hmm", signature="sig"), t.ToolCall(id="c", name="f", arguments="{}")]))],
        usage=t.Usage(input_tokens=10, output_tokens=5, cached_input_tokens=4, reasoning_tokens=2),
    )
    d = render_response(resp, "public")
    assert d["model"] == "public"
    msg = d["choices"][0]["message"]
    assert msg["content"] is None and msg["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert msg["reasoning_content"] == "hmm" and msg["reasoning_signature"] == "sig"
    assert d["usage"] == {
        "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2},
    }


def _chunks(raw: list[bytes]) -> list[dict[str, object]]:
    return [orjson.loads(c[6:]) for c in raw if c.startswith(b"data: {")]


def test_stream_renderer_sequence_and_hidden_usage() -> None:
    events: list[t.StreamEvent] = [
        t.StreamStart(id="x", model="up", created=5), t.TextDelta(text="he"), t.TextDelta(text="llo"),
        t.ToolCallStart(index=0, id="c0", name="f"), t.ToolCallDelta(index=0, arguments='{"a"'),
        t.ToolCallDelta(index=0, arguments=":1}"), t.Finish(reason="tool_calls"),
        t.UsageEvent(usage=t.Usage(input_tokens=3, output_tokens=4)),
    ]
    hidden = StreamRenderer("pub", include_usage=False)
    out = [hidden.render(ev) for ev in events]
    chunks = _chunks(out)
    assert all(c["model"] == "pub" and c["id"] == "x" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "he"}  # type: ignore[index]
    assert not any("usage" in c for c in chunks)  # client did not ask: the usage chunk is hidden
    shown = StreamRenderer("pub", include_usage=True)
    last = _chunks([shown.render(ev) for ev in events])[-1]
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 7  # type: ignore[index]
