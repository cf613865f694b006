"""OpenAI Chat Completions / Embeddings / Models, plus the Azure OpenAI deployment paths.

Input tokens: every string value in `messages` and `tools` (roles included, which stands in for
OpenAI's per-message overhead). Output tokens: see `plan.Answer.output_tokens`; reasoning tokens
(thinking) are added to `completion_tokens` and reported in `completion_tokens_details`.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .behaviour import Behaviour
from .core import Emulator
from .plan import Answer, Intent, arguments_json, plan_answer
from .tokens import count_in, count_tokens, split_fixed, split_text, token_pieces
from .vectors import embed_text, embed_token_ids, to_base64
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

MODEL_CREATED = 1_700_000_000
FINGERPRINT = "fp_emulator"
ARGUMENT_PIECE = 8

_ERROR_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request_error", "Invalid request.", None),
    401: ("invalid_request_error", "Incorrect API key provided.", "invalid_api_key"),
    403: ("invalid_request_error", "You are not allowed to sample from this model", None),
    404: ("invalid_request_error", "The model does not exist or you do not have access to it.", "model_not_found"),
    429: ("requests", "Rate limit reached for requests. Please try again later.", "rate_limit_exceeded"),
    500: ("server_error", "The server had an error while processing your request. Sorry about that!", None),
    502: ("cf_bad_gateway", "Bad gateway.", None),
    503: ("server_error", "The server is overloaded or not ready yet.", None),
}


def error_body(status: int, message: str | None = None, *, error_type: str | None = None,
               param: str | None = None, code: str | None = None) -> dict[str, Any]:
    default_type, default_message, default_code = _ERROR_DEFAULTS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", f"Error {status}.", None))
    return {"error": {"message": message or default_message, "type": error_type or default_type,
                      "param": param, "code": code if code is not None else default_code}}


def error_response(status: int, message: str | None = None, *, headers: dict[str, str] | None = None,
                   **fields: Any) -> web.Response:
    all_headers = {"x-request-id": new_id("req_", 32), **(headers or {})}
    return json_response(error_body(status, message, **fields), status=status, headers=all_headers)


def behaviour_error(b: Behaviour) -> web.Response:
    assert b.status is not None
    return error_response(b.status, b.error_message, error_type=b.error_type, headers=retry_headers(b))


def azure_error(status: int, message: str) -> web.Response:
    return json_response({"error": {"code": str(status), "message": message}}, status=status)


# -- auth -------------------------------------------------------------------------------------------

def _check_bearer(request: web.Request, emu: Emulator) -> web.Response | None:
    if emu.api_key is None:
        return None
    auth = request.headers.get("Authorization", "")
    if not auth:
        return error_response(401, "You didn't provide an API key. You need to provide your API key in an "
                              "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                              code="")
    key = auth[7:] if auth.lower().startswith("bearer ") else auth
    if key != emu.api_key:
        shown = key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 7 else "*" * len(key)
        return error_response(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                              "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
    return None


def _check_azure(request: web.Request, emu: Emulator) -> web.Response | None:
    if "api-version" not in request.query:
        return azure_error(404, "Resource not found")
    if emu.api_key is None:
        return None
    key = request.headers.get("api-key")
    bearer = request.headers.get("Authorization", "")
    if key is None and bearer.lower().startswith("bearer "):
        key = bearer[7:]
    if key != emu.api_key:
        return azure_error(401, "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
                           "to provide a valid key for an active subscription and use a correct regional API "
                           "endpoint for your resource.")
    return None


# -- chat completions ------------------------------------------------------------------------------

def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content
                         if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def _validate_chat(body: Any) -> web.Response | None:
    if not isinstance(body, dict):
        return error_response(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                              "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                              "payload, but what was sent was not valid JSON.)")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return error_response(400, "you must provide a model parameter")
    messages = body.get("messages")
    if messages is None:
        return error_response(400, "Missing required parameter: 'messages'.", param="messages",
                              code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        return error_response(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                              "but got an empty array instead.", param="messages", code="empty_array")
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool", "function"):
            return error_response(400, f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                                  "'user', 'function', 'tool', and 'developer'.", param=f"messages[{i}].role",
                                  code="invalid_value")
    n = body.get("n", 1)
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128):
        return error_response(400, f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got "
                              f"{n} instead.", param="n", code="integer_below_min_value")
    if body.get("stream_options") is not None and not body.get("stream"):
        return error_response(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                              param="stream_options", code="invalid_value")
    tools = body.get("tools")
    if body.get("tool_choice") is not None and not tools:
        return error_response(400, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                              "are specified.", param="tool_choice")
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        if "json" not in dumps(messages).lower():
            return error_response(400, "'messages' must contain the word 'json' in some form, to use "
                                  "'response_format' of type 'json_object'.", param="messages")
    return None


def _forced_tool(body: dict[str, Any]) -> str | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    names = [t["function"]["name"] for t in tools
             if isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)]
    if choice == "required" and names:
        return names[0]
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return None


def chat_intent(body: dict[str, Any]) -> Intent:
    user_text = ""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            user_text = _text_of(message.get("content"))
            break
    fmt = as_dict(body.get("response_format"))
    json_mode = fmt.get("type") in ("json_object", "json_schema")
    schema = None
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        schema = fmt["json_schema"].get("schema", {})
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    return Intent(user_text=user_text, forced_tool=_forced_tool(body), json_mode=json_mode, json_schema=schema,
                  thinking_requested=body.get("reasoning_effort") not in (None, "none"),
                  max_output_tokens=limit if isinstance(limit, int) and not isinstance(limit, bool) else None)


def _finish_reason(answer: Answer) -> str:
    if answer.truncated:
        return "length"
    return "tool_calls" if answer.tool_calls else "stop"


def _usage(prompt: int, answer: Answer, n: int, behaviour: Behaviour) -> dict[str, Any]:
    reasoning = answer.thinking_tokens
    completion = (answer.output_tokens + reasoning) * n
    cached = min(behaviour.cached_tokens or 0, prompt)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning * n, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def _logprob_entries(text: str, top: int) -> list[dict[str, Any]]:
    entries = []
    for piece in token_pieces(text):
        data = list(piece.encode("utf-8"))
        entries.append({"token": piece, "logprob": -0.0001, "bytes": data,
                        "top_logprobs": [{"token": piece, "logprob": -0.0001, "bytes": data}][:top]
                        + [{"token": f"<alt{i}>", "logprob": -10.0 - i, "bytes": list(f"<alt{i}>".encode())}
                           for i in range(1, top)]})
    return entries


def _tool_call_ids(answer: Answer) -> list[str]:
    ids = []
    for call in answer.tool_calls:
        ids.append(call.id or new_id("call_", 24))
    return ids


def _message(answer: Answer, ids: list[str]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None, "annotations": []}
    if answer.tool_calls:
        message["tool_calls"] = [
            {"id": ids[j], "type": "function", "function": {"name": c.name, "arguments": arguments_json(c)}}
            for j, c in enumerate(answer.tool_calls)]
    return message


class _ChatContext:
    def __init__(self, body: dict[str, Any], model: str, answer: Answer, behaviour: Behaviour) -> None:
        self.body = body
        self.model = model
        self.answer = answer
        self.behaviour = behaviour
        self.n = int(body.get("n") or 1)
        self.id = new_id("chatcmpl-", 29)
        self.created = int(time.time())
        self.prompt_tokens = max(1, count_in(body.get("messages")) + count_in(body.get("tools")))
        self.logprobs = bool(body.get("logprobs"))
        top = body.get("top_logprobs")
        self.top_logprobs = top if isinstance(top, int) and not isinstance(top, bool) else 0


def _completion(ctx: _ChatContext) -> dict[str, Any]:
    choices = []
    for i in range(ctx.n):
        logprobs = None
        if ctx.logprobs:
            logprobs = {"content": _logprob_entries(ctx.answer.text or "", ctx.top_logprobs), "refusal": None}
        choices.append({"index": i, "message": _message(ctx.answer, _tool_call_ids(ctx.answer)),
                        "logprobs": logprobs, "finish_reason": _finish_reason(ctx.answer)})
    return {"id": ctx.id, "object": "chat.completion", "created": ctx.created, "model": ctx.model,
            "choices": choices, "usage": _usage(ctx.prompt_tokens, ctx.answer, ctx.n, ctx.behaviour),
            "service_tier": "default", "system_fingerprint": FINGERPRINT}


def _choice_deltas(ctx: _ChatContext, index: int) -> list[dict[str, Any]]:
    """The streamed choice objects (delta + finish_reason) of one choice, in order."""
    answer, chunks = ctx.answer, ctx.behaviour.chunks

    def choice(delta: dict[str, Any], finish: str | None = None, text: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        if ctx.logprobs and text:
            item["logprobs"] = {"content": _logprob_entries(text, ctx.top_logprobs), "refusal": None}
        return item

    out = [choice({"role": "assistant", "content": "" if answer.text is not None else None, "refusal": None})]
    if answer.text:
        out.extend(choice({"content": piece}, text=piece) for piece in split_text(answer.text, chunks))
    for j, (call, call_id) in enumerate(zip(answer.tool_calls, _tool_call_ids(answer), strict=True)):
        opening = [{"index": j, "id": call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}]
        if j == 0 and answer.text is None:
            # Without text, OpenAI opens the first call in the same delta as the role.
            out[0]["delta"]["tool_calls"] = opening
        else:
            out.append(choice({"tool_calls": opening}))
        args = arguments_json(call)
        pieces = split_fixed(args, ARGUMENT_PIECE) if chunks is None else split_text(args, chunks)
        out.extend(choice({"tool_calls": [{"index": j, "function": {"arguments": piece}}]}) for piece in pieces)
    out.append(choice({}, _finish_reason(answer)))
    return out


def _stream_events(ctx: _ChatContext, azure: bool) -> list[Event]:
    include_usage = bool((ctx.body.get("stream_options") or {}).get("include_usage"))
    obfuscate = (ctx.body.get("stream_options") or {}).get("include_obfuscation", True) and not azure

    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> Event:
        payload: dict[str, Any] = {"id": ctx.id, "object": "chat.completion.chunk", "created": ctx.created,
                                   "model": ctx.model, "service_tier": "default",
                                   "system_fingerprint": FINGERPRINT, "choices": choices}
        if azure:
            del payload["service_tier"]
        if include_usage:
            payload["usage"] = usage
        if obfuscate:
            # Real OpenAI pads chunks with a random field; clients must ignore it.
            payload["obfuscation"] = new_id("", 8)
        return Event(dumps(payload))

    events: list[Event] = []
    if azure:
        # Azure sends the prompt filter verdict first, in a chunk that is not a chat.completion.chunk.
        events.append(Event(dumps({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                                   "prompt_filter_results": [{"prompt_index": 0,
                                                              "content_filter_results": _azure_filters()}]})))
    per_choice = [_choice_deltas(ctx, i) for i in range(ctx.n)]
    # OpenAI interleaves the choices of an n>1 stream; round-robin reproduces that.
    for step in range(max(len(c) for c in per_choice)):
        for deltas in per_choice:
            if step < len(deltas):
                events.append(chunk([deltas[step]]))
    if include_usage:
        events.append(chunk([], _usage(ctx.prompt_tokens, ctx.answer, ctx.n, ctx.behaviour)))
    events.append(Event("[DONE]"))
    return events


def _azure_filters() -> dict[str, Any]:
    return {name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")}


async def _chat(request: web.Request, emu: Emulator, deployment: str | None) -> web.StreamResponse:
    """Chat Completions; `deployment` is set on the Azure path, where the body's model is optional."""
    azure = deployment is not None
    body, ok = await read_json(request)
    if not ok:
        return error_response(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                              "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                              "payload, but what was sent was not valid JSON.)")
    if deployment is not None and isinstance(body, dict):
        body = {"model": deployment, **body}
    problem = _validate_chat(body)
    if problem is not None:
        return problem
    behaviour = emu.behaviours.next()
    stream = bool(body.get("stream"))

    def on_error(b: Behaviour) -> web.Response:
        if azure and b.status == 401:
            return azure_error(401, b.error_message or "Access denied.")
        return behaviour_error(b)

    early = await before_answer(request, emu, behaviour, stream=stream, error=on_error)
    if early is not None:
        return early
    ctx = _ChatContext(body, body["model"], plan_answer(behaviour, chat_intent(body)), behaviour)
    if not stream:
        payload = _completion(ctx)
        if azure:
            payload.pop("service_tier")
            payload["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _azure_filters()}]
            for item in payload["choices"]:
                item["content_filter_results"] = _azure_filters()
        return json_response(payload, headers={"x-request-id": new_id("req_", 32)})

    def in_stream_error() -> Event:
        status = behaviour.status or 500
        return Event(dumps(error_body(status, behaviour.error_message, error_type=behaviour.error_type)))

    headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
               "x-request-id": new_id("req_", 32)}
    return await send_events(request, behaviour, _stream_events(ctx, azure), headers=headers,
                             error_event=in_stream_error)


