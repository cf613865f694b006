"""A governed gateway with the dashboard installed, and an HTTP client that behaves like the
dashboard's pages (session cookie, CSRF header, Sec-Fetch-Site), for the tests/integration/test_ui_*.

    with ui_gateway(yaml_text, tmp_path) as u:
        c = u.client()
        c.login(MASTER)
        status, body = c.get("overview", since="1h")
"""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyroute.ui import UISettings, install
from polyroute.ui.dashboard import Dashboard
from tests.helpers.governance import Governed, governed


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class UIClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())
        self.csrf: str | None = None

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        # An empty value leaves the header out (e.g. an older browser without Sec-Fetch-Site).
        h = {k: v for k, v in {"sec-fetch-site": "same-origin", **(headers or {})}.items() if v != ""}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("content-type", "application/json")
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=h)
        try:
            with self.opener.open(req, timeout=60) as r:
                return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()}

    def login(self, key: str) -> tuple[int, Any]:
        status, raw, _ = self.request("POST", "/ui/api/login", {"key": key})
        body = json.loads(raw) if raw else None
        if status == 200 and body is not None:
            self.csrf = body["csrf"]
        return status, body

    def get(self, endpoint: str, **params: Any) -> tuple[int, Any]:
        qs = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        status, raw, _ = self.request("GET", f"/ui/api/{endpoint}" + (f"?{qs}" if qs else ""))
        return status, json.loads(raw) if raw else None

    def post(self, endpoint: str, body: Any = None, *, csrf: bool = True) -> tuple[int, Any]:
        headers = {"x-polyroute-csrf": self.csrf or ""} if csrf else {}
        status, raw, _ = self.request("POST", f"/ui/api/{endpoint}", body or {}, headers)
        return status, json.loads(raw) if raw else None


@dataclass
class UIGateway:
    g: Governed
    dash: Dashboard

    @property
    def base_url(self) -> str:
        return self.g.base_url

    def client(self) -> UIClient:
        return UIClient(self.g.base_url)

    def flush(self) -> None:
        """Every finished request's ledger row into the database (the dashboard reads it there)."""
        self.g.flush()


@contextmanager
def ui_gateway(config: str, tmp_path: Path, **settings: Any) -> Iterator[UIGateway]:
    defaults: dict[str, Any] = {"reports_dir": str(tmp_path / "reports"), "preferences": str(tmp_path / "prefs.jsonl")}
    with governed(config) as g:
        dash = install(g.g.app, UISettings(**{**defaults, **settings}))
        assert dash is not None
        try:
            yield UIGateway(g, dash)
        finally:
            dash.close()
