"""Anthropic Messages API: /v1/messages (JSON and SSE), /v1/messages/count_tokens, /v1/models.

Input tokens: every string value in `tools`, `system` and `messages` (roles included), skipping
`cache_control` markers; `count_tokens` returns exactly the `input_tokens` + cache fields sum a
message would report. Output tokens: visible output plus thinking, at least 1.

Prompt caching: each block carrying `cache_control` is a breakpoint. The emulator remembers every
breakpoint prefix it has seen (until `reset`). For a request, the longest remembered prefix is
reported as `cache_read_input_tokens`, the rest up to the last breakpoint as
`cache_creation_input_tokens`, and what follows as `input_tokens`. So the first request with a
breakpoint writes the cache and an identical second one reads it. (The real API also needs a
minimum prefix length, which the emulator ignores.) `Behaviour.cached_tokens` /
`cache_creation_tokens` override both numbers.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .behaviour import Behaviour
from .core import Emulator
from .plan import Answer, Intent, plan_answer
from .tokens import count_in, split_fixed, split_text
from .wire import (
    Event,
    as_dict,
    before_answer,
    dumps,
    json_response,
    new_id,
    read_json,
    retry_headers,
    send_events,
)

ARGUMENT_PIECE = 8
MIN_THINKING_BUDGET = 1024

_ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization. "
                              "Please reduce the request rate or try again later."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(status: int, message: str | None = None, error_type: str | None = None) -> dict[str, Any]:
    default_type, default_message = _ERROR_TYPES.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"Error {status}"))
    return {"type": "error", "error": {"type": error_type or default_type, "message": message or default_message},
            "request_id": new_id("req_011", 21)}


def error_response(status: int, message: str | None = None, *, error_type: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    body = error_body(status, message, error_type)
    all_headers = {"request-id": body["request_id"], **(headers or {})}
    return json_response(body, status=status, headers=all_headers)


def behaviour_error(b: Behaviour) -> web.Response:
    assert b.status is not None
    headers = retry_headers(b)
    if b.status == 429:
        headers.update({"anthropic-ratelimit-requests-remaining": "0",
                        "anthropic-ratelimit-requests-reset": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                            time.gmtime(time.time() + 60))})
    return error_response(b.status, b.error_message, error_type=b.error_type, headers=headers)


def _check_auth(request: web.Request, emu: Emulator) -> web.Response | None:
    if emu.api_key is not None:
        key = request.headers.get("x-api-key")
        bearer = request.headers.get("Authorization", "")
        if key is None and bearer.lower().startswith("bearer "):
            key = bearer[7:]
        if key is None:
            return error_response(401, "x-api-key header is required")
        if key != emu.api_key:
            return error_response(401, "invalid x-api-key")
    if "anthropic-version" not in request.headers:
        return error_response(400, "anthropic-version: header is required")
    return None


# -- request reading -------------------------------------------------------------------------------

def _validate(body: Any, *, need_max_tokens: bool) -> web.Response | None:
    if not isinstance(body, dict):
        return error_response(400, "The request body is not valid JSON.")
    if not isinstance(body.get("model"), str):
        return error_response(400, "model: Field required")
    if need_max_tokens:
        if "max_tokens" not in body:
            return error_response(400, "max_tokens: Field required")
        value = body["max_tokens"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return error_response(400, "max_tokens: Input should be greater than or equal to 1")
    messages = body.get("messages")
    if messages is None:
        return error_response(400, "messages: Field required")
    if not isinstance(messages, list):
        return error_response(400, "messages: Input should be a valid list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return error_response(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            return error_response(400, f"messages.{i}.content: Field required")
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            return error_response(400, "tool_choice: Input tag does not match any of the expected tags: "
                                  "'auto', 'any', 'tool', 'none'")
        if choice.get("type") != "none" and not tools:
            return error_response(400, "tool_choice may only be specified while providing tools.")
        if choice.get("type") == "tool" and choice.get("name") not in _tool_names(body):
            return error_response(400, f"Tool '{choice.get('name')}' not found in the provided tools.")
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            return error_response(400, "thinking.enabled.budget_tokens: Field required")
        if budget < MIN_THINKING_BUDGET:
            return error_response(400, "thinking.enabled.budget_tokens: Input should be greater than or equal "
                                  f"to {MIN_THINKING_BUDGET}")
        if need_max_tokens and body["max_tokens"] <= budget:
            return error_response(400, "`max_tokens` must be greater than `thinking.budget_tokens`. Please "
                                  "consult our documentation at https://docs.claude.com/en/docs/build-with-"
                                  "claude/extended-thinking#max-tokens-and-context-window-size")
    return None


def _tool_names(body: dict[str, Any]) -> list[str]:
    return [t["name"] for t in body.get("tools") or []
            if isinstance(t, dict) and isinstance(t.get("name"), str) and t.get("type") in (None, "custom")]


def _block_text(block: Any) -> str:
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    if block.get("type") == "text" and isinstance(block.get("text"), str):
        return str(block["text"])
    return ""


def _user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [_block_text(b) for b in content if _block_text(b)]
            if texts:
                return "\n".join(texts)
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    inner = block.get("content")
                    if isinstance(inner, str):
                        return inner
                    if isinstance(inner, list):
                        return "\n".join(_block_text(b) for b in inner)
        return ""
    return ""


def intent(body: dict[str, Any]) -> Intent:
    choice = as_dict(body.get("tool_choice"))
    forced = None
    if choice.get("type") == "any" and _tool_names(body):
        forced = _tool_names(body)[0]
    elif choice.get("type") == "tool":
        forced = str(choice.get("name"))
    config = as_dict(body.get("output_config"))
    fmt = config.get("format") or body.get("output_format")
    json_mode = isinstance(fmt, dict) and fmt.get("type") == "json_schema"
    thinking = as_dict(body.get("thinking"))
    return Intent(user_text=_user_text(body.get("messages") or []), forced_tool=forced, json_mode=json_mode,
                  json_schema=fmt.get("schema", {}) if json_mode and isinstance(fmt, dict) else None,
                  thinking_requested=thinking.get("type") in ("enabled", "adaptive"),
                  max_output_tokens=body.get("max_tokens"))


# -- usage -----------------------------------------------------------------------------------------

def _input_items(body: dict[str, Any]) -> list[Any]:
    """The input in cache order (tools, system, messages), split at every possible breakpoint."""
    items: list[Any] = list(body.get("tools") or [])
    system = body.get("system")
    if isinstance(system, list):
        items.extend(system)
    elif system is not None:
        items.append(system)
    for message in body.get("messages") or []:
        items.append({"role": message.get("role")})
        content = message.get("content")
        items.extend(content if isinstance(content, list) else [content])
    return items


def _strip_markers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_markers(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_markers(v) for v in value]
    return value


def input_tokens(body: dict[str, Any]) -> int:
    return count_in(_input_items(body))


@dataclass(frozen=True)
class InputUsage:
    input_tokens: int
    cache_read: int
    cache_creation: int
    one_hour: bool

    def as_dict(self, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": 0 if self.one_hour else self.cache_creation,
                               "ephemeral_1h_input_tokens": self.cache_creation if self.one_hour else 0},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }


def input_usage(body: dict[str, Any], emu: Emulator, behaviour: Behaviour) -> InputUsage:
    items = _input_items(body)
    counts = [count_in(item) for item in items]
    total = sum(counts)
    breakpoints = [i for i, item in enumerate(items) if isinstance(item, dict) and item.get("cache_control")]
    read = creation = 0
    one_hour = False
    if breakpoints:
        keys = [hashlib.sha256(dumps(_strip_markers(items[: b + 1])).encode()).hexdigest() for b in breakpoints]
        prefix = [sum(counts[: b + 1]) for b in breakpoints]
        hit = emu.cache_lookup_and_store(keys)
        read = prefix[hit - 1] if hit else 0
        creation = prefix[-1] - read
        marker = items[breakpoints[-1]].get("cache_control")
        one_hour = isinstance(marker, dict) and marker.get("ttl") == "1h"
    if behaviour.cached_tokens is not None:
        read = min(behaviour.cached_tokens, total)
    if behaviour.cache_creation_tokens is not None:
        creation = min(behaviour.cache_creation_tokens, total - read)
    return InputUsage(max(0, total - read - creation), read, creation, one_hour)


# -- answers ---------------------------------------------------------------------------------------

def _signature(thinking: str) -> str:
    digest = hashlib.sha256(thinking.encode("utf-8")).digest()
    return base64.b64encode(b"\x12\x0c" + digest + digest[:14]).decode("ascii")


def _stop_reason(answer: Answer) -> str:
    if answer.truncated:
        return "max_tokens"
    return "tool_use" if answer.tool_calls else "end_turn"


def _output_tokens(answer: Answer) -> int:
    return max(1, answer.output_tokens + answer.thinking_tokens)


def _blocks(answer: Answer) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if answer.thinking is not None:
        blocks.append({"type": "thinking", "thinking": answer.thinking, "signature": _signature(answer.thinking)})
    if answer.text is not None and (answer.text or not answer.tool_calls):
        blocks.append({"type": "text", "text": answer.text})
    for call in answer.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id or new_id("toolu_01", 22), "name": call.name,
                       "input": call.arguments})
    return blocks


def _message(body: dict[str, Any], answer: Answer, usage: InputUsage, *, streaming: bool) -> dict[str, Any]:
    return {
        "id": new_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [] if streaming else _blocks(answer),
        "stop_reason": None if streaming else _stop_reason(answer),
        "stop_sequence": None,
        "usage": usage.as_dict(1 if streaming else _output_tokens(answer)),
    }


def _stream_events(body: dict[str, Any], answer: Answer, usage: InputUsage, behaviour: Behaviour) -> list[Event]:
    def event(name: str, payload: dict[str, Any]) -> Event:
        return Event(dumps({"type": name, **payload}), name)

    chunks = behaviour.chunks
    events = [event("message_start", {"message": _message(body, answer, usage, streaming=True)})]
    for index, block in enumerate(_blocks(answer)):
        kind = block["type"]
        start: dict[str, Any]
        if kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in split_text(block["thinking"], chunks)]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in split_text(block["text"], chunks) if p]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            args = dumps(block["input"])
            pieces = split_fixed(args, ARGUMENT_PIECE) if chunks is None else split_text(args, chunks)
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *pieces]]
        events.append(event("content_block_start", {"index": index, "content_block": start}))
        if index == 0:
            events.append(event("ping", {}))
        events.extend(event("content_block_delta", {"index": index, "delta": d}) for d in deltas)
        events.append(event("content_block_stop", {"index": index}))
    # message_delta usage is cumulative; current API versions repeat the input side there too.
    final_usage = {"input_tokens": usage.input_tokens, "cache_creation_input_tokens": usage.cache_creation,
                   "cache_read_input_tokens": usage.cache_read, "output_tokens": _output_tokens(answer)}
    events.append(event("message_delta", {"delta": {"stop_reason": _stop_reason(answer), "stop_sequence": None},
                                          "usage": final_usage}))
    events.append(event("message_stop", {}))
    return events


async def _messages(request: web.Request, emu: Emulator) -> web.StreamResponse:
    body, ok = await read_json(request)
    if not ok:
        return error_response(400, "The request body is not valid JSON.")
    problem = _validate(body, need_max_tokens=True)
    if problem is not None:
        return problem
    behaviour = emu.behaviours.next()
    stream = bool(body.get("stream"))
    early = await before_answer(request, emu, behaviour, stream=stream, error=behaviour_error)
    if early is not None:
        return early
    answer = plan_answer(behaviour, intent(body))
    usage = input_usage(body, emu, behaviour)
    request_id = new_id("req_011", 21)
    if not stream:
        return json_response(_message(body, answer, usage, streaming=False), headers={"request-id": request_id})

    def in_stream_error() -> Event:
        payload = error_body(behaviour.status or 500, behaviour.error_message, behaviour.error_type)
        return Event(dumps({"type": "error", "error": payload["error"]}), "error")

    headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
               "request-id": request_id}
    return await send_events(request, behaviour, _stream_events(body, answer, usage, behaviour), headers=headers,
                             error_event=in_stream_error)


async def _count_tokens(request: web.Request, emu: Emulator) -> web.StreamResponse:
    body, ok = await read_json(request)
    if not ok:
        return error_response(400, "The request body is not valid JSON.")
    problem = _validate(body, need_max_tokens=False)
    if problem is not None:
        return problem
    behaviour = emu.behaviours.next()
    early = await before_answer(request, emu, behaviour, stream=False, error=behaviour_error)
    if early is not None:
        return early
    return json_response({"input_tokens": input_tokens(body)})


def _model_object(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name.replace("-", " ").title(),
            "created_at": "2025-01-01T00:00:00Z"}


def add_routes(app: web.Application, emu: Emulator) -> None:
    async def messages(request: web.Request) -> web.StreamResponse:
        return _check_auth(request, emu) or await _messages(request, emu)

    async def count_tokens(request: web.Request) -> web.StreamResponse:
        return _check_auth(request, emu) or await _count_tokens(request, emu)

    async def list_models(request: web.Request) -> web.StreamResponse:
        problem = _check_auth(request, emu)
        if problem is not None:
            return problem
        data = [_model_object(m) for m in emu.models]
        return json_response({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None})

    async def get_model(request: web.Request) -> web.StreamResponse:
        problem = _check_auth(request, emu)
        if problem is not None:
            return problem
        name = request.match_info["model"]
        if name not in emu.models:
            return error_response(404, f"model: {name}")
        return json_response(_model_object(name))

    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