# -- embeddings ------------------------------------------------------------------------------------

def _embedding_dims(model: str) -> int:
    return 3072 if "large" in model else 1536


def _embedding_inputs(value: Any) -> list[str | list[int]] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [list(value)]
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, list) and v and all(isinstance(x, int) for x in v) for v in value):
            return [list(v) for v in value]
    return None


async def _embeddings(request: web.Request, emu: Emulator, deployment: str | None) -> web.StreamResponse:
    body, ok = await read_json(request)
    if not ok or not isinstance(body, dict):
        return error_response(400, "We could not parse the JSON body of your request.")
    model = body.get("model") or deployment
    if not isinstance(model, str) or not model:
        return error_response(400, "you must provide a model parameter")
    inputs = _embedding_inputs(body.get("input"))
    if inputs is None or any(item == "" for item in inputs):
        return error_response(400, "'$.input' is invalid. Please check the API reference: "
                              "https://platform.openai.com/docs/api-reference.")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return error_response(400, f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
                              param="encoding_format", code="invalid_value")
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        return error_response(400, f"Invalid value for 'dimensions' = {dims}. Must be a positive integer.",
                              param="dimensions")
    behaviour = emu.behaviours.next()
    early = await before_answer(request, emu, behaviour, stream=False, error=behaviour_error)
    if early is not None:
        return early
    size = dims or _embedding_dims(model)
    data = []
    tokens = 0
    for index, item in enumerate(inputs):
        if isinstance(item, str):
            vector = embed_text(item, size)
            tokens += max(1, count_tokens(item))
        else:
            vector = embed_token_ids(item, size)
            tokens += len(item)
        embedding: Any = to_base64(vector) if encoding == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return json_response({"object": "list", "data": data, "model": model,
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                         headers={"x-request-id": new_id("req_", 32)})


# -- routes ----------------------------------------------------------------------------------------

def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": MODEL_CREATED, "owned_by": "system"}


def add_routes(app: web.Application, emu: Emulator) -> None:
    async def chat(request: web.Request) -> web.StreamResponse:
        return _check_bearer(request, emu) or await _chat(request, emu, None)

    async def embeddings(request: web.Request) -> web.StreamResponse:
        return _check_bearer(request, emu) or await _embeddings(request, emu, None)

    async def list_models(request: web.Request) -> web.StreamResponse:
        return _check_bearer(request, emu) or json_response(
            {"object": "list", "data": [_model_object(m) for m in emu.models]})

    async def get_model(request: web.Request) -> web.StreamResponse:
        problem = _check_bearer(request, emu)
        if problem is not None:
            return problem
        name = request.match_info["model"]
        if name not in emu.models:
            return error_response(404, f"The model '{name}' does not exist", param="model",
                                  code="model_not_found")
        return json_response(_model_object(name))

    async def azure_chat(request: web.Request) -> web.StreamResponse:
        return _check_azure(request, emu) or await _chat(request, emu, request.match_info["deployment"])

    async def azure_embeddings(request: web.Request) -> web.StreamResponse:
        return _check_azure(request, emu) or await _embeddings(request, emu, request.match_info["deployment"])

    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", azure_chat)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", azure_embeddings)
