"""Deterministic token arithmetic shared by the emulators.

A "token" is a run of word characters or a single punctuation mark: `\\w+|[^\\w\\s]`.
So "echo: Hello, world!" is 6 tokens (echo : Hello , world !).
The input of a request is counted over every string value (never keys) of the fields that carry
input, skipping `cache_control` markers; see each vendor module for the fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_PIECE_RE = re.compile(r"\S+\s*|\s+")
_IGNORED_KEYS = frozenset({"cache_control"})


def count_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def count_in(value: Any) -> int:
    """Tokens of every string value inside `value` (dict keys are not counted)."""
    if isinstance(value, str):
        return count_tokens(value)
    if isinstance(value, dict):
        return sum(count_in(v) for k, v in value.items() if k not in _IGNORED_KEYS)
    if isinstance(value, (list, tuple)):
        return sum(count_in(v) for v in value)
    return 0


def count_all(values: Iterable[Any]) -> int:
    return sum(count_in(v) for v in values)


def truncate_to_tokens(text: str, limit: int) -> str:
    """The prefix of `text` holding its first `limit` tokens."""
    if limit <= 0:
        return ""
    matches = list(_TOKEN_RE.finditer(text))
    if len(matches) <= limit:
        return text
    return text[: matches[limit - 1].end()]


def token_pieces(text: str) -> list[str]:
    """Split into pieces that concatenate back to `text`, one token (with leading blanks) each."""
    pieces: list[str] = []
    last = 0
    for m in _TOKEN_RE.finditer(text):
        pieces.append(text[last : m.end()])
        last = m.end()
    if last < len(text):
        if pieces:
            pieces[-1] += text[last:]
        else:
            pieces.append(text[last:])
    return pieces


def split_text(text: str, chunks: int | None) -> list[str]:
    """Pieces of `text` for streaming: one per word by default, or `chunks` near-equal pieces."""
    if not text:
        return [""]
    if chunks is None:
        return _PIECE_RE.findall(text)
    return split_even(text, chunks)


def split_even(text: str, chunks: int) -> list[str]:
    n = max(1, min(chunks, len(text)))
    size, extra = divmod(len(text), n)
    pieces: list[str] = []
    start = 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def split_fixed(text: str, width: int) -> list[str]:
    if not text:
        return [""]
    return [text[i : i + width] for i in range(0, len(text), width)]
