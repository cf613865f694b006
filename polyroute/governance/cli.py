"""`polyroute keys|teams|spend|dependency|audit`: governance from the command line.

These work on the database named in the config file (the same one the gateway uses), so they need
no running gateway and no master key. A key created or revoked here reaches a running gateway
within `governance.key_cache_ttl` seconds (5 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from polyroute.core.errors import GatewayError

Action = Callable[[argparse.Namespace, Any], Awaitable[int]]


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="create, list, update and revoke virtual keys")
    ks = keys.add_subparsers(dest="keys_command", required=True)
    p = ks.add_parser("create", help="make a key (its secret is shown once)")
    _common(p)
    p.add_argument("--team", default="default", help="owning team, by name or id (default: 'default', made if missing)")
    p.add_argument("--name", default="", help="a label for the key")
    p.add_argument("--expires-in-days", type=float, help="the key stops working after this many days")
    _limit_args(p)
    p.set_defaults(func=_run(_keys_create))
    p = ks.add_parser("list", help="list keys (never their secrets)")
    _common(p)
    p.add_argument("--team", help="only this team's keys")
    p.add_argument("--all", action="store_true", help="include revoked keys")
    p.set_defaults(func=_run(_keys_list))
    p = ks.add_parser("revoke", help="revoke a key")
    _common(p)
    p.add_argument("key", help="the key's id or display prefix (as `keys list` shows)")
    p.set_defaults(func=_run(_keys_revoke))
    p = ks.add_parser("update", help="change a key's limits ('none' removes a limit)")
    _common(p)
    p.add_argument("key", help="the key's id or display prefix")
    _limit_args(p)
    p.set_defaults(func=_run(_keys_update))

    teams = sub.add_parser("teams", help="create, list and update teams")
    ts = teams.add_subparsers(dest="teams_command", required=True)
    p = ts.add_parser("create", help="make a team")
    _common(p)
    p.add_argument("name")
    _limit_args(p)
    p.set_defaults(func=_run(_teams_create))
    p = ts.add_parser("list", help="list teams")
    _common(p)
    p.set_defaults(func=_run(_teams_list))
    p = ts.add_parser("update", help="change a team's limits ('none' removes a limit)")
    _common(p)
    p.add_argument("team", help="the team's name or id")
    _limit_args(p)
    p.set_defaults(func=_run(_teams_update))

    from polyroute.governance.store import SPEND_BY

    p = sub.add_parser("spend", help="spend report from the ledger")
    _common(p)
    p.add_argument("--by", choices=SPEND_BY, default="key")
    p.add_argument("--since", default="30d", help="7d, 24h, 2025-01-01 or an ISO time (default 30d)")
    p.add_argument("--until", help="end of the period (default now)")
    p.set_defaults(func=_run(_spend))

    p = sub.add_parser("dependency", help="vendor dependency: shares per vendor, and what breaks without each")
    _common(p)
    p.add_argument("--since", default="30d")
    p.add_argument("--until")
    p.set_defaults(func=_run(_dependency))

    p = sub.add_parser("audit", help="the audit log of admin actions")
    _common(p)
    p.add_argument("--since", default="30d")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_run(_audit))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="gateway config file (default: $POLYROUTE_CONFIG; else ./polyroute.db)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _limit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", help="allowed models, comma-separated (globs allowed: 'gpt-4o*'); 'none' for all")
    p.add_argument("--budget-daily", help="USD per UTC day")
    p.add_argument("--budget-monthly", help="USD per UTC month")
    p.add_argument("--budget-mode", choices=["hard", "alert"], help="hard: refuse over budget; alert: log and allow")
    p.add_argument("--rpm", help="requests per minute")
    p.add_argument("--tpm", help="tokens per minute")


def _limits_from(args: argparse.Namespace) -> dict[str, Any]:
    from polyroute.governance.keys import check_limits

    raw: dict[str, Any] = {}
    if args.models is not None:
        raw["allowed_models"] = None if args.models == "none" else [m.strip() for m in args.models.split(",") if m.strip()]
    for name, conv in (("budget_daily", float), ("budget_monthly", float), ("rpm", int), ("tpm", int)):
        v = getattr(args, name)
        if v is not None:
            try:
                raw[name] = None if v == "none" else conv(v)
            except ValueError:
                raise ValueError(f"--{name.replace('_', '-')} must be a number or 'none'") from None
    if args.budget_mode is not None:
        raw["budget_mode"] = args.budget_mode
    return check_limits(raw)


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from polyroute.config.load import ConfigError

        try:
            return asyncio.run(_with_store(args, action))
        except ConfigError as exc:
            print(f"polyroute: invalid configuration: {exc}", file=sys.stderr)
            return 2
        except (ValueError, GatewayError) as exc:
            print(f"polyroute: {getattr(exc, 'message', exc)}", file=sys.stderr)
            return 1
        except (OSError, ConnectionError) as exc:
            print(f"polyroute: database unavailable: {exc}", file=sys.stderr)
            return 1

    return run


async def _with_store(args: argparse.Namespace, action: Action) -> int:
    from polyroute.config.load import load_config
    from polyroute.config.schema import Config, DatabaseConfig
    from polyroute.governance.store import Store

    path = args.config or os.environ.get("POLYROUTE_CONFIG")
    cfg = load_config(path)[0] if path else Config()
    args.cfg = cfg
    db = cfg.database or DatabaseConfig()
    store = Store.from_url(db.url, pool_size=2, connect_timeout=db.connect_timeout)
    await store.open()
    try:
        return await action(args, store)
    finally:
        await store.close()


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _print(args: argparse.Namespace, obj: Any, table: list[dict[str, Any]] | None = None, cols: list[str] | None = None) -> None:
    if args.json or table is None or cols is None:
        print(json.dumps(obj, indent=2, default=str))
        return
    rows = [[_cell(r.get(c)) for c in cols] for r in table]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6f}".rstrip("0").rstrip(".") if v else "0"
    if isinstance(v, list):
        return ",".join(map(str, v))
    return str(v)


async def _keys_create(args: argparse.Namespace, store: Any) -> int:
    from polyroute.governance.keys import Limits
    from polyroute.governance.manage import create_key, ensure_team

    team = await ensure_team(store, args.team)
    lim = Limits(**_limits_from(args))
    expires = time.time() + args.expires_in_days * 86400 if args.expires_in_days else None
    key, secret = await create_key(store, team, args.name, lim, expires)
    await store.audit(_actor(), "keys.create", key.id, {"team": team.name, "name": args.name}, "cli")
    if args.json:
        print(json.dumps({**key.public(), "key": secret}, indent=2))
    else:
        print(secret)
        print(f"# key {key.id} (team {team.name}); shown once: store it now", file=sys.stderr)
    return 0


async def _keys_list(args: argparse.Namespace, store: Any) -> int:
    keys = await store.keys()
    if args.team:
        team = await store.team_by_name_or_id(args.team)
        keys = [k for k in keys if team is not None and k.team_id == team.id]
    if not args.all:
        keys = [k for k in keys if k.revoked_at is None]
    teams = {t.id: t.name for t in await store.teams()}
    rows = [{**k.public(), "team": teams.get(k.team_id, k.team_id), "created": _date(k.created_at),
             "revoked": _date(k.revoked_at)} for k in keys]  # fmt: skip
    _print(args, rows, rows, ["id", "prefix", "name", "team", "allowed_models", "budget_daily", "budget_monthly",
                              "budget_mode", "rpm", "tpm", "created", "revoked"])  # fmt: skip
    return 0


async def _keys_revoke(args: argparse.Namespace, store: Any) -> int:
    key = await store.key_by_ref(args.key)
    if key is None:
        print(f"polyroute: no key '{args.key}' (give its id or display prefix)", file=sys.stderr)
        return 1
    await store.revoke_key(key.id)
    await store.audit(_actor(), "keys.revoke", key.id, None, "cli")
    print(f"revoked {key.id} ({key.prefix}); running gateways stop accepting it within their key cache TTL")
    return 0


async def _keys_update(args: argparse.Namespace, store: Any) -> int:
    from polyroute.governance.store import limits_with

    key = await store.key_by_ref(args.key)
    if key is None:
        print(f"polyroute: no key '{args.key}'", file=sys.stderr)
        return 1
    changes = _limits_from(args)
    await store.update_key(key.id, limits_with(key.limits, changes))
    await store.audit(_actor(), "keys.update", key.id, changes, "cli")
    updated = await store.key_by_ref(key.id)
    _print(args, updated.public() if updated else None)
    return 0


async def _teams_create(args: argparse.Namespace, store: Any) -> int:
    from polyroute.governance.keys import Limits, Team, new_id, team_public

    if await store.team_by_name_or_id(args.name) is not None:
        print(f"polyroute: team '{args.name}' already exists", file=sys.stderr)
        return 1
    now = time.time()
    team = Team(new_id("team"), args.name, Limits(**_limits_from(args)), now, now)
    await store.create_team(team)
    await store.audit(_actor(), "teams.create", team.id, {"name": args.name}, "cli")
    _print(args, team_public(team))
    return 0


async def _teams_list(args: argparse.Namespace, store: Any) -> int:
    from polyroute.governance.keys import team_public

    rows = [team_public(t) for t in await store.teams()]
    _print(args, rows, rows, ["id", "name", "allowed_models", "budget_daily", "budget_monthly", "budget_mode", "rpm", "tpm"])
    return 0


async def _teams_update(args: argparse.Namespace, store: Any) -> int:
    from polyroute.governance.keys import team_public
    from polyroute.governance.store import limits_with

    team = await store.team_by_name_or_id(args.team)
    if team is None:
        print(f"polyroute: no team '{args.team}'", file=sys.stderr)
        return 1
    changes = _limits_from(args)
    await store.update_team(team.id, limits_with(team.limits, changes))
    await store.audit(_actor(), "teams.update", team.id, changes, "cli")
    _print(args, team_public(await store.team_by_name_or_id(team.id)))
    return 0


async def _spend(args: argparse.Namespace, store: Any) -> int:
    from polyroute.governance.reports import parse_time, spend_report

    rep = await spend_report(store, args.by, parse_time(args.since), parse_time(args.until) if args.until else None)
    cols = [args.by] + (["key_name", "key_prefix"] if args.by == "key" else ["team_name"] if args.by == "team" else [])
    cols += ["requests", "errors", "attempts", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "cost"]
    _print(args, rep, rep["rows"], cols)
    if not args.json and rep["total_cost"] is not None:
        print(f"total: ${rep['total_cost']:.6f}")
    return 0


async def _dependency(args: argparse.Namespace, store: Any) -> int:
    from polyroute.governance.reports import dependency_report, parse_time

    rep = await dependency_report(store, args.cfg, parse_time(args.since), parse_time(args.until) if args.until else None)
    if args.json:
        _print(args, rep)
        return 0
    vrows = [{**v, "requests_share": f"{v['requests_share']:.1%}", "tokens_share": f"{v['tokens_share']:.1%}",
              "cost_share": f"{v['cost_share']:.1%}"} for v in rep["vendors"]]  # fmt: skip
    _print(args, rep, vrows, ["vendor", "requests", "requests_share", "tokens_share", "cost", "cost_share",
                              "models_broken_if_lost", "models_at_risk_if_lost"])  # fmt: skip
    print()
    mrows = [
        {
            "model": m["model"],
            "primary_vendor": m["primary_vendor"],
            "other_vendor": _fb(m["fallback_other_vendor"]),
            "inhouse": _fb(m["fallback_inhouse"]),
            "breaks_without": m["breaks_without"],
        }
        for m in rep["models"]
    ]
    _print(args, rep, mrows, ["model", "primary_vendor", "other_vendor", "inhouse", "breaks_without"])
    return 0


def _fb(f: dict[str, Any]) -> str:
    if not f["available"]:
        return "none"
    return "healthy" if f["healthy"] else "unproven"


async def _audit(args: argparse.Namespace, store: Any) -> int:
    from polyroute.governance.reports import parse_time

    rows = await store.audit_rows(since=parse_time(args.since), limit=args.limit)
    for r in rows:
        r["time"] = _date(r["ts"], full=True)
    _print(args, rows, rows, ["id", "time", "actor", "action", "target", "source", "detail"])
    return 0


def _date(ts: float | None, full: bool = False) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ" if full else "%Y-%m-%d")
