"""The planner: for one request, which deployments to try and in what order.

Built once at start-up from the catalogue (state handles, strategies, budgets are resolved then).
Per request it walks the asked model and its fallbacks (or the request's `models` list), drops the
deployments that cannot serve this request (provider filters, the caller's allowed models,
unsupported features, context window, price cap), and lets each route's strategy order the rest.
Health and capacity are checked later, by the executor, as it walks the order.

Governance hook: `ctx.allowed_models` (None = no restriction) is read here; a key that may not use
the asked model gets 403, and fallbacks it may not use are skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from polyroute.config.load import ConfigError
from polyroute.config.schema import StickyConfig
from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.core.catalog import Catalog, Route
from polyroute.core.context import RequestContext
from polyroute.routing.memory import MemoryState
from polyroute.routing.state import RoutingState
from polyroute.routing.sticky import sticky_key
from polyroute.routing.strategies import strategy_class
from polyroute.routing.targets import RequestView, RouteTargets, Target

# Why the asked model did not serve (ctx.fallback_reason, x-polyroute-fallback-reason).
CONTEXT_LENGTH = "context_length"
UNSUPPORTED = "unsupported_feature"
PRICE = "price_limit"
PROVIDERS = "provider_filter"
NOT_ALLOWED = "not_allowed"

MAX_RETRIES = 10


class Plan:
    """One request's route: the ordered deployments and the limits of the attempt loop."""

    __slots__ = ("deadline", "primary", "primary_block", "reserve", "retries", "sticky", "targets", "view")

    def __init__(self, primary: RouteTargets, targets: list[Target], view: RequestView) -> None:
        self.primary = primary
        self.targets = targets
        self.view = view
        # Why the asked model's deployments were all dropped by the planner, if they were.
        self.primary_block: str | None = None
        # Tokens reserved against TPM limits per attempt (0 when no deployment has one).
        self.reserve = 0
        self.deadline: float | None = None  # loop time
        self.retries = 0
        self.sticky: int | None = None


