"""Runs one request over the planned deployments: the attempt loop.

Walk the plan in order. A deployment whose breaker is open or whose capacity is full is skipped at
once (no attempt, no wait). A failure moves to the next deployment immediately; client errors go
straight back. When every deployment was tried and failed, another pass may follow (the route's
`retries`), after an exponential backoff with jitter that also waits out an upstream Retry-After,
within the request's deadline and the route's retry budget. If nothing could even be tried, the
answer is 429 (all at capacity) or 503 (all breakers open) with Retry-After, never a queue.

Every upstream try is one `Attempt` in `ctx.attempts` (the ledger writes them). Breakers, latency
averages, in-flight counts and RPM/TPM windows are settled exactly once per try by a `_Lease`.

Streams fail over until the first content event (an upstream that sends only its opening chunk
and dies is still failed over); after that the stream is the client's, and the guard around it
enforces the idle gap between chunks and the total time, and settles the lease at its end.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.core.context import Attempt, RequestContext
from polyroute.core.deployment import Deployment
from polyroute.providers.base import drop_unsupported
from polyroute.routing.planner import Plan, Router
from polyroute.routing.targets import Target

R = TypeVar("R")
INF = math.inf

# How an error counts against the deployment that returned it.
HEALTH = 0  # 5xx, 529, timeouts, connection errors: the breaker counts it
CAPACITY = 1  # 429 (cool down) or a full in-house queue: move on, breaker untouched
NEUTRAL = 2  # the caller's fault, or the request's own deadline: nothing to learn

# Why the asked model did not serve, as seen by the loop (see planner for the planner's reasons).
CIRCUIT_OPEN = "circuit_open"
AT_CAPACITY = "at_capacity"
RATE_LIMITED = "rate_limited"
TIMEOUT = "timeout"
UPSTREAM_ERROR = "upstream_error"

# Errors kept for the final message: enough to see the pattern, bounded for a retry storm.
MAX_ERRORS = 8

# Injectable jitter source.
jitter: Callable[[], float] = random.random


class _Lease:
    """One attempt's claim on a deployment; settles its state exactly once."""

    __slots__ = ("clock", "done", "reserved", "started", "target")

    def __init__(self, target: Target, reserved: int, clock: Callable[[], float]) -> None:
        self.target = target
        self.reserved = reserved
        self.clock = clock
        self.started = time.perf_counter()
        self.done = False

    def ok(self, usage: t.Usage | None) -> None:
        if self.done:
            return
        self.done = True
        x = self.target
        now = self.clock()
        x.breaker.success(now)
        x.latency.observe_latency(time.perf_counter() - self.started)
        x.capacity.release()
        if self.reserved and usage is not None:
            x.capacity.settle(now, usage.total_tokens - self.reserved)

    def failed(self, err: e.GatewayError, verdict: int) -> None:
        if self.done:
            return
        self.done = True
        x = self.target
        now = self.clock()
        if verdict == HEALTH:
            x.breaker.failure(now)
            # A failure counts as slow, so least-latency moves away from a failing deployment.
            elapsed = time.perf_counter() - self.started
            prev = x.latency.latency()
            x.latency.observe_latency(max(elapsed, 2 * prev) if prev else elapsed)
            if err.retry_after:
                x.capacity.cool_down(now + err.retry_after)
        else:
            x.breaker.abandon()
            # An upstream 429 cools the deployment down. A full in-house queue (Unavailable) does
            # not: the provider refuses instantly and admits again the moment a slot frees.
            if verdict == CAPACITY and isinstance(err, e.RateLimited):
                ra = err.retry_after
                x.capacity.cool_down(now + (ra if ra is not None else x.rate_limit_cooldown))
        x.capacity.release()
        if self.reserved:
            x.capacity.settle(now, -self.reserved)

    def dropped(self) -> None:
        """Cancelled (client gone) or an unexpected exception: no verdict on the deployment."""
        if self.done:
            return
        self.done = True
        self.target.breaker.abandon()
        self.target.capacity.release()


def verdict(err: e.GatewayError, capped: bool) -> int:
    if isinstance(err, e.RateLimited | e.Unavailable):
        return CAPACITY
    if not err.retryable:
        return NEUTRAL
    if capped and isinstance(err, e.UpstreamTimeout):
        return NEUTRAL  # the request's deadline ran out, not the deployment's patience
    return HEALTH


