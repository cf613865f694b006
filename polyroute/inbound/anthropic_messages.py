"""Anthropic Messages <-> canonical model, for the inbound `/v1/messages` API.

A thin translator: content blocks map one to one onto canonical parts (the canonical model is
block-shaped), `tool_result` blocks become `tool` messages, and the canonical stream (which comes
in OpenAI's order: Finish, then UsageEvent) is re-cut into Anthropic's block-by-block event
sequence, holding `message_delta` back until the stream is done so it can carry the usage.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from polyroute.core import types as t
from polyroute.core.errors import GatewayError, InvalidRequest, ModelNotFound
from polyroute.core.tokens import estimate_prompt
from polyroute.inbound import anthropic_wire as w
from polyroute.inbound.validation import decode_body

if TYPE_CHECKING:
    from polyroute.core.gateway import Gateway

MIN_THINKING_BUDGET = 1024
# Anthropic's output_config.effort has two levels above the canonical scale.
_EFFORT: dict[str, t.ReasoningEffort] = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}

# --- requests -------------------------------------------------------------------------------


def parse_request(body: bytes) -> t.ChatRequest:
    b = decode_body(body, w.MessagesBody)
    if b.max_tokens is None:
        raise InvalidRequest("max_tokens: Field required", param="max_tokens")
    if b.max_tokens < 1:
        raise InvalidRequest("max_tokens: must be at least 1", param="max_tokens")
    if b.temperature is not None and not 0 <= b.temperature <= 1:
        raise InvalidRequest("temperature: must be between 0 and 1", param="temperature")
    if b.top_p is not None and not 0 <= b.top_p <= 1:
        raise InvalidRequest("top_p: must be between 0 and 1", param="top_p")
    if b.top_k is not None and b.top_k < 0:
        raise InvalidRequest("top_k: must be at least 0", param="top_k")
    budget, effort = _thinking(b)
    if budget is not None and budget >= b.max_tokens:
        raise InvalidRequest(
            "max_tokens must be greater than thinking.budget_tokens", param="thinking.budget_tokens"
        )
    tools, tool_choice, parallel = _tools(b)
    return t.ChatRequest(
        model=b.model,
        messages=_messages(b),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=_response_format(b),
        temperature=b.temperature,
        top_p=b.top_p,
        top_k=b.top_k,
        max_tokens=b.max_tokens,
        stop=list(b.stop_sequences) if b.stop_sequences else None,
        user=b.metadata.user_id if b.metadata is not None else None,
        reasoning_effort=effort,
        thinking_budget=budget,
        stream=bool(b.stream),
        # An Anthropic stream always ends with usage (message_delta), so always ask for it.
        include_usage=True,
        options=b.polyroute,
    )


def parse_count_tokens(body: bytes) -> t.ChatRequest:
    b = decode_body(body, w.CountTokensBody)
    tools, tool_choice, parallel = _tools(b)
    budget, effort = _thinking(b)
    return t.ChatRequest(
        model=b.model,
        messages=_messages(b),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        thinking_budget=budget,
        reasoning_effort=effort,
    )


def _thinking(b: w.CountTokensBody) -> tuple[int | None, t.ReasoningEffort | None]:
    effort: t.ReasoningEffort | None = None
    if b.output_config is not None and b.output_config.effort is not None:
        effort = _EFFORT.get(b.output_config.effort)
        if effort is None:
            raise InvalidRequest(
                f"output_config.effort: must be one of {sorted(_EFFORT)}", param="output_config.effort"
            )
    th = b.thinking
    if th is None or th.type == "disabled":
        return None, effort
    if th.type == "adaptive":
        # The model decides how much to think; the canonical scale's middle is the closest.
        return None, effort or "medium"
    if th.budget_tokens is None:
        raise InvalidRequest("thinking.budget_tokens: Field required", param="thinking.budget_tokens")
    if th.budget_tokens < MIN_THINKING_BUDGET:
        raise InvalidRequest(
            f"thinking.budget_tokens: must be at least {MIN_THINKING_BUDGET}", param="thinking.budget_tokens"
        )
    return th.budget_tokens, effort


def _messages(b: w.CountTokensBody) -> list[t.Message]:
    if not b.messages:
        raise InvalidRequest("messages: at least one message is required", param="messages")
    out: list[t.Message] = []
    system = _system(b.system)
    if system is not None:
        out.append(system)
    for i, m in enumerate(b.messages):
        where = f"messages.{i}.content"
        if m.role == "system":
            out.append(t.Message(role="system", content=list(_text_blocks(m.content, where))))
        elif m.role == "user":
            out.extend(_user(m.content, where))
        else:
            out.append(t.Message(role="assistant", content=_assistant(m.content, where)))
    return out


def _system(system: str | list[w.TextBlock] | None) -> t.Message | None:
    if system is None or system == [] or system == "":
        return None
    return t.Message(role="system", content=list(_text_blocks(system, "system")))


def _text_blocks(content: str | list[Any], where: str) -> list[t.TextPart]:
    if isinstance(content, str):
        return [t.TextPart(text=content)]
    out: list[t.TextPart] = []
    for i, blk in enumerate(content):
        if type(blk) is not w.TextBlock:
            raise InvalidRequest(f"{where}.{i}: only text blocks are allowed here", param=f"{where}.{i}")
        out.append(t.TextPart(text=blk.text, cache_control=blk.cache_control))
    return out


def _image(blk: w.ImageBlock, where: str) -> t.ImagePart:
    src = blk.source
    if type(src) is w.Base64Source:
        return t.ImagePart(data=src.data, media_type=src.media_type, cache_control=blk.cache_control)
    if type(src) is w.URLSource:
        return t.ImagePart(url=src.url, cache_control=blk.cache_control)
    raise InvalidRequest(
        f"{where}: image source type 'file' (Files API) is not supported by this gateway", param=where
    )


def _unsupported(blk: Any, where: str) -> InvalidRequest:
    kind = type(blk).__struct_config__.tag
    return InvalidRequest(f"{where}: content block type '{kind}' is not supported by this gateway", param=where)


def _user(content: str | list[w.ContentBlock], where: str) -> list[t.Message]:
    """A user turn: its tool_result blocks become one `tool` message, placed before the rest."""
    if isinstance(content, str):
        return [t.Message(role="user", content=[t.TextPart(text=content)])]
    results: list[t.Part] = []
    parts: list[t.Part] = []
    for i, blk in enumerate(content):
        if isinstance(blk, w.TextBlock):
            parts.append(t.TextPart(text=blk.text, cache_control=blk.cache_control))
        elif isinstance(blk, w.ImageBlock):
            parts.append(_image(blk, f"{where}.{i}"))
        elif isinstance(blk, w.ToolResultBlock):
            results.append(_tool_result(blk, f"{where}.{i}"))
        elif isinstance(blk, w.ToolUseBlock | w.ThinkingBlock | w.RedactedThinkingBlock):
            kind = type(blk).__struct_config__.tag
            raise InvalidRequest(
                f"{where}.{i}: '{kind}' blocks are only allowed in assistant messages", param=f"{where}.{i}"
            )
        else:
            raise _unsupported(blk, f"{where}.{i}")
    out: list[t.Message] = []
    if results:
        out.append(t.Message(role="tool", content=results))
    if parts or not results:
        out.append(t.Message(role="user", content=parts))
    return out


def _tool_result(blk: w.ToolResultBlock, where: str) -> t.ToolResult:
    content: list[t.TextPart | t.ImagePart] = []
    if isinstance(blk.content, str):
        content.append(t.TextPart(text=blk.content))
    elif blk.content:
        for j, c in enumerate(blk.content):
            if isinstance(c, w.TextBlock):
                content.append(t.TextPart(text=c.text, cache_control=c.cache_control))
            else:
                content.append(_image(c, f"{where}.content.{j}"))
    return t.ToolResult(
        tool_call_id=blk.tool_use_id,
        content=content,
        is_error=bool(blk.is_error),
        cache_control=blk.cache_control,
    )


def _assistant(content: str | list[w.ContentBlock], where: str) -> list[t.Part]:
    if isinstance(content, str):
        return [t.TextPart(text=content)]
    parts: list[t.Part] = []
    for i, blk in enumerate(content):
        if isinstance(blk, w.TextBlock):
            parts.append(t.TextPart(text=blk.text, cache_control=blk.cache_control))
        elif isinstance(blk, w.ToolUseBlock):
            # orjson keeps the key order msgspec decoded, so the arguments read as the model wrote them.
            parts.append(t.ToolCall(id=blk.id, name=blk.name, arguments=orjson.dumps(blk.input).decode()))
        elif isinstance(blk, w.ThinkingBlock):
            parts.append(t.Thinking(text=blk.thinking, signature=blk.signature or None))
        elif isinstance(blk, w.RedactedThinkingBlock):
            parts.append(t.Thinking(text="", redacted_data=blk.data))
        elif isinstance(blk, w.ImageBlock | w.ToolResultBlock):
            kind = type(blk).__struct_config__.tag
            raise InvalidRequest(
                f"{where}.{i}: '{kind}' blocks are only allowed in user messages", param=f"{where}.{i}"
            )
        else:
            raise _unsupported(blk, f"{where}.{i}")
    return parts


def _tools(b: w.CountTokensBody) -> tuple[list[t.Tool] | None, t.ToolChoice | None, bool | None]:
    tools: list[t.Tool] | None = None
    if b.tools:
        tools = []
        for i, d in enumerate(b.tools):
            if d.type not in (None, "custom"):
                raise InvalidRequest(
                    f"tools.{i}: server tool type '{d.type}' is not supported by this gateway "
                    "(only client tools with an input_schema are)",
                    param=f"tools.{i}.type",
                )
            if d.input_schema is None:
                raise InvalidRequest(f"tools.{i}.input_schema: Field required", param=f"tools.{i}.input_schema")
            tools.append(
                t.Tool(
                    name=d.name,
                    description=d.description,
                    parameters=d.input_schema,
                    strict=d.strict,
                    cache_control=d.cache_control,
                )
            )
    tc = b.tool_choice
    if tc is None:
        return tools, None, None
    parallel = False if tc.disable_parallel_tool_use else None
    if tc.type == "tool":
        if not tc.name:
            raise InvalidRequest("tool_choice.name: Field required", param="tool_choice.name")
        choice = t.ToolChoice(mode="tool", name=tc.name)
    elif tc.type == "any":
        choice = t.ToolChoice(mode="required")
    else:
        choice = t.ToolChoice(mode=tc.type)
    return tools, choice, parallel


def _response_format(b: w.MessagesBody) -> t.ResponseFormat | None:
    oc = b.output_config
    if oc is None or oc.format is None:
        return None
    return t.ResponseFormat(type="json_schema", schema=oc.format.schema, name="response")


# --- responses ------------------------------------------------------------------------------

_STOP: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
}


def stop_reason(reason: t.FinishReason | None, stop_sequence: str | None) -> str:
    if reason in (None, "stop") and stop_sequence:
        return "stop_sequence"
    return _STOP.get(reason or "stop", "end_turn")


def usage_dict(u: t.Usage | None) -> dict[str, Any]:
    """Canonical usage in Anthropic's shape: `input_tokens` excludes cache reads and writes."""
    if u is None:
        return {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    return {
        "input_tokens": max(0, u.input_tokens - u.cached_input_tokens - u.cache_write_tokens),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_input_tokens,
    }


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON text as the object Anthropic's `input` must be."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        # Malformed arguments from an upstream model: keep them visible instead of losing them.
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"_value": value}