class Router:
    def __init__(
        self,
        catalog: Catalog,
        state: RoutingState | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.state: RoutingState = state if state is not None else MemoryState()
        # Drives breaker windows, cool-downs, RPM/TPM buckets and pins; tests inject their own.
        self.clock = clock
        self.routes: dict[str, RouteTargets] = {name: self._build(r) for name, r in catalog.routes.items()}
        self._check_fallbacks()

    # --- start-up ---------------------------------------------------------------------------

    def _build(self, route: Route) -> RouteTargets:
        cfg = route.config
        weak = cfg.weak if cfg.weak is not None else all(d.provider.config.type == "inhouse" for d in route.deployments)
        rt = RouteTargets(route.name, cfg, weak)
        state = self.state
        targets = []
        for dep in route.deployments:
            pc = dep.provider.config
            window = dep.context_window
            if window is None and pc.type == "inhouse":
                window = pc.context_size
            targets.append(
                Target(
                    dep,
                    rt,
                    state.breaker(dep.id, pc.breaker),
                    state.latency(dep.id),
                    state.capacity(dep.id, dep.config),
                    window,
                )
            )
        rt.targets = tuple(targets)
        rt.needs_tokens = cfg.strategy == "cost" or any(x.context_window or x.dep.config.tpm for x in targets)
        cls = strategy_class(cfg.strategy)
        if cls is None:
            raise ConfigError(
                "config",
                f"models.{route.name}.strategy",
                f"strategy '{cfg.strategy}' is not available in this installation",
                "use priority, weighted, least-latency, least-busy or cost",
            )
        rt.strategy = cls(rt)
        rt.budget = state.retry_budget(route.name, cfg.retry)
        # Every route gets pins: a per-request sticky_key works even without `sticky:` config.
        rt.affinity = state.affinity(route.name, cfg.sticky or StickyConfig())
        return rt

    def _check_fallbacks(self) -> None:
        for name, rt in self.routes.items():
            for j, fb in enumerate(rt.fallbacks):
                other = self.routes.get(fb)
                if other is None:
                    continue  # the loader reports unknown names
                field = f"models.{name}.fallbacks[{j}]"
                if other.kind != rt.kind:
                    raise ConfigError("config", field, f"'{fb}' is a {other.kind} model and '{name}' a {rt.kind} model",
                                      "fall back to a model of the same kind")
                if other.weak and not rt.weak and not rt.allow_weak_fallback:
                    raise ConfigError(
                        "config",
                        field,
                        f"'{fb}' is a much weaker (in-house) model than '{name}'",
                        f"set allow_weak_fallback: true on '{name}' to allow it (answers are then flagged), "
                        "or remove the fallback",
                    )

    async def start(self) -> None:
        for rt in self.routes.values():
            await rt.strategy.start()

    async def close(self) -> None:
        for rt in self.routes.values():
            try:
                await rt.strategy.close()
            except Exception:  # closing must go on for the other routes
                pass

    def target(self, key: str) -> Target | None:
        """A deployment by id (for tests, admin views and metrics)."""
        for rt in self.routes.values():
            for x in rt.targets:
                if x.key == key:
                    return x
        return None

    # --- per request ------------------------------------------------------------------------

    async def plan(self, req: t.ChatRequest | t.EmbeddingRequest, ctx: RequestContext) -> Plan:
        primary = self.routes.get(req.model)
        if primary is None:
            raise e.ModelNotFound(
                f"model '{req.model}' does not exist; available models: {', '.join(self.catalog.names()) or 'none'}",
                param="model",
            )
        view = RequestView(req, ctx)
        if (primary.kind == "chat") != view.is_chat:
            raise e.InvalidRequest(
                f"model '{primary.name}' is {'a chat' if primary.kind == 'chat' else 'an embedding'} model "
                f"and cannot serve {'chat completions' if view.is_chat else 'embeddings'}",
                param="model",
            )
        allowed = ctx.allowed_models
        if allowed is not None and primary.name not in allowed:
            raise e.PermissionDenied(f"this API key may not use model '{primary.name}'", param="model")
        opts = req.options
        chain = self._chain(primary, opts, allowed)

        targets: list[Target] = []
        problems: list[str] | None = None
        block: str | None = None
        needs_tokens = False
        for route in chain:
            eligible, reason, detail = self._eligible(route, view, opts)
            if not eligible:
                if route is primary:
                    block = reason
                if problems is None:
                    problems = []
                problems.append(detail)
                continue
            needs_tokens = needs_tokens or route.needs_tokens
            strategy = route.strategy
            if strategy.needs_prepare:
                await strategy.prepare(view)
            targets.extend(strategy.order(eligible, view))
        if not targets:
            raise self._nothing_fits(primary, block, problems)

        plan = Plan(primary, targets, view)
        plan.primary_block = block
        if needs_tokens and any(x.dep.config.tpm for x in targets):
            plan.reserve = view.input_tokens + view.output_tokens
        timeout = opts.timeout if opts is not None and opts.timeout is not None else primary.config.timeout
        if timeout is not None:
            plan.deadline = asyncio.get_running_loop().time() + timeout
        retries = opts.retries if opts is not None and opts.retries is not None else primary.config.retry.retries
        plan.retries = min(max(retries, 0), MAX_RETRIES)
        key = sticky_key(req, primary.config.sticky)
        if key is not None:
            plan.sticky = key
            self._pin_first(plan, key)
        return plan

    def _chain(
        self, primary: RouteTargets, opts: t.RequestOptions | None, allowed: frozenset[str] | set[str] | None
    ) -> list[RouteTargets]:
        """The asked model, then the request's `models` list if it has one, else the configured
        fallbacks; only the first when fallbacks are turned off."""
        if opts is not None and opts.fallbacks is False:
            return [primary]
        explicit = opts is not None and bool(opts.models)
        names = opts.models if explicit and opts is not None and opts.models else primary.fallbacks
        if not names:
            return [primary]
        chain = [primary]
        for name in names:
            r = self.routes.get(name)
            if r is None:
                if explicit:
                    raise e.InvalidRequest(f"polyroute.models: model '{name}' does not exist", param="polyroute.models")
                continue
            if r.kind != primary.kind:
                if explicit:
                    raise e.InvalidRequest(
                        f"polyroute.models: '{name}' is a {r.kind} model, not a {primary.kind} model",
                        param="polyroute.models",
                    )
                continue
            if r in chain or (allowed is not None and name not in allowed):
                continue
            chain.append(r)
        return chain

    def _eligible(
        self, route: RouteTargets, view: RequestView, opts: t.RequestOptions | None
    ) -> tuple[list[Target], str, str]:
        """The route's deployments that can serve this request (in config order); when none can,
        the main reason and a message naming each deployment's problem."""
        req = view.req
        chat = req if isinstance(req, t.ChatRequest) else None
        allowed_p = opts.providers_allowed if opts is not None else None
        excluded_p = opts.providers_excluded if opts is not None else None
        max_price = opts.max_price_per_million if opts is not None else None
        out: list[Target] = []
        why: list[tuple[str, str]] | None = None
        unsupported_by: dict[int, list[str]] | None = None
        for x in route.targets:
            reason = ""
            detail = ""
            pname = x.provider.name
            if (allowed_p and pname not in allowed_p) or (excluded_p and pname in excluded_p):
                reason, detail = PROVIDERS, f"provider '{pname}' is excluded by the request"
            elif chat is not None:
                if unsupported_by is None:
                    unsupported_by = {}
                bad = unsupported_by.get(id(x.provider))
                if bad is None:
                    bad = unsupported_by[id(x.provider)] = x.provider.unsupported(chat)
                if bad and not x.drop_unsupported:
                    reason, detail = UNSUPPORTED, f"{x.key} does not support {', '.join(bad)}"
                elif x.context_window is not None:
                    need = view.input_tokens + (chat.max_tokens or 0)
                    if need > x.context_window:
                        reason = CONTEXT_LENGTH
                        detail = (
                            f"{x.key} has a context window of {x.context_window} tokens and the request "
                            f"needs about {need}"
                        )
            if not reason and max_price is not None:
                price = x.price_per_million(view.input_tokens, view.output_tokens)
                if price is None:
                    reason, detail = PRICE, f"{x.key} has no known price (polyroute.max_price_per_million is set)"
                elif price > max_price:
                    reason = PRICE
                    detail = f"{x.key} costs about {price:.4g} USD per million tokens, over the maximum of {max_price:g}"
            if reason:
                if why is None:
                    why = []
                why.append((reason, detail))
            else:
                out.append(x)
        if out or why is None:
            return out, "", ""
        # The most specific reason: a context-length problem is what a caller can act on.
        reasons = [r for r, _ in why]
        main = next((r for r in (CONTEXT_LENGTH, UNSUPPORTED, PRICE, PROVIDERS) if r in reasons), reasons[0])
        return out, main, f"model '{route.name}': " + "; ".join(d for _, d in why)

    def _nothing_fits(self, primary: RouteTargets, block: str | None, problems: list[str] | None) -> e.GatewayError:
        detail = "; ".join(problems or ()) or f"no deployment of '{primary.name}' is allowed for this request"
        return e.InvalidRequest(f"no deployment can serve this request: {detail}")

    def _pin_first(self, plan: Plan, key: int) -> None:
        affinity = plan.primary.affinity
        if affinity is None:
            return
        pinned = affinity.get(key, self.clock())
        if pinned is None:
            return
        targets = plan.targets
        for i, x in enumerate(targets):
            if x.key == pinned and x.route is plan.primary:
                if i:
                    targets.insert(0, targets.pop(i))
                return
