"""Gemini API (generativelanguage): generateContent, streamGenerateContent, embedContent,
batchEmbedContents, countTokens and model listing, under /v1beta and /v1.

Input tokens (`promptTokenCount`, `countTokens.totalTokens`): every string value in `contents`,
`systemInstruction` and `tools`. `candidatesTokenCount` is the visible output (text, function names
and JSON args) times `candidateCount`; `thoughtsTokenCount` the thinking text; `totalTokenCount` the
sum of the three. `cachedContentTokenCount` appears only when `Behaviour.cached_tokens` is set
(it is part of `promptTokenCount`, as in the real API).

Thinking happens when `Behaviour.thinking` is set or the request's `thinkingConfig` has
`includeThoughts: true`, a non-zero `thinkingBudget` or a `thinkingLevel`; thought parts
(`thought: true`) are returned only with `includeThoughts`. The `thoughtSignature` goes on the first
function call part, else on the first answer text part.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from aiohttp import web

from .behaviour import Behaviour
from .core import Emulator
from .gemini_schema import request_violations
from .plan import Answer, Intent, plan_answer
from .tokens import count_in, split_text
from .vectors import embed_text
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

ACTIONS = ("generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents", "countTokens")

_STATUS_NAMES: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
                      "https://developers.generativeai.google/guide/troubleshooting"),
    502: ("UNAVAILABLE", "Bad gateway."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}


def error_body(code: int, message: str | None = None, status: str | None = None,
               details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    default_status, default_message = _STATUS_NAMES.get(
        code, ("UNAVAILABLE" if code >= 500 else "FAILED_PRECONDITION", f"Error {code}."))
    error: dict[str, Any] = {"code": code, "message": message or default_message, "status": status or default_status}
    if details:
        error["details"] = details
    return {"error": error}


def error_response(code: int, message: str | None = None, *, status: str | None = None,
                   details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(error_body(code, message, status, details), status=code, headers=headers)


def behaviour_error(b: Behaviour) -> web.Response:
    assert b.status is not None
    details = None
    headers: dict[str, str] = {}
    if b.retry_after is not None:
        # The real API says when to retry in a RetryInfo detail; the header is an emulator courtesy.
        details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{b.retry_after:g}s"}]
        headers = retry_headers(b)
    return error_response(b.status, b.error_message, status=b.error_type, details=details, headers=headers)


def _check_auth(request: web.Request, emu: Emulator) -> web.Response | None:
    if emu.api_key is None:
        return None
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        return error_response(403, "Method doesn't allow unregistered callers (callers without established "
                              "identity). Please use API Key or other form of API consumer identity to call this "
                              "API.")
    if key != emu.api_key:
        return error_response(400, "API key not valid. Please pass a valid API key.", details=[{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
            "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])
    return None


def _get(data: dict[str, Any], camel: str) -> Any:
    """Protobuf JSON accepts both spellings of a field name."""
    if camel in data:
        return data[camel]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return data.get(snake)


# -- request reading -------------------------------------------------------------------------------

def _validate_generate(body: Any, method: str = "GenerateContentRequest") -> web.Response | None:
    if not isinstance(body, dict):
        return error_response(400, "Invalid JSON payload received.")
    contents = body.get("contents")
    if not contents or not isinstance(contents, list):
        return error_response(400, f"* {method}.contents: contents is not specified\n")
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            return error_response(400, f"Invalid JSON payload received. Expected an object at 'contents[{i}]'.")
        role = content.get("role")
        if role not in (None, "", "user", "model", "function"):
            return error_response(400, "Please use a valid role: user, model.")
        if not content.get("parts"):
            return error_response(400, f"* {method}.contents[{i}].parts: contents.parts must not be empty.\n")
    violations = request_violations(body)
    if violations:
        return error_response(400, "\n".join(v[1] for v in violations), details=[{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field, "description": text} for field, text in violations]}])
    return None


def _parts_text(parts: Any) -> str:
    texts = [p["text"] for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)
             and not p.get("thought")]
    if texts:
        return "\n".join(texts)
    for part in parts or []:
        if isinstance(part, dict):
            response = _get(part, "functionResponse")
            if isinstance(response, dict):
                return dumps(response.get("response", {}))
    return ""


def _declared_functions(body: dict[str, Any]) -> list[str]:
    names = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            for decl in _get(tool, "functionDeclarations") or []:
                if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                    names.append(decl["name"])
    return names


def _config(body: dict[str, Any]) -> dict[str, Any]:
    config = _get(body, "generationConfig")
    return config if isinstance(config, dict) else {}


def _thinking_config(body: dict[str, Any]) -> dict[str, Any]:
    thinking = _get(_config(body), "thinkingConfig")
    return thinking if isinstance(thinking, dict) else {}


def intent(body: dict[str, Any]) -> Intent:
    user_text = ""
    for content in reversed(body.get("contents") or []):
        if content.get("role") in (None, "", "user", "function"):
            user_text = _parts_text(content.get("parts"))
            break
    forced = None
    tool_config = _get(body, "toolConfig")
    calling = _get(tool_config, "functionCallingConfig") if isinstance(tool_config, dict) else None
    if isinstance(calling, dict) and str(calling.get("mode", "")).upper() == "ANY":
        allowed = _get(calling, "allowedFunctionNames") or _declared_functions(body)
        forced = allowed[0] if allowed else None
    config = _config(body)
    schema = _get(config, "responseJsonSchema")
    if schema is None:
        schema = _get(config, "responseSchema")
    thinking = _thinking_config(body)
    budget = _get(thinking, "thinkingBudget")
    thinks = bool(_get(thinking, "includeThoughts")) or (isinstance(budget, int) and budget != 0) \
        or _get(thinking, "thinkingLevel") is not None
    limit = _get(config, "maxOutputTokens")
    return Intent(user_text=user_text, forced_tool=forced,
                  json_mode=_get(config, "responseMimeType") == "application/json", json_schema=schema,
                  thinking_requested=thinks,
                  max_output_tokens=limit if isinstance(limit, int) and not isinstance(limit, bool) else None)


def prompt_tokens(body: dict[str, Any]) -> int:
    return count_in(body.get("contents")) + count_in(_get(body, "systemInstruction")) + count_in(body.get("tools"))


# -- answers ---------------------------------------------------------------------------------------

def _signature(thinking: str) -> str:
    digest = hashlib.sha256(thinking.encode("utf-8")).digest()
    return base64.b64encode(b"\n\x20" + digest).decode("ascii")


def _answer_parts(answer: Answer, *, with_thoughts: bool, chunks: int | None = None,
                  split: bool = False) -> list[list[dict[str, Any]]]:
    """Groups of parts: one group per stream chunk when `split`, else a single group."""
    groups: list[list[dict[str, Any]]] = []
    if answer.thinking is not None and with_thoughts:
        pieces = split_text(answer.thinking, chunks) if split else [answer.thinking]
        groups.extend([{"text": p, "thought": True}] for p in pieces)
    if answer.text is not None and (answer.text or not answer.tool_calls):
        pieces = split_text(answer.text, chunks) if split else [answer.text]
        groups.extend([{"text": p}] for p in pieces)
    if answer.tool_calls:
        groups.append([{"functionCall": {"name": c.name, "args": c.arguments}} for c in answer.tool_calls])
    if not groups:
        groups.append([{"text": ""}])
    if answer.thinking is not None:
        signed = "functionCall" if answer.tool_calls else "text"
        target = next((p for group in groups for p in group if signed in p and not p.get("thought")), None)
        if target is not None:
            target["thoughtSignature"] = _signature(answer.thinking)
    if not split:
        return [[part for group in groups for part in group]]
    return groups


def _usage(prompt: int, answer: Answer, candidates: int, behaviour: Behaviour) -> dict[str, Any]:
    output = answer.output_tokens * candidates
    usage: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": output}
    total = prompt + output
    if answer.thinking is not None:
        usage["thoughtsTokenCount"] = answer.thinking_tokens * candidates
        total += usage["thoughtsTokenCount"]
    usage["totalTokenCount"] = total
    if behaviour.cached_tokens:
        usage["cachedContentTokenCount"] = min(behaviour.cached_tokens, prompt)
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    return usage


def _candidate_count(body: dict[str, Any]) -> int:
    count = _get(_config(body), "candidateCount")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1


def _response(model: str, response_id: str, parts: list[dict[str, Any]], candidates: int,
              finish: str | None, usage: dict[str, Any]) -> dict[str, Any]:
    items = []
    for i in range(candidates):
        candidate: dict[str, Any] = {"content": {"parts": [dict(p) for p in parts], "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = i
        items.append(candidate)
    return {"candidates": items, "usageMetadata": usage, "modelVersion": model, "responseId": response_id}


async def _generate(request: web.Request, emu: Emulator, model: str, stream: bool) -> web.StreamResponse:
    body, ok = await read_json(request)
    if not ok:
        return error_response(400, "Invalid JSON payload received. Unexpected token.")
    problem = _validate_generate(body)
    if problem is not None:
        return problem
    behaviour = emu.behaviours.next()
    sse = stream and request.query.get("alt") == "sse"
    early = await before_answer(request, emu, behaviour, stream=sse, error=behaviour_error)
    if early is not None:
        return early
    answer = plan_answer(behaviour, intent(body))
    with_thoughts = bool(_get(_thinking_config(body), "includeThoughts"))
    candidates = _candidate_count(body)
    prompt = max(1, prompt_tokens(body))
    usage = _usage(prompt, answer, candidates, behaviour)
    finish = "MAX_TOKENS" if answer.truncated else "STOP"
    response_id = new_id("", 22)
    if not stream:
        parts = _answer_parts(answer, with_thoughts=with_thoughts)[0]
        return json_response(_response(model, response_id, parts, candidates, finish, usage))
    groups = _answer_parts(answer, with_thoughts=with_thoughts, chunks=behaviour.chunks, split=True)
    partial_usage = {"promptTokenCount": prompt, "totalTokenCount": prompt,
                     "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
    payloads = [_response(model, response_id, group, candidates,
                          finish if i == len(groups) - 1 else None,
                          usage if i == len(groups) - 1 else partial_usage)
                for i, group in enumerate(groups)]
    if not sse:
        # Without alt=sse the API streams one JSON array; the emulator sends it whole.
        return json_response(payloads)

    def in_stream_error() -> Event:
        return Event(dumps(error_body(behaviour.status or 500, behaviour.error_message, behaviour.error_type)))

    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    return await send_events(request, behaviour, [Event(dumps(p)) for p in payloads], headers=headers,
                             sep="\r\n", error_event=in_stream_error)


# -- embeddings and counting -----------------------------------------------------------------------

def _embedding_dims(model: str, request: dict[str, Any]) -> int:
    dims = _get(request, "outputDimensionality")
    if dims is None:
        # Newer requests carry it in `embedContentConfig`; the top-level field is deprecated.
        dims = _get(as_dict(_get(request, "embedContentConfig")), "outputDimensionality")
    if isinstance(dims, int) and not isinstance(dims, bool) and dims > 0:
        return dims
    return 3072 if "gemini-embedding" in model else 768


def _embed_one(model: str, request: Any, where: str) -> tuple[dict[str, Any] | None, web.Response | None]:
    if not isinstance(request, dict) or not isinstance(request.get("content"), dict):
        return None, error_response(400, f"* {where}.content: content is not specified\n")
    text = _parts_text(request["content"].get("parts"))
    return {"values": embed_text(text, _embedding_dims(model, request))}, None


async def _embed(request: web.Request, emu: Emulator, model: str, batch: bool) -> web.StreamResponse:
    body, ok = await read_json(request)
    if not ok or not isinstance(body, dict):
        return error_response(400, "Invalid JSON payload received. Unexpected token.")
    if batch:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return error_response(400, "* BatchEmbedContentsRequest.requests: requests is not specified\n")
    else:
        requests = [body]
    embeddings = []
    for i, item in enumerate(requests):
        where = f"BatchEmbedContentsRequest.requests[{i}]" if batch else "EmbedContentRequest"
        embedding, problem = _embed_one(model, item, where)
        if problem is not None:
            return problem
        embeddings.append(embedding)
    behaviour = emu.behaviours.next()
    early = await before_answer(request, emu, behaviour, stream=False, error=behaviour_error)
    if early is not None:
        return early
    if batch:
        return json_response({"embeddings": embeddings})
    return json_response({"embedding": embeddings[0]})


async def _count(request: web.Request, emu: Emulator) -> web.StreamResponse:
    body, ok = await read_json(request)
    if not ok or not isinstance(body, dict):
        return error_response(400, "Invalid JSON payload received. Unexpected token.")
    inner = _get(body, "generateContentRequest")
    target = inner if isinstance(inner, dict) else body
    problem = _validate_generate(target, "CountTokensRequest" if inner is None else "GenerateContentRequest")
    if problem is not None:
        return problem
    behaviour = emu.behaviours.next()
    early = await before_answer(request, emu, behaviour, stream=False, error=behaviour_error)
    if early is not None:
        return early
    total = prompt_tokens(target)
    return json_response({"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]})


# -- routes ----------------------------------------------------------------------------------------

def _model_object(name: str) -> dict[str, Any]:
    embedding = "embedding" in name
    methods = ["embedContent", "batchEmbedContents"] if embedding else \
        ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
    return {"name": f"models/{name}", "version": "001", "displayName": name, "description": f"Emulated {name}",
            "inputTokenLimit": 2048 if embedding else 1048576, "outputTokenLimit": 1 if embedding else 65536,
            "supportedGenerationMethods": methods}


def add_routes(app: web.Application, emu: Emulator) -> None:
    async def model_action(request: web.Request) -> web.StreamResponse:
        problem = _check_auth(request, emu)
        if problem is not None:
            return problem
        target = request.match_info["target"]
        model, _, action = target.rpartition(":")
        version = request.match_info["version"]
        if not model or action not in ACTIONS:
            return error_response(404, f"models/{target} is not found for API version {version}.")
        if action in ("generateContent", "streamGenerateContent"):
            return await _generate(request, emu, model, stream=action == "streamGenerateContent")
        if action in ("embedContent", "batchEmbedContents"):
            return await _embed(request, emu, model, batch=action == "batchEmbedContents")
        return await _count(request, emu)

    async def list_models(request: web.Request) -> web.StreamResponse:
        return _check_auth(request, emu) or json_response({"models": [_model_object(m) for m in emu.models]})

    async def get_model(request: web.Request) -> web.StreamResponse:
        problem = _check_auth(request, emu)
        if problem is not None:
            return problem
        name = request.match_info["target"]
        if name not in emu.models:
            return error_response(404, f"models/{name} is not found for API version {request.match_info['version']}")
        return json_response(_model_object(name))

    for version in ("v1beta", "v1"):
        app.router.add_post(f"/{{version:{version}}}/models/{{target}}", model_action)
        app.router.add_get(f"/{{version:{version}}}/models", list_models)
        app.router.add_get(f"/{{version:{version}}}/models/{{target}}", get_model)