def signature_block(signature: str) -> dict[str, Any]:
    """A tool call's own signature (Gemini's thoughtSignature on a function call) as an empty
    thinking block before the call: tool_use has no field for it, and an Anthropic client sends
    thinking blocks back unchanged, so the signature reaches the vendor again next turn (the
    Gemini adapter puts a signature-only thinking part onto the call that follows it)."""
    return {"type": "thinking", "thinking": "", "signature": signature}


def content_blocks(m: t.Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in m.content:
        tp = type(p)
        if tp is t.TextPart:
            out.append({"type": "text", "text": p.text})  # type: ignore[union-attr]
        elif tp is t.ToolCall:
            sig = p.signature  # type: ignore[union-attr]
            if sig and not (out and out[-1]["type"] == "thinking" and out[-1]["signature"] == sig):
                out.append(signature_block(sig))
            out.append({"type": "tool_use", "id": p.id, "name": p.name, "input": tool_input(p.arguments)})  # type: ignore[union-attr]
        elif tp is t.Thinking:
            if p.redacted_data is not None:  # type: ignore[union-attr]
                out.append({"type": "redacted_thinking", "data": p.redacted_data})  # type: ignore[union-attr]
            else:
                out.append({"type": "thinking", "thinking": p.text, "signature": p.signature or ""})  # type: ignore[union-attr]
    return out


def render_response(r: t.ChatResponse, model: str) -> dict[str, Any]:
    c = r.choices[0] if r.choices else None
    return {
        "id": r.id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content_blocks(c.message) if c is not None else [],
        "stop_reason": stop_reason(c.finish_reason if c else None, c.stop_sequence if c else None),
        "stop_sequence": c.stop_sequence if c is not None else None,
        "usage": usage_dict(r.usage),
    }


# --- streaming ------------------------------------------------------------------------------


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_PING = _sse("ping", {"type": "ping"})


class StreamRenderer:
    """Canonical stream events -> Anthropic's SSE sequence.

    Anthropic streams one content block at a time (start, deltas, stop) with increasing indices;
    canonical events are cut into blocks by kind: a change of kind closes the open block. Only
    choice 0 is rendered (the Messages API has no `n`).
    """

    __slots__ = (
        "_block",
        "_finish",
        "_index",
        "_model",
        "_open",
        "_pinged",
        "_req",
        "_started",
        "_stop_sequence",
        "_tool_blocks",
        "_usage",
    )

    def __init__(self, req: t.ChatRequest) -> None:
        self._req = req
        self._model = req.model
        self._started = False
        self._pinged = False
        self._index = -1  # index of the last opened block
        self._open = False
        # kind of the open block: "text", "thinking", ("tool", n)
        self._block: Any = None
        self._tool_blocks: dict[int, int] = {}  # canonical tool index -> block index
        self._finish: t.FinishReason | None = None
        self._stop_sequence: str | None = None
        self._usage: t.Usage | None = None

    def _start(self, id_: str, start_usage: t.Usage | None) -> bytes:
        self._started = True
        if start_usage is not None:
            u = usage_dict(start_usage)
        else:
            # The exact count arrives with the final usage (message_delta carries it again).
            u = usage_dict(t.Usage(input_tokens=estimate_prompt(self._req)))
        u["output_tokens"] = 0
        msg: dict[str, Any] = {
            "id": id_,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": u,
        }
        return _sse("message_start", {"type": "message_start", "message": msg})

    def _ensure_started(self) -> bytes:
        if self._started:
            return b""
        return self._start(f"msg_polyroute_{int(time.time() * 1000)}", None)

    def _close(self) -> bytes:
        if not self._open:
            return b""
        self._open = False
        self._block = None
        return _sse("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _open_block(self, kind: Any, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._index += 1
        self._open = True
        self._block = kind
        out += _sse("content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block})
        if not self._pinged:
            # The real API sends one ping after the first block opens; some clients expect it.
            self._pinged = True
            out += _PING
        return out

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def render(self, ev: t.StreamEvent) -> bytes:
        te = type(ev)
        if te is t.StreamStart:
            if self._started:
                return b""
            return self._start(ev.id, ev.usage)  # type: ignore[union-attr]
        if te is t.UsageEvent:
            self._usage = ev.usage  # type: ignore[union-attr]
            return b""
        if getattr(ev, "choice", 0) != 0:
            return b""
        out = self._ensure_started()
        if te is t.TextDelta:
            if not ev.text:  # type: ignore[union-attr]
                return out
            if self._block != "text":
                out += self._open_block("text", {"type": "text", "text": ""})
            return out + self._delta(self._index, {"type": "text_delta", "text": ev.text})  # type: ignore[union-attr]
        if te is t.ThinkingDelta:
            return out + self._thinking(ev)  # type: ignore[arg-type]
        if te is t.ToolCallStart:
            if ev.signature:  # type: ignore[union-attr]
                out += self._thinking(t.ThinkingDelta(signature=ev.signature))  # type: ignore[union-attr]
            out += self._open_block(
                ("tool", ev.index),  # type: ignore[union-attr]
                {"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}},  # type: ignore[union-attr]
            )
            self._tool_blocks[ev.index] = self._index  # type: ignore[union-attr]
            return out
        if te is t.ToolCallDelta:
            if not ev.arguments:  # type: ignore[union-attr]
                return out
            block = self._tool_blocks.get(ev.index)  # type: ignore[union-attr]
            if block is None:  # arguments before their start: open a block with what we know
                out += self._open_block(("tool", ev.index), {"type": "tool_use", "id": f"toolu_{ev.index}", "name": "", "input": {}})  # type: ignore[union-attr]
                block = self._tool_blocks[ev.index] = self._index  # type: ignore[union-attr]
            # A delta for an already closed block (interleaved parallel calls) still carries its
            # own index, which the SDKs accumulate by.
            return out + self._delta(block, {"type": "input_json_delta", "partial_json": ev.arguments})  # type: ignore[union-attr]
        if te is t.Finish:
            self._finish = ev.reason  # type: ignore[union-attr]
            self._stop_sequence = ev.stop_sequence  # type: ignore[union-attr]
            return out
        if te is t.LogprobsDelta:
            return out
        raise AssertionError(f"unknown stream event {ev!r}")

    def _thinking(self, ev: t.ThinkingDelta) -> bytes:
        out = b""
        if ev.redacted_data is not None:
            out += self._open_block("redacted", {"type": "redacted_thinking", "data": ev.redacted_data})
            return out + self._close()
        if ev.text:
            if self._block != "thinking":
                out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta(self._index, {"type": "thinking_delta", "thinking": ev.text})
        if ev.signature:
            if self._block != "thinking":
                out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta(self._index, {"type": "signature_delta", "signature": ev.signature})
            # A signature ends its thinking block; more thinking starts a new one.
            out += self._close()
        return out

    def done(self) -> bytes:
        out = self._ensure_started() + self._close()
        usage = usage_dict(self._usage) if self._usage is not None else {"output_tokens": 0}
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": stop_reason(self._finish, self._stop_sequence),
                "stop_sequence": self._stop_sequence,
            },
            "usage": usage,
        }
        return out + _sse("message_delta", delta) + _sse("message_stop", {"type": "message_stop"})

    @staticmethod
    def error(err: GatewayError) -> bytes:
        return _sse("error", error_body(err))


# --- errors ---------------------------------------------------------------------------------

_ERROR_TYPES: dict[str, str] = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "request_too_large": "request_too_large",
    "rate_limit_error": "rate_limit_error",
    # A spent budget is a 429 in both vocabularies; x-should-retry: false tells the SDK not to retry.
    "insufficient_quota": "rate_limit_error",
    "api_error": "api_error",
    "timeout_error": "api_error",
    "overloaded_error": "overloaded_error",
}


def error_type(err: GatewayError) -> str:
    kind = _ERROR_TYPES.get(err.kind)
    if kind is not None:
        return kind
    if 400 <= err.status < 500:
        return "invalid_request_error"
    return "api_error"


def error_body(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(err), "message": err.message}}


# --- count_tokens ---------------------------------------------------------------------------


def count_tokens_response(body: bytes, gateway: Gateway) -> dict[str, Any]:
    """A local estimate: answering must not cost an upstream call (clients ask before every turn)."""
    req = parse_count_tokens(body)
    if gateway.catalog.route(req.model) is None:
        raise ModelNotFound(f"model: {req.model}", param="model")
    return {"input_tokens": estimate_prompt(req)}


class AnthropicMessagesAPI:
    name = "anthropic"

    def parse(self, body: bytes) -> t.ChatRequest:
        return parse_request(body)

    def render(self, resp: t.ChatResponse, req: t.ChatRequest) -> dict[str, Any]:
        return render_response(resp, req.model)

    def stream_renderer(self, req: t.ChatRequest) -> StreamRenderer:
        return StreamRenderer(req)

    def error_body(self, err: GatewayError) -> dict[str, Any]:
        return error_body(err)
