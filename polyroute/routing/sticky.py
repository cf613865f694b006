"""Sticky routing keys: which conversation (or end user) a request belongs to.

The key is a stable 64-bit hash (the same on every gateway instance, unlike `hash()`), so pins
can live in a shared store later and raw user ids or prompts are never kept.
"""

from __future__ import annotations

import hashlib

from polyroute.config.schema import StickyConfig
from polyroute.core import types as t


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def sticky_key(req: t.ChatRequest | t.EmbeddingRequest, config: StickyConfig | None) -> int | None:
    """The request's pin key, or None when it has none (no sticky_key and no sticky config)."""
    opts = req.options
    if opts is not None and opts.sticky_key:
        return _digest("k\x00" + opts.sticky_key)
    if config is None:
        return None
    if config.by == "user":
        user = (opts.end_user if opts is not None else None) or req.user
        return _digest("u\x00" + user) if user else None
    if not isinstance(req, t.ChatRequest):
        return None
    parts: list[str] = []
    for m in req.messages[: config.messages]:
        parts.append(m.role)
        for p in m.content:
            if isinstance(p, t.TextPart):
                parts.append(p.text)
            elif isinstance(p, t.ImagePart):
                parts.append(p.url or p.data or "")
    return _digest("m\x00" + "\x00".join(parts))
