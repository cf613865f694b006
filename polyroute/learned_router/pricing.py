"""Price table for records that carry no costs.

Prices are USD per million tokens (input, output), list prices at the time the data was gathered.
A prompt's input tokens are estimated as ``ceil(chars / 4)``; the answer is assumed to be
``ASSUMED_OUTPUT_TOKENS`` long because the records do not say. Only relative costs matter to the
router, so these approximations only shift where the quality-per-dollar knob lands.
"""

from __future__ import annotations

import math

ASSUMED_OUTPUT_TOKENS = 64

# model name (lower case, matched as exact name or as the part after the last "/") -> (input, output)
PRICE_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4": (30.0, 60.0),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-3.5-turbo-1106": (1.0, 2.0),
    "gpt-3.5-turbo": (0.5, 1.5),
    "mixtral-8x7b-instruct-v0.1": (0.6, 0.6),
    "mixtral-8x7b-chat": (0.6, 0.6),
    "mistral-7b-chat": (0.2, 0.2),
    "llama-2-70b-chat": (0.9, 0.9),
    "claude-v1": (8.0, 24.0),
    "claude-v2": (8.0, 24.0),
    "claude-instant-v1": (0.8, 2.4),
}


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def lookup_price(model: str) -> tuple[float, float] | None:
    key = model.lower()
    if key in PRICE_PER_MTOK:
        return PRICE_PER_MTOK[key]
    return PRICE_PER_MTOK.get(key.rsplit("/", 1)[-1])


def estimate_cost(model: str, prompt: str, output_tokens: int = ASSUMED_OUTPUT_TOKENS) -> float | None:
    """USD for one answer, or None when the model is not in the table."""
    price = lookup_price(model)
    if price is None:
        return None
    p_in, p_out = price
    return (estimate_tokens(prompt) * p_in + output_tokens * p_out) / 1e6
