"""The catalogue: public model names, each a route over deployments, built once from the config."""

from __future__ import annotations

from polyroute.config.schema import Config, ModelConfig
from polyroute.core.deployment import Deployment
from polyroute.pricing.table import lookup
from polyroute.providers.base import Provider
from polyroute.providers.registry import create_provider


class Route:
    __slots__ = ("allow_weak_fallback", "config", "deployments", "fallbacks", "kind", "name", "strategy")

    def __init__(self, name: str, config: ModelConfig, deployments: list[Deployment]) -> None:
        self.name = name
        self.config = config
        self.kind = config.kind
        self.strategy = config.strategy
        self.deployments = deployments
        self.fallbacks = list(config.fallbacks)
        self.allow_weak_fallback = config.allow_weak_fallback

    def __repr__(self) -> str:
        return f"Route({self.name}, {self.strategy}, {self.deployments})"


class Catalog:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.providers: dict[str, Provider] = {
            name: create_provider(name, pc) for name, pc in config.providers.items()
        }
        self.routes: dict[str, Route] = {}
        for model_name, mc in config.models.items():
            deps = []
            for i, dc in enumerate(mc.deployments):
                price = lookup(dc.model)
                deps.append(
                    Deployment(
                        model_name,
                        i,
                        self.providers[dc.provider],
                        dc,
                        input_price=dc.input_price if dc.input_price is not None else (price.input if price else None),
                        output_price=dc.output_price if dc.output_price is not None else (price.output if price else None),
                        cached_input_price=dc.cached_input_price
                        if dc.cached_input_price is not None
                        else (price.cached_input if price else None),
                        cache_write_price=dc.cache_write_price
                        if dc.cache_write_price is not None
                        else (price.cache_write if price else None),
                    )
                )
            self.routes[model_name] = Route(model_name, mc, deps)
        for route in list(self.routes.values()):
            for dep in route.deployments:
                dep.provider.add_deployment(dep)
        # Routes over candidates share the candidates' Deployment objects, hence their health,
        # capacity and prices; `dep.model_name` says which candidate a deployment serves.
        for model_name, mc in config.models.items():
            for cand in mc.candidates or ():
                self.routes[model_name].deployments.extend(self.routes[cand].deployments)

    def route(self, name: str) -> Route | None:
        return self.routes.get(name)

    def names(self, kind: str | None = None) -> list[str]:
        return sorted(n for n, r in self.routes.items() if kind is None or r.kind == kind)

    async def start(self) -> None:
        for p in self.providers.values():
            await p.start()

    async def close(self) -> None:
        for p in self.providers.values():
            await p.close()
