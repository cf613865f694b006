"""The one small interface every provider adapter implements.

A provider translates canonical requests into one vendor's wire format and back. It owns its
pooled HTTP client (created once at start-up, reused for every call) and maps the vendor's errors
to `polyroute.core.errors` at the boundary. Everything else (routing, retries, limits, ledger)
lives outside and never sees a vendor's payload.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp
import msgspec
import orjson

from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.transport import (
    BodyTooLarge,
    SSEDecoder,
    StreamResponse,
    TransportError,
    Upstream,
    open_upstream,
)

if TYPE_CHECKING:
    from polyroute.config.schema import ProviderConfig
    from polyroute.core.deployment import Deployment


def tool_arguments(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as the object Anthropic's `input` and Gemini's `args` must be;
    arguments that are not a JSON object are the caller's error (400), not the vendor's."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise e.InvalidRequest(f"tool call arguments are not valid JSON: {arguments[:100]!r}") from None
    if not isinstance(value, dict):
        raise e.InvalidRequest(f"tool call arguments must be a JSON object, got {arguments[:100]!r}")
    return value


class Capabilities:
    """What a provider type can do; routing checks a request against it before choosing."""

    __slots__ = ("embeddings", "images", "json_schema", "logprobs", "n", "tools")

    def __init__(
        self,
        *,
        embeddings: bool = False,
        tools: bool = True,
        json_schema: bool = True,
        images: bool = True,
        logprobs: bool = False,
        n: bool = False,
    ) -> None:
        self.embeddings = embeddings
        self.tools = tools
        self.json_schema = json_schema
        self.images = images
        self.logprobs = logprobs
        self.n = n


class Provider:
    type: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()
    # Whether its streams emit `types.Flush` after each network read (see there).
    flushes: ClassVar[bool] = False

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config

    def add_deployment(self, dep: Deployment) -> None:
        """Told of every deployment that uses this provider, once the catalogue is built (the
        in-house provider loads only the models named, and rejects unknown ones)."""

    async def start(self) -> None:
        """Open pools, load models. Called once, inside the running event loop."""

    async def close(self) -> None:
        """Release pools; called on shutdown."""

    async def chat(self, req: t.ChatRequest, dep: Deployment) -> t.ChatResponse:
        raise e.InvalidRequest(f"provider '{self.name}' ({self.type}) does not serve chat completions")

    def stream(self, req: t.ChatRequest, dep: Deployment) -> AsyncIterator[t.StreamEvent]:
        """An async iterator of events. The upstream call happens on the first `__anext__`, and
        any error raised before the first event leaves the gateway free to fail over."""
        raise e.InvalidRequest(f"provider '{self.name}' ({self.type}) does not stream chat completions")

    async def embed(self, req: t.EmbeddingRequest, dep: Deployment) -> t.EmbeddingResponse:
        raise e.InvalidRequest(f"provider '{self.name}' ({self.type}) does not serve embeddings")

    def unsupported(self, req: t.ChatRequest) -> list[str]:
        """Request features this provider cannot honour (names of parameters)."""
        caps = self.capabilities
        bad: list[str] = []
        if req.tools and not caps.tools:
            bad.append("tools")
        if req.response_format is not None and req.response_format.type == "json_schema" and not caps.json_schema:
            bad.append("response_format")
        if req.logprobs and not caps.logprobs:
            bad.append("logprobs")
        if req.n > 1 and not caps.n:
            bad.append("n")
        if not caps.images and req.has_images():
            bad.append("image content")
        return bad


def drop_unsupported(req: t.ChatRequest, bad: list[str]) -> t.ChatRequest:
    """The request without the features a provider cannot honour (when the config says so)."""
    changes: dict[str, Any] = {}
    if "tools" in bad:
        changes.update(tools=None, tool_choice=None, parallel_tool_calls=None)
    if "response_format" in bad:
        changes["response_format"] = None
    if "logprobs" in bad:
        changes.update(logprobs=None, top_logprobs=None)
    if "n" in bad:
        changes["n"] = 1
    if "image content" in bad:
        changes["messages"] = [
            msgspec.structs.replace(m, content=[p for p in m.content if not isinstance(p, t.ImagePart)])
            for m in req.messages
        ]
    return msgspec.structs.replace(req, **changes) if changes else req


class HTTPProvider(Provider):
    """A provider that speaks HTTP through one pooled keep-alive client: polyroute.transport's
    HTTP/1.1 client, or aiohttp when the config asks for it or a proxy is involved."""

    flushes = True  # its adapters read SSE through `iter_sse`, which marks each read

    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        self._session: Upstream | None = None

    async def start(self) -> None:
        cfg = self.config
        self._session = open_upstream(
            kind=cfg.http_client,
            proxy=cfg.proxy,
            max_connections=cfg.max_connections,
            connect_timeout=cfg.timeouts.connect,
            # The silence allowed between two reads is exactly the idle gap between stream
            # chunks; the total per-request deadline is enforced by the caller.
            read_timeout=cfg.timeouts.idle,
            headers={"User-Agent": "polyroute/0.1", **(cfg.headers or {})},
        )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @property
    def http(self) -> Upstream:
        if self._session is None:
            raise e.Unavailable(f"provider '{self.name}' is not started")
        return self._session

    async def post_json(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        """POST JSON, return the decoded JSON body, or raise the mapped error."""
        try:
            resp = await self.http.post(url, orjson.dumps(body), {**headers, "Content-Type": "application/json"})
        except (TransportError, ValueError) as exc:
            raise self.connection_error(exc) from None
        raw = resp.body
        if resp.status >= 400:
            raise self.map_error(resp.status, raw, resp.headers)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise e.UpstreamError(
                f"provider '{self.name}' returned a body that is not JSON: {raw[:200]!r}", provider=self.name
            ) from None

    async def open_stream(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> StreamResponse:
        """Start a streaming POST; raises the mapped error unless the upstream answered 2xx.
        The caller iterates it with `iter_sse` and must `release()` it."""
        try:
            resp = await self.http.open(url, orjson.dumps(body), {**headers, "Content-Type": "application/json"})
        except (TransportError, ValueError) as exc:
            raise self.connection_error(exc) from None
        if resp.status >= 400:
            try:
                raw = await resp.read()
            except TransportError:
                raw = b""
            finally:
                resp.release()
            raise self.map_error(resp.status, raw, resp.headers)
        return resp

    async def sse_json(self, resp: Any, end: bytes | None = None) -> AsyncIterator[tuple[str | None, Any]]:
        """Each server-sent event of a streaming response as (event name, decoded JSON), plus
        `(FLUSH, None)` after each network read and `(END, None)` at a data line equal to `end`
        (OpenAI's `[DONE]`). Malformed JSON and broken connections raise the mapped errors. The
        caller releases `resp` (in a `finally`, so an abandoned stream frees it at once)."""
        try:
            async for event, data in iter_sse(resp):
                if event is FLUSH:
                    yield FLUSH, None
                    continue
                if data == end:
                    yield END, None
                    return
                try:
                    obj = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise e.UpstreamError(
                        f"provider '{self.name}' sent a malformed stream event: {data[:120]!r}", provider=self.name
                    ) from None
                yield event, obj
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            raise self.connection_error(exc) from None

    def connection_error(self, exc: BaseException) -> e.GatewayError:
        if isinstance(exc, TimeoutError):
            return e.UpstreamTimeout(f"provider '{self.name}' timed out ({exc})", provider=self.name)
        if isinstance(exc, BodyTooLarge):
            return e.UpstreamError(f"provider '{self.name}' sent a response too large to buffer ({exc})", provider=self.name)
        return e.UpstreamError(
            f"provider '{self.name}' connection failed: {type(exc).__name__}: {exc}", provider=self.name
        )

    def error_message(self, raw: bytes) -> str:
        """The vendor's error message, whatever its shape, with the gateway's own upstream
        secrets removed: vendors echo keys back ("Incorrect API key provided: sk-...")."""
        text = self._vendor_message(raw)
        for secret in self._secrets():
            text = text.replace(secret, "[redacted]")
        return text

    def _secrets(self) -> list[str]:
        out = [self.config.api_key] if self.config.api_key else []
        out.extend(v for v in (self.config.headers or {}).values() if len(v) >= 8)
        # Vendors often echo a key shortened ("sk-abc...xyz"): the 8-character ends are secret too.
        out.extend(k[:8] for k in list(out) if len(k) >= 16)
        return out

    def _vendor_message(self, raw: bytes) -> str:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw[:300].decode("utf-8", "replace") or "(empty body)"
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return str(body["message"])
        return raw[:300].decode("utf-8", "replace")

    def map_error(self, status: int, raw: bytes, headers: Any) -> e.GatewayError:
        msg = f"provider '{self.name}' returned HTTP {status}: {self.error_message(raw)}"
        retry_after = parse_retry_after(headers)
        if status == 429:
            return e.RateLimited(msg, provider=self.name, retry_after=retry_after)
        if status in (401, 403):
            # The gateway's own upstream credentials were refused: not the caller's fault, and
            # another deployment may hold valid ones, so this fails over like a server error.
            return e.UpstreamError(
                f"provider '{self.name}' rejected the gateway's credentials (HTTP {status}); check its api_key",
                provider=self.name,
            )
        if status == 529 or status == 503:
            return e.UpstreamOverloaded(msg, provider=self.name, retry_after=retry_after)
        if status == 408 or status == 504:
            return e.UpstreamTimeout(msg, provider=self.name)
        if status >= 500:
            return e.UpstreamError(msg, provider=self.name, retry_after=retry_after)
        return e.client_error_for_status(status)(msg, provider=self.name, status=status)


def parse_retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        return None  # HTTP-date form: rare from AI vendors; fall back to our own backoff


FLUSH = "polyroute.flush"
END = "polyroute.end"


async def iter_sse(resp: StreamResponse | aiohttp.ClientResponse) -> AsyncIterator[tuple[str | None, bytes]]:
    """Server-sent events from a streaming response: yields (event name, data bytes) per event,
    and `(FLUSH, b"")` after the events one network read completed (adapters turn it into
    `types.Flush`). Parsing works on whole reads, not lines (polyroute/transport/sse.py)."""
    decoder = SSEDecoder()
    source = resp.content.iter_any() if isinstance(resp, aiohttp.ClientResponse) else resp
    async for chunk in source:
        events = decoder.feed(chunk)
        if events:
            for event in events:
                yield event
            yield FLUSH, b""
    for event in decoder.flush():
        yield event
