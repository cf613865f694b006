"""Google Gemini API adapter (generativelanguage.googleapis.com, v1beta).

Canonical <-> `models/{m}:generateContent`, `:streamGenerateContent?alt=sse` and
`:batchEmbedContents`. Choices made where the models differ:
- Gemini has no tool call ids: ids are derived from the response id, candidate, position, name
  and arguments (a hash), so the same answer always gets the same ids; tool results name their
  function, found from the earlier assistant call with the result's id.
- Tool and response schemas are rewritten to Gemini's OpenAPI subset (schema_sanitize.py).
- Image URLs are fetched by the gateway (Gemini takes inline bytes), behind an SSRF guard
  (image_fetch.py).
- reasoning_effort -> thinkingConfig.thinkingBudget (THINKING_BUDGETS), thoughts included;
  thought parts become Thinking parts, and thought signatures (on function calls: ToolCall.signature;
  elsewhere: a Thinking part carrying only the signature) are returned unchanged next turn.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.core.tokens import estimate_text
from polyroute.providers.base import FLUSH, Capabilities, HTTPProvider, tool_arguments
from polyroute.providers.image_fetch import ImageFetcher, allow_private_from_env, parse_data_url
from polyroute.providers.schema_sanitize import gemini_schema

if TYPE_CHECKING:
    from polyroute.config.schema import ProviderConfig
    from polyroute.core.deployment import Deployment

API_VERSION = "v1beta"
# reasoning_effort -> thinkingBudget. Google's own OpenAI-compatible endpoint uses 1024/8192/24576
# for low/medium/high; "minimal" is 512, the smallest budget every 2.5 model accepts (Pro cannot
# switch thinking off, Flash-Lite's minimum is 512).
THINKING_BUDGETS: dict[str, int] = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
MAX_STOP_SEQUENCES = 5

_FILTERED = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "IMAGE_OTHER",
    "LANGUAGE",
    "MODEL_ARMOR",
}
_BROKEN = {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS", "MISSING_THOUGHT_SIGNATURE", "MALFORMED_RESPONSE"}


def finish_reason(reason: str | None, has_calls: bool) -> t.FinishReason:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    if reason in _BROKEN:
        return "error"
    return "tool_calls" if has_calls else "stop"


def usage_from_gemini(u: dict[str, Any] | None) -> t.Usage | None:
    """promptTokenCount already includes cachedContentTokenCount; thoughts are billed as output
    but reported apart from candidatesTokenCount; tool-use prompt tokens are billed as input."""
    if not u:
        return None
    thoughts = u.get("thoughtsTokenCount") or 0
    return t.Usage(
        input_tokens=(u.get("promptTokenCount") or 0) + (u.get("toolUsePromptTokenCount") or 0),
        output_tokens=(u.get("candidatesTokenCount") or 0) + thoughts,
        cached_input_tokens=u.get("cachedContentTokenCount") or 0,
        reasoning_tokens=thoughts,
    )


def tool_call_id(response_id: str, candidate: int, index: int, name: str, args: str) -> str:
    digest = hashlib.sha256(f"{response_id}\x00{candidate}\x00{index}\x00{name}\x00{args}".encode()).hexdigest()
    return f"call_{digest[:24]}"


# --- request --------------------------------------------------------------------------------


def _image_part(p: t.ImagePart, images: dict[str, tuple[str, str]]) -> dict[str, Any]:
    if p.data is not None:
        return {"inlineData": {"mimeType": p.media_type or "image/png", "data": p.data}}
    url = p.url or ""
    if url.startswith("data:"):
        media, data = parse_data_url(url)
        return {"inlineData": {"mimeType": media, "data": data}}
    if _inline_or_google(url):
        # Already in Google's storage or Files API: referenced, not fetched.
        return {"fileData": {"mimeType": p.media_type or "image/png", "fileUri": url}}
    fetched = images.get(url)
    if fetched is None:
        raise e.InvalidRequest(f"image URL was not fetched: {url[:100]}", param="messages")
    return {"inlineData": {"mimeType": fetched[0], "data": fetched[1]}}


def _inline_or_google(url: str) -> bool:
    return url.startswith(("data:", "gs://", "https://generativelanguage.googleapis.com/"))


def fetchable_urls(req: t.ChatRequest) -> list[str]:
    """Image URLs the gateway must download before the call."""
    urls: list[str] = []
    for m in req.messages:
        for p in m.content:
            parts = p.content if type(p) is t.ToolResult else [p]
            for x in parts:
                # Every other scheme (file:, ftp:...) goes to the fetcher too, which refuses it.
                if type(x) is t.ImagePart and x.data is None and x.url and not _inline_or_google(x.url):
                    if x.url not in urls:
                        urls.append(x.url)
    return urls


def _tool_response(p: t.ToolResult) -> dict[str, Any]:
    text = "".join(c.text for c in p.content if type(c) is t.TextPart)
    if p.is_error:
        return {"error": text}
    # A JSON object result is passed as the object; anything else is wrapped (response must be
    # an object).
    if text.startswith("{"):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        else:
            if isinstance(value, dict):
                return value
    return {"result": text}


def contents_to_gemini(
    messages: list[t.Message], images: dict[str, tuple[str, str]] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents)."""
    images = images or {}
    names: dict[str, str] = {}
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    for m in messages:
        parts: list[dict[str, Any]] = []
        if m.role == "system":
            system.extend({"text": p.text} for p in m.content if type(p) is t.TextPart and p.text)
            continue
        if m.role == "assistant":
            role = "model"
            pending_sig: str | None = None
            for p in m.content:
                if isinstance(p, t.Thinking):
                    # Thought text is not sent back (Gemini does not need it); its signature is,
                    # on the part that follows it.
                    if p.signature:
                        pending_sig = p.signature
                elif isinstance(p, t.TextPart):
                    if not p.text and pending_sig is None:
                        continue
                    part: dict[str, Any] = {"text": p.text}
                    if pending_sig:
                        part["thoughtSignature"] = pending_sig
                        pending_sig = None
                    parts.append(part)
                elif isinstance(p, t.ToolCall):
                    names[p.id] = p.name
                    part = {"functionCall": {"name": p.name, "args": tool_arguments(p.arguments)}}
                    sig = p.signature or pending_sig
                    pending_sig = None
                    if sig:
                        part["thoughtSignature"] = sig
                    parts.append(part)
                elif isinstance(p, t.ImagePart):
                    parts.append(_image_part(p, images))
            if pending_sig and parts and "thoughtSignature" not in parts[-1]:
                parts[-1]["thoughtSignature"] = pending_sig
        else:
            role = "user"
            for p in m.content:
                if isinstance(p, t.TextPart):
                    parts.append({"text": p.text})
                elif isinstance(p, t.ImagePart):
                    parts.append(_image_part(p, images))
                elif isinstance(p, t.ToolResult):
                    name = p.name or names.get(p.tool_call_id)
                    if name is None:
                        raise e.InvalidRequest(
                            f"tool result '{p.tool_call_id}' answers no earlier assistant tool call "
                            "(Gemini needs the function's name)",
                            param="messages",
                        )
                    parts.append({"functionResponse": {"name": name, "response": _tool_response(p)}})
                    parts.extend(_image_part(c, images) for c in p.content if isinstance(c, t.ImagePart))
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def function_declaration(tool: t.Tool) -> dict[str, Any]:
    d: dict[str, Any] = {"name": tool.name}
    if tool.description:
        d["description"] = tool.description
    params = gemini_schema(tool.parameters) if tool.parameters else None
    # Gemini rejects an OBJECT without properties; a function without parameters omits them.
    if params and params.get("properties"):
        d["parameters"] = params
    return d


