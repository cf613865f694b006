"""Canonical chat requests to llama.cpp's chat-completions body, and its stream chunks back.

llama.cpp applies the GGUF's own chat template (Jinja) to the `messages`, so the prompt format
is exactly the one the model was trained with; this module only flattens canonical content into
the plain-text messages a small text-only model understands.
"""

from __future__ import annotations

import time
from typing import Any

from polyroute.core import errors as e
from polyroute.core import types as t

# Defaults when the request does not say: answers stay bounded (a 135M model rambles), and the
# sampling follows the SmolLM2 model card's example (temperature 0.2, top_p 0.9).
DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.2
DEFAULT_TOP_P = 0.9

_FINISH: dict[str, t.FinishReason] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}


def _text(parts: list[t.Part]) -> str:
    out: list[str] = []
    for p in parts:
        if type(p) is t.TextPart:
            out.append(p.text)
        elif type(p) is t.ToolCall:
            out.append(f"[called tool {p.name} with {p.arguments}]")
        elif type(p) is t.ToolResult:
            body = "".join(x.text for x in p.content if type(x) is t.TextPart)
            out.append(f"[result of tool {p.name or p.tool_call_id}{' (error)' if p.is_error else ''}: {body}]")
        # images and thinking are dropped: the model is text-only and does not reason
    return "\n".join(out)


def messages_to_llama(messages: list[t.Message]) -> list[dict[str, str]]:
    """Plain-text messages; tool traffic becomes text, since the model has no tool role."""
    out: list[dict[str, str]] = []
    for m in messages:
        role = "user" if m.role == "tool" else m.role
        out.append({"role": role, "content": _text(m.content)})
    return out


def build_body(req: t.ChatRequest, *, context_size: int) -> dict[str, Any]:
    """The llama.cpp request (always streamed, always with usage, counted by the model's tokenizer)."""
    max_tokens = req.max_tokens if req.max_tokens is not None else DEFAULT_MAX_TOKENS
    body: dict[str, Any] = {
        "messages": messages_to_llama(req.messages),
        "stream": True,
        "stream_options": {"include_usage": True},
        # Progress chunks during prompt processing call back into Python every batch of prompt
        # tokens: each is a chance to cancel a long prompt, not only after its first token.
        "return_progress": True,
        "max_tokens": max(1, min(max_tokens, context_size)),
        "temperature": req.temperature if req.temperature is not None else DEFAULT_TEMPERATURE,
        "top_p": req.top_p if req.top_p is not None else DEFAULT_TOP_P,
    }
    if req.stop:
        body["stop"] = req.stop
    if req.seed is not None:
        body["seed"] = req.seed
    if req.presence_penalty is not None:
        body["presence_penalty"] = req.presence_penalty
    if req.frequency_penalty is not None:
        body["frequency_penalty"] = req.frequency_penalty
    rf = req.response_format
    if rf is not None and rf.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif rf is not None and rf.type == "json_schema":
        # llama.cpp turns the schema into a grammar (LLGuidance), so the output always parses.
        body["response_format"] = {"type": "json_schema", "json_schema": {"schema": rf.schema or {"type": "object"}}}
    return body


def error_from_llama(err: Any, provider: str, model: str) -> e.GatewayError:
    """llama.cpp's `{"error": {"code", "message", "type"}}` as the gateway's error."""
    if not isinstance(err, dict):
        return e.UpstreamError(f"in-house model '{model}' failed: {err}", provider=provider)
    code = err.get("code")
    status = code if isinstance(code, int) else 500
    msg = f"in-house model '{model}': {err.get('message') or err.get('type') or 'unknown error'}"
    if err.get("type") == "exceed_context_size_error":
        return e.InvalidRequest(msg, param="messages", code="context_length_exceeded", provider=provider)
    if status == 503:
        return e.Unavailable(msg, provider=provider, retry_after=1.0)
    if status >= 500:
        return e.UpstreamError(msg, provider=provider)
    return e.client_error_for_status(status)(msg, provider=provider, status=status)


class ChunkReader:
    """Turns llama.cpp's chat-completion chunks (parsed JSON) into canonical stream events."""

    def __init__(self, model: str, provider: str) -> None:
        self.model = model
        self.provider = provider
        self.started = False
        self.finished = False

    def feed(self, chunk: dict[str, Any]) -> list[t.StreamEvent]:
        if "error" in chunk and "choices" not in chunk:
            raise error_from_llama(chunk["error"], self.provider, self.model)
        if "prompt_progress" in chunk:
            return []  # still reading the prompt: nothing for the client yet
        events: list[t.StreamEvent] = []
        if not self.started:
            self.started = True
            events.append(
                t.StreamStart(
                    id=chunk.get("id") or "chatcmpl-inhouse",
                    model=self.model,
                    created=chunk.get("created") or int(time.time()),
                )
            )
        for c in chunk.get("choices") or ():
            delta = c.get("delta") or {}
            reasoning = delta.get("reasoning_content")
            if reasoning:
                events.append(t.ThinkingDelta(text=reasoning))
            content = delta.get("content")
            if content:
                events.append(t.TextDelta(text=content))
            fr = c.get("finish_reason")
            if fr:
                self.finished = True
                events.append(t.Finish(reason=_FINISH.get(fr, "stop")))
        u = chunk.get("usage")
        if u:
            details = u.get("prompt_tokens_details") or {}
            events.append(
                t.UsageEvent(
                    usage=t.Usage(
                        input_tokens=u.get("prompt_tokens") or 0,
                        output_tokens=u.get("completion_tokens") or 0,
                        cached_input_tokens=details.get("cached_tokens") or 0,
                    )
                )
            )
        return events


def assemble(events: list[t.StreamEvent], model: str) -> t.ChatResponse:
    """A whole response from a finished stream's events."""
    start: t.StreamStart | None = None
    text: list[str] = []
    finish: t.FinishReason | None = None
    usage: t.Usage | None = None
    for ev in events:
        if type(ev) is t.StreamStart:
            start = ev
        elif type(ev) is t.TextDelta:
            text.append(ev.text)
        elif type(ev) is t.Finish:
            finish = ev.reason
        elif type(ev) is t.UsageEvent:
            usage = ev.usage
    return t.ChatResponse(
        id=start.id if start else "chatcmpl-inhouse",
        model=model,
        created=start.created if start else int(time.time()),
        choices=[
            t.Choice(
                index=0,
                message=t.Message(role="assistant", content=[t.TextPart(text="".join(text))]),
                finish_reason=finish or "stop",
            )
        ],
        usage=usage,
    )
