"""The HTTP request this task is serving: read by the access log, log records and spans.

Set by the access middleware for every HTTP request; the ops policy adds the request's context
once the gateway has one. A context variable, because log calls deep in the request path have
no handle on the request.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from polyroute.core.context import RequestContext


class Current:
    __slots__ = ("client_request_id", "ctx", "request_id", "scope")

    def __init__(self, scope: Any, client_request_id: str | None) -> None:
        self.scope = scope
        # What the caller sent as x-request-id (sanitised): logged and echoed, never a ledger key.
        self.client_request_id = client_request_id
        self.ctx: RequestContext | None = None
        self.request_id: str | None = None


CURRENT: ContextVar[Current | None] = ContextVar("polyroute_current_request", default=None)


def current() -> Current | None:
    return CURRENT.get()
