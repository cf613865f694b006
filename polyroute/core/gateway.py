"""The one request path: policies before, the routed call, policies after.

Inbound APIs call `chat`, `open_chat_stream` and `embed` with canonical requests; nothing here
knows which API the client spoke or which vendor answers.
"""

from __future__ import annotations

import logging
import time
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

log = logging.getLogger("polyroute")


class Gateway:
    def __init__(self, config: Config, config_hash: str, policies: Sequence[Policy] = ()) -> None:
        self.config = config
        self.config_hash = config_hash
        self.catalog = Catalog(config)
        # Deployment choice, failover, breakers and limits (polyroute/routing, docs/routing.md).
        self.router = Router(self.catalog)
        self.policies = list(policies)
        for p in self.policies:
            p.attach(self)

    async def start(self) -> None:
        await self.catalog.start()
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

    async def chat(self, req: t.ChatRequest, ctx: RequestContext) -> t.ChatResponse:
        await self._before(ctx, req)
        try:
            resp, dep, attempt = await executor.run_chat(self.router, req, ctx)
        except e.GatewayError as err:
            self._fail(ctx, err)
            await self._after(ctx)
            raise
        if resp.usage is None:
            out = sum(estimate_text(c.message.text()) for c in resp.choices)
            resp.usage = t.Usage(input_tokens=estimate_prompt(req), output_tokens=out, estimated=True)
            attempt.usage, attempt.cost = resp.usage, dep.cost(resp.usage)
        ctx.usage = resp.usage
        ctx.cost = sum(a.cost for a in ctx.attempts)
        if ctx.output_text is not None and resp.choices:
            ctx.output_text.append(resp.choices[0].message.text())
        await self._after(ctx)
        return resp

    async def open_chat_stream(self, req: t.ChatRequest, ctx: RequestContext) -> AsyncIterator[t.StreamEvent]:
        """Route and start a stream. Errors before the first event raise here (and the client gets
        a plain error response); afterwards they raise from the returned iterator."""
        await self._before(ctx, req)
        ctx.stream = True
        try:
            first, rest, dep, attempt = await executor.open_stream(self.router, req, ctx)
        except e.GatewayError as err:
            self._fail(ctx, err)
            await self._after(ctx)
            raise
        return self._relay(req, ctx, first, rest, dep, attempt)

    async def _relay(
        self,
        req: t.ChatRequest,
        ctx: RequestContext,
        first: t.StreamEvent,
        rest: AsyncIterator[t.StreamEvent],
        dep: Deployment,
        attempt: Attempt,
    ) -> AsyncIterator[t.StreamEvent]:
        usage: t.Usage | None = None
        out_chars = 0
        err: e.GatewayError | None = None
        out_text = ctx.output_text
        try:
            ev = first
            while True:
                if isinstance(ev, t.TextDelta | t.ThinkingDelta):
                    out_chars += len(ev.text)
                    if out_text is not None and isinstance(ev, t.TextDelta) and ev.choice == 0:
                        out_text.append(ev.text)
                elif isinstance(ev, t.ToolCallDelta):
                    out_chars += len(ev.arguments)
                elif isinstance(ev, t.UsageEvent):
                    usage = ev.usage
                yield ev
                try:
                    ev = await anext(rest)
                except StopAsyncIteration:
                    break
        except e.GatewayError as exc:
            err = exc
            raise
        except BaseException as exc:
            # The client went away (cancellation) or the relay broke: the upstream call is
            # closed below either way, and the row records what was streamed so far.
            err = e.UpstreamError(f"stream ended early: {type(exc).__name__}", provider=dep.provider_name, status=499)
            raise
        finally:
            await executor.close_quietly(rest)
            if usage is None:
                usage = t.Usage(
                    input_tokens=estimate_prompt(req),
                    output_tokens=(out_chars + 3) // 4,
                    estimated=True,
                )
            executor.finish_stream_attempt(ctx, attempt, dep, usage, err)
            ctx.usage = usage
            if err is not None:
                self._fail(ctx, err)
            ctx.cost = sum(a.cost for a in ctx.attempts)
            ctx.ttft = ctx.ttft if ctx.ttft is not None else time.monotonic() - ctx.started
            await self._after(ctx)

    async def embed(self, req: t.EmbeddingRequest, ctx: RequestContext) -> t.EmbeddingResponse:
        await self._before(ctx, req)
        try:
            resp = await executor.run_embed(self.router, req, ctx)
        except e.GatewayError as err:
            self._fail(ctx, err)
            await self._after(ctx)
            raise
        ctx.usage = resp.usage
        ctx.cost = sum(a.cost for a in ctx.attempts)
        await self._after(ctx)
        return resp
