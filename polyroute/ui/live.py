"""The router's live state as the dashboard shows it: routes, deployments, breakers, capacity, and
each model's fallback coverage across vendors, judged healthy *now*.

"Now" is the deployment's circuit breaker (this process's view) together with its attempts in the
ledger over the last few minutes: a breaker that is open means down whatever the ledger says; a
closed breaker takes the ledger's verdict (governance's thresholds: healthy >= 90% successful,
degraded >= 50%, failing below, untested without attempts).
"""

from __future__ import annotations

from typing import Any

from polyroute.core.gateway import Gateway
from polyroute.governance.policy import vendor_of_provider
from polyroute.governance.reports import INHOUSE, health
from polyroute.routing.state import CLOSED, HALF_OPEN, OPEN
from polyroute.routing.targets import RouteTargets, Target

HEALTH_WINDOW = 300.0  # seconds of ledger attempts behind "healthy now"
CAPACITY_WINDOW = 60.0  # seconds behind "requests / tokens this minute"


def vendor_of(x: Target) -> str:
    return vendor_of_provider(x.provider.name, x.provider.config.type)


def status_now(x: Target, now: float, recent: dict[str, dict[str, float]]) -> str:
    """down (breaker open), recovering (half-open), else the ledger's verdict over HEALTH_WINDOW."""
    state = x.breaker.state(now)
    if state == OPEN:
        return "down"
    if state == HALF_OPEN:
        return "recovering"
    r = recent.get(x.key)
    return health(int(r["attempts"]), int(r["ok"])) if r else "untested"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def deployment_view(
    x: Target, now: float, recent: dict[str, dict[str, float]], minute: dict[str, dict[str, float]]
) -> dict[str, Any]:
    d = x.dep
    cfg = d.config
    b = x.breaker
    r = recent.get(x.key, {})
    m = minute.get(x.key, {})
    state = b.state(now)
    wait = x.capacity.wait(now, 0)
    return {
        "id": x.key,
        "provider": x.provider.name,
        "provider_type": x.provider.config.type,
        "vendor": vendor_of(x),
        "upstream_model": d.upstream_model,
        "weight": x.weight,
        "input_price": d.input_price * 1e6 if d.priced else None,
        "output_price": d.output_price * 1e6 if d.priced else None,
        "context_window": x.context_window,
        "breaker": {
            "state": state if state in (CLOSED, OPEN, HALF_OPEN) else str(state),
            "retry_in": round(b.retry_in(now), 2),
            "opened": getattr(b, "opened", None),
        },
        "status": status_now(x, now, recent),
        "latency_ms": _ms(x.latency.latency()),
        "ttft_ms": _ms(x.latency.ttft()),
        "recent": {
            "window": HEALTH_WINDOW,
            "attempts": int(r.get("attempts", 0)),
            "ok": int(r.get("ok", 0)),
            "mean_latency_ms": round(r["latency_ms"], 1) if r else None,
        },
        "capacity": {
            "inflight": x.capacity.inflight(),
            "max_concurrency": cfg.max_concurrency,
            "rpm": cfg.rpm,
            "tpm": cfg.tpm,
            "requests_last_minute": int(m.get("attempts", 0)),
            "tokens_last_minute": int(m.get("tokens", 0)),
            # Seconds until the deployment takes a request again (cool-down after a 429, or a
            # full RPM/TPM window); inf when every concurrency slot is taken.
            "wait": None if wait == float("inf") else round(wait, 2),
            "full": wait == float("inf"),
        },
    }


def routes_view(
    gateway: Gateway, recent: dict[str, dict[str, float]], minute: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    router = gateway.router
    now = router.clock()
    out = []
    for name, rt in sorted(router.routes.items()):
        cfg = rt.config
        out.append(
            {
                "name": name,
                "kind": rt.kind,
                "strategy": cfg.strategy,
                "fallbacks": list(rt.fallbacks),
                "weak": rt.weak,
                "allow_weak_fallback": rt.allow_weak_fallback,
                "retries": cfg.retry.retries,
                "timeout": cfg.timeout,
                "sticky": cfg.sticky.by if cfg.sticky is not None else None,
                "shadow": list(cfg.shadow.models) if cfg.shadow is not None else None,
                "description": cfg.description,
                "deployments": [deployment_view(x, now, recent, minute) for x in rt.targets],
            }
        )
    return out


def _option(rt: RouteTargets, x: Target, now: float, recent: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {"model": rt.name, "deployment": x.key, "vendor": vendor_of(x), "status": status_now(x, now, recent)}


def _cover(options: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = {o["status"] for o in options}
    verdict = (
        "none" if not options
        else "healthy" if "healthy" in statuses
        else "untested" if statuses & {"untested", "recovering"}
        else "unhealthy"
    )  # fmt: skip
    return {"available": bool(options), "now": verdict, "options": options}


def coverage(gateway: Gateway, recent: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Per public model: who serves it first, and who could take over (another vendor, the in-house
    model) through its own deployments or its fallbacks, with each option's status now."""
    router = gateway.router
    now = router.clock()
    out = []
    for name, rt in sorted(router.routes.items()):
        own = [(rt, x) for x in rt.targets]
        chain = own + [(fb, x) for f in rt.fallbacks if (fb := router.routes.get(f)) is not None for x in fb.targets]
        primary = vendor_of(rt.targets[0]) if rt.targets else None
        others = [_option(r, x, now, recent) for r, x in chain if vendor_of(x) != primary]
        inhouse = [o for o in others if o["vendor"] == INHOUSE]
        vendors = sorted({vendor_of(x) for _, x in chain})
        out.append(
            {
                "model": name,
                "kind": rt.kind,
                "primary_vendor": primary,
                "primary_status": status_now(rt.targets[0], now, recent) if rt.targets else None,
                "vendors": vendors,
                "other_vendor": _cover([o for o in others if o["vendor"] != INHOUSE]),
                "inhouse": _cover(inhouse),
                "allow_weak_fallback": rt.allow_weak_fallback,
                "fallbacks": list(rt.fallbacks),
            }
        )
    return out


def vendors_at_risk(gateway: Gateway, recent: dict[str, dict[str, float]]) -> dict[str, dict[str, list[str]]]:
    """Per vendor: the models left with nothing (`breaks`) or nothing healthy now (`at_risk`) without it."""
    router = gateway.router
    now = router.clock()
    out: dict[str, dict[str, list[str]]] = {}
    for name, rt in sorted(router.routes.items()):
        chain = list(rt.targets) + [x for f in rt.fallbacks if (fb := router.routes.get(f)) is not None for x in fb.targets]
        for v in sorted({vendor_of(x) for x in chain}):
            rest = [x for x in chain if vendor_of(x) != v]
            entry = out.setdefault(v, {"breaks": [], "at_risk": []})
            if not rest:
                entry["breaks"].append(name)
            elif not any(status_now(x, now, recent) == "healthy" for x in rest):
                entry["at_risk"].append(name)
    return out