def backoff(round_: int, initial: float, cap: float) -> float:
    """Exponential backoff with equal jitter: between half and all of min(cap, initial x 2^n)."""
    base = min(cap, initial * (2**round_))
    return base / 2 + jitter() * base / 2


class _Walk:
    """The attempt loop's state for one request (one object, reused across attempts)."""

    __slots__ = ("attempted", "deadline_hit", "errors", "plan", "reason", "router", "skipped_capacity")

    def __init__(self, router: Router, plan: Plan) -> None:
        self.router = router
        self.plan = plan
        self.errors: list[e.GatewayError] = []
        self.attempted = False
        self.skipped_capacity = False
        self.deadline_hit = False
        self.reason: str | None = None

    def hint(self, now: float) -> float:
        """Seconds until some planned deployment may be tried again."""
        reserve = self.plan.reserve
        best = INF
        for x in self.plan.targets:
            w = max(x.breaker.retry_in(now), x.capacity.wait(now, reserve))
            if w < best:
                best = w
        return best

    def final_error(self) -> e.GatewayError:
        plan = self.plan
        model = plan.primary.name
        hint = self.hint(self.router.clock())
        errors = self.errors
        if self.deadline_hit:
            detail = "; ".join(f"{x.provider or '?'}: {x.message}" for x in errors)
            return e.UpstreamTimeout(
                f"the request's deadline passed after {len(errors)} failed attempt(s)" + (f": {detail}" if detail else ""),
                provider=errors[-1].provider if errors else None,
            )
        if errors:
            err = errors[0] if len(errors) == 1 else e.AllProvidersFailed(errors[-MAX_ERRORS:])
            if err.retry_after is None and err.retryable and 0 < hint < INF:
                err.retry_after = hint
            return err
        if self.skipped_capacity:
            return e.RateLimited(
                f"every deployment of '{model}' is at capacity (rpm, tpm, max_concurrency or an upstream rate limit)",
                retry_after=hint if hint < INF else 1.0,
            )
        return e.Unavailable(
            f"every deployment of '{model}' is failing (circuit breakers open)",
            retry_after=hint if hint < INF else None,
        )

    def note_skip(self, x: Target, reason: str) -> None:
        if x.route is self.plan.primary:
            self.reason = reason


async def _walk(
    router: Router,
    plan: Plan,
    ctx: RequestContext,
    call: Callable[[Target], Awaitable[R]],
    first_token: bool,
) -> tuple[R, Target, Attempt, _Lease]:
    loop = asyncio.get_running_loop()
    clock = router.clock
    primary = plan.primary
    retry = primary.config.retry
    budget = primary.budget
    budget.request(clock())
    w = _Walk(router, plan)
    deadline = plan.deadline
    reserve = plan.reserve
    round_ = 0
    while True:
        tried = False
        for x in plan.targets:
            now = clock()
            if not x.breaker.allows(now):
                w.note_skip(x, CIRCUIT_OPEN)
                continue
            if not x.capacity.acquire(now, reserve):
                w.skipped_capacity = True
                w.note_skip(x, AT_CAPACITY)
                continue
            if round_ and not budget.try_retry(now):
                x.capacity.release()
                if reserve:
                    x.capacity.settle(now, -reserve)
                raise w.final_error()
            if not x.breaker.admit(now):  # another request took the half-open probe
                x.capacity.release()
                if reserve:
                    x.capacity.settle(now, -reserve)
                w.note_skip(x, CIRCUIT_OPEN)
                continue
            limit = x.timeouts.first_token if first_token else x.timeouts.total
            capped = False
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    x.breaker.abandon()
                    x.capacity.release()
                    if reserve:
                        x.capacity.settle(now, -reserve)
                    w.deadline_hit = True
                    raise w.final_error()
                if left < limit:
                    limit, capped = left, True
            tried = w.attempted = True
            lease = _Lease(x, reserve, clock)
            attempt = _begin(ctx, x.dep)
            try:
                async with asyncio.timeout(limit):
                    result = await call(x)
            except TimeoutError:
                err: e.GatewayError = e.UpstreamTimeout(
                    f"provider '{x.provider.name}' "
                    + ("sent no first token" if first_token else "did not answer")
                    + f" within {limit:.3g} s",
                    provider=x.provider.name,
                )
            except e.GatewayError as exc:
                err = exc
            except BaseException as exc:
                lease.dropped()
                _fail(attempt, e.UpstreamError(f"attempt ended: {type(exc).__name__}", provider=x.provider.name,
                                               status=499 if isinstance(exc, asyncio.CancelledError) else 500))
                raise
            else:
                _served(w, x, ctx)
                return result, x, attempt, lease
            v = verdict(err, capped)
            lease.failed(err, v)
            _fail(attempt, err)
            if x.route is primary:
                w.reason = RATE_LIMITED if v == CAPACITY else TIMEOUT if isinstance(err, e.UpstreamTimeout) else UPSTREAM_ERROR
            if not err.retryable:
                raise err
            w.errors.append(err)
            if deadline is not None and loop.time() >= deadline:
                w.deadline_hit = True
                raise w.final_error()
        if not tried or round_ >= plan.retries:
            raise w.final_error()
        # Another pass: wait for the backoff, or for the first deployment to become available
        # again (an upstream Retry-After) when that is later, unless that is too long to hold
        # the client.
        hint = w.hint(clock())
        wait = backoff(round_, retry.backoff_initial, retry.backoff_max)
        if hint < INF and hint > wait:
            if hint > retry.backoff_max:
                raise w.final_error()
            wait = hint
        if deadline is not None and loop.time() + wait >= deadline:
            w.deadline_hit = True
            raise w.final_error()
        await asyncio.sleep(wait)
        round_ += 1


