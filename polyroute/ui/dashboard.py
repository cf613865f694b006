"""The dashboard's routes: pages, static files and the `/ui/api/...` data endpoints.

Every route is an exact path on the app's route table (objects are named in the query string or
the JSON body, as in the admin API), so the server's router needs no change. Everything but the
login page, its script and the style sheet needs an administrator's session; state-changing calls
also need the CSRF header (polyroute/ui/auth.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from polyroute.core import errors as e
from polyroute.governance.limits import period_starts
from polyroute.governance.policy import Governance, vendor_of_provider
from polyroute.governance.reports import parse_time
from polyroute.server.http import (
    ClientDisconnected,
    Headers,
    Receive,
    Scope,
    Send,
    header,
    read_json_object,
    send_bytes,
)
from polyroute.ui import admin_ops, live, queries, reports
from polyroute.ui.auth import (
    COOKIE,
    CSRF_HEADER,
    Admins,
    LoginRefused,
    LoginThrottle,
    Session,
    Sessions,
    Signer,
)
from polyroute.ui.buckets import BucketCache, grid_for
from polyroute.ui.playground import Playground
from polyroute.ui.reader import Reader, reader_for
from polyroute.ui.settings import UISettings
from polyroute.ui.static_files import Asset, load_assets
from polyroute.ui.web import (
    COMMON,
    REPORT_CSP,
    client_address,
    cookie,
    is_https,
    page_headers,
    query,
    redirect,
    same_origin,
    send_error,
    send_json,
    set_cookie,
)

if TYPE_CHECKING:
    from polyroute.server.app import App

log = logging.getLogger("polyroute.ui")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
ApiFn = Callable[[Session, dict[str, str], dict[str, Any], Scope], Awaitable[Any]]
PUBLIC_ASSETS = frozenset({"login.html", "login.js", "style.css"})
MAX_BODY = 256 * 1024


class Unavailable(e.GatewayError):
    status = 503


class Dashboard:
    def __init__(self, app: App, settings: UISettings, secret: bytes) -> None:
        self.app = app
        self.gateway = app.gateway
        self.settings = settings
        self.gov: Governance | None = next((p for p in self.gateway.policies if isinstance(p, Governance)), None)
        self.signer = Signer(secret)
        self.sessions = Sessions(self.signer, settings.session_ttl)
        self.admins = Admins(self.gov, settings.admin_teams)
        self.throttle = LoginThrottle()
        self.assets = load_assets()
        self.cache = BucketCache()
        self.playground = Playground(self.gateway, self.gov, self.signer, settings.preferences)
        self._reader: Reader | None = None

    # --- plumbing ---------------------------------------------------------------------------------

    def reader(self) -> Reader:
        if self.gov is None:
            raise Unavailable("no ledger: governance is not configured (docs/governance.md)")
        if self._reader is None:
            self._reader = reader_for(self.gov.store.db)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def session_of(self, scope: Scope) -> Session | None:
        s = self.sessions.check(cookie(scope, COOKIE))
        return s if s is not None and self.admins.still_admin(s.actor) else None

    async def audit(self, actor: str, action: str, target: str | None, detail: Any, scope: Scope) -> None:
        if self.gov is None:
            return
        try:
            await self.gov.store.audit(actor, action, target, detail, client_address(scope))
        except Exception as exc:
            log.warning("audit log write failed (%s)", type(exc).__name__)

    def routes(self) -> list[tuple[str, str, Handler]]:
        r: list[tuple[str, str, Handler]] = [
            ("GET", "/ui", self.index),
            ("GET", "/ui/", self.index),
            ("GET", "/ui/login", self.login_page),
            ("POST", "/ui/api/login", self.login),
            ("GET", "/ui/compare/report", self.compare_report_html),
        ]
        for name in self.assets:
            r.append(("GET", f"/ui/static/{name}", self._asset_handler(name)))
        api: list[tuple[str, str, ApiFn, bool]] = [
            ("GET", "session", self.api_session, False),
            ("POST", "logout", self.api_logout, True),
            ("GET", "filters", self.api_filters, False),
            ("GET", "overview", self.api_overview, False),
            ("GET", "overview/breakdown", self.api_breakdown, False),
            ("GET", "vendors", self.api_vendors, False),
            ("GET", "routes", self.api_routes, False),
            ("GET", "keys", self.api_keys, False),
            ("POST", "keys/create", self.api_key_create, True),
            ("POST", "keys/update", self.api_key_update, True),
            ("POST", "keys/revoke", self.api_key_revoke, True),
            ("POST", "teams/create", self.api_team_create, True),
            ("POST", "teams/update", self.api_team_update, True),
            ("GET", "ledger", self.api_ledger, False),
            ("GET", "ledger/request", self.api_ledger_request, False),
            ("GET", "compare/reports", self.api_compare_reports, False),
            ("GET", "compare/report", self.api_compare_report, False),
            ("GET", "playground/models", self.api_playground_models, False),
            ("POST", "playground/run", self.api_playground_run, True),
            ("POST", "playground/vote", self.api_playground_vote, True),
        ]
        for method, path, fn, write in api:
            r.append((method, f"/ui/api/{path}", self._api(fn, write)))
        return r

    def _api(self, fn: ApiFn, write: bool) -> Handler:
        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            s = self.session_of(scope)
            if s is None:
                await send_error(send, 401, "log in first (/ui/login)", "unauthenticated")
                return
            if write and not (same_origin(scope) and Sessions.csrf_ok(s, header(scope, CSRF_HEADER))):
                await send_error(send, 403, "missing or wrong CSRF token", "csrf")
                return
            try:
                body: dict[str, Any] = {}
                if scope["method"] == "POST":
                    body = await read_json_object(scope, receive, MAX_BODY)
                result = await fn(s, query(scope), body, scope)
                await send_json(send, 200, result)
            except e.GatewayError as err:
                await send_error(send, err.status, err.message, err.code or err.kind)
            except ClientDisconnected:
                return
            except Exception:
                log.exception("dashboard request %s %s failed", scope["method"], scope["path"])
                await send_error(send, 500, "internal error in the dashboard (see the gateway's log)", "internal")

        return handler

    def _asset_handler(self, name: str) -> Handler:
        asset = self.assets[name]
        public = name in PUBLIC_ASSETS

        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            if not public and self.session_of(scope) is None:
                await send_error(send, 401, "log in first (/ui/login)", "unauthenticated")
                return
            await self._send_asset(scope, send, asset)

        return handler

    async def _send_asset(self, scope: Scope, send: Send, asset: Asset, extra: Headers | None = None) -> None:
        h: Headers = [(b"etag", asset.etag), (b"cache-control", b"private, no-cache"), (b"vary", b"accept-encoding")]
        h += extra if extra is not None else [*COMMON]
        if header(scope, b"if-none-match") == asset.etag:
            await send_bytes(send, 304, b"", h)
            return
        body = asset.body
        accept = header(scope, b"accept-encoding") or b""
        if asset.gzipped is not None and b"gzip" in accept:
            body = asset.gzipped
            h.append((b"content-encoding", b"gzip"))
        h += [(b"content-type", asset.content_type), (b"content-length", str(len(body)).encode())]
        await send_bytes(send, 200, body, h)

    # --- pages ------------------------------------------------------------------------------------

    async def index(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.session_of(scope) is None:
            await redirect(send, "/ui/login")
            return
        asset = self.assets["index.html"]
        await self._send_asset(scope, send, asset, page_headers(asset.script_hashes))

    async def login_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        asset = self.assets["login.html"]
        await self._send_asset(scope, send, asset, page_headers(asset.script_hashes))

    async def login(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = client_address(scope)
        if not same_origin(scope):
            await send_error(send, 403, "cross-site login refused", "csrf")
            return
        ctype = header(scope, b"content-type") or b""
        if not ctype.startswith(b"application/json"):
            await send_error(send, 415, "send JSON: {\"key\": \"...\"}", "unsupported_media_type")
            return
        wait = self.throttle.retry_after(client)
        if wait > 0:
            await send_error(send, 429, "too many failed logins: wait and try again", "rate_limited",
                             [(b"retry-after", str(int(wait) + 1).encode())])  # fmt: skip
            return
        try:
            body = await read_json_object(scope, receive, 8192)
        except e.GatewayError as err:
            await send_error(send, err.status, err.message, err.code or err.kind)
            return
        except ClientDisconnected:
            return
        secret = body.get("key")
        if not isinstance(secret, str) or not secret.strip():
            await send_error(send, 400, "enter the master key or an admin key", "missing_key")
            return
        try:
            actor, label = await self.admins.login(secret.strip())
        except LoginRefused as r:
            self.throttle.failed(client)
            await self.audit("ui", "ui.login.failed", None, {"reason": r.code}, scope)
            await send_error(send, r.status, r.message, r.code)
            return
        token, s = self.sessions.issue(actor, label)
        await self.audit(f"ui:{actor}", "ui.login", actor, None, scope)
        set_c = set_cookie(COOKIE, token, max_age=int(self.settings.session_ttl), secure=is_https(scope))
        await send_json(send, 200, {"actor": actor, "label": label, "csrf": s.csrf, "expires": s.expires}, [set_c])

    async def compare_report_html(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.session_of(scope) is None:
            await send_error(send, 401, "log in first (/ui/login)", "unauthenticated")
            return
        body = reports.report_html(self.settings.reports_dir, query(scope).get("name", ""))
        if body is None:
            await send_error(send, 404, "no such report", "not_found")
            return
        await send_bytes(send, 200, body, [
            (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"), (b"content-security-policy", REPORT_CSP.encode()),
            (b"x-frame-options", b"SAMEORIGIN"), *COMMON,
        ])  # fmt: skip

    # --- data -------------------------------------------------------------------------------------

    async def api_session(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        gov = self.gov
        return {
            "actor": s.actor,
            "label": s.label,
            "csrf": s.csrf,
            "expires": s.expires,
            "database": gov.store.db.dialect if gov is not None else None,
            "ledger": gov is not None and gov.ledger is not None,
            "config_hash": self.gateway.config_hash,
        }

    async def api_logout(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        self.sessions.end(s)
        await self.audit(f"ui:{s.actor}", "ui.logout", s.actor, None, scope)
        return {"ok": True}

    async def api_filters(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        gov = self._gov()
        keys, teams = await admin_ops.keys_and_teams(gov, include_revoked=True)
        cfg = self.gateway.config
        return {
            "teams": [{"id": t.id, "name": t.name} for t in teams],
            "keys": [{"id": k.id, "name": k.name, "prefix": k.prefix, "team_id": k.team_id,
                      "revoked": k.revoked_at is not None} for k in keys],
            "models": sorted(cfg.models),
            "providers": sorted(cfg.providers),
            "vendors": sorted({vendor_of_provider(n, p.type) for n, p in cfg.providers.items()}),
        }

    def _period(self, q: dict[str, str], default: str = "24h") -> tuple[float, float]:
        try:
            since = parse_time(q.get("since") or default)
            until = parse_time(q["until"]) if q.get("until") else time.time()
        except ValueError as exc:
            raise e.InvalidRequest(str(exc), param="since") from None
        if until <= since:
            raise e.InvalidRequest("'until' must be after 'since'", param="until")
        return since, until

    async def _flush(self) -> None:
        """Rows still queued in this process go to the database (bounded: a slow database must not
        hold the page). Only where a person looks for one request they just made: under constant
        traffic the queue is never empty, and every page would wait."""
        gov = self.gov
        if gov is not None and gov.ledger is not None:
            with contextlib.suppress(Exception):  # returns at once when nothing is queued or in flight
                await gov.ledger.flush(limit=1.0)

    async def api_overview(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        since, until = self._period(q)
        t0 = time.perf_counter()
        out = await queries.overview(self.reader(), self.cache, grid_for(since, until), queries.Filters.from_query(q))
        out["query_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out

    async def api_breakdown(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        since, until = self._period(q)
        return await queries.breakdown(self.reader(), self.cache, grid_for(since, until), queries.Filters.from_query(q))

    async def api_vendors(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        since, until = self._period(q, "7d")
        reader = self.reader()
        series = await queries.vendor_series(reader, self.cache, grid_for(since, until))
        recent = await queries.recent_attempts(reader, live.HEALTH_WINDOW)
        risk = live.vendors_at_risk(self.gateway, recent)
        for v in series["totals"]:
            r = risk.get(v["vendor"], {"breaks": [], "at_risk": []})
            v["models_broken_if_lost"], v["models_at_risk_if_lost"] = r["breaks"], r["at_risk"]
        known = {v["vendor"] for v in series["totals"]}
        for v, r in sorted(risk.items()):
            if v not in known:
                series["totals"].append({"vendor": v, "requests": 0, "requests_share": 0.0, "tokens": 0,
                                         "tokens_share": 0.0, "cost": 0.0, "cost_share": 0.0, "attempts": 0,
                                         "failed_attempts": 0, "models_broken_if_lost": r["breaks"],
                                         "models_at_risk_if_lost": r["at_risk"]})  # fmt: skip
        series["models"] = live.coverage(self.gateway, recent)
        series["health_window"] = live.HEALTH_WINDOW
        return series

    async def api_routes(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        recent: dict[str, dict[str, float]] = {}
        minute: dict[str, dict[str, float]] = {}
        if self.gov is not None:
            reader = self.reader()
            recent = await queries.recent_attempts(reader, live.HEALTH_WINDOW)
            minute = await queries.recent_attempts(reader, live.CAPACITY_WINDOW)
        return {"routes": live.routes_view(self.gateway, recent, minute), "health_window": live.HEALTH_WINDOW}

    async def api_keys(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        gov = self._gov()
        keys, teams = await admin_ops.keys_and_teams(gov, include_revoked=q.get("revoked") in ("1", "true"))
        _, month_start = period_starts(time.time())
        spend = await queries.key_spend(self.reader(), self.cache, grid_for(month_start, time.time(), 86400))
        key_month, team_month, key_day, team_day = spend["key"], spend["team"], spend["key_last"], spend["team_last"]
        names = {t.id: t.name for t in teams}

        async def budget(subject: str, limits: dict[str, Any]) -> dict[str, float] | None:
            if limits.get("budget_daily") is None and limits.get("budget_monthly") is None:
                return None
            return await admin_ops.budget_status(gov, subject)

        out_keys = []
        for k in keys:
            pub = k.public()
            pub["team_name"] = names.get(k.team_id)
            pub["spend_today"] = key_day.get(k.id, {}).get("cost", 0.0)
            pub["spend_month"] = key_month.get(k.id, {}).get("cost", 0.0)
            pub["requests_month"] = int(key_month.get(k.id, {}).get("requests", 0))
            pub["budget_status"] = await budget(f"key:{k.id}", pub)
            pub["admin"] = names.get(k.team_id) in self.admins.admin_teams
            out_keys.append(pub)
        out_teams = []
        for t in teams:
            pub = admin_ops.team_public(t)
            pub["spend_today"] = team_day.get(t.id, {}).get("cost", 0.0)
            pub["spend_month"] = team_month.get(t.id, {}).get("cost", 0.0)
            pub["keys"] = sum(1 for k in keys if k.team_id == t.id and k.revoked_at is None)
            pub["budget_status"] = await budget(f"team:{t.id}", pub)
            out_teams.append(pub)
        return {"keys": out_keys, "teams": out_teams, "admin_teams": sorted(self.admins.admin_teams)}

    async def _key_op(
        self, s: Session, b: dict[str, Any], scope: Scope, action: str,
        op: Callable[[Governance, dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> Any:  # fmt: skip
        result = await op(self._gov(), dict(b))
        detail = {k: v for k, v in b.items() if k != "key"} or None
        await self.audit(f"ui:{s.actor}", action, str(result.get("id")), detail, scope)
        return result

    async def api_key_create(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        return await self._key_op(s, b, scope, "keys.create", admin_ops.new_key)

    async def api_key_update(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        return await self._key_op(s, b, scope, "keys.update", admin_ops.update_key)

    async def api_key_revoke(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        return await self._key_op(s, b, scope, "keys.revoke", admin_ops.revoke_key)

    async def api_team_create(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        return await self._key_op(s, b, scope, "teams.create", admin_ops.create_team)

    async def api_team_update(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        return await self._key_op(s, b, scope, "teams.update", admin_ops.update_team)

    async def api_ledger(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        since, until = self._period(q, "30d")
        try:
            limit = max(1, min(200, int(q.get("limit") or 50)))
        except ValueError:
            raise e.InvalidRequest("'limit' must be a whole number", param="limit") from None
        reader = self.reader()
        rid = q.get("request_id")
        if rid:
            row = await queries.ledger_request(reader, rid)
            if row is None:
                await self._flush()
                row = await queries.ledger_request(reader, rid)
            return {"rows": [row] if row is not None else [], "next": None}
        return await queries.ledger_page(
            reader, queries.Filters.from_query(q), since=since, until=until, status=q.get("status"),
            cursor=q.get("cursor"), limit=limit,
        )  # fmt: skip

    async def api_ledger_request(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        rid = q.get("id")
        if not rid:
            raise e.InvalidRequest("give the request id: ?id=req_...", param="id")
        row = await queries.ledger_request(self.reader(), rid)
        if row is None:
            await self._flush()
            row = await queries.ledger_request(self.reader(), rid)
        if row is None:
            raise e.NotFound(f"no request '{rid}' in the ledger")
        return row

    async def api_compare_reports(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        folder = self.settings.reports_dir
        return {"folder": folder, "reports": await asyncio.to_thread(reports.list_reports, folder)}

    async def api_compare_report(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        detail = await asyncio.to_thread(reports.report_detail, self.settings.reports_dir, q.get("name", ""))
        if detail is None:
            raise e.NotFound("no such report")
        return detail

    async def api_playground_models(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        return {"models": self.playground.models(), "preferences": self.settings.preferences}

    async def api_playground_run(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        return await self.playground.run(b, s.actor)

    async def api_playground_vote(self, s: Session, q: dict[str, str], b: dict[str, Any], scope: Scope) -> Any:
        out = await self.playground.vote(b)
        await self.audit(f"ui:{s.actor}", "playground.vote", None, {"winner": b.get("winner"),
                                                                    "models": out["models"]}, scope)  # fmt: skip
        return out

    def _gov(self) -> Governance:
        if self.gov is None:
            raise Unavailable("governance is not configured (docs/governance.md)")
        return self.gov
