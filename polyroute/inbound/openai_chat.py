"""OpenAI Chat Completions <-> canonical model, for the inbound `/v1/chat/completions` API."""

from __future__ import annotations

from typing import Any

import orjson

from polyroute.core import types as t
from polyroute.core.errors import GatewayError, InvalidRequest
from polyroute.inbound import openai_wire as w
from polyroute.inbound.validation import decode_body

_EFFORTS = {"minimal", "low", "medium", "high"}


def parse_request(body: bytes) -> t.ChatRequest:
    b = decode_body(body, w.ChatCompletionBody)
    if not b.messages:
        raise InvalidRequest("'messages' must contain at least one message", param="messages")
    messages = [_message(m, i) for i, m in enumerate(b.messages)]
    max_tokens = b.max_completion_tokens if b.max_completion_tokens is not None else b.max_tokens
    _check_ranges(b, max_tokens)
    effort = b.reasoning_effort
    if effort is not None and effort not in _EFFORTS:
        raise InvalidRequest(
            f"'reasoning_effort' must be one of {sorted(_EFFORTS)}, got {effort!r}", param="reasoning_effort"
        )
    stop = [b.stop] if isinstance(b.stop, str) else b.stop
    stream = bool(b.stream)
    if b.stream_options is not None and not stream:
        raise InvalidRequest("'stream_options' is only allowed when 'stream' is true", param="stream_options")
    return t.ChatRequest(
        model=b.model,
        messages=messages,
        tools=[_tool(d) for d in b.tools] if b.tools else None,
        tool_choice=_tool_choice(b.tool_choice),
        parallel_tool_calls=b.parallel_tool_calls,
        response_format=_response_format(b.response_format),
        temperature=b.temperature,
        top_p=b.top_p,
        max_tokens=max_tokens,
        stop=stop or None,
        n=b.n or 1,
        seed=b.seed,
        user=b.user,
        logprobs=b.logprobs,
        top_logprobs=b.top_logprobs,
        presence_penalty=b.presence_penalty,
        frequency_penalty=b.frequency_penalty,
        reasoning_effort=effort,  # type: ignore[arg-type]
        stream=stream,
        include_usage=bool(b.stream_options and b.stream_options.include_usage),
        options=b.polyroute,
        metadata=b.metadata,
    )


def _check_ranges(b: w.ChatCompletionBody, max_tokens: int | None) -> None:
    if b.temperature is not None and not 0 <= b.temperature <= 2:
        raise InvalidRequest("'temperature' must be between 0 and 2", param="temperature")
    if b.top_p is not None and not 0 <= b.top_p <= 1:
        raise InvalidRequest("'top_p' must be between 0 and 1", param="top_p")
    if b.n is not None and not 1 <= b.n <= 128:
        raise InvalidRequest("'n' must be between 1 and 128", param="n")
    if max_tokens is not None and max_tokens < 1:
        raise InvalidRequest("'max_tokens' must be at least 1", param="max_tokens")
    if b.top_logprobs is not None and not 0 <= b.top_logprobs <= 20:
        raise InvalidRequest("'top_logprobs' must be between 0 and 20", param="top_logprobs")
    if b.stop is not None and not isinstance(b.stop, str) and len(b.stop) > 4:
        raise InvalidRequest("'stop' takes at most 4 sequences", param="stop")
    for name in ("presence_penalty", "frequency_penalty"):
        v = getattr(b, name)
        if v is not None and not -2 <= v <= 2:
            raise InvalidRequest(f"'{name}' must be between -2 and 2", param=name)