def _served(w: _Walk, x: Target, ctx: RequestContext) -> None:
    plan = w.plan
    ctx.deployment, ctx.provider = x.key, x.provider.name
    primary = plan.primary
    if x.route is not primary:
        ctx.route = x.route.name
        reason = plan.primary_block or w.reason or UPSTREAM_ERROR
        ctx.fallback_reason = "weak_model:" + reason if x.route.weak and not primary.weak else reason
    elif plan.sticky is not None and primary.affinity is not None:
        primary.affinity.put(plan.sticky, x.key, w.router.clock())


# --- public entry points -------------------------------------------------------------------


def for_target(req: t.ChatRequest, x: Target) -> t.ChatRequest:
    """The request as this deployment receives it: the planner let a deployment through despite
    features its provider lacks only when its config says to drop them, so they are dropped here,
    once, for every provider type."""
    if x.drop_unsupported:
        bad = x.provider.unsupported(req)
        if bad:
            return drop_unsupported(req, bad)
    return req


async def run_chat(router: Router, req: t.ChatRequest, ctx: RequestContext) -> tuple[t.ChatResponse, Deployment, Attempt]:
    plan = await router.plan(req, ctx)

    def call(x: Target) -> Awaitable[t.ChatResponse]:
        return x.provider.chat(for_target(req, x), x.dep)

    resp, x, attempt, lease = await _walk(router, plan, ctx, call, first_token=False)
    lease.ok(resp.usage)
    _succeed(ctx, attempt, x.dep, resp.usage)
    return resp, x.dep, attempt


async def run_embed(router: Router, req: t.EmbeddingRequest, ctx: RequestContext) -> t.EmbeddingResponse:
    plan = await router.plan(req, ctx)

    def call(x: Target) -> Awaitable[t.EmbeddingResponse]:
        return x.provider.embed(req, x.dep)

    resp, x, attempt, lease = await _walk(router, plan, ctx, call, first_token=False)
    lease.ok(resp.usage)
    _succeed(ctx, attempt, x.dep, resp.usage)
    return resp


_Opened = tuple[t.StreamEvent, t.StreamEvent | None, AsyncIterator[t.StreamEvent]]


