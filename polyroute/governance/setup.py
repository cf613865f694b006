"""Wiring: which governance policy a config asks for, and the admin routes on the app."""

from __future__ import annotations

import re
from typing import Any

from polyroute.config.load import ConfigError
from polyroute.config.schema import Config
from polyroute.core.policy import Policy
from polyroute.governance.db import open_database
from polyroute.governance.limits import Counters


def enabled(cfg: Config) -> bool:
    """Governance runs when any of its sections, or a master key, is configured; without them the
    gateway stays open and keeps no ledger, as it always did."""
    return any(x is not None for x in (cfg.server.master_key, cfg.database, cfg.ledger, cfg.governance))


def check(cfg: Config, source: str = "config") -> None:
    """Reject what the schema cannot see (bad patterns, bad URLs) at start-up, naming the field."""
    if cfg.database is not None:
        try:
            open_database(cfg.database.url)
        except ValueError as exc:
            raise ConfigError(source, "database.url", str(exc), "see docs/governance.md") from None
    if cfg.ledger is not None:
        for i, p in enumerate(cfg.ledger.redact):
            try:
                re.compile(p)
            except re.error as exc:
                raise ConfigError(source, f"ledger.redact[{i}]", f"not a valid regular expression ({exc})",
                                  "correct the pattern (Python re syntax)") from None
        for name in ("queue_size", "batch_size"):
            if getattr(cfg.ledger, name) < 1:
                raise ConfigError(source, f"ledger.{name}", "must be at least 1", "use a positive number")
    g = cfg.governance
    if g is not None and g.counters == "redis" and not g.redis_url:
        raise ConfigError(source, "governance.redis_url", "counters: redis needs a redis_url",
                          "set redis_url: redis://host:6379/0")
    if cfg.server.master_key is not None and len(cfg.server.master_key) < 16:
        raise ConfigError(source, "server.master_key", "the master key is too short to be safe",
                          "use at least 16 random characters, e.g. from `openssl rand -hex 32`")


def counters_for(cfg: Config) -> Counters | None:
    g = cfg.governance
    if g is not None and g.counters == "redis":
        from polyroute.governance.counters_failover import FailoverCounters
        from polyroute.governance.redis_counters import RedisCounters

        assert g.redis_url is not None
        # Never Redis alone: an unreachable Redis must not fail or hold requests (docs/governance.md).
        return FailoverCounters(RedisCounters(g.redis_url, timeout=g.redis_timeout), g.redis_unavailable)
    return None


def policies_for(cfg: Config) -> list[Policy]:
    if not enabled(cfg):
        return []
    from polyroute.governance.policy import Governance

    check(cfg)
    return [Governance(cfg, counters=counters_for(cfg))]


def install_admin(app: Any) -> bool:
    """Add the /admin routes to an App whose gateway runs the governance policy."""
    from polyroute.governance.admin import install
    from polyroute.governance.policy import Governance

    for p in app.gateway.policies:
        if isinstance(p, Governance):
            install(app, p)
            return True
    return False
