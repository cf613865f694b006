"""The dashboard at /ui, served by the gateway itself (docs/dashboard.md).

    from polyroute.ui import install
    install(app)            # adds /ui, /ui/login, /ui/static/..., /ui/api/... to the app's routes
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from polyroute.ui.settings import UISettings, resolve

if TYPE_CHECKING:
    from polyroute.server.app import App
    from polyroute.ui.dashboard import Dashboard

log = logging.getLogger("polyroute.ui")

__all__ = ["UISettings", "install"]


def install(app: App, settings: UISettings | None = None) -> Dashboard | None:
    """Add the dashboard's routes to `app`; returns it, or None when `ui.enabled` is false."""
    from polyroute.ui.auth import derive_secret
    from polyroute.ui.dashboard import Dashboard

    cfg = app.gateway.config
    settings = settings if settings is not None else resolve(cfg)
    if not settings.enabled:
        return None
    secret, shared = derive_secret(settings.secret, cfg.server.master_key)
    if not shared and cfg.server.workers > 1:
        log.warning(
            "dashboard: no master key and no ui secret: each of the %d workers signs its own sessions, so "
            "logins will not stick; set POLYROUTE_UI_SECRET (docs/dashboard.md)",
            cfg.server.workers,
        )
    dash = Dashboard(app, settings, secret)
    for method, path, handler in dash.routes():
        app.add_route(method, path, handler)
    return dash
