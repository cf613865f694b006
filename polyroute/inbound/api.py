"""What an inbound chat API provides to the server: parse, render, stream-render, error-render.

The server runs the same handler for every API; only this translator differs.
"""

from __future__ import annotations

from typing import Any, Protocol

from polyroute.core import types as t
from polyroute.core.errors import GatewayError


class StreamRenderer(Protocol):
    def render(self, ev: t.StreamEvent) -> bytes: ...

    def done(self) -> bytes: ...

    def error(self, err: GatewayError) -> bytes: ...


class ChatAPI(Protocol):
    name: str  # "openai" | "anthropic", also the ledger's `api` column

    def parse(self, body: bytes) -> t.ChatRequest: ...

    def render(self, resp: t.ChatResponse, req: t.ChatRequest) -> dict[str, Any]: ...

    def stream_renderer(self, req: t.ChatRequest) -> StreamRenderer: ...

    def error_body(self, err: GatewayError) -> dict[str, Any]: ...
