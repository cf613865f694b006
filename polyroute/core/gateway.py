"""The one request path: policies before, the routed call, policies after.

Inbound APIs call `chat`, `open_chat_stream` and `embed` with canonical requests; nothing here
knows which API the client spoke or which vendor answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from polyroute.config.schema import Config
from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.core.catalog import Catalog
from polyroute.core.context import Attempt, RequestContext
from polyroute.core.deployment import Deployment
from polyroute.core.policy import Policy
from polyroute.core.tokens import estimate_prompt, estimate_text
from polyroute.routing import executor
from polyroute.routing.planner import Router
from polyroute.routing.redis_state import shared_state

log = logging.getLogger("polyroute")


class Gateway:
    def __init__(self, config: Config, config_hash: str, policies: Sequence[Policy] = ()) -> None:
        self.config = config
        self.config_hash = config_hash
        self.catalog = Catalog(config)
        # Breakers and latency shared with the other instances through Redis, when configured.
        self.shared_state = shared_state(config)
        # Deployment choice, failover, breakers and limits (polyroute/routing, docs/routing.md).
        self.router = Router(self.catalog, state=self.shared_state)
        self.policies = list(policies)
        for p in self.policies:
            p.attach(self)

    async def start(self) -> None:
        await self.catalog.start()
        if self.shared_state is not None:
            await self.shared_state.start()
        await self.router.start()
        for p in self.policies:
            await p.start()

    async def close(self) -> None:
        # Policies first: the ledger flushes while providers are still there to be named.
        for p in reversed(self.policies):
            try:
                await p.close()
            except Exception:
                log.exception("closing policy %s failed", type(p).__name__)
        await self.router.close()
        if self.shared_state is not None:
            await self.shared_state.close()
        await self.catalog.close()

    async def _before(self, ctx: RequestContext, req: t.ChatRequest | t.EmbeddingRequest) -> None:
        ctx.model_asked = ctx.route = req.model
        ctx.request = req
        ctx.options = req.options
        if req.options is not None:
            ctx.tags = req.options.tags
            ctx.end_user = req.options.end_user
        for p in self.policies:
            await p.before(ctx, req)

    async def _after(self, ctx: RequestContext) -> None:
        for p in self.policies:
            try:
                await p.after(ctx)
            except Exception:
                log.exception("policy %s failed after request %s", type(p).__name__, ctx.request_id)

    def _fail(self, ctx: RequestContext, err: e.GatewayError) -> None:
        ctx.status = err.status
        ctx.error = err
        ctx.cost = sum(a.cost for a in ctx.attempts)

    def _fail_unexpected(self, ctx: RequestContext, exc: BaseException) -> None:
        # Cancellation (the client left) or a bug: the request still gets its ledger row.
        status = 499 if isinstance(exc, asyncio.CancelledError) else 500
        self._fail(ctx, e.GatewayError(f"request ended: {type(exc).__name__}", status=status))

    async def chat(self, req: t.ChatRequest, ctx: RequestContext) -> t.ChatResponse:
        # `after` runs whatever happens, including a refusal in `before`, so every request that
        # reached the gateway is accounted for (ledger row, budget reservation released).
        try:
            await self._before(ctx, req)
            resp, dep, attempt = await executor.run_chat(self.router, req, ctx)
            if resp.usage is None:
                out = sum(estimate_text(c.message.text()) for c in resp.choices)
                resp.usage = t.Usage(input_tokens=estimate_prompt(req), output_tokens=out, estimated=True)
                attempt.usage, attempt.cost = resp.usage, dep.cost(resp.usage)
            ctx.usage = resp.usage
            ctx.cost = sum(a.cost for a in ctx.attempts)
            if ctx.output_text is not None and resp.choices:
                ctx.output_text.append(resp.choices[0].message.text())
            return resp
        except e.GatewayError as err:
            self._fail(ctx, err)
            raise
        except BaseException as exc:
            self._fail_unexpected(ctx, exc)
            raise
        finally:
            await self._after(ctx)

    async def open_chat_stream(self, req: t.ChatRequest, ctx: RequestContext) -> StreamRelay:
        """Route and start a stream. Errors before the first event raise here (and the client gets
        a plain error response); afterwards they raise from the returned relay."""
        ctx.stream = True
        try:
            await self._before(ctx, req)
            first, rest, dep, attempt = await executor.open_stream(self.router, req, ctx)
        except BaseException as exc:
            if isinstance(exc, e.GatewayError):
                self._fail(ctx, exc)
            else:
                self._fail_unexpected(ctx, exc)
            await self._after(ctx)
            raise
        return StreamRelay(self, req, ctx, first, rest, dep, attempt)

    async def embed(self, req: t.EmbeddingRequest, ctx: RequestContext) -> t.EmbeddingResponse:
        try:
            await self._before(ctx, req)
            resp = await executor.run_embed(self.router, req, ctx)
            ctx.usage = resp.usage
            ctx.cost = sum(a.cost for a in ctx.attempts)
            return resp
        except e.GatewayError as err:
            self._fail(ctx, err)
            raise
        except BaseException as exc:
            self._fail_unexpected(ctx, exc)
            raise
        finally:
            await self._after(ctx)


class StreamRelay:
    """Passes a started stream's events to the client while keeping the books.

    A class rather than an async generator: `aclose()` must settle the request (usage, cost,
    ledger row) even when the client vanished before the first event was pulled, which a
    never-started generator's `finally` would not do.
    """

    __slots__ = ("_attempt", "_dep", "_done", "_err", "_first", "_gw", "_out_chars", "_rest", "_usage", "ctx", "req")

    def __init__(
        self,
        gw: Gateway,
        req: t.ChatRequest,
        ctx: RequestContext,
        first: t.StreamEvent,
        rest: AsyncIterator[t.StreamEvent],
        dep: Deployment,
        attempt: Attempt,
    ) -> None:
        self._gw = gw
        self.req = req
        self.ctx = ctx
        self._first: t.StreamEvent | None = first
        self._rest = rest
        self._dep = dep
        self._attempt = attempt
        self._usage: t.Usage | None = None
        self._out_chars = 0
        self._err: e.GatewayError | None = None
        self._done = False

    def __aiter__(self) -> StreamRelay:
        return self

    @property
    def flushes(self) -> bool:
        return self._dep.provider.flushes

    async def __anext__(self) -> t.StreamEvent:
        if self._done:
            raise StopAsyncIteration
        ev = self._first
        if ev is not None:
            self._first = None
        else:
            try:
                ev = await anext(self._rest)
            except StopAsyncIteration:
                await self.aclose()
                raise
            except e.GatewayError as exc:
                self._err = exc
                await self.aclose()
                raise
            except BaseException as exc:
                # The client went away (cancellation) or the relay broke: the upstream call
                # is closed and the row records what was streamed so far.
                self._err = e.UpstreamError(
                    f"stream ended early: {type(exc).__name__}", provider=self._dep.provider_name, status=499
                )
                await self.aclose()
                raise
        if isinstance(ev, t.TextDelta):
            self._out_chars += len(ev.text)
            out_text = self.ctx.output_text
            if out_text is not None and ev.choice == 0:
                out_text.append(ev.text)
        elif isinstance(ev, t.ThinkingDelta):
            self._out_chars += len(ev.text)
        elif isinstance(ev, t.ToolCallDelta):
            self._out_chars += len(ev.arguments)
        elif isinstance(ev, t.UsageEvent):
            self._usage = ev.usage
        return ev

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        ctx, gw = self.ctx, self._gw
        if self._err is None and self._first is not None:
            self._err = e.UpstreamError("stream ended before it was sent", provider=self._dep.provider_name, status=499)
        await executor.close_quietly(self._rest)
        usage = self._usage
        if usage is None:
            usage = t.Usage(
                input_tokens=estimate_prompt(self.req), output_tokens=(self._out_chars + 3) // 4, estimated=True
            )
        executor.finish_stream_attempt(ctx, self._attempt, self._dep, usage, self._err)
        ctx.usage = usage
        if self._err is not None:
            gw._fail(ctx, self._err)
        ctx.cost = sum(a.cost for a in ctx.attempts)
        await gw._after(ctx)
