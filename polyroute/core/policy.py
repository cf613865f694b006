"""Policies wrap the one request path: auth, limits, budgets before; settlement, ledger after.

They are composed once at start-up into an ordered list. `before` may refuse a request by raising
a GatewayError; `after` runs for every request that passed `before`, whatever happened, and must
not raise (its failures are logged, never shown to the client).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyroute.core import types as t
from polyroute.core.context import RequestContext

if TYPE_CHECKING:
    from polyroute.core.gateway import Gateway


class Policy:
    def attach(self, gateway: Gateway) -> None:
        """Called when the gateway is built and again after each config reload (with the same
        gateway, now holding the new catalogue), for policies that read the config or make calls."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def before(self, ctx: RequestContext, req: t.ChatRequest | t.EmbeddingRequest) -> None:
        pass

    async def after(self, ctx: RequestContext) -> None:
        pass
