"""Keys and teams from the dashboard, through governance's own operations (polyroute/governance/
manage.py and store.py), so the UI, the admin API and the CLI validate and store alike; changes go
into this process's key cache at once (a revoke takes effect on the next request)."""

from __future__ import annotations

import time
from typing import Any

from polyroute.core import errors as e
from polyroute.governance.keys import Key, Limits, Team, check_limits, new_id, team_public
from polyroute.governance.manage import create_key, ensure_team
from polyroute.governance.policy import Governance
from polyroute.governance.store import limits_with


def _limits(body: dict[str, Any], exclude: tuple[str, ...]) -> dict[str, Any]:
    try:
        return check_limits({k: v for k, v in body.items() if k not in exclude})
    except ValueError as exc:
        raise e.InvalidRequest(str(exc)) from None


async def _key(gov: Governance, ref: Any) -> Key:
    key = await gov.store.key_by_ref(str(ref)) if isinstance(ref, str) and ref else None
    if key is None:
        raise e.NotFound(f"no key '{ref}'")
    return key


async def _team(gov: Governance, ref: Any) -> Team:
    team = await gov.store.team_by_name_or_id(str(ref)) if isinstance(ref, str) and ref else None
    if team is None:
        raise e.NotFound(f"no team '{ref}'")
    return team


async def create_team(gov: Governance, body: dict[str, Any]) -> dict[str, Any]:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise e.InvalidRequest("a team needs a name", param="name")
    name = name.strip()
    if await gov.store.team_by_name_or_id(name) is not None:
        raise e.GatewayError(f"team '{name}' already exists", status=409)
    now = time.time()
    team = Team(new_id("team"), name, Limits(**_limits(body, ("name",))), now, now)
    await gov.store.create_team(team)
    gov.keys.put_team(team)
    return team_public(team)


async def update_team(gov: Governance, body: dict[str, Any]) -> dict[str, Any]:
    team = await _team(gov, body.get("id"))
    lim = limits_with(team.limits, _limits(body, ("id",)))
    await gov.store.update_team(team.id, lim)
    updated = Team(team.id, team.name, lim, team.created_at, time.time())
    gov.keys.put_team(updated)
    return team_public(updated)


async def new_key(gov: Governance, body: dict[str, Any]) -> dict[str, Any]:
    """The key's public record and, once only, its secret (`key`)."""
    team = await ensure_team(gov.store, str(body.get("team") or "default"), gov.keys)
    name = body.get("name") or ""
    if not isinstance(name, str):
        raise e.InvalidRequest("'name' must be text", param="name")
    days = body.get("expires_in_days")
    expires = None
    if days is not None:
        if isinstance(days, bool) or not isinstance(days, int | float) or days <= 0:
            raise e.InvalidRequest("'expires_in_days' must be a positive number", param="expires_in_days")
        expires = time.time() + float(days) * 86400
    lim = Limits(**_limits(body, ("team", "name", "expires_in_days")))
    key, secret = await create_key(gov.store, team, name.strip(), lim, expires, gov.keys)
    return {**key.public(), "team_name": team.name, "key": secret}


async def update_key(gov: Governance, body: dict[str, Any]) -> dict[str, Any]:
    key = await _key(gov, body.get("id"))
    lim = limits_with(key.limits, _limits(body, ("id",)))
    await gov.store.update_key(key.id, lim)
    updated = Key(key.id, key.team_id, key.name, key.key_hash, key.prefix, lim, key.created_at, time.time(),
                  key.expires_at, key.revoked_at)  # fmt: skip
    gov.keys.put(updated)
    return updated.public()


async def revoke_key(gov: Governance, body: dict[str, Any]) -> dict[str, Any]:
    key = await _key(gov, body.get("id"))
    await gov.store.revoke_key(key.id)
    revoked = await gov.store.key_by_ref(key.id)
    assert revoked is not None
    gov.keys.put(revoked)
    return revoked.public()


async def keys_and_teams(gov: Governance, include_revoked: bool) -> tuple[list[Key], list[Team]]:
    keys = await gov.store.keys()
    if not include_revoked:
        keys = [k for k in keys if k.revoked_at is None]
    return keys, await gov.store.teams()


async def budget_status(gov: Governance, subject: str) -> dict[str, float]:
    """Spent and reserved USD today and this month, as the budget counters see them (what
    enforcement uses: only keys and teams with a limit are counted as they spend)."""
    return await gov.counters.status(subject, time.time())