def build_body(req: t.ChatRequest, images: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    system, contents = contents_to_gemini(req.messages, images)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if req.tools:
        body["tools"] = [{"functionDeclarations": [function_declaration(tool) for tool in req.tools]}]
        tc = req.tool_choice
        if tc is not None:
            fcc: dict[str, Any]
            if tc.mode == "tool":
                fcc = {"mode": "ANY", "allowedFunctionNames": [tc.name]}
            elif tc.mode == "required":
                fcc = {"mode": "ANY"}
            else:
                fcc = {"mode": tc.mode.upper()}
            body["toolConfig"] = {"functionCallingConfig": fcc}
    gc: dict[str, Any] = {}
    if req.temperature is not None:
        gc["temperature"] = req.temperature
    if req.top_p is not None:
        gc["topP"] = req.top_p
    if req.top_k is not None:
        gc["topK"] = req.top_k
    if req.max_tokens is not None:
        gc["maxOutputTokens"] = req.max_tokens
    if req.stop:
        if len(req.stop) > MAX_STOP_SEQUENCES:
            raise e.InvalidRequest(f"Gemini takes at most {MAX_STOP_SEQUENCES} stop sequences", param="stop")
        gc["stopSequences"] = req.stop
    if req.n != 1:
        gc["candidateCount"] = req.n
    if req.seed is not None:
        gc["seed"] = req.seed
    if req.presence_penalty is not None:
        gc["presencePenalty"] = req.presence_penalty
    if req.frequency_penalty is not None:
        gc["frequencyPenalty"] = req.frequency_penalty
    rf = req.response_format
    if rf is not None and rf.type != "text":
        gc["responseMimeType"] = "application/json"
        if rf.type == "json_schema" and rf.schema:
            gc["responseSchema"] = gemini_schema(rf.schema)
    budget = req.thinking_tokens(THINKING_BUDGETS)
    if budget is not None:
        gc["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    if gc:
        body["generationConfig"] = gc
    return body


# --- response -------------------------------------------------------------------------------


def _parts_to_canonical(
    parts: list[dict[str, Any]], response_id: str, candidate: int, first_call: int
) -> tuple[list[t.Part], int]:
    """Canonical parts of one candidate's parts, and the number of function calls among them."""
    out: list[t.Part] = []
    calls = 0
    for p in parts:
        sig = p.get("thoughtSignature")
        if "functionCall" in p:
            fc = p["functionCall"] or {}
            name = fc.get("name") or ""
            args = orjson.dumps(fc.get("args") or {}).decode()
            cid = fc.get("id") or tool_call_id(response_id, candidate, first_call + calls, name, args)
            out.append(t.ToolCall(id=cid, name=name, arguments=args, signature=sig))
            calls += 1
        elif p.get("thought"):
            out.append(t.Thinking(text=p.get("text") or "", signature=sig))
        elif "text" in p:
            if sig:
                out.append(t.Thinking(text="", signature=sig))
            if p["text"]:
                out.append(t.TextPart(text=p["text"]))
        elif sig:
            out.append(t.Thinking(text="", signature=sig))
    return out, calls


def parse_response(d: dict[str, Any], model: str, provider: str) -> t.ChatResponse:
    response_id = d.get("responseId") or f"gemini-{uuid.uuid4().hex[:24]}"
    choices: list[t.Choice] = []
    for pos, c in enumerate(d.get("candidates") or ()):
        idx = c.get("index", pos)
        parts, calls = _parts_to_canonical((c.get("content") or {}).get("parts") or [], response_id, idx, 0)
        choices.append(
            t.Choice(
                index=idx,
                message=t.Message(role="assistant", content=parts),
                finish_reason=finish_reason(c.get("finishReason"), calls > 0),
            )
        )
    if not choices:
        block = (d.get("promptFeedback") or {}).get("blockReason")
        if block is None:
            raise e.UpstreamError(f"provider '{provider}' returned no candidates", provider=provider)
        # The prompt itself was blocked: an empty answer, filtered, as OpenAI reports it.
        choices.append(t.Choice(index=0, message=t.Message(role="assistant", content=[]), finish_reason="content_filter"))
    choices.sort(key=lambda c: c.index)
    return t.ChatResponse(
        id=response_id,
        model=d.get("modelVersion") or model,
        created=int(time.time()),
        choices=choices,
        usage=usage_from_gemini(d.get("usageMetadata")),
    )


class StreamTranslator:
    """Gemini stream chunks (each a partial GenerateContentResponse) -> canonical events."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.response_id: str | None = None
        self.calls: dict[int, int] = {}  # candidate -> function calls so far
        self.finished: set[int] = set()
        self.seen: set[int] = set()
        self.usage: dict[str, Any] | None = None
        self.blocked = False

    def feed(self, d: dict[str, Any]) -> list[t.StreamEvent]:
        if "error" in d and "candidates" not in d:
            err = d["error"] if isinstance(d["error"], dict) else {"message": str(d["error"])}
            raise e.UpstreamError(f"provider '{self.provider}' stream error: {err.get('message') or err}", provider=self.provider)
        out: list[t.StreamEvent] = []
        if self.response_id is None:
            self.response_id = d.get("responseId") or f"gemini-{uuid.uuid4().hex[:24]}"
            out.append(t.StreamStart(id=self.response_id, model=d.get("modelVersion") or self.model, created=int(time.time())))
        if d.get("usageMetadata"):
            self.usage = d["usageMetadata"]
        candidates = d.get("candidates") or ()
        if not candidates and (d.get("promptFeedback") or {}).get("blockReason"):
            self.blocked = True
            self.finished.add(0)
            out.append(t.Finish(reason="content_filter"))
        for pos, c in enumerate(candidates):
            ci = c.get("index", pos)
            self.seen.add(ci)
            first = self.calls.get(ci, 0)
            parts, n = _parts_to_canonical((c.get("content") or {}).get("parts") or [], self.response_id, ci, first)
            self.calls[ci] = first + n
            for p in parts:
                if isinstance(p, t.TextPart):
                    out.append(t.TextDelta(text=p.text, choice=ci))
                elif isinstance(p, t.Thinking):
                    out.append(t.ThinkingDelta(text=p.text, signature=p.signature, choice=ci))
                elif isinstance(p, t.ToolCall):
                    ti = first
                    first += 1
                    # Gemini sends each call whole, so its start and its arguments go out together.
                    out.append(t.ToolCallStart(index=ti, id=p.id, name=p.name, choice=ci, signature=p.signature))
                    out.append(t.ToolCallDelta(index=ti, arguments=p.arguments, choice=ci))
            fr = c.get("finishReason")
            if fr and ci not in self.finished:
                self.finished.add(ci)
                out.append(t.Finish(reason=finish_reason(fr, self.calls[ci] > 0), choice=ci))
        return out

    def end(self) -> list[t.StreamEvent]:
        """Events after the last chunk; raises if the stream ended before every answer finished."""
        if not self.finished or not self.seen <= self.finished:
            raise e.UpstreamError(f"provider '{self.provider}' closed the stream before it finished", provider=self.provider)
        u = usage_from_gemini(self.usage)
        return [t.UsageEvent(usage=u)] if u is not None else []


# --- the provider ---------------------------------------------------------------------------


class Gemini(HTTPProvider):
    type: ClassVar[str] = "gemini"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com"
    capabilities = Capabilities(embeddings=True, tools=True, json_schema=True, images=True, logprobs=False, n=True)

    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        base = (config.base_url or self.default_base_url).rstrip("/")
        self.api_base = base if base.endswith(("/v1beta", "/v1")) else f"{base}/{API_VERSION}"
        self.headers = {"x-goog-api-key": config.api_key} if config.api_key else {}
        self.images = ImageFetcher(allow_private=allow_private_from_env())

    def url(self, model: str, method: str) -> str:
        model = model.removeprefix("models/")
        return f"{self.api_base}/models/{model}:{method}"

    async def close(self) -> None:
        await self.images.close()
        await super().close()

    async def _body(self, req: t.ChatRequest) -> dict[str, Any]:
        urls = fetchable_urls(req)
        fetched = await asyncio.gather(*(self.images.fetch(u) for u in urls)) if urls else []
        return build_body(req, dict(zip(urls, fetched, strict=True)))

    def map_error(self, status: int, raw: bytes, headers: Any) -> e.GatewayError:
        err = super().map_error(status, raw, headers)
        if err.retry_after is None and status in (429, 503):
            err.retry_after = retry_delay(raw)
        return err

    async def chat(self, req: t.ChatRequest, dep: Deployment) -> t.ChatResponse:
        body = await self._body(req)
        d = await self.post_json(self.url(dep.upstream_model, "generateContent"), body, self.headers)
        if not isinstance(d, dict):
            raise e.UpstreamError(f"provider '{self.name}' returned an unexpected body", provider=self.name)
        return parse_response(d, dep.upstream_model, self.name)

    async def stream(self, req: t.ChatRequest, dep: Deployment) -> AsyncIterator[t.StreamEvent]:
        body = await self._body(req)
        resp = await self.open_stream(self.url(dep.upstream_model, "streamGenerateContent?alt=sse"), body, self.headers)
        tr = StreamTranslator(self.name, dep.upstream_model)
        try:
            async for event, d in self.sse_json(resp):
                if event is FLUSH:
                    yield t.Flush()
                    continue
                if isinstance(d, dict):
                    for ev in tr.feed(d):
                        yield ev
        finally:
            resp.release()
        for ev in tr.end():
            yield ev

    async def embed(self, req: t.EmbeddingRequest, dep: Deployment) -> t.EmbeddingResponse:
        model = dep.upstream_model.removeprefix("models/")
        requests: list[dict[str, Any]] = []
        for text in req.inputs:
            r: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
            if req.dimensions is not None:
                r["outputDimensionality"] = req.dimensions
            requests.append(r)
        d = await self.post_json(self.url(model, "batchEmbedContents"), {"requests": requests}, self.headers)
        try:
            vectors = [emb["values"] for emb in d["embeddings"]]
        except (KeyError, TypeError) as exc:
            raise e.UpstreamError(f"provider '{self.name}' returned an unexpected embeddings body ({exc})", provider=self.name) from None
        if len(vectors) != len(req.inputs):
            raise e.UpstreamError(
                f"provider '{self.name}' returned {len(vectors)} embeddings for {len(req.inputs)} inputs", provider=self.name
            )
        # batchEmbedContents reports no token counts: estimated, and marked so in the ledger.
        tokens = sum(estimate_text(x) for x in req.inputs)
        return t.EmbeddingResponse(model=model, vectors=vectors, usage=t.Usage(input_tokens=tokens, estimated=True))


def retry_delay(raw: bytes) -> float | None:
    """Gemini puts the wait in a google.rpc.RetryInfo detail ("retryDelay": "30s"), not a header."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    details = ((body or {}).get("error") or {}).get("details") if isinstance(body, dict) else None
    for det in details or ():
        if isinstance(det, dict) and str(det.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = det.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return float(delay[:-1])
                except ValueError:
                    return None
    return None

