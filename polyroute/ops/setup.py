"""Wiring: the ops policy for a config, and its routes and access log on the app."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from polyroute.config.load import ConfigError
from polyroute.config.schema import Config
from polyroute.core.policy import Policy

if TYPE_CHECKING:
    from polyroute.ops.policy import OpsPolicy
    from polyroute.server.app import App

OTEL_PACKAGES = "opentelemetry-api, opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http"


def check(cfg: Config, source: str = "config") -> None:
    ops = cfg.ops
    if ops is None:
        return
    if ops.tracing.enabled:
        missing = [m for m in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")
                   if _find(m) is None]
        if missing:
            raise ConfigError(source, "ops.tracing.enabled", f"tracing needs the OpenTelemetry packages ({OTEL_PACKAGES})",
                              "pip install 'polyroute[otel]', or set ops.tracing.enabled: false")


def _find(module: str) -> object | None:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def ops_policies(cfg: Config) -> list[Policy]:
    """The ops policy; it must come last in the policy list (see policy.py)."""
    from polyroute.ops.policy import OpsPolicy

    check(cfg)
    return [OpsPolicy(cfg)]


def ops_of(app: App) -> OpsPolicy | None:
    from polyroute.ops.policy import OpsPolicy

    for p in app.gateway.policies:
        if isinstance(p, OpsPolicy):
            return p
    return None


def install_ops(app: App) -> bool:
    """Add /metrics, /health/ready (extended) and /admin/reload, and the access-log wrapper."""
    from polyroute.ops import routes
    from polyroute.ops.access import AccessMiddleware

    policy = ops_of(app)
    if policy is None:
        return False
    routes.install(app, policy)
    dispatch = getattr(app, "dispatch", None)
    if dispatch is not None:
        app.http = AccessMiddleware(dispatch, log_requests=policy.config.logging.access_log)
    return True
