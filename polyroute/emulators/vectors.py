"""Deterministic embedding vectors.

A text's vector is the normalised sum of one pseudo-random Gaussian vector per lower-cased token
(seeded by the token), so identical texts get identical vectors and texts sharing words get a
positive cosine similarity. Token-id inputs (OpenAI) use one vector per id.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
import struct
from collections.abc import Sequence
from functools import lru_cache

_WORD_RE = re.compile(r"\w+|[^\w\s]")


@lru_cache(maxsize=4096)
def _unit(seed_text: str, dims: int) -> tuple[float, ...]:
    seed = int.from_bytes(hashlib.sha256(seed_text.encode("utf-8")).digest()[:8], "big")
    rng = random.Random(seed)
    return tuple(rng.gauss(0.0, 1.0) for _ in range(dims))


def _normalise(acc: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in acc))
    if norm == 0.0:
        # An input with no token still gets a fixed, valid unit vector.
        acc = list(_unit("<empty>", len(acc)))
        norm = math.sqrt(sum(x * x for x in acc))
    return [x / norm for x in acc]


def _sum(keys: Sequence[str], dims: int) -> list[float]:
    acc = [0.0] * dims
    for key in keys:
        for i, x in enumerate(_unit(key, dims)):
            acc[i] += x
    return _normalise(acc)


def embed_text(text: str, dims: int) -> list[float]:
    return _sum([w.lower() for w in _WORD_RE.findall(text)], dims)


def embed_token_ids(ids: Sequence[int], dims: int) -> list[float]:
    return _sum([f"#{i}" for i in ids], dims)


def to_base64(vector: Sequence[float]) -> str:
    """Little-endian float32, which is what the OpenAI API sends for `encoding_format: base64`."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
