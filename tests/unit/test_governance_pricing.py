"""Prices: the default table, config overrides, and cost on the canonical usage semantics."""

from __future__ import annotations

import pytest

from polyroute.config.schema import DeploymentConfig
from polyroute.core.types import Usage
from polyroute.pricing.table import PRICES, Price, deployment_price, lookup


def test_every_vendor_has_defaults() -> None:
    for model in ("gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "mistral-small-latest", "deepseek-chat",
                  "grok-4", "smollm2-135m-instruct"):  # fmt: skip
        assert model in PRICES
    for p in PRICES.values():
        assert p.input >= 0 and p.output >= 0


def test_lookup_dated_snapshot_uses_longest_prefix() -> None:
    assert lookup("gpt-4o-mini-2024-07-18") == PRICES["gpt-4o-mini"]
    assert lookup("o3-mini-2025-01-31") == PRICES["o3-mini"]
    assert lookup("unknown-model") is None


def test_config_overrides_table_field_by_field() -> None:
    p = deployment_price(DeploymentConfig(provider="x", model="claude-sonnet-4-5", output_price=20.0))
    assert p == Price(3.0, 20.0, 0.3, 3.75)
    assert deployment_price(DeploymentConfig(provider="x", model="my-own-model")) is None
    assert deployment_price(DeploymentConfig(provider="x", model="my-own", input_price=1, output_price=2)) == Price(1, 2)


def _cost(price: Price, u: Usage) -> float:
    from polyroute.core.deployment import Deployment

    class _P:
        name = "p"

    d = Deployment("m", 0, _P(), DeploymentConfig(provider="p", model="m"), input_price=price.input,  # type: ignore[arg-type]
                   output_price=price.output, cached_input_price=price.cached_input, cache_write_price=price.cache_write)  # fmt: skip
    return d.cost(u)


def test_cached_and_reasoning_tokens_are_neither_missed_nor_billed_twice() -> None:
    price = PRICES["claude-sonnet-4-5"]  # 3 in, 15 out, 0.3 cache read, 3.75 cache write per million
    u = Usage(input_tokens=10_000, cached_input_tokens=6_000, cache_write_tokens=1_000, output_tokens=2_000,
              reasoning_tokens=1_500)  # fmt: skip
    expected = (3_000 * 3.0 + 6_000 * 0.3 + 1_000 * 3.75 + 2_000 * 15.0) / 1e6
    assert _cost(price, u) == pytest.approx(expected, rel=1e-12)
    # Reasoning is inside output: adding it changes nothing unless output grows.
    assert _cost(price, Usage(input_tokens=10, output_tokens=5, reasoning_tokens=5)) == pytest.approx(
        (10 * 3.0 + 5 * 15.0) / 1e6
    )


def test_missing_cache_prices_fall_back_to_input_price() -> None:
    u = Usage(input_tokens=100, cached_input_tokens=40)
    assert _cost(Price(2.0, 8.0), u) == pytest.approx(100 * 2.0 / 1e6)
