"""The access log and request ids, as a wrapper around the app's HTTP dispatch.

Every HTTP response carries `x-request-id` (the gateway's own id: unique, the ledger's key). A
caller's own `x-request-id` is accepted as a correlation id: sanitised, at most 128 characters,
written on the access line and on every log line of the request as `client_request_id`, put on
the trace span, and echoed back as `x-client-request-id`. It does not replace the gateway's id,
because the ledger keys rows by request id and skips duplicates: a caller reusing an id would
otherwise make requests vanish from spend accounting.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from polyroute.ops.current import CURRENT, Current
from polyroute.server.http import Message, Receive, Scope, Send, header, new_request_id

MAX_REQUEST_ID = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/+=@-]")

access_log = logging.getLogger("polyroute.access")
# Load balancer probes and scrapes arrive every few seconds: DEBUG, so the access log is traffic.
QUIET_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})


def client_request_id(raw: bytes | None) -> str | None:
    """The caller's request id with anything but [A-Za-z0-9._:/+=@-] removed, cut to 128."""
    if not raw:
        return None
    cleaned = _UNSAFE.sub("", raw[: MAX_REQUEST_ID * 4].decode("latin-1"))[:MAX_REQUEST_ID]
    return cleaned or None


def client_address(scope: Scope) -> str | None:
    c = scope.get("client")
    return c[0] if c else None


def access_fields(cur: Current, method: str, path: str, status: int, seconds: float) -> dict[str, Any]:
    f: dict[str, Any] = {
        "request_id": cur.request_id,
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "client": client_address(cur.scope),
    }
    if cur.client_request_id is not None:
        f["client_request_id"] = cur.client_request_id
    ctx = cur.ctx
    if ctx is not None:
        f["request_id"] = ctx.request_id
        f["api"] = ctx.api
        f["model"] = ctx.route or None
        if ctx.model_asked and ctx.model_asked != ctx.route:
            f["model_asked"] = ctx.model_asked
        last = ctx.attempts[-1] if ctx.attempts else None
        # On failure, the last deployment tried: the first question is "who failed?"
        f["provider"] = ctx.provider or (last.provider if last else None)
        f["deployment"] = ctx.deployment or (last.deployment if last else None)
        f["stream"] = ctx.stream
        u = ctx.usage
        f["input_tokens"] = u.input_tokens if u is not None else 0
        f["output_tokens"] = u.output_tokens if u is not None else 0
        f["cost"] = round(ctx.cost, 8)
        f["attempts"] = len(ctx.attempts)
        if ctx.ttft is not None and ctx.stream:
            f["ttft_ms"] = round(ctx.ttft * 1000, 3)
        if ctx.status != status:
            # A stream that failed after its 200 header, or a request the client left.
            f["result_status"] = ctx.status
        if ctx.error is not None:
            f["error"] = ctx.error.kind
        if ctx.fallback_reason:
            f["fallback_reason"] = ctx.fallback_reason
        key = ctx.key
        key_id = getattr(key, "id", None) if key is not None else None
        if isinstance(key_id, str):
            f["key_id"] = key_id
    return f


class AccessMiddleware:
    """Wraps `App.dispatch`: request ids on every response, one access line per request."""

    def __init__(self, dispatch: Any, *, log_requests: bool = True) -> None:
        self.dispatch = dispatch
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        cur = Current(scope, client_request_id(header(scope, b"x-request-id")))
        token = CURRENT.set(cur)
        status = 0

        async def send_with_ids(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                headers = msg.get("headers") or []
                rid = None
                for k, v in headers:
                    if k == b"x-request-id":
                        rid = v
                        break
                added = []
                if rid is None:
                    cur.request_id = new_request_id()
                    added.append((b"x-request-id", cur.request_id.encode()))
                else:
                    cur.request_id = rid.decode("latin-1")
                if cur.client_request_id is not None:
                    added.append((b"x-client-request-id", cur.client_request_id.encode()))
                if added:
                    msg = {**msg, "headers": [*headers, *added]}
            await send(msg)

        try:
            await self.dispatch(scope, receive, send_with_ids)
        finally:
            CURRENT.reset(token)
            path = scope["path"]
            level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
            if self.log_requests and access_log.isEnabledFor(level):
                if status == 0:
                    # No response went out: the client left first.
                    status = cur.ctx.status if cur.ctx is not None and cur.ctx.status != 200 else 499
                fields = access_fields(cur, scope["method"], path, status, time.monotonic() - started)
                # makeRecord + handle: what Logger.log does, minus finding the caller's frame.
                record = access_log.makeRecord(
                    access_log.name, level, "", 0, "%s %s %d", (scope["method"], path, status), None, extra=fields
                )
                access_log.handle(record)
