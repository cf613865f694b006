"""Where mirrored pairs go. One JSON object per pair (the format is in docs/evaluation.md):

    {"id", "ts", "route", "prompt", "messages": [canonical messages],
     "primary": {"model", "deployment", "provider", "answer", "cost_usd", "latency_ms", "ttft_ms",
                 "input_tokens", "output_tokens", "stream"},
     "candidates": [{"model", "deployment", "provider", "answer", "cost_usd", "latency_ms",
                     "input_tokens", "output_tokens", "status", "error"}],
     "shadow_cost_usd"}

A store is anything with `write(pair)` and `close()`; `open_store` picks one from the config's
`store:` string. Only JSONL files exist today; a database store is a new class and a new scheme.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Protocol

import orjson

SCHEMES = ("jsonl",)


class ShadowStore(Protocol):
    spec: str

    async def write(self, pair: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class JsonlShadowStore:
    """Appends one line per pair; the file is opened per write, so it can be rotated or moved."""

    def __init__(self, path: str | Path, spec: str | None = None) -> None:
        self.path = Path(path)
        self.spec = spec or str(path)
        self._lock = asyncio.Lock()

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as fh:
            fh.write(line)

    async def write(self, pair: dict[str, Any]) -> None:
        line = orjson.dumps(pair) + b"\n"
        async with self._lock:
            # Off the event loop: a slow disk must not stall the requests being served.
            await asyncio.to_thread(self._append, line)

    async def close(self) -> None:
        pass


def store_problem(spec: str) -> str | None:
    """Why `spec` cannot be opened as a store, or None."""
    scheme, sep, rest = spec.partition(":")
    if sep and len(scheme) > 1 and scheme not in SCHEMES:
        return f"unknown store scheme '{scheme}:' (supported: a file path, or {', '.join(s + ':PATH' for s in SCHEMES)})"
    if (rest if sep and len(scheme) > 1 else spec).strip() == "":
        return "the store path is empty"
    return None


def open_store(spec: str) -> ShadowStore:
    problem = store_problem(spec)
    if problem:
        raise ValueError(problem)
    scheme, sep, rest = spec.partition(":")
    # A one-letter "scheme" is a Windows drive letter, not a scheme.
    path = rest if sep and scheme == "jsonl" else spec
    return JsonlShadowStore(path, spec)


def load_pairs(path: str | Path) -> list[dict[str, Any]]:
    """The pairs of a JSONL store, checked enough that judging them cannot fail half-way."""
    pairs: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                pair = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            if (
                not isinstance(pair, dict)
                or not isinstance(pair.get("prompt"), str)
                or not isinstance(pair.get("primary"), dict)
                or not isinstance(pair.get("candidates"), list)
            ):
                raise ValueError(f"{path}:{lineno}: not a shadow pair (needs prompt, primary, candidates)")
            pairs.append(pair)
    return pairs
