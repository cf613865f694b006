"""Shadow traffic: mirror a sampled share of a route's answered requests to candidate models.

The decision to sample is made in `before` (so the gateway collects the answer text only for
sampled requests); `after` only schedules a background task and returns, so the client never waits
for a candidate. Mirrored calls go straight to the gateway's router, past every policy: they are
not authenticated, counted in the caller's rate limits, billed to the caller's budget or written
to the ledger. Their cost is recorded in the shadow store (`candidates[].cost_usd`,
`shadow_cost_usd`). They do use the deployments' real capacity (RPM/TPM, concurrency, breakers),
because the upstream limits are real: a busy deployment refuses a candidate call (recorded as an
error) rather than queueing it.

Each route has a bound on mirrored requests in flight (`max_queue`, waiting or running) and on
parallel candidate calls (`max_concurrency`); a request that finds the queue full is dropped and
counted in `stats`, never queued without bound.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from polyroute.config.schema import ShadowConfig
from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.core.context import RequestContext
from polyroute.core.policy import Policy
from polyroute.core.tokens import estimate_prompt, estimate_text
from polyroute.evaluation.shadow.store import ShadowStore, open_store
from polyroute.routing import executor

if TYPE_CHECKING:
    from polyroute.core.gateway import Gateway
    from polyroute.routing.planner import Router

log = logging.getLogger("polyroute.shadow")

# How long closing waits for mirrored requests still in flight before cancelling them.
DRAIN_SECONDS = 10.0


class ShadowStats:
    __slots__ = ("dropped", "failed", "mirrored", "sampled", "skipped", "stored")

    def __init__(self) -> None:
        self.sampled = 0  # requests picked by the sample rate
        self.skipped = 0  # of those, failed or answered without text (tool calls): nothing to compare
        self.mirrored = 0  # of those, answered successfully and scheduled
        self.dropped = 0  # scheduled-to-be but the route's queue was full
        self.stored = 0  # pairs written
        self.failed = 0  # pairs lost to an unexpected error (logged)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class _Route:
    __slots__ = ("config", "limit", "pending", "stats", "store")

    def __init__(self, config: ShadowConfig, store: ShadowStore) -> None:
        self.config = config
        self.store = store
        self.pending: set[asyncio.Task[None]] = set()
        self.limit: asyncio.Semaphore | None = None
        self.stats = ShadowStats()


class ShadowPolicy(Policy):
    def __init__(self, routes: dict[str, ShadowConfig], rng: Callable[[], float] | None = None) -> None:
        stores: dict[str, ShadowStore] = {}
        for sc in routes.values():
            if sc.store not in stores:
                stores[sc.store] = open_store(sc.store)
        self.stores = stores
        self.routes = {name: _Route(sc, stores[sc.store]) for name, sc in routes.items()}
        self._random = rng or random.Random().random
        self.router: Router | None = None

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        return {name: r.stats.as_dict() for name, r in self.routes.items()}

    def pending(self) -> int:
        return sum(len(r.pending) for r in self.routes.values())

    def attach(self, gateway: Gateway) -> None:
        # The gateway's own router: candidates share its providers, breakers and upstream limits.
        self.router = gateway.router

    async def before(self, ctx: RequestContext, req: t.ChatRequest | t.EmbeddingRequest) -> None:
        route = self.routes.get(req.model)
        if route is None or not isinstance(req, t.ChatRequest):
            return
        if route.config.sample_rate > 0 and self._random() < route.config.sample_rate:
            route.stats.sampled += 1
            ctx.output_text = []

    async def after(self, ctx: RequestContext) -> None:
        req = ctx.request
        route = self.routes.get(ctx.model_asked)
        if route is None or ctx.output_text is None or not isinstance(req, t.ChatRequest):
            return
        if ctx.error is not None or not any(part.strip() for part in ctx.output_text):
            route.stats.skipped += 1
            return
        if len(route.pending) >= route.config.max_queue:
            route.stats.dropped += 1
            return
        if route.limit is None:
            route.limit = asyncio.Semaphore(route.config.max_concurrency)
        primary = self._primary(ctx)
        route.stats.mirrored += 1
        task = asyncio.get_running_loop().create_task(
            self._mirror(route, ctx.model_asked, ctx.request_id, req, primary), name=f"shadow-{ctx.request_id}"
        )
        route.pending.add(task)
        task.add_done_callback(route.pending.discard)

    def _primary(self, ctx: RequestContext) -> dict[str, Any]:
        usage = ctx.usage or t.Usage()
        return {
            # The route that answered: the asked one, or the fallback that served it.
            "model": ctx.route or ctx.model_asked,
            "deployment": ctx.deployment,
            "provider": ctx.provider,
            "answer": "".join(ctx.output_text or ()),
            "cost_usd": ctx.cost,
            "latency_ms": round((time.monotonic() - ctx.started) * 1000, 3),
            "ttft_ms": round(ctx.ttft * 1000, 3) if ctx.ttft is not None else None,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "stream": ctx.stream,
        }

    async def _mirror(self, route: _Route, name: str, request_id: str, req: t.ChatRequest,
                      primary: dict[str, Any]) -> None:
        try:
            models = [m for m in route.config.models if m != primary["model"]]
            candidates = await asyncio.gather(
                *(self._candidate(route, f"{request_id}-shadow-{i}", req, m) for i, m in enumerate(models))
            )
            pair = {
                "id": request_id,
                "ts": time.time(),
                "route": name,
                "prompt": req.prompt_text(),
                "messages": msgspec.to_builtins(req.messages),
                "primary": primary,
                "candidates": candidates,
                "shadow_cost_usd": sum(c["cost_usd"] for c in candidates),
            }
            await route.store.write(pair)
            route.stats.stored += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            route.stats.failed += 1
            log.exception("shadow pair for request %s was lost", request_id)

    async def _candidate(self, route: _Route, request_id: str, req: t.ChatRequest, model: str) -> dict[str, Any]:
        assert self.router is not None and route.limit is not None
        sreq = msgspec.structs.replace(
            req, model=model, stream=False, include_usage=False, options=t.RequestOptions(fallbacks=False)
        )
        ctx = RequestContext(request_id, "shadow")
        out: dict[str, Any] = {"model": model, "answer": "", "status": 200, "error": None}
        async with route.limit:
            ctx.started = time.monotonic()
            try:
                resp, dep, attempt = await executor.run_chat(self.router, sreq, ctx)
            except e.GatewayError as err:
                out["status"], out["error"] = err.status, f"{type(err).__name__}: {err.message}"
                resp = None
            latency = time.monotonic() - ctx.started
        if resp is not None:
            if resp.usage is None:
                out_tokens = sum(estimate_text(c.message.text()) for c in resp.choices)
                resp.usage = t.Usage(input_tokens=estimate_prompt(sreq), output_tokens=out_tokens, estimated=True)
                attempt.usage, attempt.cost = resp.usage, dep.cost(resp.usage)
            out["answer"] = resp.choices[0].message.text() if resp.choices else ""
        usage = resp.usage if resp is not None and resp.usage is not None else t.Usage()
        out.update(
            deployment=ctx.deployment,
            provider=ctx.provider,
            cost_usd=sum(a.cost for a in ctx.attempts),
            latency_ms=round(latency * 1000, 3),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )
        return out

    async def close(self) -> None:
        pending = [t_ for r in self.routes.values() for t_ in r.pending]
        if pending:
            _, late = await asyncio.wait(pending, timeout=DRAIN_SECONDS)
            for task in late:
                task.cancel()
            if late:
                log.warning("shadow: %d mirrored request(s) cancelled at shutdown", len(late))
                await asyncio.gather(*late, return_exceptions=True)
        for store in self.stores.values():
            await store.close()
        for name, r in self.routes.items():
            if r.stats.sampled:
                log.info("shadow %s: %s", name, r.stats.as_dict())
