"""Builds the ASGI app from the config; used by `polyroute serve` in every worker process."""

from __future__ import annotations

import logging
import os

from polyroute.config.defaults import default_config
from polyroute.config.load import config_hash, load_config
from polyroute.config.schema import Config
from polyroute.core.gateway import Gateway
from polyroute.core.policy import Policy
from polyroute.server.app import App

log = logging.getLogger("polyroute")

CONFIG_ENV = "POLYROUTE_CONFIG"


def resolve_config(path: str | None) -> tuple[Config, str, str]:
    """(config, its hash, where it came from). Without a file: in-house model + keys in env."""
    if path:
        cfg, digest = load_config(path)
        return cfg, digest, path
    cfg = default_config(os.environ)
    return cfg, config_hash(cfg), "built-in defaults (in-house model + vendors with keys in the environment)"


def build_policies(cfg: Config) -> list[Policy]:
    # Governance (keys, limits, budgets, ledger) plugs in here once configured.
    from polyroute.evaluation.shadow import shadow_policies
    from polyroute.ops.setup import ops_policies  # always last: see polyroute/ops/policy.py

    try:
        from polyroute.governance.setup import policies_for
    except ImportError:
        return [*shadow_policies(cfg), *ops_policies(cfg)]
    return [*policies_for(cfg), *shadow_policies(cfg), *ops_policies(cfg)]


def install_routes(app: App) -> App:
    """Feature routes beyond the inference API: the governance admin API (/admin/...), and the
    operations routes (/metrics, /health/ready, /admin/reload) with the access log."""
    from polyroute.ops.setup import install_ops

    install_ops(app)
    from polyroute.ui import install as install_ui

    install_ui(app)  # the dashboard (/ui, docs/dashboard.md)
    try:
        from polyroute.governance.setup import install_admin
    except ImportError:
        return app
    install_admin(app)
    return app


def build_app(path: str | None = None) -> App:
    cfg, digest, _ = resolve_config(path)
    return install_routes(App(Gateway(cfg, digest, build_policies(cfg))))


def create_app() -> App:
    """uvicorn factory: the CLI passes the config path through the environment to workers."""
    app = build_app(os.environ.get(CONFIG_ENV) or None)
    app.freeze_gc = True
    return app