def _parts(content: str | list[w.ContentPart] | None, where: str) -> list[t.Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [t.TextPart(text=content)]
    out: list[t.Part] = []
    for i, p in enumerate(content):
        if isinstance(p, w.TextContent):
            out.append(t.TextPart(text=p.text, cache_control=p.cache_control))
        elif isinstance(p, w.ImageContent):
            out.append(t.ImagePart(url=p.image_url.url, detail=p.image_url.detail))
        elif isinstance(p, w.RefusalContent):
            out.append(t.TextPart(text=p.refusal))
        else:
            kind = "input_audio" if isinstance(p, w.InputAudio) else "file"
            raise InvalidRequest(
                f"content part type '{kind}' is not supported by this gateway", param=f"{where}.content[{i}]"
            )
    return out


def _message(m: w.MessageW, i: int) -> t.Message:
    where = f"messages[{i}]"
    if isinstance(m, w.UserMessage):
        return t.Message(role="user", content=_parts(m.content, where), name=m.name)
    if isinstance(m, w.SystemMessage) or isinstance(m, w.DeveloperMessage):
        return t.Message(role="system", content=_parts(m.content, where), name=m.name)
    if isinstance(m, w.AssistantMessage):
        parts: list[t.Part] = []
        if m.reasoning_content is not None or m.reasoning_signature is not None:
            parts.append(t.Thinking(text=m.reasoning_content or "", signature=m.reasoning_signature))
        parts.extend(_parts(m.content, where))
        if m.refusal:
            parts.append(t.TextPart(text=m.refusal))
        for tc in m.tool_calls or ():
            parts.append(
                t.ToolCall(
                    id=tc.id,
                    name=tc.function.name,
                    arguments=tc.function.arguments,
                    signature=_signature_of(tc.extra_content),
                )
            )
        if m.function_call is not None:
            parts.append(t.ToolCall(id="call_legacy", name=m.function_call.name, arguments=m.function_call.arguments))
        return t.Message(role="assistant", content=parts, name=m.name)
    assert isinstance(m, w.ToolMessage)
    result_parts = [p for p in _parts(m.content, where) if isinstance(p, t.TextPart) or isinstance(p, t.ImagePart)]
    return t.Message(
        role="tool",
        content=[t.ToolResult(tool_call_id=m.tool_call_id, content=result_parts)],
    )


def _signature_of(extra: dict[str, Any] | None) -> str | None:
    google = (extra or {}).get("google")
    sig = google.get("thought_signature") if isinstance(google, dict) else None
    return sig if isinstance(sig, str) else None


def _extra_content(signature: str | None) -> dict[str, Any]:
    return {"extra_content": {"google": {"thought_signature": signature}}} if signature else {}


def _tool(d: w.ToolDef) -> t.Tool:
    f = d.function
    return t.Tool(name=f.name, description=f.description, parameters=f.parameters, strict=f.strict)


def _tool_choice(c: str | w.NamedToolChoice | None) -> t.ToolChoice | None:
    if c is None:
        return None
    if isinstance(c, str):
        if c not in ("auto", "none", "required"):
            raise InvalidRequest(
                f"'tool_choice' must be 'auto', 'none', 'required' or a named function, got {c!r}",
                param="tool_choice",
            )
        return t.ToolChoice(mode=c)  # type: ignore[arg-type]
    return t.ToolChoice(mode="tool", name=c.function.name)


def _response_format(f: w.TextFormat | w.JSONObjectFormat | w.JSONSchemaFormat | None) -> t.ResponseFormat | None:
    if f is None or isinstance(f, w.TextFormat):
        return None
    if isinstance(f, w.JSONObjectFormat):
        return t.ResponseFormat(type="json_object")
    assert isinstance(f, w.JSONSchemaFormat)
    s = f.json_schema
    return t.ResponseFormat(type="json_schema", schema=s.schema, name=s.name, strict=s.strict)


# --- responses ------------------------------------------------------------------------------


def usage_dict(u: t.Usage) -> dict[str, Any]:
    d: dict[str, Any] = {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }
    return d


def _message_dict(m: t.Message) -> dict[str, Any]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    signature: str | None = None
    for p in m.content:
        if isinstance(p, t.TextPart):
            texts.append(p.text)
        elif isinstance(p, t.ToolCall):
            tool_calls.append(
                {
                    "id": p.id,
                    "type": "function",
                    "function": {"name": p.name, "arguments": p.arguments},
                    **_extra_content(p.signature),
                }
            )
        elif isinstance(p, t.Thinking):
            reasoning.append(p.text)
            signature = p.signature or signature
    d: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None}
    if tool_calls:
        d["tool_calls"] = tool_calls
    if reasoning:
        d["reasoning_content"] = "".join(reasoning)
        if signature:
            d["reasoning_signature"] = signature
    d["refusal"] = None
    return d


