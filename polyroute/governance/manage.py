"""Key and team operations shared by the admin API and the CLI."""

from __future__ import annotations

import time

from polyroute.core import errors as e
from polyroute.governance.keycache import KeyCache
from polyroute.governance.keys import Key, Limits, Team, display_prefix, hash_key, new_id, new_secret
from polyroute.governance.store import Store


async def ensure_team(store: Store, ref: str, cache: KeyCache | None = None) -> Team:
    """The team by name or id; "default" is created on first use, so a first key needs no set-up."""
    team = await store.team_by_name_or_id(ref)
    if team is None:
        if ref != "default":
            raise e.NotFound(f"no team '{ref}' (create it first)")
        now = time.time()
        team = Team(new_id("team"), "default", Limits(), now, now)
        await store.create_team(team)
    if cache is not None:
        cache.put_team(team)
    return team


async def create_key(
    store: Store, team: Team, name: str, limits: Limits, expires_at: float | None, cache: KeyCache | None = None
) -> tuple[Key, str]:
    """A new key and its secret: the only time the secret exists outside the caller's hands."""
    secret = new_secret()
    now = time.time()
    key = Key(new_id("key"), team.id, name, hash_key(secret), display_prefix(secret), limits, now, now, expires_at)
    await store.create_key(key)
    if cache is not None:
        cache.put(key)
    return key, secret
