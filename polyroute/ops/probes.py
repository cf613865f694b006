"""Built-in gauges and health checks for components that do not register their own yet.

They look for the public attributes of the governance policy (its database, Redis counters and
ledger writer) and of in-house providers, by duck typing: this package imports neither. They
register last, so a component that registers a check or queue of the same name on the registry
(`registry.registry_of(gateway)`) replaces them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from polyroute.ops.registry import HealthResult, Registry

if TYPE_CHECKING:
    from polyroute.core.gateway import Gateway
    from polyroute.ops.policy import OpsPolicy


def install(policy: OpsPolicy, gateway: Gateway) -> None:
    reg = policy.registry
    for p in gateway.policies:
        _counters(reg, getattr(p, "counters", None), policy.metrics)
        _governance(reg, p)
    _inhouse(reg, gateway)
    shared = getattr(gateway, "shared_state", None)  # polyroute/routing/redis_state.py
    if shared is not None and callable(getattr(shared, "health", None)):

        async def routing_state() -> HealthResult:
            return HealthResult(*shared.health())

        reg.add_health("routing_state", routing_state)


def _counters(reg: Registry, counters: Any, metrics: Any) -> None:
    """Counters with a fallback (governance/counters_failover.py) say themselves whether Redis is
    in use: their check wins over the plain PING below, and the fallback is a gauge and a count."""
    check = getattr(counters, "check", None)
    if not callable(check) or not callable(getattr(counters, "fallback_gauge", None)):
        return

    async def redis_counters() -> HealthResult:
        return HealthResult(*await check())

    reg.add_health("redis", redis_counters)
    reg.add_gauge(
        "polyroute_counters_fallback", counters.fallback_gauge, labels=("mode",), mode="livemax",
        help="1 while limits and budgets run on the fallback (governance.redis_unavailable) because Redis is "
        "unreachable (any worker).",
    )  # fmt: skip
    if metrics is not None:
        c = metrics.counters_transitions
        for to, n in counters.transitions.items():
            c.labels(to).inc(n)  # also those before the ops policy started (Redis down at start-up)
        counters.listeners.append(lambda to: c.labels(to).inc())


def _governance(reg: Registry, gov: Any) -> None:
    store = getattr(gov, "store", None)
    db = getattr(store, "db", None)
    if db is not None and callable(getattr(db, "fetch", None)):
        dialect = getattr(db, "dialect", "database")

        async def database() -> HealthResult:
            try:
                await db.fetch("SELECT 1")
            except Exception as exc:
                return HealthResult(False, f"{dialect} unreachable: {type(exc).__name__}: {exc}")
            return HealthResult(True, str(dialect))

        reg.add_health("database", database)
    counters = getattr(gov, "counters", None)
    redis = getattr(counters, "redis", None)
    if redis is not None and callable(getattr(redis, "ping", None)):

        async def redis_ping() -> HealthResult:
            try:
                await redis.ping()
            except Exception as exc:
                return HealthResult(False, f"redis unreachable: {type(exc).__name__}: {exc}")
            return HealthResult(True, "redis")

        reg.add_health("redis", redis_ping)
    ledger = getattr(gov, "ledger", None)
    if ledger is not None and hasattr(ledger, "queued"):
        reg.add_queue("ledger", lambda: float(ledger.queued))
        spool = getattr(ledger, "spool", None)
        if spool is not None and callable(getattr(spool, "pending", None)):

            async def ledger_spool() -> HealthResult:
                # A directory listing: cheap, but a thread keeps the event loop free of disk waits.
                pending = await asyncio.to_thread(spool.pending)
                if pending:
                    return HealthResult(
                        False, f"ledger rows are going to the spool (database slow or down); {ledger.queued} queued"
                    )
                return HealthResult(True, f"{ledger.queued} queued")

            reg.add_health("ledger", ledger_spool)


def _inhouse(reg: Registry, gateway: Gateway) -> None:
    # Read through the gateway each time: a reload replaces the catalogue and its providers.
    def waiting(name: str, attr: str) -> float:
        p = gateway.catalog.providers.get(name)
        slots = getattr(p, attr, None)
        return float(getattr(slots, "waiting", 0) or 0)

    for name, p in gateway.catalog.providers.items():
        for attr, kind in (("chat_slots", "chat"), ("embed_slots", "embed")):
            if hasattr(getattr(p, attr, None), "waiting"):
                reg.add_queue(f"inhouse:{name}:{kind}", lambda n=name, a=attr: waiting(n, a))  # type: ignore[misc]
