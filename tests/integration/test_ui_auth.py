"""Who gets into the dashboard: every page and data endpoint refuses anyone without an
administrator's session; the cookie's attributes; CSRF on every state-changing call; admin
virtual keys (and losing admin rights); login throttling; the vendored files as pinned."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polyroute.emulators.testing import EmulatorServer
from polyroute.ui.auth import COOKIE
from tests.helpers.governance import MASTER, governance_yaml
from tests.helpers.ui import UIClient, ui_gateway

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def config(tmp_path: Path, emu: EmulatorServer) -> str:
    return governance_yaml(f"sqlite:///{tmp_path}/g.db", tmp_path / "spool") + f"""
providers:
  up: {{type: openai, base_url: '{emu.sdk_base_url}', api_key: sk-upstream}}
models:
  cheap:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
  premium:
    deployments: [{{provider: up, model: gpt-4o}}]
"""


def api_routes(u_routes: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(m, p) for m, p in u_routes if p.startswith("/ui/api/") and p != "/ui/api/login"]


def test_everything_is_refused_without_a_session(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    with ui_gateway(config(tmp_path, openai_emulator), tmp_path) as u:
        routes = [(m, p) for m, p, _ in u.dash.routes()]
        c = u.client()
        endpoints = api_routes(routes)
        assert len(endpoints) >= 20
        for method, path in endpoints:
            status, raw, _ = c.request(method, path, {} if method == "POST" else None)
            assert status == 401, (method, path, status)
            assert json.loads(raw)["error"]["code"] == "unauthenticated"
        for path in ("/ui", "/ui/"):
            status, _, h = c.request("GET", path)
            assert status == 303 and h["location"] == "/ui/login"
        # The application's code and libraries too; only the sign-in page and its assets are public.
        for _, path in routes:
            if path.startswith("/ui/static/"):
                name = path.removeprefix("/ui/static/")
                status, _, _ = c.request("GET", path)
                assert status == (200 if name in ("login.html", "login.js", "style.css") else 401), path
        assert c.request("GET", "/ui/compare/report?name=x")[0] == 401
        status, body, h = c.request("GET", "/ui/login")
        assert status == 200 and b'id="login"' in body
        assert "default-src 'none'" in h["content-security-policy"] and h["x-frame-options"] == "DENY"
        # A forged or tampered cookie is no session either.
        c.jar.clear()
        status, _, _ = c.request("GET", "/ui/api/session", headers={"cookie": f"{COOKIE}=v1.e30.AAAA"})
        assert status == 401


def test_master_login_cookie_and_csrf(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    with ui_gateway(config(tmp_path, openai_emulator), tmp_path) as u:
        c = u.client()
        status, raw, h = c.request("POST", "/ui/api/login", {"key": MASTER})
        assert status == 200
        cookie = h["set-cookie"]
        for attr in ("HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"):
            assert attr in cookie, cookie
        assert "Secure" not in cookie  # plain http here; Secure when the gateway is reached over https
        assert MASTER not in cookie
        c.csrf = json.loads(raw)["csrf"]
        assert c.get("session")[0] == 200
        status, page, h = c.request("GET", "/ui/")
        assert status == 200 and b"importmap" in page
        # The import map is the one inline script, allowed by its hash and nothing else.
        csp = h["content-security-policy"]
        assert "'sha256-" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp

        body = {"name": "x"}
        assert c.post("teams/create", body, csrf=False)[0] == 403  # no token
        status, raw, _ = c.request("POST", "/ui/api/teams/create", body, {"x-polyroute-csrf": "wrong"})
        assert status == 403
        status, raw, _ = c.request(  # the right token from a cross-site page
            "POST", "/ui/api/teams/create", body, {"x-polyroute-csrf": c.csrf or "", "sec-fetch-site": "cross-site"}
        )
        assert status == 403
        status, raw, _ = c.request(  # an older browser: Origin instead of Sec-Fetch-Site
            "POST", "/ui/api/teams/create", body,
            {"x-polyroute-csrf": c.csrf or "", "sec-fetch-site": "", "origin": "http://evil.example"},
        )  # fmt: skip
        assert status == 403
        assert c.get("filters")[1]["teams"] == []  # nothing was created by the refused calls
        assert c.post("teams/create", body)[0] == 200

        # Cross-site and non-JSON logins are refused before the key is even looked at.
        other = u.client()
        assert other.request("POST", "/ui/api/login", {"key": MASTER}, {"sec-fetch-site": "cross-site"})[0] == 403
        status, _, _ = other.request("POST", "/ui/api/login", None, {"content-type": "text/plain"})
        assert status == 415

        # Logging out ends the session, even if the cookie is kept and replayed.
        token = next(ck.value for ck in c.jar if ck.name == COOKIE)
        assert c.post("logout")[0] == 200
        replay = UIClient(u.base_url)
        status, _, _ = replay.request("GET", "/ui/api/session", headers={"cookie": f"{COOKIE}={token}"})
        assert status == 401


def test_expired_session_is_refused(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    with ui_gateway(config(tmp_path, openai_emulator), tmp_path) as u:
        old = u.dash.signer.sign("session", {"a": "master", "l": "master key", "n": "abc", "e": time.time() - 1})
        c = u.client()
        assert c.request("GET", "/ui/api/session", headers={"cookie": f"{COOKIE}={old}"})[0] == 401
        fresh = u.dash.signer.sign("session", {"a": "master", "l": "master key", "n": "abc", "e": time.time() + 60})
        assert c.request("GET", "/ui/api/session", headers={"cookie": f"{COOKIE}={fresh}"})[0] == 200


def test_admin_virtual_keys(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    with ui_gateway(config(tmp_path, openai_emulator), tmp_path) as u:
        master = u.client()
        assert master.login(MASTER)[0] == 200
        assert master.post("teams/create", {"name": "admin"})[0] == 200
        status, admin_key = master.post("keys/create", {"team": "admin", "name": "ops"})
        assert status == 200
        status, plain_key = master.post("keys/create", {"name": "app"})
        assert status == 200

        plain = u.client()
        status, body = plain.login(plain_key["key"])
        assert status == 403 and body["error"]["code"] == "not_admin"
        assert plain.get("overview")[0] == 401

        ops = u.client()
        status, body = ops.login(admin_key["key"])
        assert status == 200 and body["actor"] == admin_key["id"]
        assert ops.get("keys")[0] == 200
        assert ops.post("keys/create", {"name": "made-by-ops"})[0] == 200

        # Revoking the admin key ends its sessions at once.
        assert master.post("keys/revoke", {"id": admin_key["id"]})[0] == 200
        assert ops.get("keys")[0] == 401
        assert u.client().login(admin_key["key"])[0] == 401

        # The audit log names who did what from the dashboard.
        rows = u.g.run(u.g.gov.store.audit_rows(limit=100))
        actions = {(r["actor"], r["action"]) for r in rows}
        assert ("ui:master", "keys.create") in actions
        assert (f"ui:{admin_key['id']}", "keys.create") in actions
        assert ("ui", "ui.login.failed") in actions
        assert all(plain_key["key"] not in json.dumps(r) and admin_key["key"] not in json.dumps(r) for r in rows)


def test_failed_logins_are_throttled(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    with ui_gateway(config(tmp_path, openai_emulator), tmp_path) as u:
        c = u.client()
        statuses = [c.login(f"wrong-key-{i}")[0] for i in range(12)]
        assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
        status, _, h = c.request("POST", "/ui/api/login", {"key": MASTER})
        assert status == 429 and int(h["retry-after"]) > 0  # even the right key waits


def test_report_names_cannot_escape_the_folder(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    (reports / "run1").mkdir(parents=True)
    (reports / "run1" / "summary.json").write_text(json.dumps({"models": {}}))
    (reports / "run1" / "report.html").write_text("<html><body>ok</body></html>")
    (tmp_path / "summary.json").write_text("{}")  # a folder above the reports folder
    with ui_gateway(config(tmp_path, openai_emulator), tmp_path) as u:
        c = u.client()
        c.login(MASTER)
        status, body, h = c.request("GET", "/ui/compare/report?name=run1")
        assert status == 200 and body == b"<html><body>ok</body></html>"
        assert "sandbox" in h["content-security-policy"] and "script-src" not in h["content-security-policy"]
        for bad in ("..", "../reports/run1", "/etc", ".", "run1/../..", "run1%00"):
            assert c.request("GET", f"/ui/compare/report?name={bad}")[0] == 404, bad
            assert c.get("compare/report", name=bad)[0] == 404, bad


def test_vendored_libraries_match_their_manifest() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "ui" / "vendor.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_settings_from_the_environment_or_a_ui_section() -> None:
    from types import SimpleNamespace

    from polyroute.ui.settings import UISettings, resolve

    env = {"POLYROUTE_UI_ADMIN_TEAMS": "ops, sre", "POLYROUTE_UI_SESSION_TTL": "600", "POLYROUTE_UI_ENABLED": "no",
           "POLYROUTE_UI_REPORTS_DIR": "/srv/compare"}  # fmt: skip
    s = resolve(SimpleNamespace(), env)
    assert s.admin_teams == ["ops", "sre"] and s.session_ttl == 600.0 and not s.enabled
    assert s.reports_dir == "/srv/compare" and s.preferences == "polyroute-preferences.jsonl"
    assert resolve(SimpleNamespace(), {}) == UISettings()
    # A `ui:` section of the config, once the schema has one, wins over the environment.
    section = resolve(SimpleNamespace(ui={"reports_dir": "reports", "admin_teams": ["root"]}), env)
    assert section.reports_dir == "reports" and section.admin_teams == ["root"] and section.enabled


def test_without_governance_nobody_signs_in(openai_emulator: EmulatorServer) -> None:
    from tests.helpers.gateway import run_gateway

    cfg = f"""
providers:
  up: {{type: openai, base_url: '{openai_emulator.sdk_base_url}', api_key: k}}
models:
  m: {{deployments: [{{provider: up, model: gpt-4o}}]}}
"""
    with run_gateway(cfg) as g:  # the app factory's routes: the dashboard is installed, but closed
        c = UIClient(g.base_url)
        status, body = c.login("anything")
        assert status == 403 and body["error"]["code"] == "not_configured"
        assert c.request("GET", "/ui")[0] == 303 and c.get("overview")[0] == 401