async def open_stream(
    router: Router, req: t.ChatRequest, ctx: RequestContext
) -> tuple[t.StreamEvent, AsyncIterator[t.StreamEvent], Deployment, Attempt]:
    """Start a stream with failover until its first content event; returns the first event and
    the rest (guarded: idle gap, total time, state settled at the end)."""
    plan = await router.plan(req, ctx)

    async def call(x: Target) -> _Opened:
        it = aiter(x.provider.stream(for_target(req, x), x.dep))
        try:
            first = await anext(it)
            while isinstance(first, t.Flush):
                first = await anext(it)
            second = None
            if isinstance(first, t.StreamStart):
                second = await anext(it)
                while isinstance(second, t.Flush):
                    second = await anext(it)
        except StopAsyncIteration:
            await close_quietly(it)
            raise e.UpstreamError(
                f"provider '{x.provider.name}' ended the stream before any content", provider=x.provider.name
            ) from None
        except BaseException:
            await close_quietly(it)
            raise
        return first, second, it

    (first, pending, it), x, attempt, lease = await _walk(router, plan, ctx, call, first_token=True)
    ctx.ttft = time.monotonic() - ctx.started
    x.latency.observe_ttft(time.perf_counter() - lease.started)
    loop = asyncio.get_running_loop()
    end = loop.time() + x.timeouts.total - (time.perf_counter() - lease.started)
    if plan.deadline is not None and plan.deadline < end:
        end = plan.deadline
    rest = _guard(x, lease, pending, it, end, plan.deadline is not None and plan.deadline == end)
    # If the caller drops the stream without ever iterating it, the guard's `finally` never runs:
    # free the deployment's slot when the generator is collected instead.
    weakref.finalize(rest, lease.dropped)
    return first, rest, x.dep, attempt


class _Watchdog:
    """Stream timeouts at almost no cost per event.

    A timeout context per chunk (asyncio.timeout) costs a timer-heap push and pop on every event,
    about a third of the streaming path's CPU. Instead one timer is armed per idle period; an
    event only stamps the time it started waiting. When the timer fires it cancels the task if
    the upstream has been silent too long (while the task waited for it, not while the client
    was being written to), else re-arms for the remainder.
    """

    __slots__ = ("end", "expired", "handle", "idle", "loop", "since", "task", "waiting")

    def __init__(self, idle: float, end: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.idle = idle
        self.end = end
        self.since = self.loop.time()
        self.waiting = False
        self.expired: str | None = None  # "idle" or "total" once fired
        self.handle: asyncio.TimerHandle | None = self.loop.call_at(min(self.since + idle, end), self._check)

    def _check(self) -> None:
        now = self.loop.time()
        if now >= self.end:
            self.expired = "total"
        elif self.waiting and now >= self.since + self.idle:
            self.expired = "idle"
        else:
            due = (self.since if self.waiting else now) + self.idle
            self.handle = self.loop.call_at(min(due, self.end), self._check)
            return
        self.handle = None
        if self.task is not None:
            self.task.cancel()

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


async def _guard(
    x: Target,
    lease: _Lease,
    pending: t.StreamEvent | None,
    it: AsyncIterator[t.StreamEvent],
    end: float,
    end_is_deadline: bool,
) -> AsyncIterator[t.StreamEvent]:
    idle = x.timeouts.idle
    usage: t.Usage | None = None
    finished = False
    dog: _Watchdog | None = None
    try:
        if pending is not None:
            if isinstance(pending, t.UsageEvent):
                usage = pending.usage
            yield pending
        dog = _Watchdog(idle, end)
        loop = dog.loop
        while True:
            dog.since = loop.time()
            dog.waiting = True
            try:
                ev = await anext(it)
            except StopAsyncIteration:
                break
            except asyncio.CancelledError:
                if dog.expired is None:
                    raise
                if dog.task is not None:
                    dog.task.uncancel()
                name = x.provider.name
                if dog.expired == "total":
                    err: e.GatewayError = e.UpstreamTimeout(
                        f"provider '{name}' stream went past the "
                        + ("request's deadline" if end_is_deadline else f"total timeout of {x.timeouts.total:g} s"),
                        provider=name,
                    )
                    lease.failed(err, NEUTRAL)
                else:
                    err = e.UpstreamTimeout(f"provider '{name}' sent no stream chunk for {idle:g} s", provider=name)
                    lease.failed(err, HEALTH)
                raise err from None
            dog.waiting = False
            if isinstance(ev, t.UsageEvent):
                usage = ev.usage
            yield ev
        finished = True
    except e.GatewayError as exc:
        lease.failed(exc, verdict(exc, False))
        raise
    finally:
        if dog is not None:
            dog.stop()
        if finished:
            lease.ok(usage)
        else:
            lease.dropped()
        await close_quietly(it)


# --- attempts (the ledger's rows) ------------------------------------------------------------


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


def finish_stream_attempt(
    ctx: RequestContext, a: Attempt, dep: Deployment, usage: t.Usage | None, err: e.GatewayError | None
) -> None:
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
