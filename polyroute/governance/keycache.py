"""Virtual keys in memory, so the request path never waits on the database to authenticate.

The whole key and team tables are reloaded every `ttl` seconds in the background (they are small);
admin-API changes in this process update the cache at once. A key not in the cache is looked up
by its hash (at most MISS_QUERIES_PER_SECOND look-ups per second for all callers together), so a
key just created with the CLI works on its first request, and a flood of invalid keys costs the
database at most that many indexed queries per second. Concurrent requests with the same unknown
key share one look-up: a burst with a key made on another instance or with the CLI must not use up
that allowance and get 401 for a valid key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from polyroute.governance.keys import Key, Team, hash_key, same_hash
from polyroute.governance.store import Store

log = logging.getLogger("polyroute.governance")

MISS_QUERIES_PER_SECOND = 20


class KeyCache:
    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = max(0.1, ttl)
        self.by_hash: dict[str, Key] = {}
        self.by_id: dict[str, Key] = {}
        self.teams: dict[str, Team] = {}
        self.loaded_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._miss_window = 0.0
        self._misses = 0
        # key hash -> the database look-up in progress for it
        self._fetching: dict[str, asyncio.Future[Key | None]] = {}

    @property
    def any_keys(self) -> bool:
        return bool(self.by_hash)

    async def start(self) -> None:
        await self.load()
        self._task = asyncio.create_task(self._refresh_loop(), name="polyroute-key-cache")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def load(self) -> None:
        keys = await self.store.keys()
        teams = await self.store.teams()
        # Swap whole dicts: readers on the request path never see a half-built table.
        self.by_hash = {k.key_hash: k for k in keys}
        self.by_id = {k.id: k for k in keys}
        self.teams = {t.id: t for t in teams}
        self.loaded_at = time.monotonic()

    async def _refresh_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.ttl)
            try:
                await self.load()
            except Exception as exc:
                # Keep serving from the last good copy while the database is away; say so once.
                log.log(logging.DEBUG if failing else logging.WARNING,
                        "reloading virtual keys failed (%s); using the cached copy", type(exc).__name__)
                failing = True
            else:
                if failing:
                    log.warning("virtual keys reloaded: the database is back")
                failing = False

    async def lookup(self, secret: str, hashed: str | None = None) -> Key | None:
        h = hashed or hash_key(secret)
        key = self.by_hash.get(h)
        if key is None:
            pending = self._fetching.get(h)
            if pending is None and self._may_query():
                pending = self._fetching[h] = asyncio.ensure_future(self._fetch(h))
                pending.add_done_callback(lambda _: self._fetching.pop(h, None))
            if pending is not None:
                # Shielded: one caller leaving (client disconnect) must not cancel the others' look-up.
                key = await asyncio.shield(pending)
        if key is None or not same_hash(key.key_hash, h):
            return None
        return key

    def _may_query(self) -> bool:
        """At most MISS_QUERIES_PER_SECOND database look-ups for unknown keys, all callers together."""
        now = time.monotonic()
        if now - self._miss_window >= 1.0:
            self._miss_window, self._misses = now, 0
        self._misses += 1
        return self._misses <= MISS_QUERIES_PER_SECOND

    async def _fetch(self, key_hash: str) -> Key | None:
        try:
            key = await self.store.key_by_hash(key_hash)
            if key is not None and key.team_id not in self.teams:
                self.teams = {t.id: t for t in await self.store.teams()}
        except Exception as exc:
            log.debug("looking up an unknown key failed (%s)", type(exc).__name__)
            return None
        if key is not None:
            self.put(key)
        return key

    def put(self, key: Key) -> None:
        self.by_hash = {**self.by_hash, key.key_hash: key}
        self.by_id = {**self.by_id, key.id: key}

    def put_team(self, team: Team) -> None:
        self.teams = {**self.teams, team.id: team}
