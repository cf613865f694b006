"""`strategy: quality`: the learned router picks the candidate model per request.

The decision (feature extraction included) runs in a worker thread, never on the event loop.
The chosen candidate's deployments are tried first; the other candidates stay behind it in
config order, so a failing choice still fails over instead of failing the request.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING

from polyroute.core import errors as e
from polyroute.routing.strategies import Strategy, register_strategy

if TYPE_CHECKING:
    from polyroute.learned_router.router import Decision, LearnedRouter
    from polyroute.routing.targets import RequestView, RouteTargets, Target

_UNSAFE = re.compile(r"[^\x20-\x7e]")


def router_key(target: Target, by_candidate: bool) -> str:
    """The name the router was trained on: the candidate model, else the deployment's name."""
    dep = target.dep
    return dep.model_name if by_candidate else (dep.config.name or dep.upstream_model)


@register_strategy
class Quality(Strategy):
    name = "quality"
    needs_prepare = True

    def __init__(self, route: RouteTargets) -> None:
        super().__init__(route)
        cfg = route.config.quality
        if cfg is None:
            raise e.InvalidRequest(
                f"model '{route.name}' uses strategy 'quality' without 'quality: {{router: PATH}}'"
            )
        self.path = Path(cfg.router)
        self.quality_per_dollar = cfg.quality_per_dollar
        self.by_candidate = bool(route.config.candidates)
        self.router: LearnedRouter | None = None
        self.keys: list[str] = []

    async def start(self) -> None:
        from polyroute.learned_router.router import LearnedRouter

        self.router = await asyncio.to_thread(LearnedRouter.load, self.path)
        self.keys = list(dict.fromkeys(router_key(tg, self.by_candidate) for tg in self.route.targets))
        unknown = [k for k in self.keys if k not in self.router.models]
        if len(unknown) == len(self.keys):
            raise ValueError(
                f"{self.path}: router trained on {self.router.models}, none of which serves "
                f"model '{self.route.name}' ({self.keys})"
            )

    async def prepare(self, view: RequestView) -> None:
        router = self.router
        if router is None:
            return
        req = view.req
        prompt = req.prompt_text() if hasattr(req, "prompt_text") else ""
        decision: Decision = await asyncio.to_thread(router.choose, prompt, self.keys, self.quality_per_dollar)
        ctx = view.ctx
        ctx.route_choice = decision.model
        ctx.extra_headers.append((b"x-polyroute-router-choice", decision.model.encode()))
        reason = _UNSAFE.sub("?", decision.reason)[:200]
        ctx.extra_headers.append((b"x-polyroute-router-reason", reason.encode()))

    def order(self, targets: list[Target], view: RequestView) -> list[Target]:
        chosen = view.ctx.route_choice
        if chosen is None:
            return targets
        by = self.by_candidate
        first = [tg for tg in targets if router_key(tg, by) == chosen]
        return first + [tg for tg in targets if router_key(tg, by) != chosen]
