"""Runs one request over the deployments a route offers: the attempt loop.

The loop is plain: ask the planner for an ordered list of deployments, try each, collect each
failure, and stop at the first success or the first error that another deployment cannot fix.
For streams, failover is possible only until the first event arrives; after that, the stream is
the client's and errors end it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.core.catalog import Catalog, Route
from polyroute.core.context import Attempt, RequestContext
from polyroute.core.deployment import Deployment


def candidates(catalog: Catalog, req: t.ChatRequest | t.EmbeddingRequest, ctx: RequestContext) -> list[Route]:
    """The routes to try, in order: the asked model, then its fallbacks (if allowed)."""
    route = catalog.route(req.model)
    if route is None:
        raise e.ModelNotFound(
            f"model '{req.model}' does not exist; available models: {', '.join(catalog.names()) or 'none'}",
            param="model",
        )
    routes = [route]
    opts = req.options
    if opts is not None and opts.models:
        for name in opts.models:
            r = catalog.route(name)
            if r is not None and r not in routes:
                routes.append(r)
    if opts is None or opts.fallbacks is not False:
        for name in route.fallbacks:
            r = catalog.route(name)
            if r is not None and r not in routes:
                routes.append(r)
    return routes


def plan(catalog: Catalog, req: t.ChatRequest | t.EmbeddingRequest, ctx: RequestContext) -> list[Deployment]:
    out: list[Deployment] = []
    opts = req.options
    unsupported: list[str] = []
    for route in candidates(catalog, req, ctx):
        for dep in route.deployments:
            prov = dep.provider
            if opts is not None:
                if opts.providers_allowed and prov.name not in opts.providers_allowed:
                    continue
                if opts.providers_excluded and prov.name in opts.providers_excluded:
                    continue
            if isinstance(req, t.ChatRequest):
                bad = prov.unsupported(req)
                if bad and not prov.config.drop_unsupported_params:
                    unsupported.append(f"{prov.name} ({dep.upstream_model}) does not support {', '.join(bad)}")
                    continue
            out.append(dep)
    if not out:
        if unsupported:
            raise e.InvalidRequest("; ".join(unsupported))
        raise e.Unavailable(f"no deployment of '{req.model}' is allowed for this request")
    return out


def _timeout(dep: Deployment, req: t.ChatRequest | t.EmbeddingRequest, first_token: bool) -> float:
    if req.options is not None and req.options.timeout is not None:
        return req.options.timeout
    to = dep.provider.config.timeouts
    return to.first_token if first_token else to.total


async def run_chat(
    catalog: Catalog, req: t.ChatRequest, ctx: RequestContext
) -> tuple[t.ChatResponse, Deployment, Attempt]:
    errors: list[e.GatewayError] = []
    for dep in plan(catalog, req, ctx):
        attempt = _begin(ctx, dep)
        try:
            async with asyncio.timeout(_timeout(dep, req, first_token=False)):
                resp = await dep.provider.chat(req, dep)
        except TimeoutError:
            err: e.GatewayError = e.UpstreamTimeout(f"provider '{dep.provider_name}' timed out", provider=dep.provider_name)
            _fail(attempt, err)
            errors.append(err)
            continue
        except e.GatewayError as exc:
            _fail(attempt, exc)
            if not exc.retryable:
                raise
            errors.append(exc)
            continue
        _succeed(ctx, attempt, dep, resp.usage)
        return resp, dep, attempt
    raise e.AllProvidersFailed(errors) if len(errors) > 1 else errors[0]


async def open_stream(
    catalog: Catalog, req: t.ChatRequest, ctx: RequestContext
) -> tuple[t.StreamEvent, AsyncIterator[t.StreamEvent], Deployment, Attempt]:
    """Start a stream with failover until its first event; returns that event and the rest."""
    errors: list[e.GatewayError] = []
    for dep in plan(catalog, req, ctx):
        attempt = _begin(ctx, dep)
        it = aiter(dep.provider.stream(req, dep))
        try:
            async with asyncio.timeout(_timeout(dep, req, first_token=True)):
                first = await anext(it)
        except (TimeoutError, StopAsyncIteration) as exc:
            err: e.GatewayError = (
                e.UpstreamTimeout(f"provider '{dep.provider_name}' sent no first token in time", provider=dep.provider_name)
                if isinstance(exc, TimeoutError)
                else e.UpstreamError(f"provider '{dep.provider_name}' sent an empty stream", provider=dep.provider_name)
            )
            await close_quietly(it)
            _fail(attempt, err)
            errors.append(err)
            continue
        except e.GatewayError as exc:
            await close_quietly(it)
            _fail(attempt, exc)
            if not exc.retryable:
                raise
            errors.append(exc)
            continue
        ctx.ttft = time.monotonic() - ctx.started
        ctx.deployment, ctx.provider = dep.id, dep.provider_name
        return first, it, dep, attempt
    raise e.AllProvidersFailed(errors) if len(errors) > 1 else errors[0]


async def run_embed(catalog: Catalog, req: t.EmbeddingRequest, ctx: RequestContext) -> t.EmbeddingResponse:
    errors: list[e.GatewayError] = []
    for dep in plan(catalog, req, ctx):
        attempt = _begin(ctx, dep)
        try:
            async with asyncio.timeout(_timeout(dep, req, first_token=False)):
                resp = await dep.provider.embed(req, dep)
        except TimeoutError:
            err: e.GatewayError = e.UpstreamTimeout(f"provider '{dep.provider_name}' timed out", provider=dep.provider_name)
            _fail(attempt, err)
            errors.append(err)
            continue
        except e.GatewayError as exc:
            _fail(attempt, exc)
            if not exc.retryable:
                raise
            errors.append(exc)
            continue
        _succeed(ctx, attempt, dep, resp.usage)
        return resp
    raise e.AllProvidersFailed(errors) if len(errors) > 1 else errors[0]


def _begin(ctx: RequestContext, dep: Deployment) -> Attempt:
    a = Attempt(dep.id, dep.provider_name)
    a.latency = time.monotonic()  # start time until finished; then the duration
    ctx.attempts.append(a)
    return a


def _fail(a: Attempt, err: e.GatewayError) -> None:
    a.latency = time.monotonic() - a.latency
    a.status = err.status
    a.error = err.message


def _succeed(ctx: RequestContext, a: Attempt, dep: Deployment, usage: t.Usage | None) -> None:
    a.latency = time.monotonic() - a.latency
    a.status = 200
    a.usage = usage
    if usage is not None:
        a.cost = dep.cost(usage)
    ctx.deployment, ctx.provider = dep.id, dep.provider_name


def finish_stream_attempt(ctx: RequestContext, a: Attempt, dep: Deployment, usage: t.Usage | None, err: e.GatewayError | None) -> None:
    if err is not None:
        _fail(a, err)
    else:
        _succeed(ctx, a, dep, usage)
    if usage is not None and err is not None:
        a.usage, a.cost = usage, dep.cost(usage)


async def close_quietly(it: AsyncIterator[t.StreamEvent]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken upstream stream must not mask the real error
            pass
