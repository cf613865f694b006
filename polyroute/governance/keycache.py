"""Virtual keys in memory, so the request path never waits on the database to authenticate.

The whole key and team tables are reloaded every `ttl` seconds in the background (they are small);
admin-API changes in this process update the cache at once. A key not in the cache triggers one
reload (at most one per second for all callers together), so a key just created with the CLI
works on its first request, and a flood of invalid keys costs at most one query per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from polyroute.governance.keys import Key, Team, hash_key, same_hash
from polyroute.governance.store import Store

log = logging.getLogger("polyroute.governance")

MISS_RELOAD_INTERVAL = 1.0


class KeyCache:
    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = max(0.1, ttl)
        self.by_hash: dict[str, Key] = {}
        self.by_id: dict[str, Key] = {}
        self.teams: dict[str, Team] = {}
        self.loaded_at = 0.0
        self._reload: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def any_keys(self) -> bool:
        return bool(self.by_hash)

    async def start(self) -> None:
        await self.load()
        self._task = asyncio.create_task(self._refresh_loop(), name="polyroute-key-cache")

    async def close(self) -> None:
        for t in (self._task, self._reload):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def load(self) -> None:
        keys = await self.store.keys()
        teams = await self.store.teams()
        # Swap whole dicts: readers on the request path never see a half-built table.
        self.by_hash = {k.key_hash: k for k in keys}
        self.by_id = {k.id: k for k in keys}
        self.teams = {t.id: t for t in teams}
        self.loaded_at = time.monotonic()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl)
            try:
                await self.load()
            except Exception as exc:
                # Keep serving from the last good copy while the database is away.
                log.warning("reloading virtual keys failed (%s); using the cached copy", type(exc).__name__)

    async def lookup(self, secret: str) -> Key | None:
        h = hash_key(secret)
        key = self.by_hash.get(h)
        if key is None and time.monotonic() - self.loaded_at >= MISS_RELOAD_INTERVAL:
            if self._reload is None or self._reload.done():
                self._reload = asyncio.create_task(self.load())
            with contextlib.suppress(Exception):
                await asyncio.shield(self._reload)
            key = self.by_hash.get(h)
        if key is None or not same_hash(key.key_hash, h):
            return None
        return key

    def put(self, key: Key) -> None:
        self.by_hash = {**self.by_hash, key.key_hash: key}
        self.by_id = {**self.by_id, key.id: key}

    def put_team(self, team: Team) -> None:
        self.teams = {**self.teams, team.id: team}