def render_response(r: t.ChatResponse, model: str) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": r.id,
        "object": "chat.completion",
        "created": r.created,
        "model": model,
        "choices": [
            {
                "index": c.index,
                "message": _message_dict(c.message),
                "finish_reason": c.finish_reason or "stop",
                "logprobs": c.logprobs,
            }
            for c in r.choices
        ],
    }
    if r.usage is not None:
        d["usage"] = usage_dict(r.usage)
    if r.system_fingerprint:
        d["system_fingerprint"] = r.system_fingerprint
    return d


class StreamRenderer:
    """Canonical stream events -> OpenAI `chat.completion.chunk` SSE lines.

    Built once per stream: the chunk prefix (id, created, model) is serialised once, and every
    delta is spliced into it, which keeps per-chunk cost at a few microseconds.
    """

    __slots__ = ("_include_usage", "_model", "_prefix", "_started_choices")

    def __init__(self, model: str, include_usage: bool) -> None:
        self._model = model
        self._include_usage = include_usage
        self._prefix = b""
        self._started_choices: set[int] = set()

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        tail: dict[str, Any] = {"choices": choices}
        if usage is not None:
            tail["usage"] = usage
        elif self._include_usage:
            tail["usage"] = None
        return b"data: " + self._prefix + orjson.dumps(tail)[1:] + b"\n\n"

    def _delta(self, choice: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> bytes:
        if choice not in self._started_choices:
            self._started_choices.add(choice)
            delta = {"role": "assistant", "content": "", **delta} if "content" not in delta else {"role": "assistant", **delta}
        return self._chunk([{"index": choice, "delta": delta, "logprobs": logprobs, "finish_reason": finish}])

    def render(self, ev: t.StreamEvent) -> bytes:
        if isinstance(ev, t.TextDelta):
            return self._delta(ev.choice, {"content": ev.text})
        if isinstance(ev, t.ToolCallStart):
            return self._delta(
                ev.choice,
                {
                    "tool_calls": [
                        {
                            "index": ev.index,
                            "id": ev.id,
                            "type": "function",
                            "function": {"name": ev.name, "arguments": ""},
                            **_extra_content(ev.signature),
                        }
                    ]
                },
            )
        if isinstance(ev, t.ToolCallDelta):
            return self._delta(
                ev.choice,
                {"tool_calls": [{"index": ev.index, "function": {"arguments": ev.arguments}}]},
            )
        if isinstance(ev, t.ThinkingDelta):
            d: dict[str, Any] = {"reasoning_content": ev.text}
            if ev.signature:
                d["reasoning_signature"] = ev.signature
            return self._delta(ev.choice, d)
        if isinstance(ev, t.Finish):
            return self._delta(ev.choice, {}, finish=ev.reason)
        if isinstance(ev, t.LogprobsDelta):
            return self._delta(ev.choice, {}, logprobs=ev.logprobs)
        if isinstance(ev, t.UsageEvent):
            if not self._include_usage:
                # The gateway asks upstream for usage even when the client did not (exact
                # pricing); a client that did not ask must not see the extra chunk.
                return b""
            return self._chunk([], usage=usage_dict(ev.usage))
        if isinstance(ev, t.StreamStart):
            head = orjson.dumps(
                {"id": ev.id, "object": "chat.completion.chunk", "created": ev.created, "model": self._model}
            )
            self._prefix = head[:-1] + b","
            return b""
        raise AssertionError(f"unknown stream event {ev!r}")

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"

    @staticmethod
    def error(err: GatewayError) -> bytes:
        """A terminal error event once bytes were sent: the SDKs raise on a data line with `error`."""
        return b"data: " + orjson.dumps(error_body(err)) + b"\n\n"


def error_body(err: GatewayError) -> dict[str, Any]:
    return {"error": {"message": err.message, "type": err.kind, "param": err.param, "code": err.code}}


class OpenAIChatAPI:
    name = "openai"

    def parse(self, body: bytes) -> t.ChatRequest:
        return parse_request(body)

    def render(self, resp: t.ChatResponse, req: t.ChatRequest) -> dict[str, Any]:
        return render_response(resp, req.model)

    def stream_renderer(self, req: t.ChatRequest) -> StreamRenderer:
        return StreamRenderer(req.model, req.include_usage)

    def error_body(self, err: GatewayError) -> dict[str, Any]:
        return error_body(err)

