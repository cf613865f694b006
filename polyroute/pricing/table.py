"""Default prices (USD per million tokens) for common models of each vendor.

Deployment prices in the config override these. Prices are looked up once, when the catalogue is
built, never on the request path. Figures are the vendors' public list prices as of 2025-2026;
verify against your contract and override in the config where they differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from polyroute.config.schema import DeploymentConfig


class Price(NamedTuple):
    input: float
    output: float
    cached_input: float | None = None  # cache reads
    cache_write: float | None = None  # cache writes (Anthropic 5-minute writes: 1.25 x input)


PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-4o": Price(2.5, 10.0, 1.25),
    "gpt-4o-mini": Price(0.15, 0.6, 0.075),
    "gpt-4.1": Price(2.0, 8.0, 0.5),
    "gpt-4.1-mini": Price(0.4, 1.6, 0.1),
    "gpt-4.1-nano": Price(0.1, 0.4, 0.025),
    "gpt-5": Price(1.25, 10.0, 0.125),
    "gpt-5-mini": Price(0.25, 2.0, 0.025),
    "gpt-5-nano": Price(0.05, 0.4, 0.005),
    "o3": Price(2.0, 8.0, 0.5),
    "o4-mini": Price(1.1, 4.4, 0.275),
    "o3-mini": Price(1.1, 4.4, 0.55),
    "o1": Price(15.0, 60.0, 7.5),
    "gpt-4-turbo": Price(10.0, 30.0),
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
    # Anthropic
    "claude-opus-4-1": Price(15.0, 75.0, 1.5, 18.75),
    "claude-sonnet-4-5": Price(3.0, 15.0, 0.3, 3.75),
    "claude-sonnet-4": Price(3.0, 15.0, 0.3, 3.75),
    "claude-opus-4": Price(15.0, 75.0, 1.5, 18.75),
    "claude-3-7-sonnet": Price(3.0, 15.0, 0.3, 3.75),
    "claude-3-5-sonnet": Price(3.0, 15.0, 0.3, 3.75),
    "claude-haiku-4-5": Price(1.0, 5.0, 0.1, 1.25),
    "claude-3-5-haiku-latest": Price(0.8, 4.0, 0.08, 1.0),
    # Google
    "gemini-2.5-pro": Price(1.25, 10.0, 0.31),
    "gemini-2.5-flash": Price(0.3, 2.5, 0.075),
    "gemini-2.5-flash-lite": Price(0.1, 0.4, 0.025),
    "gemini-embedding-001": Price(0.15, 0.0),
    "gemini-2.0-flash": Price(0.1, 0.4, 0.025),
    # Mistral
    "mistral-large-latest": Price(2.0, 6.0),
    "mistral-medium-latest": Price(0.4, 2.0),
    "mistral-small-latest": Price(0.1, 0.3),
    "mistral-embed": Price(0.1, 0.0),
    "codestral-latest": Price(0.3, 0.9),
    # DeepSeek
    "deepseek-chat": Price(0.27, 1.1, 0.07),
    "deepseek-reasoner": Price(0.55, 2.19, 0.14),
    # xAI
    "grok-4": Price(3.0, 15.0, 0.75),
    "grok-3-mini": Price(0.3, 0.5, 0.075),
    # In-house: runs on your own hardware; priced at zero by default.
    "smollm2-135m-instruct": Price(0.0, 0.0),
    "all-minilm-l6-v2": Price(0.0, 0.0),
}


def lookup(model: str) -> Price | None:
    """Exact name first, then the longest known prefix (dated snapshots such as gpt-4o-2024-08-06)."""
    if model in PRICES:
        return PRICES[model]
    best = max((k for k in PRICES if model.startswith(k)), key=len, default=None)
    return PRICES[best] if best else None


def deployment_price(dc: DeploymentConfig) -> Price | None:
    """The deployment's effective price: each price set in the config wins over the table's.

    None when neither the config nor the table gives both an input and an output price; the
    deployment is then unpriced (cost 0, and budgets cannot be reserved against it).
    """
    table = lookup(dc.model)
    inp = dc.input_price if dc.input_price is not None else (table.input if table else None)
    out = dc.output_price if dc.output_price is not None else (table.output if table else None)
    if inp is None or out is None:
        return None
    cached = dc.cached_input_price if dc.cached_input_price is not None else (table.cached_input if table else None)
    write = dc.cache_write_price if dc.cache_write_price is not None else (table.cache_write if table else None)
    return Price(inp, out, cached, write)
