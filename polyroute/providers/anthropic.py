"""Anthropic Messages API adapter: canonical <-> `POST /v1/messages`.

Choices made where the two models differ (documented in docs/usage-semantics.md and here):
- `max_tokens` is required by Anthropic; absent, it defaults to DEFAULT_MAX_TOKENS.
- `reasoning_effort` maps to a thinking budget (THINKING_BUDGETS); an explicit `thinking_budget`
  wins. The budget must stay below max_tokens, so max_tokens grows by the budget when needed
  (thinking tokens count against max_tokens at Anthropic).
- JSON output (`response_format`) is a forced call of one extra tool whose input schema is the
  requested schema; the call's input comes back as the answer text, so clients see plain JSON
  content. This works on every Claude model and API version; with thinking on, forcing a tool is
  not allowed, so the tool is offered with tool_choice auto and the system prompt asks for it.
- System messages, wherever they are, go to the top-level `system` (as text blocks, keeping
  cache_control); tool results go into user turns; consecutive same-role turns are merged.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.providers.base import FLUSH, Capabilities, HTTPProvider, tool_arguments

if TYPE_CHECKING:
    from polyroute.config.schema import ProviderConfig
    from polyroute.core.deployment import Deployment

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
# reasoning_effort -> thinking.budget_tokens; 1024 is Anthropic's minimum budget. "minimal" means
# as little reasoning as possible, which for Claude is no extended thinking at all.
THINKING_BUDGETS: dict[str, int | None] = {"minimal": None, "low": 1024, "medium": 4096, "high": 16384}
JSON_TOOL = "json_response"

_STOP: dict[str, t.FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_STREAM_ERRORS: dict[str, type[e.GatewayError]] = {
    "overloaded_error": e.UpstreamOverloaded,
    "rate_limit_error": e.RateLimited,
    "api_error": e.UpstreamError,
    "timeout_error": e.UpstreamTimeout,
    "invalid_request_error": e.InvalidRequest,
    "request_too_large": e.BodyTooLarge,
    "not_found_error": e.NotFound,
}


def usage_from_anthropic(u: dict[str, Any] | None) -> t.Usage | None:
    """Anthropic's `input_tokens` excludes cache reads and writes; canonical input includes both."""
    if not u:
        return None
    read = u.get("cache_read_input_tokens") or 0
    write = u.get("cache_creation_input_tokens") or 0
    return t.Usage(
        input_tokens=(u.get("input_tokens") or 0) + read + write,
        output_tokens=u.get("output_tokens") or 0,
        cached_input_tokens=read,
        cache_write_tokens=write,
    )


# --- request --------------------------------------------------------------------------------


def _with_cache(block: dict[str, Any], cache_control: dict[str, Any] | None) -> dict[str, Any]:
    if cache_control is not None:
        block["cache_control"] = cache_control
    return block


def image_block(p: t.ImagePart) -> dict[str, Any]:
    if p.data is not None:
        src: dict[str, Any] = {"type": "base64", "media_type": p.media_type or "image/png", "data": p.data}
    elif p.url is not None and p.url.startswith("data:"):
        head, _, data = p.url.partition(",")
        media = head[5:].split(";")[0] or "image/png"
        if ";base64" not in head:
            from urllib.parse import unquote_to_bytes

            data = base64.b64encode(unquote_to_bytes(data)).decode()
        src = {"type": "base64", "media_type": media, "data": data}
    else:
        src = {"type": "url", "url": p.url or ""}
    return _with_cache({"type": "image", "source": src}, p.cache_control)


