"""Per-request state shared by the policies around the request path."""

from __future__ import annotations

import time
from typing import Any

from polyroute.core.errors import GatewayError
from polyroute.core.types import ChatRequest, EmbeddingRequest, RequestOptions, Usage


class Attempt:
    __slots__ = ("cost", "deployment", "error", "latency", "provider", "status", "usage")

    def __init__(self, deployment: str, provider: str) -> None:
        self.deployment = deployment
        self.provider = provider
        self.status = 0
        self.error: str | None = None
        self.latency = 0.0
        self.usage: Usage | None = None
        self.cost = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "provider": self.provider,
            "status": self.status,
            "error": self.error,
            "latency_ms": round(self.latency * 1000, 3),
            "cost": self.cost,
        }


class RequestContext:
    """Everything known about one request, filled in as it moves through the path."""

    __slots__ = (
        "allowed_models",
        "api",
        "api_key",
        "attempts",
        "cost",
        "deployment",
        "end_user",
        "error",
        "extra_headers",
        "fallback_reason",
        "key",
        "model_asked",
        "options",
        "output_text",
        "provider",
        "request",
        "request_id",
        "route",
        "route_choice",
        "started",
        "status",
        "stream",
        "tags",
        "ttft",
        "usage",
    )

    def __init__(self, request_id: str, api: str, api_key: str | None = None) -> None:
        self.request_id = request_id
        self.api = api
        # The key the caller presented; governance resolves it into `key` (a virtual key record).
        self.api_key = api_key
        self.key: Any = None
        self.started = time.monotonic()
        self.model_asked = ""
        self.route = ""
        self.deployment: str | None = None
        self.provider: str | None = None
        self.attempts: list[Attempt] = []
        self.usage: Usage | None = None
        self.cost = 0.0
        self.ttft: float | None = None
        self.status = 200
        self.error: GatewayError | None = None
        self.stream = False
        self.options: RequestOptions | None = None
        self.tags: list[str] | None = None
        self.end_user: str | None = None
        self.fallback_reason: str | None = None
        # The model a `quality` route chose for this request (the learned router's decision).
        self.route_choice: str | None = None
        self.extra_headers: list[tuple[bytes, bytes]] = []
        # The canonical request, set by the gateway before the policies run.
        self.request: ChatRequest | EmbeddingRequest | None = None
        # A policy that needs the answer (shadow traffic) sets this to [] in `before`; the gateway
        # then appends the first choice's text to it, so unsampled requests pay nothing.
        self.output_text: list[str] | None = None
        # Governance fills this in `before` with the models the caller's key may use (None: any);
        # the router answers 403 for the asked model and skips fallbacks outside it.
        self.allowed_models: frozenset[str] | set[str] | None = None

    def served_headers(self) -> list[tuple[bytes, bytes]]:
        h = [(b"x-request-id", self.request_id.encode())]
        # On failure, name the last deployment tried: the client's first question is "who failed?"
        last = self.attempts[-1] if self.attempts else None
        provider = self.provider or (last.provider if last else None)
        deployment = self.deployment or (last.deployment if last else None)
        if provider:
            h.append((b"x-polyroute-provider", provider.encode()))
        if deployment:
            h.append((b"x-polyroute-deployment", deployment.encode()))
        if self.route:
            h.append((b"x-polyroute-model", self.route.encode()))
        if self.attempts:
            h.append((b"x-polyroute-attempts", str(len(self.attempts)).encode()))
        if self.fallback_reason:
            h.append((b"x-polyroute-fallback-reason", self.fallback_reason.encode()))
        h.extend(self.extra_headers)
        return h
