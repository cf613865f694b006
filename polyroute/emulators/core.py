"""The emulator object: configuration, behaviours and the request log of one emulated vendor."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, Literal, get_args

from .behaviour import Behaviour, BehaviourController
from .recording import RecordedRequest, RequestLog

Kind = Literal["openai", "anthropic", "gemini"]
KINDS: tuple[str, ...] = get_args(Kind)

DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o-mini", "gpt-4o", "o3-mini", "text-embedding-3-small", "text-embedding-3-large"),
    "anthropic": ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7"),
    "gemini": ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001", "text-embedding-004"),
}


class Emulator:
    """State shared by the HTTP handlers and the Python API. Safe to drive from another thread."""

    def __init__(self, kind: str, *, api_key: str | None = None, models: Sequence[str] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown emulator kind {kind!r}; expected one of {KINDS}")
        self.kind = kind
        self.api_key = api_key
        self.models: tuple[str, ...] = tuple(models) if models else DEFAULT_MODELS[kind]
        self.behaviours = BehaviourController()
        self.log = RequestLog()
        self._lock = threading.Lock()
        # Anthropic prompt-cache prefixes seen so far (hashes), so a second identical prefix is a read.
        self._prompt_cache: set[str] = set()
        self._shutdown: asyncio.Event | None = None

    # -- Python API ------------------------------------------------------------------------------
    def set_behaviour(self, behaviour: Behaviour | None = None, **fields: Any) -> None:
        """Set the default behaviour: a `Behaviour`, or its fields as keywords (None resets to echo)."""
        if behaviour is not None and fields:
            behaviour = behaviour.replace(**fields)
        elif behaviour is None and fields:
            behaviour = Behaviour(**fields)
        self.behaviours.set_default(behaviour)

    def enqueue(self, *behaviours: Behaviour, times: int = 1) -> None:
        """Queue behaviours for the next requests, one each, first in first out (the lot `times` times)."""
        self.behaviours.enqueue(*behaviours, times=times)

    def set_failure_rate(self, rate: float, *, seed: int = 0, behaviour: Behaviour | None = None) -> None:
        """Fail a `rate` fraction of requests (seeded, so runs repeat) with `behaviour` (503 by default)."""
        self.behaviours.set_failure_rate(rate, seed=seed, behaviour=behaviour)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.log.items()

    def clear_requests(self) -> None:
        self.log.clear()

    def reset(self) -> None:
        """Back to a fresh emulator: echo behaviour, empty queue, no failure rate, no requests, no cache."""
        self.behaviours.reset()
        self.log.clear()
        with self._lock:
            self._prompt_cache.clear()

    # -- used by handlers ------------------------------------------------------------------------
    def cache_lookup_and_store(self, keys: Sequence[str]) -> int:
        """Index+1 of the longest already-cached prefix among `keys` (0 if none); stores all keys."""
        with self._lock:
            hit = 0
            for i, key in enumerate(keys):
                if key in self._prompt_cache:
                    hit = i + 1
            self._prompt_cache.update(keys)
            return hit

    def attach_loop(self) -> None:
        self._shutdown = asyncio.Event()

    def begin_shutdown(self) -> None:
        if self._shutdown is not None:
            self._shutdown.set()

    async def wait_shutdown(self) -> None:
        if self._shutdown is None:
            self._shutdown = asyncio.Event()
        await self._shutdown.wait()
