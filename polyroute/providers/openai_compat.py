"""The OpenAI-compatible family: OpenAI, Azure OpenAI, Mistral, DeepSeek, xAI, vLLM, Ollama,
llama.cpp server. One translator; each vendor is a small subclass naming its differences."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.providers.base import END, FLUSH, Capabilities, HTTPProvider

if TYPE_CHECKING:
    from polyroute.core.deployment import Deployment

FLUSH_EVENT = t.Flush()

_FINISH: dict[str, t.FinishReason] = {
    "stop": "stop",
    "length": "length",
    "model_length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
}


def _content(parts: list[t.Part]) -> str | list[dict[str, Any]]:
    if all(isinstance(p, t.TextPart) and p.cache_control is None for p in parts):
        return "".join(p.text for p in parts)  # type: ignore[union-attr]
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, t.TextPart):
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, t.ImagePart):
            url = p.url or f"data:{p.media_type or 'image/png'};base64,{p.data}"
            img: dict[str, Any] = {"url": url}
            if p.detail:
                img["detail"] = p.detail
            out.append({"type": "image_url", "image_url": img})
    return out


def messages_to_openai(messages: list[t.Message], system_role: str = "system") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "assistant":
            d: dict[str, Any] = {"role": "assistant"}
            texts = [p for p in m.content if isinstance(p, t.TextPart)]
            calls = [p for p in m.content if isinstance(p, t.ToolCall)]
            d["content"] = "".join(p.text for p in texts) if texts or not calls else None
            if calls:
                d["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ]
            out.append(d)
        elif m.role == "tool":
            for p in m.content:
                if isinstance(p, t.ToolResult):
                    text = "".join(x.text for x in p.content if isinstance(x, t.TextPart))
                    out.append({"role": "tool", "tool_call_id": p.tool_call_id, "content": text})
        else:
            role = system_role if m.role == "system" else m.role
            msg: dict[str, Any] = {"role": role, "content": _content(m.content)}
            if m.name:
                msg["name"] = m.name
            out.append(msg)
    return out


def usage_from_openai(u: dict[str, Any] | None) -> t.Usage | None:
    if not u:
        return None
    pd = u.get("prompt_tokens_details") or {}
    cd = u.get("completion_tokens_details") or {}
    # DeepSeek reports cache hits in its own field; both count inside prompt_tokens.
    cached = pd.get("cached_tokens") or u.get("prompt_cache_hit_tokens") or 0
    return t.Usage(
        input_tokens=u.get("prompt_tokens") or 0,
        output_tokens=u.get("completion_tokens") or 0,
        cached_input_tokens=cached,
        reasoning_tokens=cd.get("reasoning_tokens") or 0,
    )


class OpenAICompatible(HTTPProvider):
    type: ClassVar[str] = "openai_compatible"
    default_base_url: ClassVar[str | None] = None
    capabilities = Capabilities(embeddings=True, logprobs=True, n=True)
    # OpenAI's reasoning models accept only max_completion_tokens; most others only max_tokens.
    max_tokens_field: ClassVar[str] = "max_tokens"
    supports_stream_usage: ClassVar[bool] = True
    supports_reasoning_effort: ClassVar[bool] = False
    required_tool_choice: ClassVar[str] = "required"

    def __init__(self, name: str, config: Any) -> None:
        super().__init__(name, config)
        base = (config.base_url or self.default_base_url or "").rstrip("/")
        self.base_url = base
        self.auth_headers = self.make_auth_headers(config.api_key)

    def make_auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def url(self, dep: Deployment, endpoint: str) -> str:
        return f"{self.base_url}/{endpoint}"

    # --- request ---------------------------------------------------------------------------

    def build_body(self, req: t.ChatRequest, dep: Deployment) -> dict[str, Any]:
        body: dict[str, Any] = {"model": dep.upstream_model, "messages": messages_to_openai(req.messages)}
        if req.tools:
            body["tools"] = [self.tool_to_wire(tool) for tool in req.tools]
        tc = req.tool_choice
        if tc is not None:
            if tc.mode == "tool":
                body["tool_choice"] = {"type": "function", "function": {"name": tc.name}}
            elif tc.mode == "required":
                body["tool_choice"] = self.required_tool_choice
            else:
                body["tool_choice"] = tc.mode
        if req.parallel_tool_calls is not None and req.tools:
            body["parallel_tool_calls"] = req.parallel_tool_calls
        rf = req.response_format
        if rf is not None:
            if rf.type == "json_schema":
                js: dict[str, Any] = {"name": rf.name or "response", "schema": rf.schema or {}}
                if rf.strict is not None:
                    js["strict"] = rf.strict
                body["response_format"] = {"type": "json_schema", "json_schema": js}
            else:
                body["response_format"] = {"type": rf.type}
        for field in ("temperature", "top_p", "seed", "user", "presence_penalty", "frequency_penalty"):
            v = getattr(req, field)
            if v is not None:
                body[field] = v
        if req.max_tokens is not None:
            body[self.max_tokens_field] = req.max_tokens
        if req.stop:
            body["stop"] = req.stop
        if req.n != 1:
            body["n"] = req.n
        if req.logprobs:
            body["logprobs"] = True
            if req.top_logprobs is not None:
                body["top_logprobs"] = req.top_logprobs
        if req.reasoning_effort is not None and self.supports_reasoning_effort:
            body["reasoning_effort"] = req.reasoning_effort
        return body

    def tool_to_wire(self, tool: t.Tool) -> dict[str, Any]:
        f: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            f["description"] = tool.description
        f["parameters"] = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
        if tool.strict is not None:
            f["strict"] = tool.strict
        return {"type": "function", "function": f}

    # --- response --------------------------------------------------------------------------

    def parse_response(self, d: dict[str, Any], dep: Deployment) -> t.ChatResponse:
        try:
            choices = [self._choice(c) for c in d["choices"]]
        except (KeyError, TypeError) as exc:
            raise e.UpstreamError(
                f"provider '{self.name}' returned an unexpected body (missing {exc})", provider=self.name
            ) from None
        return t.ChatResponse(
            id=d.get("id") or "chatcmpl-polyroute",
            model=d.get("model") or dep.upstream_model,
            created=d.get("created") or int(time.time()),
            choices=choices,
            usage=usage_from_openai(d.get("usage")),
            system_fingerprint=d.get("system_fingerprint"),
        )

    def _choice(self, c: dict[str, Any]) -> t.Choice:
        m = c.get("message") or {}
        parts: list[t.Part] = []
        reasoning = m.get("reasoning_content") or m.get("reasoning")
        if reasoning:
            parts.append(t.Thinking(text=reasoning))
        if m.get("content"):
            parts.append(t.TextPart(text=m["content"]))
        if m.get("refusal"):
            parts.append(t.TextPart(text=m["refusal"]))
        for tc in m.get("tool_calls") or ():
            fn = tc.get("function") or {}
            parts.append(t.ToolCall(id=tc.get("id") or "", name=fn.get("name") or "", arguments=fn.get("arguments") or ""))
        fr = c.get("finish_reason")
        return t.Choice(
            index=c.get("index", 0),
            message=t.Message(role="assistant", content=parts),
            finish_reason=_FINISH.get(fr, "stop") if fr else None,
            logprobs=c.get("logprobs"),
        )

    # --- calls -----------------------------------------------------------------------------

    async def chat(self, req: t.ChatRequest, dep: Deployment) -> t.ChatResponse:
        body = self.build_body(req, dep)
        d = await self.post_json(self.url(dep, "chat/completions"), body, self.auth_headers)
        return self.parse_response(d, dep)

    async def stream(self, req: t.ChatRequest, dep: Deployment) -> AsyncIterator[t.StreamEvent]:
        body = self.build_body(req, dep)
        body["stream"] = True
        if self.supports_stream_usage:
            # Always ask for usage, so streamed requests are priced exactly; the inbound
            # renderer hides the extra chunk from clients that did not ask for it.
            body["stream_options"] = {"include_usage": True}
        resp = await self.open_stream(self.url(dep, "chat/completions"), body, self.auth_headers)
        try:
            async for ev in self._events(resp, dep):
                yield ev
        finally:
            resp.release()

    async def _events(self, resp: Any, dep: Deployment) -> AsyncIterator[t.StreamEvent]:
        started = False
        done = False
        # upstream tool-call index -> whether its start was emitted, per choice
        seen_tools: set[tuple[int, int]] = set()
        async for event, chunk in self.sse_json(resp, end=b"[DONE]"):
            if event is FLUSH:
                yield FLUSH_EVENT
                continue
            if event is END:
                done = True
                break
            if not isinstance(chunk, dict):
                continue
            if "error" in chunk and "choices" not in chunk:
                err = chunk["error"]
                msg = err.get("message") if isinstance(err, dict) else str(err)
                raise e.UpstreamError(f"provider '{self.name}' stream error: {msg}", provider=self.name)
            if not started:
                started = True
                yield t.StreamStart(
                    id=chunk.get("id") or "chatcmpl-polyroute",
                    model=chunk.get("model") or dep.upstream_model,
                    created=chunk.get("created") or int(time.time()),
                )
            for c in chunk.get("choices") or ():
                ci = c.get("index", 0)
                delta = c.get("delta") or {}
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning:
                    yield t.ThinkingDelta(text=reasoning, choice=ci)
                content = delta.get("content")
                if content:
                    yield t.TextDelta(text=content, choice=ci)
                for tc in delta.get("tool_calls") or ():
                    ti = tc.get("index", 0)
                    fn = tc.get("function") or {}
                    if (ci, ti) not in seen_tools:
                        seen_tools.add((ci, ti))
                        yield t.ToolCallStart(index=ti, id=tc.get("id") or f"call_{ti}", name=fn.get("name") or "", choice=ci)
                    args = fn.get("arguments")
                    if args:
                        yield t.ToolCallDelta(index=ti, arguments=args, choice=ci)
                if c.get("logprobs"):
                    yield t.LogprobsDelta(logprobs=c["logprobs"], choice=ci)
                fr = c.get("finish_reason")
                if fr:
                    yield t.Finish(reason=_FINISH.get(fr, "stop"), choice=ci)
            usage = usage_from_openai(chunk.get("usage"))
            if usage is not None:
                yield t.UsageEvent(usage=usage)
        if not done:
            raise e.UpstreamError(f"provider '{self.name}' closed the stream before it finished", provider=self.name)

    async def embed(self, req: t.EmbeddingRequest, dep: Deployment) -> t.EmbeddingResponse:
        body: dict[str, Any] = {"model": dep.upstream_model, "input": req.inputs, "encoding_format": "float"}
        if req.dimensions is not None:
            body["dimensions"] = req.dimensions
        if req.user is not None:
            body["user"] = req.user
        d = await self.post_json(self.url(dep, "embeddings"), body, self.auth_headers)
        try:
            rows = sorted(d["data"], key=lambda r: r.get("index", 0))
            vectors = [r["embedding"] for r in rows]
        except (KeyError, TypeError) as exc:
            raise e.UpstreamError(f"provider '{self.name}' returned an unexpected embeddings body ({exc})", provider=self.name) from None
        if vectors and isinstance(vectors[0], str):
            raise e.UpstreamError(f"provider '{self.name}' returned base64 embeddings when floats were asked", provider=self.name)
        u = d.get("usage") or {}
        return t.EmbeddingResponse(
            model=d.get("model") or dep.upstream_model,
            vectors=vectors,
            usage=t.Usage(input_tokens=u.get("prompt_tokens") or u.get("total_tokens") or 0),
        )


class OpenAI(OpenAICompatible):
    type = "openai"
    default_base_url = "https://api.openai.com/v1"
    max_tokens_field = "max_completion_tokens"
    supports_reasoning_effort = True


class Azure(OpenAICompatible):
    """Azure OpenAI: the upstream model is the deployment name; api-version and api-key header."""

    type = "azure"
    max_tokens_field = "max_completion_tokens"
    supports_reasoning_effort = True

    def make_auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"api-key": api_key} if api_key else {}

    def url(self, dep: Deployment, endpoint: str) -> str:
        version = self.config.api_version or "2024-10-21"
        return f"{self.base_url}/openai/deployments/{dep.upstream_model}/{endpoint}?api-version={version}"


class Mistral(OpenAICompatible):
    type = "mistral"
    default_base_url = "https://api.mistral.ai/v1"
    # Mistral returns usage in the last chunk unasked and rejects stream_options.
    supports_stream_usage = False
    required_tool_choice = "any"
    capabilities = Capabilities(embeddings=True, logprobs=False, n=True)


class DeepSeek(OpenAICompatible):
    type = "deepseek"
    default_base_url = "https://api.deepseek.com/v1"
    capabilities = Capabilities(embeddings=False, images=False, logprobs=True, n=False)


class XAI(OpenAICompatible):
    type = "xai"
    default_base_url = "https://api.x.ai/v1"
    supports_reasoning_effort = True
    capabilities = Capabilities(embeddings=True, logprobs=True, n=True)


class VLLM(OpenAICompatible):
    type = "vllm"


class Ollama(OpenAICompatible):
    type = "ollama"
    default_base_url = "http://127.0.0.1:11434/v1"
    capabilities = Capabilities(embeddings=True, logprobs=False, n=False)


class LlamaCpp(OpenAICompatible):
    type = "llamacpp"
    default_base_url = "http://127.0.0.1:8080/v1"
    capabilities = Capabilities(embeddings=True, logprobs=True, n=False)
