"""Everything governance keeps in the database: teams, keys, the ledger, the audit log, reports.

Used by the gateway (off the request path), the admin API and the CLI alike, so all three see the
same data whichever database is configured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Literal

from polyroute.governance.db import Database, migrate, open_database
from polyroute.governance.keys import Key, Limits, Team, limits_dict
from polyroute.governance.rows import ATTEMPT_COLUMNS, LEDGER_COLUMNS, LedgerRow

SpendBy = Literal["key", "team", "model", "provider", "vendor", "day"]
SPEND_BY: tuple[str, ...] = ("key", "team", "model", "provider", "vendor", "day")

_LIMIT_COLS = "allowed_models, budget_daily, budget_monthly, budget_mode, rpm, tpm"
_INSERT_LEDGER = (
    f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)}) VALUES ({', '.join('?' * len(LEDGER_COLUMNS))}) "
    "ON CONFLICT (request_id) DO NOTHING"
)
_INSERT_ATTEMPT = (
    f"INSERT INTO ledger_attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({', '.join('?' * len(ATTEMPT_COLUMNS))}) "
    "ON CONFLICT (request_id, n) DO NOTHING"
)


def utc_day(ts: float) -> str:
    from polyroute.governance.limits import periods

    return periods(ts)[0]


def _limits(row: Sequence[Any]) -> Limits:
    models, daily, monthly, mode, rpm, tpm = row
    return Limits(
        allowed_models=json.loads(models) if models is not None else None,
        budget_daily=daily,
        budget_monthly=monthly,
        budget_mode=mode,
        rpm=rpm,
        tpm=tpm,
    )


def _limit_values(lim: Limits) -> tuple[Any, ...]:
    return (
        json.dumps(lim.allowed_models) if lim.allowed_models is not None else None,
        lim.budget_daily,
        lim.budget_monthly,
        lim.budget_mode,
        lim.rpm,
        lim.tpm,
    )


def _num(v: Any) -> float:
    return float(v) if v is not None else 0.0


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 10, connect_timeout: float = 10.0) -> Store:
        return cls(open_database(url, pool_size=pool_size, connect_timeout=connect_timeout))

    async def open(self) -> list[int]:
        """Connect and apply pending migrations; returns the versions applied."""
        await self.db.open()
        return await migrate(self.db)

    async def close(self) -> None:
        await self.db.close()

    # --- teams and keys ------------------------------------------------------------------------

    async def create_team(self, team: Team) -> None:
        async with self.db.transaction() as c:
            await c.execute(
                f"INSERT INTO teams (id, name, {_LIMIT_COLS}, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (team.id, team.name, *_limit_values(team.limits), team.created_at, team.updated_at),
            )

    async def teams(self) -> list[Team]:
        rows = await self.db.fetch(f"SELECT id, name, {_LIMIT_COLS}, created_at, updated_at FROM teams ORDER BY name")
        return [Team(r[0], r[1], _limits(r[2:8]), r[8], r[9]) for r in rows]

    async def team_by_name_or_id(self, ref: str) -> Team | None:
        for t in await self.teams():
            if ref in (t.id, t.name):
                return t
        return None

    async def update_team(self, team_id: str, limits: Limits) -> None:
        async with self.db.transaction() as c:
            await c.execute(
                "UPDATE teams SET allowed_models = ?, budget_daily = ?, budget_monthly = ?, budget_mode = ?, "
                "rpm = ?, tpm = ?, updated_at = ? WHERE id = ?",
                (*_limit_values(limits), time.time(), team_id),
            )

    async def create_key(self, key: Key) -> None:
        async with self.db.transaction() as c:
            await c.execute(
                f"INSERT INTO api_keys (id, team_id, name, key_hash, prefix, {_LIMIT_COLS}, created_at, updated_at, "
                "expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id, key.team_id, key.name, key.key_hash, key.prefix, *_limit_values(key.limits),
                    key.created_at, key.updated_at, key.expires_at, key.revoked_at,
                ),
            )  # fmt: skip

    async def keys(self) -> list[Key]:
        rows = await self.db.fetch(
            f"SELECT id, team_id, name, key_hash, prefix, {_LIMIT_COLS}, created_at, updated_at, expires_at, revoked_at "
            "FROM api_keys ORDER BY created_at"
        )
        return [Key(r[0], r[1], r[2], r[3], r[4], _limits(r[5:11]), r[11], r[12], r[13], r[14]) for r in rows]

    async def key_by_hash(self, key_hash: str) -> Key | None:
        rows = await self.db.fetch(
            f"SELECT id, team_id, name, key_hash, prefix, {_LIMIT_COLS}, created_at, updated_at, expires_at, revoked_at "
            "FROM api_keys WHERE key_hash = ?",
            (key_hash,),
        )
        r = rows[0] if rows else None
        return Key(r[0], r[1], r[2], r[3], r[4], _limits(r[5:11]), r[11], r[12], r[13], r[14]) if r else None

    async def key_by_ref(self, ref: str) -> Key | None:
        """A key by its id or its display prefix (what `keys list` shows)."""
        found = [k for k in await self.keys() if ref in (k.id, k.prefix)]
        return found[0] if len(found) == 1 else None

    async def update_key(self, key_id: str, limits: Limits) -> None:
        async with self.db.transaction() as c:
            await c.execute(
                "UPDATE api_keys SET allowed_models = ?, budget_daily = ?, budget_monthly = ?, budget_mode = ?, "
                "rpm = ?, tpm = ?, updated_at = ? WHERE id = ?",
                (*_limit_values(limits), time.time(), key_id),
            )

    async def revoke_key(self, key_id: str) -> bool:
        now = time.time()
        async with self.db.transaction() as c:
            rows = await c.fetch("SELECT revoked_at FROM api_keys WHERE id = ?", (key_id,))
            if not rows:
                return False
            if rows[0][0] is None:
                await c.execute("UPDATE api_keys SET revoked_at = ?, updated_at = ? WHERE id = ?", (now, now, key_id))
        return True

    # --- ledger ----------------------------------------------------------------------------------

    async def insert_ledger(self, rows: Sequence[LedgerRow]) -> None:
        """Insert rows in one transaction; rows already there (same request id) are skipped."""
        if not rows:
            return
        async with self.db.transaction() as c:
            await c.executemany(_INSERT_LEDGER, [r.ledger_values() for r in rows])
            attempts = [a for r in rows for a in r.attempt_values()]
            if attempts:
                await c.executemany(_INSERT_ATTEMPT, attempts)

    async def ledger_rows(self, *, since: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger WHERE ts >= ? ORDER BY ts DESC LIMIT ?", (since, limit)
        )
        out = [dict(zip(LEDGER_COLUMNS, r, strict=True)) for r in rows]
        for d in out:
            d["tags"] = json.loads(d["tags"]) if d["tags"] else None
            d["estimated"], d["stream"] = bool(d["estimated"]), bool(d["stream"])
        return out

    async def attempt_rows(self, request_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM ledger_attempts WHERE request_id = ? ORDER BY n", (request_id,)
        )
        return [dict(zip(ATTEMPT_COLUMNS, r, strict=True)) for r in rows]

    async def spend_since(self, since: float) -> list[tuple[str | None, str | None, str, float]]:
        """(key_id, team_id, day, cost) since a time: seeds the budget counters at start-up."""
        rows = await self.db.fetch(
            "SELECT key_id, team_id, day, SUM(cost) FROM ledger WHERE ts >= ? GROUP BY key_id, team_id, day", (since,)
        )
        return [(r[0], r[1], r[2], _num(r[3])) for r in rows]

    async def spend(
        self, by: str, *, since: float, until: float | None = None, key_id: str | None = None, team_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Requests, tokens and USD grouped by one dimension, most expensive first.

        By provider or vendor, money comes from each attempt (failed attempts are billed too);
        every other grouping uses the request's total, which is the sum of its attempts.
        """
        if by not in SPEND_BY:
            raise ValueError(f"cannot group spend by '{by}' (choose from {', '.join(SPEND_BY)})")
        where, params = ["l.ts >= ?"], [since]
        if until is not None:
            where.append("l.ts < ?")
            params.append(until)
        if key_id is not None:
            where.append("l.key_id = ?")
            params.append(key_id)  # type: ignore[arg-type]
        if team_id is not None:
            where.append("l.team_id = ?")
            params.append(team_id)  # type: ignore[arg-type]
        cond = " AND ".join(where)
        if by in ("provider", "vendor"):
            sql = (
                f"SELECT a.{by}, COUNT(DISTINCT a.request_id), SUM(CASE WHEN a.status >= 400 THEN 1 ELSE 0 END), "
                "SUM(a.input_tokens), SUM(a.output_tokens), 0, 0, SUM(a.cost), COUNT(*) "
                f"FROM ledger_attempts a JOIN ledger l ON l.request_id = a.request_id WHERE {cond} "
                f"GROUP BY a.{by}"
            )
        else:
            col = {"key": "l.key_id", "team": "l.team_id", "model": "l.model_asked", "day": "l.day"}[by]
            sql = (
                f"SELECT {col}, COUNT(*), SUM(CASE WHEN l.status >= 400 THEN 1 ELSE 0 END), SUM(l.input_tokens), "
                "SUM(l.output_tokens), SUM(l.cached_tokens), SUM(l.reasoning_tokens), SUM(l.cost), SUM(l.attempts) "
                f"FROM ledger l WHERE {cond} GROUP BY {col}"
            )
        rows = await self.db.fetch(sql, params)
        out = [
            {
                by: r[0],
                "requests": int(r[1] or 0),
                "errors": int(r[2] or 0),
                "input_tokens": int(r[3] or 0),
                "output_tokens": int(r[4] or 0),
                "cached_tokens": int(r[5] or 0),
                "reasoning_tokens": int(r[6] or 0),
                "cost": _num(r[7]),
                "attempts": int(r[8] or 0),
            }
            for r in rows
        ]
        out.sort(key=lambda d: (d[by] if by == "day" else -d["cost"], str(d[by])))
        return out

    async def vendor_usage(self, since: float, until: float | None = None) -> list[tuple[str, int, int, float]]:
        """(vendor, requests served, tokens, USD of all attempts) over a period."""
        cond, params = "ts >= ?", [since]
        if until is not None:
            cond += " AND ts < ?"
            params.append(until)
        served = await self.db.fetch(
            f"SELECT vendor, COUNT(*), SUM(input_tokens + output_tokens) FROM ledger WHERE {cond} "
            "AND vendor IS NOT NULL AND status < 400 GROUP BY vendor",
            params,
        )
        billed = await self.db.fetch(f"SELECT vendor, SUM(cost) FROM ledger_attempts WHERE {cond} GROUP BY vendor", params)
        money = {r[0]: _num(r[1]) for r in billed}
        out = [(r[0], int(r[1] or 0), int(r[2] or 0), money.pop(r[0], 0.0)) for r in served]
        out.extend((v, 0, 0, c) for v, c in money.items())
        return out

    async def deployment_health(self, since: float) -> dict[str, tuple[int, int]]:
        """deployment id -> (attempts, successful attempts) since a time."""
        rows = await self.db.fetch(
            "SELECT deployment, COUNT(*), SUM(CASE WHEN status < 400 THEN 1 ELSE 0 END) FROM ledger_attempts "
            "WHERE ts >= ? GROUP BY deployment",
            (since,),
        )
        return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}

    async def count_ledger(self) -> int:
        rows = await self.db.fetch("SELECT COUNT(*) FROM ledger")
        return int(rows[0][0])

    async def purge(self, before: float) -> int:
        """Delete ledger and audit rows older than `before`; returns ledger rows deleted."""
        async with self.db.transaction() as c:
            n = await c.fetch("SELECT COUNT(*) FROM ledger WHERE ts < ?", (before,))
            await c.execute("DELETE FROM ledger_attempts WHERE ts < ?", (before,))
            await c.execute("DELETE FROM ledger WHERE ts < ?", (before,))
            await c.execute("DELETE FROM audit_log WHERE ts < ?", (before,))
        return int(n[0][0])

    # --- audit ------------------------------------------------------------------------------------

    async def audit(
        self, actor: str, action: str, target: str | None = None, detail: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> None:  # fmt: skip
        await self.db.execute(
            "INSERT INTO audit_log (ts, actor, action, target, detail, source) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), actor, action, target, json.dumps(detail) if detail is not None else None, source),
        )

    async def audit_rows(self, *, since: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT id, ts, actor, action, target, detail, source FROM audit_log WHERE ts >= ? ORDER BY id DESC LIMIT ?",
            (since, limit),
        )
        return [
            {
                "id": int(r[0]), "ts": r[1], "actor": r[2], "action": r[3], "target": r[4],
                "detail": json.loads(r[5]) if r[5] else None, "source": r[6],
            }
            for r in rows
        ]


def limits_with(base: Limits, changes: dict[str, Any]) -> Limits:
    d = limits_dict(base)
    d.update(changes)
    return Limits(**d)  # type: ignore[arg-type]