def _blocks(m: t.Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in m.content:
        tp = type(p)
        if tp is t.TextPart:
            if p.text or p.cache_control is not None:  # type: ignore[union-attr]
                out.append(_with_cache({"type": "text", "text": p.text}, p.cache_control))  # type: ignore[union-attr]
        elif tp is t.ImagePart:
            out.append(image_block(p))  # type: ignore[arg-type]
        elif tp is t.ToolCall:
            out.append({"type": "tool_use", "id": p.id, "name": p.name, "input": tool_arguments(p.arguments)})  # type: ignore[union-attr]
        elif tp is t.Thinking:
            if p.redacted_data is not None:  # type: ignore[union-attr]
                out.append({"type": "redacted_thinking", "data": p.redacted_data})  # type: ignore[union-attr]
            elif p.signature:  # type: ignore[union-attr]
                out.append({"type": "thinking", "thinking": p.text, "signature": p.signature})  # type: ignore[union-attr]
            # Unsigned reasoning (another vendor's) cannot be verified by Anthropic: dropped.
        elif tp is t.ToolResult:
            content: list[dict[str, Any]] = []
            for c in p.content:  # type: ignore[union-attr]
                if type(c) is t.TextPart:
                    content.append(_with_cache({"type": "text", "text": c.text}, c.cache_control))
                else:
                    content.append(image_block(c))  # type: ignore[arg-type]
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": p.tool_call_id, "content": content}  # type: ignore[union-attr]
            if p.is_error:  # type: ignore[union-attr]
                block["is_error"] = True
            out.append(_with_cache(block, p.cache_control))  # type: ignore[union-attr]
    return out


def messages_to_anthropic(messages: list[t.Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages): system text lifted to the top level, turns merged by role."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            for p in m.content:
                if type(p) is t.TextPart and p.text:
                    system.append(_with_cache({"type": "text", "text": p.text}, p.cache_control))
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            prev = out[-1]["content"]
            if role == "user" and any(b["type"] == "tool_result" for b in blocks):
                # Anthropic wants tool results first in their user turn.
                results = [b for b in blocks if b["type"] == "tool_result"]
                rest = [b for b in blocks if b["type"] != "tool_result"]
                lead = [b for b in prev if b["type"] == "tool_result"]
                tail = [b for b in prev if b["type"] != "tool_result"]
                out[-1]["content"] = lead + results + tail + rest
            else:
                prev.extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return system, out


def _json_tool_name(req: t.ChatRequest) -> str:
    taken = {tool.name for tool in req.tools or ()}
    name = JSON_TOOL
    while name in taken:
        name += "_"
    return name


def _json_schema(rf: t.ResponseFormat) -> tuple[dict[str, Any], bool]:
    """(input schema of the JSON-output tool, whether the requested schema had to be wrapped)."""
    if rf.type == "json_schema" and rf.schema:
        if rf.schema.get("type") == "object":
            return rf.schema, False
        # Tool inputs must be objects: a non-object schema is wrapped, and unwrapped on return.
        return {"type": "object", "properties": {"value": rf.schema}, "required": ["value"]}, True
    return {"type": "object"}, False


def build_body(req: t.ChatRequest, model: str) -> tuple[dict[str, Any], str | None, bool]:
    """(body, name of the JSON-output tool or None, whether that tool's input is wrapped)."""
    system, messages = messages_to_anthropic(req.messages)
    max_tokens = req.max_tokens if req.max_tokens is not None else DEFAULT_MAX_TOKENS
    body: dict[str, Any] = {"model": model, "messages": messages}
    budget = req.thinking_tokens(THINKING_BUDGETS)
    if budget is not None:
        if budget >= max_tokens:
            max_tokens += budget
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    body["max_tokens"] = max_tokens
    if req.stop:
        body["stop_sequences"] = req.stop
    if budget is None:
        # Thinking requires the default sampling (temperature 1, no top_k); Anthropic's
        # temperature range is 0..1, OpenAI's 0..2, so higher values are clamped.
        if req.temperature is not None:
            body["temperature"] = min(req.temperature, 1.0)
        if req.top_k is not None:
            body["top_k"] = req.top_k
        if req.top_p is not None:
            body["top_p"] = req.top_p
    elif req.top_p is not None and req.top_p >= 0.95:
        body["top_p"] = req.top_p
    if req.user:
        body["metadata"] = {"user_id": req.user}

    tools: list[dict[str, Any]] = []
    for tool in req.tools or ():
        d: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters or {"type": "object", "properties": {}}}
        if tool.description:
            d["description"] = tool.description
        tools.append(_with_cache(d, tool.cache_control))
    tool_choice: dict[str, Any] | None = None
    tc = req.tool_choice
    if tc is not None:
        if tc.mode == "tool":
            tool_choice = {"type": "tool", "name": tc.name}
        elif tc.mode == "required":
            tool_choice = {"type": "any"}
        else:
            tool_choice = {"type": tc.mode}

    json_tool: str | None = None
    wrapped = False
    rf = req.response_format
    if rf is not None and rf.type != "text":
        json_tool = _json_tool_name(req)
        schema, wrapped = _json_schema(rf)
        desc = "Give the final answer by calling this tool; its input is the answer, as JSON"
        tools.append({"name": json_tool, "description": desc + (f" ({rf.name})" if rf.name else ""), "input_schema": schema})
        if budget is not None:
            # Anthropic refuses forced tool use while thinking: offer the tool and ask for it.
            system.append({"type": "text", "text": f"Give your final answer by calling the `{json_tool}` tool."})
        elif tool_choice is None or tool_choice["type"] == "auto":
            # Alone, the JSON tool is forced; beside the client's tools, the model must call one
            # of them or answer through the JSON tool.
            tool_choice = {"type": "any"} if req.tools else {"type": "tool", "name": json_tool}
        elif tool_choice["type"] == "none":
            tool_choice = {"type": "tool", "name": json_tool}
    if tools:
        body["tools"] = tools
        if req.parallel_tool_calls is False:
            tool_choice = tool_choice or {"type": "auto"}
            if tool_choice["type"] != "none":
                tool_choice["disable_parallel_tool_use"] = True
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
    if system:
        body["system"] = system
    return body, json_tool, wrapped


# --- response -------------------------------------------------------------------------------


def _json_text(value: Any, wrapped: bool) -> str:
    if wrapped and isinstance(value, dict) and "value" in value:
        value = value["value"]
    return orjson.dumps(value).decode()


def parse_message(d: dict[str, Any], model: str, json_tool: str | None = None, wrapped: bool = False) -> t.ChatResponse:
    parts: list[t.Part] = []
    calls = 0
    for blk in d.get("content") or ():
        kind = blk.get("type")
        if kind == "text":
            parts.append(t.TextPart(text=blk.get("text") or ""))
        elif kind == "thinking":
            parts.append(t.Thinking(text=blk.get("thinking") or "", signature=blk.get("signature") or None))
        elif kind == "redacted_thinking":
            parts.append(t.Thinking(text="", redacted_data=blk.get("data") or ""))
        elif kind == "tool_use":
            if json_tool is not None and blk.get("name") == json_tool:
                parts.append(t.TextPart(text=_json_text(blk.get("input") or {}, wrapped)))
            else:
                calls += 1
                args = orjson.dumps(blk.get("input") or {}).decode()
                parts.append(t.ToolCall(id=blk.get("id") or "", name=blk.get("name") or "", arguments=args))
        # server tool blocks (web search results...) have no canonical form and are skipped
    sr = d.get("stop_reason")
    finish: t.FinishReason = _STOP.get(sr, "stop") if sr else "stop"
    if finish == "tool_calls" and calls == 0:
        finish = "stop"  # only the JSON-output tool was called: that is the answer
    return t.ChatResponse(
        id=d.get("id") or "msg_polyroute",
        model=d.get("model") or model,
        created=int(time.time()),
        choices=[
            t.Choice(
                index=0,
                message=t.Message(role="assistant", content=parts),
                finish_reason=finish,
                stop_sequence=d.get("stop_sequence"),
            )
        ],
        usage=usage_from_anthropic(d.get("usage")),
    )


class StreamTranslator:
    """Anthropic stream events -> canonical events (stateful: block kinds, tool indices, usage)."""

    def __init__(self, provider: str, model: str, json_tool: str | None, wrapped: bool) -> None:
        self.provider = provider
        self.model = model
        self.json_tool = json_tool
        self.wrapped = wrapped
        self.blocks: dict[int, str] = {}  # block index -> "text" | "thinking" | "tool" | "json"
        self.tool_index: dict[int, int] = {}  # block index -> canonical tool index
        self.tools = 0
        self.json_buf: dict[int, str] = {}
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.finished = False

    def feed(self, event: str | None, d: dict[str, Any]) -> list[t.StreamEvent]:
        kind = d.get("type") or event
        if kind == "content_block_delta":
            return self._delta(d)
        if kind == "content_block_start":
            return self._block_start(d)
        if kind == "message_start":
            msg = d.get("message") or {}
            self.usage.update(msg.get("usage") or {})
            return [
                t.StreamStart(
                    id=msg.get("id") or "msg_polyroute",
                    model=msg.get("model") or self.model,
                    created=int(time.time()),
                    usage=usage_from_anthropic(self.usage),
                )
            ]
        if kind == "content_block_stop":
            idx = d.get("index", 0)
            if self.blocks.get(idx) == "json":
                return [t.TextDelta(text=_json_text(_loads_or_raw(self.json_buf.pop(idx, "")), self.wrapped))] if self.wrapped else []
            return []
        if kind == "message_delta":
            delta = d.get("delta") or {}
            self.stop_reason = delta.get("stop_reason") or self.stop_reason
            self.stop_sequence = delta.get("stop_sequence") or self.stop_sequence
            # message_delta counts are cumulative: they replace, they do not add.
            self.usage.update({k: v for k, v in (d.get("usage") or {}).items() if v is not None})
            return []
        if kind == "message_stop":
            self.finished = True
            sr = self.stop_reason
            finish: t.FinishReason = _STOP.get(sr, "stop") if sr else "stop"
            if finish == "tool_calls" and self.tools == 0:
                finish = "stop"
            out: list[t.StreamEvent] = [t.Finish(reason=finish, stop_sequence=self.stop_sequence)]
            u = usage_from_anthropic(self.usage)
            if u is not None:
                out.append(t.UsageEvent(usage=u))
            return out
        if kind == "error":
            err = d.get("error") or {}
            cls = _STREAM_ERRORS.get(err.get("type") or "", e.UpstreamError)
            raise cls(f"provider '{self.provider}' stream error: {err.get('message') or err}", provider=self.provider)
        return []  # ping and future event types

    def _block_start(self, d: dict[str, Any]) -> list[t.StreamEvent]:
        idx = d.get("index", 0)
        blk = d.get("content_block") or {}
        kind = blk.get("type")
        if kind == "text":
            self.blocks[idx] = "text"
            return [t.TextDelta(text=blk["text"])] if blk.get("text") else []
        if kind == "thinking":
            self.blocks[idx] = "thinking"
            return [t.ThinkingDelta(text=blk["thinking"])] if blk.get("thinking") else []
        if kind == "redacted_thinking":
            self.blocks[idx] = "redacted"
            return [t.ThinkingDelta(redacted_data=blk.get("data") or "")]
        if kind == "tool_use":
            if self.json_tool is not None and blk.get("name") == self.json_tool:
                self.blocks[idx] = "json"
                self.json_buf[idx] = ""
                return []
            self.blocks[idx] = "tool"
            ti = self.tools
            self.tools += 1
            self.tool_index[idx] = ti
            out: list[t.StreamEvent] = [t.ToolCallStart(index=ti, id=blk.get("id") or f"toolu_{ti}", name=blk.get("name") or "")]
            if blk.get("input"):
                out.append(t.ToolCallDelta(index=ti, arguments=orjson.dumps(blk["input"]).decode()))
            return out
        self.blocks[idx] = "other"
        return []

    def _delta(self, d: dict[str, Any]) -> list[t.StreamEvent]:
        idx = d.get("index", 0)
        delta = d.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text") or ""
            return [t.TextDelta(text=text)] if text else []
        if kind == "input_json_delta":
            part = delta.get("partial_json") or ""
            if not part:
                return []
            block = self.blocks.get(idx)
            if block == "json":
                if self.wrapped:
                    self.json_buf[idx] = self.json_buf.get(idx, "") + part
                    return []
                return [t.TextDelta(text=part)]
            if block == "tool":
                return [t.ToolCallDelta(index=self.tool_index[idx], arguments=part)]
            return []
        if kind == "thinking_delta":
            text = delta.get("thinking") or ""
            return [t.ThinkingDelta(text=text)] if text else []
        if kind == "signature_delta":
            return [t.ThinkingDelta(signature=delta.get("signature") or "")]
        return []  # citations_delta and future delta types


def _loads_or_raw(text: str) -> Any:
    try:
        return orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return text


# --- the provider ---------------------------------------------------------------------------


class Anthropic(HTTPProvider):
    type: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    capabilities = Capabilities(embeddings=False, tools=True, json_schema=True, images=True, logprobs=False, n=False)

    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        base = (config.base_url or self.default_base_url).rstrip("/")
        # The SDKs' base URL has no /v1; accept both spellings.
        self.messages_url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
        self.headers = {"anthropic-version": API_VERSION}
        if config.api_key:
            self.headers["x-api-key"] = config.api_key

    async def chat(self, req: t.ChatRequest, dep: Deployment) -> t.ChatResponse:
        body, json_tool, wrapped = build_body(req, dep.upstream_model)
        d = await self.post_json(self.messages_url, body, self.headers)
        if not isinstance(d, dict) or "content" not in d:
            raise e.UpstreamError(f"provider '{self.name}' returned an unexpected body: {str(d)[:200]}", provider=self.name)
        return parse_message(d, dep.upstream_model, json_tool, wrapped)

    async def stream(self, req: t.ChatRequest, dep: Deployment) -> AsyncIterator[t.StreamEvent]:
        body, json_tool, wrapped = build_body(req, dep.upstream_model)
        body["stream"] = True
        resp = await self.open_stream(self.messages_url, body, self.headers)
        tr = StreamTranslator(self.name, dep.upstream_model, json_tool, wrapped)
        try:
            async for event, d in self.sse_json(resp):
                if event is FLUSH:
                    yield t.Flush()
                    continue
                if not isinstance(d, dict):
                    continue
                for ev in tr.feed(event, d):
                    yield ev
                if tr.finished:
                    break
        finally:
            resp.release()
        if not tr.finished:
            raise e.UpstreamError(f"provider '{self.name}' closed the stream before it finished", provider=self.name)
