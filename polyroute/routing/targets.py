"""What the planner works on: deployments with their state handles, routes, and one request's view.

Everything here is built once at start-up except `RequestView`, which is one small object per
request whose token estimate is computed only if something asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyroute.core import types as t
from polyroute.core.tokens import estimate_prompt, estimate_text

if TYPE_CHECKING:
    from polyroute.config.schema import ModelConfig, Timeouts
    from polyroute.core.context import RequestContext
    from polyroute.core.deployment import Deployment
    from polyroute.providers.base import Provider
    from polyroute.routing.state import Affinity, Breaker, Capacity, LatencyStats, RetryBudget
    from polyroute.routing.strategies import Strategy

# Output tokens assumed when a request sets no max_tokens (for cost ordering, price caps and TPM).
DEFAULT_OUTPUT_TOKENS = 256


class Target:
    """One deployment as the router sees it."""

    __slots__ = (
        "breaker",
        "capacity",
        "context_window",
        "dep",
        "drop_unsupported",
        "key",
        "latency",
        "provider",
        "rate_limit_cooldown",
        "route",
        "timeouts",
        "weight",
    )

    def __init__(
        self,
        dep: Deployment,
        route: RouteTargets,
        breaker: Breaker,
        latency: LatencyStats,
        capacity: Capacity,
        context_window: int | None,
    ) -> None:
        self.dep = dep
        self.key = dep.id
        self.route = route
        self.provider: Provider = dep.provider
        self.breaker = breaker
        self.latency = latency
        self.capacity = capacity
        self.context_window = context_window
        self.weight = dep.weight
        pc = dep.provider.config
        self.timeouts: Timeouts = pc.timeouts
        self.rate_limit_cooldown = pc.rate_limit_cooldown
        self.drop_unsupported = pc.drop_unsupported_params

    def price_per_million(self, input_tokens: int, output_tokens: int) -> float | None:
        """Blended USD per million tokens for a request of this shape; None when unpriced."""
        d = self.dep
        if not d.priced:
            return None
        total = input_tokens + output_tokens
        if total <= 0:
            return d.input_price * 1e6
        return (input_tokens * d.input_price + output_tokens * d.output_price) / total * 1e6

    def estimated_cost(self, input_tokens: int, output_tokens: int) -> float | None:
        d = self.dep
        if not d.priced:
            return None
        return input_tokens * d.input_price + output_tokens * d.output_price

    def __repr__(self) -> str:
        return f"Target({self.key})"


class RouteTargets:
    """A public model name with its deployments, strategy, retry budget and sticky pins."""

    __slots__ = (
        "affinity",
        "allow_weak_fallback",
        "budget",
        "config",
        "fallbacks",
        "kind",
        "name",
        "needs_tokens",
        "strategy",
        "targets",
        "weak",
    )

    def __init__(self, name: str, config: ModelConfig, weak: bool) -> None:
        self.name = name
        self.config = config
        self.kind = config.kind
        self.fallbacks = tuple(config.fallbacks)
        self.allow_weak_fallback = config.allow_weak_fallback
        self.weak = weak
        self.targets: tuple[Target, ...] = ()
        self.strategy: Strategy
        self.budget: RetryBudget
        self.affinity: Affinity | None = None
        # Whether planning needs the request's token estimate (context windows, TPM, cost).
        self.needs_tokens = False

    def __repr__(self) -> str:
        return f"RouteTargets({self.name}, {list(self.targets)})"


class RequestView:
    """What strategies may read about one request."""

    __slots__ = ("_input", "ctx", "is_chat", "req", "stream")

    def __init__(self, req: t.ChatRequest | t.EmbeddingRequest, ctx: RequestContext) -> None:
        self.req = req
        self.ctx = ctx
        self.is_chat = isinstance(req, t.ChatRequest)
        self.stream = req.stream if isinstance(req, t.ChatRequest) else False
        self._input = -1

    @property
    def input_tokens(self) -> int:
        """Estimated prompt tokens (computed once, on first use)."""
        if self._input < 0:
            req = self.req
            if isinstance(req, t.ChatRequest):
                self._input = estimate_prompt(req)
            else:
                self._input = sum(estimate_text(x) for x in req.inputs)
        return self._input

    @property
    def output_tokens(self) -> int:
        req = self.req
        if isinstance(req, t.ChatRequest):
            return req.max_tokens if req.max_tokens is not None else DEFAULT_OUTPUT_TOKENS
        return 0
