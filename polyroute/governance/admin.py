"""The admin API: teams, keys, spend, dependency, audit. Master key only; every call audited.

Routes are exact paths (the app's router has no path parameters), so the object of an action is
named in the body (`{"id": ...}`) or the query string.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from polyroute.core import errors as e
from polyroute.governance.keys import (
    Key,
    Limits,
    Team,
    check_limits,
    hash_key,
    new_id,
    same_hash,
    team_public,
)
from polyroute.governance.manage import create_key, ensure_team
from polyroute.governance.policy import Governance
from polyroute.governance.reports import dependency_report, parse_time, spend_report
from polyroute.governance.store import SPEND_BY, limits_with
from polyroute.inbound.openai_chat import error_body
from polyroute.server.http import Receive, Scope, Send, read_json_object, send_json

log = logging.getLogger("polyroute.admin")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
MAX_BODY = 1 << 20


class AdminAPI:
    def __init__(self, gov: Governance) -> None:
        self.gov = gov
        self.store = gov.store

    def routes(self) -> dict[tuple[str, str], Handler]:
        r: dict[tuple[str, str], Callable[[Scope, dict[str, Any]], Awaitable[tuple[str, str | None, Any]]]] = {
            ("GET", "/admin/teams"): self.list_teams,
            ("POST", "/admin/teams"): self.create_team,
            ("POST", "/admin/teams/update"): self.update_team,
            ("GET", "/admin/keys"): self.list_keys,
            ("POST", "/admin/keys"): self.create_key,
            ("POST", "/admin/keys/update"): self.update_key,
            ("POST", "/admin/keys/revoke"): self.revoke_key,
            ("GET", "/admin/keys/usage"): self.key_usage,
            ("GET", "/admin/spend"): self.spend,
            ("GET", "/admin/dependency"): self.dependency,
            ("GET", "/admin/audit"): self.audit,
            ("GET", "/admin/ledger"): self.ledger,
        }
        return {k: self._wrap(k, fn) for k, fn in r.items()}

    def _wrap(
        self, route: tuple[str, str], fn: Callable[[Scope, dict[str, Any]], Awaitable[tuple[str, str | None, Any]]]
    ) -> Handler:
        method, path = route
        action_name = path.removeprefix("/admin/").replace("/", ".") + ("" if method == "POST" else ".read")

        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            source = _client(scope)
            try:
                if not self._authorised(scope):
                    await self._audit("unauthenticated", "auth.failed", path, None, source)
                    raise e.AuthenticationFailed("the admin API needs the master key (Authorization: Bearer ...)")
                args = _query(scope)
                if method == "POST":
                    args.update(await read_json_object(scope, receive, MAX_BODY))
                detail = _audit_detail(args)
                action, target, result = await fn(scope, args)
                await self._audit("master", action or action_name, target, detail, source)
                await send_json(send, 200, result)
            except e.GatewayError as err:
                headers = [(b"x-should-retry", b"false")]
                await send_json(send, err.status, error_body(err), headers)
            except Exception:
                log.exception("admin request %s %s failed", method, path)
                await send_json(send, 500, error_body(e.GatewayError("internal error in the admin API")))

        return handler

    def _authorised(self, scope: Scope) -> bool:
        from polyroute.server.app import api_key_of

        if self.gov.master_hash is None:
            return False
        presented = api_key_of(scope)
        return presented is not None and same_hash(hash_key(presented), self.gov.master_hash)

    async def _audit(self, actor: str, action: str, target: str | None, detail: Any, source: str | None) -> None:
        try:
            await self.store.audit(actor, action, target, detail, source)
        except Exception as exc:
            log.warning("audit log write failed (%s)", type(exc).__name__)

    # --- teams --------------------------------------------------------------------------------------

    async def list_teams(self, scope: Scope, a: dict[str, Any]) -> tuple[str, str | None, Any]:
        return "teams.list", None, {"data": [team_public(t) for t in await self.store.teams()]}

    async def create_team(self, scope: Scope, a: dict[str, Any]) -> tuple[str, str | None, Any]:
        name = a.pop("name", None)
        if not isinstance(name, str) or not name:
            raise e.InvalidRequest("a team needs a 'name'", param="name")
        if await self.store.team_by_name_or_id(name) is not None:
            raise e.GatewayError(f"team '{name}' already exists", status=409)
        lim = Limits(**_limits(a))
        now = time.time()
        team = Team(new_id("team"), name, lim, now, now)
        await self.store.create_team(team)
        self.gov.keys.put_team(team)
        return "teams.create", team.id, team_public(team)

    async def update_team(self, scope: Scope, a: dict[str, Any]) -> tuple[str, str | None, Any]:
        ref = a.pop("id", None) or a.pop("name", None)
        team = await self.store.team_by_name_or_id(str(ref)) if ref else None
        if team is None:
            raise e.NotFound(f"no team '{ref}'")
        lim = limits_with(team.limits, _limits(a))
        await self.store.update_team(team.id, lim)
        team = Team(team.id, team.name, lim, team.created_at, time.time())
        self.gov.keys.put_team(team)
        return "teams.update", team.id, team_public(team)

    # --- keys ---------------------------------------------------------------------------------------

    async def list_keys(self, scope: Scope, a: dict[str, Any]) -> tuple[str, str | None, Any]:
        keys = await self.store.keys()
        team_ref = _one(a, "team")
        if team_ref:
            team = await self.store.team_by_name_or_id(team_ref)
            keys = [k for k in keys if team is not None and k.team_id == team.id]
        if _one(a, "include_revoked") not in ("1", "true", "yes"):
            keys = [k for k in keys if k.revoked_at is None]
        return "keys.list", None, {"data": [k.public() for k in keys]}

    async def create_key(self, scope: Scope, a: dict[str, Any]) -> tuple[str, str | None, Any]:
        team_ref = a.pop("team", None) or "default"
        name = a.pop("name", "") or ""
        expires_in = a.pop("expires_in_days", None)
        team = await ensure_team(self.store, str(team_ref), self.gov.keys)
        lim = Limits(**_limits(a))
        expires = None
        if expires_in is not None:
            if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
                raise e.InvalidRequest("'expires_in_days' must be a positive number", param="expires_in_days")
            expires = time.time() + float(expires_in) * 86400
        key, secret = await create_key(self.store, team, str(name), lim, expires, self.gov.keys)
        return "keys.create", key.id, {**key.public(), "key": secret}

    async def update_key(self, scope: Scope, a: dict[str, Any]) -> tuple[str, str | None, Any]:
        key = await self._key(a)
        lim = limits_with(key.limits, _limits(a))
        await self.store.update_key(key.id, lim)
        updated = Key(key.id, key.team_id, key.name, key.key_hash, key.prefix, lim, key.created_at, time.time(),
                      key.expires_at, key.revoked_at)  # fmt: skip
        self.gov.keys.put(updated)
        return "keys.update", key.id, updated.public()

    async def revoke_key(self, scope: Scope, a: dict[str, Any]) -> tuple[str, str | None, Any]:
        key = await self._key(a)
        await self.store.revoke_key(key.id)
        revoked = await self.store.key_by_ref(key.id)
        assert revoked is not None
        self.gov.keys.put(revoked)  # takes effect on this instance's next request
        return "keys.revoke", key.id, revoked.public()

    async def key_usage(self, scope: Scope, a: dict[str, Any]) -> tuple[str, str | None, Any]:
        key = await self._key(a)
        return "keys.usage.read", key.id, {**key.public(), "usage": await self.gov.status_of(key)}

    async def _key(self, a: dict[str, Any]) -> Key:
        ref = a.pop("id", None) or a.pop("prefix", None)
        if isinstance(ref, list):
            ref = ref[0]
        key = await self.store.key_by_ref(str(ref)) if ref else None
        if key is None:
            raise e.NotFound(f"no key '{ref}' (give its id or its display prefix)")
        return key

    # --- reports ------------------------------------------------------------------------------------

    async def spend(self, scope: Scope, a: dict[str, Any]) -> tuple[str, str | None, Any]:
        by = _one(a, "by") or "key"
        if by not in SPEND_BY:
            raise e.InvalidRequest(f"'by' must be one of {', '.join(SPEND_BY)}", param="by")
        since, until = _period(a)
        return "spend.read", None, await spend_report(self.store, by, since, until)

    async def dependency(self, scope: Scope, a: dict[str, Any]) -> tuple[str, str | None, Any]:
        since, until = _period(a)
        return "dependency.read", None, await dependency_report(self.store, self.gov.cfg, since, until)

    async def audit(self, scope: Scope, a: dict[str, Any]) -> tuple[str, str | None, Any]:
        since, _ = _period(a)
        return "audit.read", None, {"data": await self.store.audit_rows(since=since, limit=_limit(a))}

    async def ledger(self, scope: Scope, a: dict[str, Any]) -> tuple[str, str | None, Any]:
        since, _ = _period(a)
        if self.gov.ledger is not None:
            await self.gov.ledger.flush()
        return "ledger.read", None, {"data": await self.store.ledger_rows(since=since, limit=_limit(a))}


def _limits(a: dict[str, Any]) -> dict[str, Any]:
    try:
        return check_limits({k: v for k, v in a.items() if k not in ("id", "name", "prefix")})
    except ValueError as exc:
        raise e.InvalidRequest(str(exc)) from None


def _query(scope: Scope) -> dict[str, Any]:
    qs = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(qs).items()}


def _one(a: dict[str, Any], name: str) -> str | None:
    v = a.get(name)
    return None if v is None else str(v)


def _period(a: dict[str, Any]) -> tuple[float, float | None]:
    try:
        since = parse_time(_one(a, "since") or "30d")
        until_s = _one(a, "until")
        return since, parse_time(until_s) if until_s else None
    except ValueError as exc:
        raise e.InvalidRequest(str(exc), param="since") from None


def _limit(a: dict[str, Any]) -> int:
    try:
        return max(1, min(10000, int(_one(a, "limit") or 100)))
    except ValueError:
        raise e.InvalidRequest("'limit' must be a whole number", param="limit") from None


def _client(scope: Scope) -> str | None:
    c = scope.get("client")
    return f"{c[0]}:{c[1]}" if c else None


def _audit_detail(a: dict[str, Any]) -> dict[str, Any] | None:
    return {k: v for k, v in a.items() if k != "key"} or None


def install(app: Any, gov: Governance) -> None:
    for (method, path), handler in AdminAPI(gov).routes().items():
        app.add_route(method, path, handler)
