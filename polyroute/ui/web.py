"""HTTP pieces the dashboard needs on top of server/http.py: security headers, cookies, queries."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

import orjson

from polyroute.server.http import Headers, Scope, Send, header, send_bytes

# Scripts and styles only from the gateway itself; no inline script (the import map is allowed by
# its hash, see static_files.py), nothing framed, nothing sent to third parties.
CSP = (
    "default-src 'none'; script-src 'self' {extra}; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-src 'self'; "
    "frame-ancestors 'none'"
)
# A compare report is a self-contained HTML file with inline CSS and SVG and no scripts: shown in a
# sandbox, with no script at all and no network.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'self'"

COMMON: Headers = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
NO_STORE = (b"cache-control", b"no-store")


def page_headers(script_hashes: str = "") -> Headers:
    return [*COMMON, (b"x-frame-options", b"DENY"), (b"content-security-policy", CSP.format(extra=script_hashes).encode())]


async def send_json(send: Send, status: int, obj: Any, extra: Headers | None = None) -> None:
    body = orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    h: Headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        NO_STORE,
        *COMMON,
    ]
    if extra:
        h.extend(extra)
    await send_bytes(send, status, body, h)


async def send_error(send: Send, status: int, message: str, code: str, extra: Headers | None = None) -> None:
    await send_json(send, status, {"error": {"message": message, "code": code}}, extra)


async def redirect(send: Send, location: str, extra: Headers | None = None) -> None:
    h: Headers = [(b"location", location.encode()), (b"content-length", b"0"), NO_STORE, *COMMON]
    if extra:
        h.extend(extra)
    await send_bytes(send, 303, b"", h)


def query(scope: Scope) -> dict[str, str]:
    """The query string, last value of each name wins; blank values are dropped."""
    qs = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(qs).items() if v and v[-1] != ""}


def cookie(scope: Scope, name: str) -> str | None:
    raw = header(scope, b"cookie")
    if raw is None:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw.decode("latin-1"))
    except Exception:  # a malformed Cookie header means no session, not a 500
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def set_cookie(name: str, value: str, *, max_age: int, secure: bool, path: str = "/ui") -> tuple[bytes, bytes]:
    parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return (b"set-cookie", "; ".join(parts).encode("latin-1"))


def client_address(scope: Scope) -> str:
    c = scope.get("client")
    return str(c[0]) if c else "unknown"


def is_https(scope: Scope) -> bool:
    return scope.get("scheme") == "https"


def same_origin(scope: Scope) -> bool:
    """Whether a browser says this state-changing request comes from one of the gateway's pages.

    Browsers send Sec-Fetch-Site on every request (Chromium, Firefox, Safari 16.4+); older ones send
    Origin on POST. A request with neither is not from a browser page (curl, a script), which has
    no session cookie to abuse, so it passes here and still needs the CSRF token."""
    site = header(scope, b"sec-fetch-site")
    if site is not None:
        return site == b"same-origin"
    origin = header(scope, b"origin")
    if origin is None:
        return True
    host = header(scope, b"x-forwarded-host") or header(scope, b"host") or b""
    _, _, rest = origin.partition(b"://")
    return rest.rstrip(b"/") == host.split(b",")[0].strip()
