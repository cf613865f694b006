"""Who may use the dashboard: administrators, by the master key or a virtual key of an admin team.

A login gives a session cookie holding a signed token (actor, expiry, nonce), so every worker
process accepts a session another worker issued. The signing key is derived from the master key
(slowly, with PBKDF2, because the tokens are visible to their holder) or given in settings; without
either it is random per process. Every request re-checks the actor: a revoked or expired admin key,
or one moved out of an admin team, loses its sessions at once.

State-changing calls also need the session's CSRF token in the `x-polyroute-csrf` header (a page
reads it from /ui/api/session) and, from a browser, Sec-Fetch-Site: same-origin; the cookie is
SameSite=Strict on top of that.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from polyroute.governance.keys import Key, hash_key, same_hash

if TYPE_CHECKING:
    from polyroute.governance.policy import Governance

COOKIE = "polyroute_ui"
CSRF_HEADER = b"x-polyroute-csrf"
MASTER = "master"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_secret(configured: str | None, master_key: str | None) -> tuple[bytes, bool]:
    """(signing key, whether every worker derives the same one)."""
    if configured:
        return _pbkdf2(configured, b"polyroute-ui-secret-v1"), True
    if master_key:
        return _pbkdf2(master_key, b"polyroute-ui-master-v1"), True
    return os.urandom(32), False


@functools.lru_cache(maxsize=4)
def _pbkdf2(secret: str, salt: bytes) -> bytes:
    # 100k rounds is ~0.1 s: once per process (a config reload or a test's new app reuses it).
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, 100_000)


class Signer:
    """HMAC-SHA256 signed JSON tokens: `v1.<payload>.<tag>`, base64url."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def mac(self, purpose: str, data: str) -> bytes:
        return hmac.new(self._key, f"{purpose}\x00{data}".encode(), hashlib.sha256).digest()

    def sign(self, purpose: str, payload: dict[str, Any]) -> str:
        body = _b64(orjson.dumps(payload))
        return f"v1.{body}.{_b64(self.mac(purpose, body))}"

    def verify(self, purpose: str, token: str) -> dict[str, Any] | None:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != "v1":
            return None
        try:
            tag = _unb64(parts[2])
            if not hmac.compare_digest(tag, self.mac(purpose, parts[1])):
                return None
            payload = orjson.loads(_unb64(parts[1]))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            return None
        return payload if isinstance(payload, dict) else None


@dataclass(frozen=True)
class Session:
    actor: str  # "master" or a key id
    label: str  # for people: "master key" / "admin key 'ops' (sk-pr-AbCd12)"
    nonce: str
    expires: float
    csrf: str


class Sessions:
    def __init__(self, signer: Signer, ttl: float) -> None:
        self.signer = signer
        self.ttl = ttl
        # Logged-out nonces until their expiry (per process: see docs/dashboard.md#sessions).
        self._ended: dict[str, float] = {}

    def issue(self, actor: str, label: str) -> tuple[str, Session]:
        nonce = _b64(os.urandom(18))
        expires = time.time() + self.ttl
        token = self.signer.sign("session", {"a": actor, "l": label, "n": nonce, "e": expires})
        return token, self._session(actor, label, nonce, expires)

    def _session(self, actor: str, label: str, nonce: str, expires: float) -> Session:
        return Session(actor, label, nonce, expires, _b64(self.signer.mac("csrf", nonce))[:32])

    def check(self, token: str | None) -> Session | None:
        if not token:
            return None
        p = self.signer.verify("session", token)
        if p is None:
            return None
        actor, label, nonce, expires = p.get("a"), p.get("l"), p.get("n"), p.get("e")
        if not (isinstance(actor, str) and isinstance(label, str) and isinstance(nonce, str)):
            return None
        if not isinstance(expires, int | float) or expires <= time.time() or nonce in self._ended:
            return None
        return self._session(actor, label, nonce, float(expires))

    def end(self, s: Session) -> None:
        now = time.time()
        self._ended = {n: e for n, e in self._ended.items() if e > now}
        self._ended[s.nonce] = s.expires

    @staticmethod
    def csrf_ok(s: Session, presented: bytes | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, s.csrf.encode())


class LoginThrottle:
    """At most `limit` failed logins per client address per `window` seconds."""

    def __init__(self, limit: int = 10, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._fails: dict[str, deque[float]] = {}

    def retry_after(self, client: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        q = self._fails.get(client)
        if not q:
            return 0.0
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._fails[client]
            return 0.0
        return q[0] + self.window - now if len(q) >= self.limit else 0.0

    def failed(self, client: str, now: float | None = None) -> None:
        if len(self._fails) > 10_000:  # a flood from many addresses must not grow memory unbounded
            self._fails.clear()
        self._fails.setdefault(client, deque()).append(time.monotonic() if now is None else now)


class LoginRefused(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class Admins:
    """Decides who is an administrator, from governance's keys (the key cache, never the request
    path's hot data structures: read-only use)."""

    def __init__(self, gov: Governance | None, admin_teams: list[str]) -> None:
        self.gov = gov
        self.admin_teams = frozenset(admin_teams)

    @property
    def possible(self) -> bool:
        return self.gov is not None

    def _is_admin_key(self, key: Key) -> bool:
        assert self.gov is not None
        team = self.gov.keys.teams.get(key.team_id)
        return team is not None and team.name in self.admin_teams

    async def login(self, secret: str) -> tuple[str, str]:
        """(actor, label) for a presented master or admin key; raises LoginRefused."""
        gov = self.gov
        if gov is None:
            raise LoginRefused(
                403, "the dashboard needs governance: set server.master_key (docs/dashboard.md)", "not_configured"
            )
        h = hash_key(secret)
        if gov.master_hash is not None and same_hash(h, gov.master_hash):
            return MASTER, "master key"
        key = await gov.keys.lookup(secret, h)
        if key is None or key.usable(time.time()) is not None:
            raise LoginRefused(401, "invalid, revoked or expired key", "invalid_key")
        if not self._is_admin_key(key):
            raise LoginRefused(
                403,
                f"key {key.prefix} is not an administrator's: admin keys belong to team(s) "
                f"{', '.join(sorted(self.admin_teams)) or '(none configured)'}",
                "not_admin",
            )
        return key.id, f"admin key '{key.name or key.prefix}' ({key.prefix})"

    def still_admin(self, actor: str) -> bool:
        gov = self.gov
        if gov is None:
            return False
        if actor == MASTER:
            return gov.master_hash is not None
        key = gov.keys.by_id.get(actor)
        return key is not None and key.usable(time.time()) is None and self._is_admin_key(key)
