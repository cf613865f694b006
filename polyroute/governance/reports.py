"""Reports over the ledger: spend by a dimension, and the vendor-dependency view.

The dependency view answers "what breaks if vendor X disappears?": each vendor's share of
requests, tokens and spend over a period, and for each public model the routes that would still
serve it (its other deployments and its fallbacks) on another vendor and on the in-house model,
each judged healthy from its attempts in the ledger over the same period.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from polyroute.config.schema import Config
from polyroute.governance.policy import deployment_id, vendor_of_provider
from polyroute.governance.store import Store

INHOUSE = "inhouse"
HEALTHY_RATIO = 0.9
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """'7d', '24h', '30m' (ago), '2025-01-31', '2025-01-31T12:00:00Z', or UNIX seconds."""
    now = time.time() if now is None else now
    s = text.strip()
    m = _RELATIVE.match(s)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(s)
    except ValueError:
        pass
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot read the time '{text}': use 7d, 24h, 2025-01-31 or 2025-01-31T12:00:00Z") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.timestamp()


def health(attempts: int, ok: int) -> str:
    if attempts == 0:
        return "untested"
    ratio = ok / attempts
    return "healthy" if ratio >= HEALTHY_RATIO else "degraded" if ratio >= 0.5 else "failing"


async def spend_report(store: Store, by: str, since: float, until: float | None = None) -> dict[str, Any]:
    rows = await store.spend(by, since=since, until=until)
    if by == "key":
        keys = {k.id: k for k in await store.keys()}
        for r in rows:
            k = keys.get(r["key"])
            r["key_name"] = k.name if k else None
            r["key_prefix"] = k.prefix if k else None
    elif by == "team":
        teams = {t.id: t for t in await store.teams()}
        for r in rows:
            tm = teams.get(r["team"])
            r["team_name"] = tm.name if tm else None
    total = sum(r["cost"] for r in rows) if by not in ("provider", "vendor") else None
    return {"by": by, "since": since, "until": until, "rows": rows, "total_cost": total}


async def dependency_report(store: Store, cfg: Config, since: float, until: float | None = None) -> dict[str, Any]:
    usage = await store.vendor_usage(since, until)
    checks = await store.deployment_health(since)
    tot_req = sum(u[1] for u in usage) or 1
    tot_tok = sum(u[2] for u in usage) or 1
    tot_usd = sum(u[3] for u in usage) or 0.0

    deps: dict[str, list[dict[str, Any]]] = {}
    for name, mc in cfg.models.items():
        out = []
        for i, dc in enumerate(mc.deployments):
            pc = cfg.providers.get(dc.provider)
            vendor = vendor_of_provider(dc.provider, pc.type) if pc else dc.provider
            did = deployment_id(name, i, dc.provider, dc.model, dc.name)
            n, ok = checks.get(did, (0, 0))
            out.append({"model": name, "deployment": did, "vendor": vendor, "health": health(n, ok), "attempts": n})
        deps[name] = out

    models: list[dict[str, Any]] = []
    for name, mc in sorted(cfg.models.items()):
        own = deps[name]
        reachable = own + [d for fb in mc.fallbacks for d in deps.get(fb, [])]
        vendors = sorted({d["vendor"] for d in reachable})
        primary = own[0]["vendor"] if own else None
        others = [d for d in reachable if d["vendor"] != primary]
        inhouse = [d for d in reachable if d["vendor"] == INHOUSE and primary != INHOUSE]
        models.append(
            {
                "model": name,
                "kind": mc.kind,
                "primary_vendor": primary,
                "vendors": vendors,
                "fallback_other_vendor": _fallback(others),
                "fallback_inhouse": _fallback(inhouse),
                "allow_weak_fallback": mc.allow_weak_fallback,
                # Losing one of these vendors leaves the model with nothing to run on.
                "breaks_without": [v for v in vendors if all(d["vendor"] == v for d in reachable)],
                # ... or with nothing known to work.
                "at_risk_without": [
                    v for v in vendors if not any(d["vendor"] != v and d["health"] == "healthy" for d in reachable)
                ],
            }
        )

    vendors_out = []
    seen = {u[0] for u in usage}
    all_vendors = sorted(seen | {d["vendor"] for ds in deps.values() for d in ds})
    by_vendor = {u[0]: u for u in usage}
    for v in all_vendors:
        _, req, tok, usd = by_vendor.get(v, (v, 0, 0, 0.0))
        vendors_out.append(
            {
                "vendor": v,
                "requests": req,
                "requests_share": req / tot_req if usage else 0.0,
                "tokens": tok,
                "tokens_share": tok / tot_tok if usage else 0.0,
                "cost": usd,
                "cost_share": usd / tot_usd if tot_usd else 0.0,
                "models_broken_if_lost": [m["model"] for m in models if v in m["breaks_without"]],
                "models_at_risk_if_lost": [m["model"] for m in models if v in m["at_risk_without"]],
            }
        )
    vendors_out.sort(key=lambda d: (-d["requests"], d["vendor"]))
    return {"since": since, "until": until, "vendors": vendors_out, "models": models}


def _fallback(ds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "available": bool(ds),
        "healthy": any(d["health"] == "healthy" for d in ds),
        "deployments": [{k: d[k] for k in ("model", "deployment", "vendor", "health")} for d in ds],
    }
