"""The ASGI application: a table of routes in front of the gateway's one request path."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.core.context import RequestContext
from polyroute.core.gateway import Gateway
from polyroute.inbound import openai_embeddings, options
from polyroute.inbound.api import ChatAPI, StreamRenderer
from polyroute.inbound.openai_chat import OpenAIChatAPI
from polyroute.inbound.openai_chat import error_body as openai_error_body
from polyroute.ops import stackdump
from polyroute.server.http import (
    SSE_HEADERS,
    ClientDisconnected,
    DisconnectGuard,
    Headers,
    Receive,
    Scope,
    Send,
    header,
    new_request_id,
    read_body,
    send_json,
    send_stream,
)

log = logging.getLogger("polyroute.server")

# Seconds the whole close may take after the requests (docs/operations.md#shutdown).
CLOSE_LIMIT = 30.0
# Allocations between young-generation collections (CPython's default: 700).
GEN0_THRESHOLD = 20_000

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


def api_key_of(scope: Scope) -> str | None:
    """The caller's key from any of the headers the vendors' SDKs use."""
    auth = header(scope, b"authorization")
    if auth is not None:
        scheme, _, token = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token:
            return token.strip()
    for name in (b"x-api-key", b"api-key", b"x-goog-api-key"):
        v = header(scope, name)
        if v:
            return v.decode("latin-1")
    return None


def error_headers(err: e.GatewayError, ctx: RequestContext | None) -> Headers:
    h: Headers = ctx.served_headers() if ctx is not None else []
    if not err.retryable:
        # The official SDKs obey this and do not retry what cannot succeed.
        h.append((b"x-should-retry", b"false"))
    if err.retry_after is not None:
        h.append((b"retry-after", str(max(1, round(err.retry_after))).encode()))
    return h


class App:
    def __init__(self, gateway: Gateway, *, max_body_bytes: int | None = None) -> None:
        self.gateway = gateway
        self.max_body = max_body_bytes or gateway.config.server.max_body_bytes
        self.openai = OpenAIChatAPI()
        # gc.freeze() once started: set by the `polyroute serve` factory, where the app owns the process.
        self.freeze_gc = False
        self.routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self.openai_chat,
            ("POST", "/v1/embeddings"): self.embeddings,
            ("GET", "/v1/models"): self.models,
            ("GET", "/health/live"): self.live,
            ("GET", "/health/ready"): self.ready,
        }
        self.anthropic: ChatAPI | None = None
        try:
            from polyroute.inbound.anthropic_messages import AnthropicMessagesAPI
        except ImportError:  # the Anthropic inbound API is optional while it is being built
            pass
        else:
            self.anthropic = AnthropicMessagesAPI()
            self.routes[("POST", "/v1/messages")] = self.anthropic_messages
            self.routes[("POST", "/v1/messages/count_tokens")] = self.anthropic_count_tokens
        self.started = False
        # Every HTTP request goes through `http`; ops wraps it (access log, request ids).
        self.http: Handler = self.dispatch

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get((scope["method"], scope["path"]))
        if handler is None:
            await self.not_found(scope, receive, send)
            return
        await handler(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self.started = True
                stackdump.install()  # SIGUSR1: what this worker waits on, until its loop ends
                # Everything built at start-up (config, catalogue, models, pools) lives as long
                # as the process: moved out of the collector's reach, the full collections that
                # request garbage triggers no longer walk it (docs/performance.md). Off for apps embedded in a larger process (tests).
                if self.freeze_gc:
                    gc.collect()
                    gc.freeze()
                    # Each young collection walks every request still in flight; at c=64 with
                    # governance on, the default 700 cost 7-9% of the CPU per request (docs/performance.md).
                    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self._close_gateway()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _close_gateway(self) -> None:
        """Every part's close is bounded on its own (docs/operations.md#shutdown); this ceiling is
        for the part that is not, so that a stop never hangs: it says where, and exits anyway."""
        closing = asyncio.ensure_future(self.gateway.close())
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_LIMIT)
        if not done:
            log.error("closing took over %.0f s; exiting without it. Still running:\n%s", CLOSE_LIMIT,
                      stackdump.render())  # fmt: skip
            closing.cancel()
            await asyncio.wait({closing}, timeout=1.0)
        elif closing.exception() is not None:
            log.error("closing failed", exc_info=closing.exception())

    # --- chat -------------------------------------------------------------------------------

    async def openai_chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.chat(self.openai, scope, receive, send)

    async def anthropic_messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.anthropic is not None
        await self.chat(self.anthropic, scope, receive, send)

    async def chat(self, api: ChatAPI, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = RequestContext(new_request_id(), api.name, api_key_of(scope))
        guard: DisconnectGuard | None = None
        try:
            body = await read_body(scope, receive, self.max_body)
            req = api.parse(body)
            req.options = options.merge(req.options, scope["headers"])
            guard = DisconnectGuard(receive)
            if req.stream:
                with guard:
                    events = await self.gateway.open_chat_stream(req, ctx)
                renderer = api.stream_renderer(req)
                await send_stream(
                    receive, send, SSE_HEADERS + ctx.served_headers(), self._sse(events, renderer, ctx)
                )
            else:
                with guard:
                    resp = await self.gateway.chat(req, ctx)
                await send_json(send, 200, api.render(resp, req), ctx.served_headers())
        except asyncio.CancelledError:
            # The client left while the upstream call ran: it was cancelled and accounted for.
            if guard is None or not guard.disconnected:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
        except e.GatewayError as err:
            await send_json(send, err.status, api.error_body(err), error_headers(err, ctx))
        except ClientDisconnected:
            return
        except Exception:
            log.exception("unexpected error in request %s", ctx.request_id)
            internal = e.GatewayError(f"internal error (request id {ctx.request_id})")
            await send_json(send, 500, api.error_body(internal), error_headers(internal, ctx))

    async def _sse(
        self, events: AsyncIterator[Any], renderer: StreamRenderer, ctx: RequestContext
    ) -> AsyncIterator[bytes]:
        # Rendered events are held until the provider says its network read is used up (Flush),
        # then written as one burst: one ASGI send and one syscall instead of one per event.
        # Streams that never flush (the in-house model) are written event by event. The first
        # event that renders to bytes goes out at once: time to first byte must not include
        # rendering the rest of a read that brought many events.
        held: list[bytes] = []
        flushes = bool(getattr(events, "flushes", False))
        first = True
        try:
            async for ev in events:
                if isinstance(ev, t.Flush):
                    if held:
                        yield b"".join(held)
                        held.clear()
                    continue
                chunk = renderer.render(ev)
                if flushes and not (first and chunk):
                    held.append(chunk)
                else:
                    first = False
                    yield chunk
            held.append(renderer.done())
            yield b"".join(held)
            held.clear()
        except e.GatewayError as err:
            held.append(renderer.error(err))
            yield b"".join(held)
        except Exception:
            if held:
                yield b"".join(held)
            log.exception("unexpected error while streaming request %s", ctx.request_id)
            yield renderer.error(e.GatewayError(f"internal error (request id {ctx.request_id})"))
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    async def anthropic_count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        from polyroute.inbound.anthropic_messages import count_tokens_response

        assert self.anthropic is not None
        try:
            body = await read_body(scope, receive, self.max_body)
            await send_json(send, 200, count_tokens_response(body, self.gateway))
        except e.GatewayError as err:
            await send_json(send, err.status, self.anthropic.error_body(err), error_headers(err, None))
        except ClientDisconnected:
            return

    # --- embeddings, models, health ---------------------------------------------------------

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = RequestContext(new_request_id(), "openai", api_key_of(scope))
        try:
            body = await read_body(scope, receive, self.max_body)
            req, encoding = openai_embeddings.parse_request(body)
            req.options = options.merge(req.options, scope["headers"])
            resp = await self.gateway.embed(req, ctx)
            await send_json(
                send, 200, openai_embeddings.render_response(resp, req.model, encoding), ctx.served_headers()
            )
        except e.GatewayError as err:
            await send_json(send, err.status, openai_error_body(err), error_headers(err, ctx))
        except ClientDisconnected:
            return
        except Exception:
            log.exception("unexpected error in request %s", ctx.request_id)
            internal = e.GatewayError(f"internal error (request id {ctx.request_id})")
            await send_json(send, 500, openai_error_body(internal), error_headers(internal, ctx))

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        now = int(time.time())
        data = [
            {
                "id": name,
                "object": "model",
                "created": now,
                "owned_by": ",".join(sorted({d.provider.config.type for d in r.deployments})),
            }
            for name, r in sorted(self.gateway.catalog.routes.items())
        ]
        await send_json(send, 200, {"object": "list", "data": data})

    async def live(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"status": "ok"})

    async def ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 200 if self.started else 503
        await send_json(
            send,
            status,
            {"status": "ready" if self.started else "starting", "config_hash": self.gateway.config_hash},
        )

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if any(p == path for (_, p) in self.routes):
            err: e.GatewayError = e.GatewayError(f"method {scope['method']} is not allowed on {path}", status=405)
            err.kind = "invalid_request_error"  # type: ignore[misc]
        else:
            err = e.NotFound(f"no route for {scope['method']} {path}")
        await send_json(send, err.status, openai_error_body(err), [(b"x-should-retry", b"false")])
