"""A deployment: one upstream model on one provider, with its prices and limits resolved."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyroute.core.types import Usage

if TYPE_CHECKING:
    from polyroute.config.schema import DeploymentConfig
    from polyroute.providers.base import Provider

_PER_TOKEN = 1e-6  # prices are configured per million tokens


class Deployment:
    __slots__ = (
        "cache_write_price",
        "cached_input_price",
        "config",
        "context_window",
        "id",
        "input_price",
        "model_name",
        "output_price",
        "priced",
        "provider",
        "upstream_model",
        "weight",
    )

    def __init__(
        self,
        model_name: str,
        index: int,
        provider: Provider,
        config: DeploymentConfig,
        *,
        input_price: float | None,
        output_price: float | None,
        cached_input_price: float | None,
        cache_write_price: float | None,
    ) -> None:
        self.model_name = model_name
        self.id = config.name or f"{model_name}/{provider.name}/{config.model}" + (f"#{index}" if index else "")
        self.provider = provider
        self.upstream_model = config.model
        self.config = config
        self.weight = config.weight
        self.context_window = config.context_window
        self.priced = input_price is not None and output_price is not None
        # Per-token prices, computed once so the request path only multiplies.
        self.input_price = (input_price or 0.0) * _PER_TOKEN
        self.output_price = (output_price or 0.0) * _PER_TOKEN
        self.cached_input_price = (
            cached_input_price if cached_input_price is not None else (input_price or 0.0)
        ) * _PER_TOKEN
        self.cache_write_price = (
            cache_write_price if cache_write_price is not None else (input_price or 0.0)
        ) * _PER_TOKEN

    def cost(self, u: Usage) -> float:
        """USD for this usage, on the canonical semantics (cache reads/writes inside input)."""
        uncached = max(0, u.input_tokens - u.cached_input_tokens - u.cache_write_tokens)
        return (
            uncached * self.input_price
            + u.cached_input_tokens * self.cached_input_price
            + u.cache_write_tokens * self.cache_write_price
            + u.output_tokens * self.output_price
        )

    @property
    def provider_name(self) -> str:
        return self.provider.name

    def __repr__(self) -> str:
        return f"Deployment({self.id})"
