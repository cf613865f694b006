"""Routing strategies: each orders a route's eligible deployments for one request.

The planner has already removed deployments that cannot serve the request (features, context
window, price cap, provider filters); health and capacity are checked by the executor as it walks
the order, so a strategy only says who should be asked first. One instance per route, built at
start-up. A new strategy is one subclass registered with `register_strategy`:

    class QualityStrategy(Strategy):
        name = "quality"
        needs_prepare = True            # prepare() is awaited before order(), e.g. to score
        async def prepare(self, view): view.ctx.extra_headers.append(...)   # optional
        def order(self, targets, view): return sorted(targets, key=...)

`quality` (the learned router) is looked up in polyroute.routing.quality when a route
asks for it, so that module only has to define and register the class.
"""

from __future__ import annotations

import importlib
import math
import random
from collections.abc import Callable
from typing import ClassVar

from polyroute.routing.targets import RequestView, RouteTargets, Target

INF = math.inf


class Strategy:
    name: ClassVar[str]
    # When true, the planner awaits `prepare(view)` before calling `order` (and only then).
    needs_prepare: ClassVar[bool] = False

    def __init__(self, route: RouteTargets) -> None:
        self.route = route
        # Injectable for tests; strategies draw random numbers only through this.
        self.random: Callable[[], float] = random.random

    async def start(self) -> None:
        """Load models, open connections; called once at gateway start."""

    async def close(self) -> None:
        pass

    async def prepare(self, view: RequestView) -> None:
        pass

    def order(self, targets: list[Target], view: RequestView) -> list[Target]:
        """Return `targets` (eligible, in config order; the list is the caller's to reorder) in
        the order they should be tried."""
        raise NotImplementedError


class Priority(Strategy):
    """First refusal: the first deployment takes every request it has capacity and health for;
    the rest overflow in config order."""

    name = "priority"

    def order(self, targets: list[Target], view: RequestView) -> list[Target]:
        return targets


class Weighted(Strategy):
    """Random order, the first pick proportional to `weight` (then the next among the rest, ...).
    Weight 0: only when the others cannot serve."""

    name = "weighted"

    def order(self, targets: list[Target], view: RequestView) -> list[Target]:
        n = len(targets)
        if n < 2:
            return targets
        rnd = self.random
        if n == 2:
            a, b = targets
            wa, wb = a.weight, b.weight
            if wa + wb <= 0:
                return targets
            if rnd() * (wa + wb) >= wa:
                targets[0], targets[1] = b, a
            return targets
        # Exponential race: sorting by Exp(1)/w picks each next one proportionally to w.
        keys = {id(x): (-math.log(1.0 - rnd()) / x.weight if x.weight > 0 else INF) for x in targets}
        targets.sort(key=lambda x: keys[id(x)])
        return targets


class LeastLatency(Strategy):
    """Lowest moving average first: time to first token for streams, whole latency otherwise.
    Unmeasured deployments go first (so each gets measured); a small share of requests
    explore in random order, so a deployment that was slow once is measured again."""

    name = "least-latency"
    explore = 0.05

    def order(self, targets: list[Target], view: RequestView) -> list[Target]:
        if len(targets) < 2:
            return targets
        if self.random() < self.explore:
            rnd = self.random
            keys = {id(x): rnd() for x in targets}
            targets.sort(key=lambda x: keys[id(x)])
            return targets
        if view.stream:
            targets.sort(key=_ttft_key)
        else:
            targets.sort(key=_latency_key)
        return targets


def _latency_key(x: Target) -> float:
    v = x.latency.latency()
    return -1.0 if v is None else v


def _ttft_key(x: Target) -> float:
    v = x.latency.ttft()
    if v is None:
        v = x.latency.latency()
    return -1.0 if v is None else v


class LeastBusy(Strategy):
    """Fewest requests in flight first (ties: config order)."""

    name = "least-busy"

    def order(self, targets: list[Target], view: RequestView) -> list[Target]:
        if len(targets) > 1:
            targets.sort(key=_inflight_key)
        return targets


def _inflight_key(x: Target) -> int:
    return x.capacity.inflight()


class Cheapest(Strategy):
    """Cheapest estimated cost for this request first (prices x token estimate); deployments
    without prices last. The planner already dropped those whose context window is too small."""

    name = "cost"

    def order(self, targets: list[Target], view: RequestView) -> list[Target]:
        if len(targets) < 2:
            return targets
        n_in, n_out = view.input_tokens, view.output_tokens

        def key(x: Target) -> float:
            c = x.estimated_cost(n_in, n_out)
            return INF if c is None else c

        targets.sort(key=key)
        return targets


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Priority, Weighted, LeastLatency, LeastBusy, Cheapest)
}

# Strategies provided by other packages, imported on first use.
_PROVIDED_BY = {"quality": "polyroute.routing.quality"}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Add a strategy class (usable as a decorator)."""
    STRATEGIES[cls.name] = cls
    return cls


def strategy_class(name: str) -> type[Strategy] | None:
    cls = STRATEGIES.get(name)
    if cls is None and name in _PROVIDED_BY:
        module = _PROVIDED_BY[name]
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the module exists but is broken: say so
                raise
            return None
        cls = STRATEGIES.get(name)
    return cls
