"""Everything governance keeps in the database: teams, keys, the ledger, the audit log, reports.

Used by the gateway (off the request path), the admin API and the CLI alike, so all three see the
same data whichever database is configured.
"""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal

from polyroute.governance import rollup
from polyroute.governance.db import Database, SQLiteDatabase, migrate, open_database
from polyroute.governance.keys import Key, Limits, Team, limits_dict
from polyroute.governance.limits import periods
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


# SQLite inserts go in statements of this many rows: one sqlite3_step per statement instead of
# one per row, and fewer statements per row cost less: 32-row statements 16-23 µs of CPU per
# ledger row (all statements of a batch), 128-row 14-15, 500-row 14 (bench/ops/ledger_insert_cost.py,
# interleaved runs). Binding a statement's parameters holds the GIL, which a request arriving
# meanwhile waits for (the event loop's p99 pause while a batch is written: 1.1-1.2 ms with 32-row
# statements, 1.1-1.4 ms with 128-row, bench/ops/governance_path.py); bigger ones gain little more.
SQLITE_ROWS_PER_STATEMENT = 128
# When the writer is behind (the event loop saturated), each statement's GIL hand-over can wait a
# whole switch interval (5 ms) for the event loop to let go, so the number of statements per row
# decides whether the writer keeps up: bulk statements carry up to 1,000 rows (29,000 parameters,
# under SQLite's default limit of 32,766). Not the default: binding them holds the GIL for about
# a millisecond, which a request arriving on an idle gateway would wait for.
SQLITE_BULK_ROWS_PER_STATEMENT = 1000


def _multi_row(sql: str, width: int, n: int) -> str:
    """`INSERT ... VALUES (?, ...)` of one row made into n rows."""
    one = "(" + ", ".join("?" * width) + ")"
    head, _, tail = sql.partition(one)
    return head + ", ".join([one] * n) + tail


def _insert_chunked(c: sqlite3.Connection, sql: str, width: int, rows: Sequence[tuple[object, ...]], step: int) -> None:
    full = _multi_row(sql, width, step)
    for i in range(0, len(rows), step):
        chunk = rows[i : i + step]
        flat = list(itertools.chain.from_iterable(chunk))
        c.execute(full if len(chunk) == step else _multi_row(sql, width, len(chunk)), flat)


def sqlite_insert_batch(
    c: sqlite3.Connection, values: Sequence[tuple[object, ...]], attempts: Sequence[tuple[object, ...]], step: int
) -> None:
    """The ledger writer's statements on SQLite, inside the caller's transaction. Writers are
    serialised (BEGIN IMMEDIATE) and new rows get rowids above the largest: the rows above the two
    marks are exactly the ones this batch inserts, which the hourly roll-ups then gain."""
    last, last_attempt = c.execute(
        "SELECT (SELECT COALESCE(MAX(rowid), 0) FROM ledger), (SELECT COALESCE(MAX(rowid), 0) FROM ledger_attempts)"
    ).fetchone()
    _insert_chunked(c, _INSERT_LEDGER, len(LEDGER_COLUMNS), values, step)
    if attempts:
        _insert_chunked(c, _INSERT_ATTEMPT, len(ATTEMPT_COLUMNS), attempts, step)
    for sql in rollup.SQLITE_LEDGER:
        c.execute(sql, (last,))
    if attempts:
        c.execute(rollup.SQLITE_ATTEMPTS, (last_attempt,))


def utc_day(ts: float) -> str:
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
        await self.insert_values([r.ledger_values() for r in rows], [a for r in rows for a in r.attempt_values()])

    async def insert_values(
        self, values: Sequence[tuple[object, ...]], attempts: Sequence[tuple[object, ...]], *, bulk: bool = False
    ) -> None:
        """`insert_ledger` for rows given as their ledger_values() and attempt_values(), which is how
        the ledger writer holds them. The hourly roll-ups (governance/rollup.py) gain the rows
        inserted, in the same transaction. `bulk`: the writer is behind; SQLite gets bigger
        statements (SQLITE_BULK_ROWS_PER_STATEMENT)."""
        if not values:
            return
        if self.db.dialect == "postgres":
            async with self.db.transaction() as c:
                for sql in rollup.PG_STAGE:
                    await c.execute(sql)
                await c.executemany(rollup.PG_STAGE_LEDGER, values)
                if attempts:
                    await c.executemany(rollup.PG_STAGE_ATTEMPTS, attempts)
                # The inserts, and the roll-ups of the rows they returned.
                await c.execute(rollup.PG_BATCH)
            return
        step = SQLITE_BULK_ROWS_PER_STATEMENT if bulk else SQLITE_ROWS_PER_STATEMENT
        # The whole batch in one hand-over to the database's thread: the event loop is woken once
        # per batch, not once per statement.
        db = self.db
        assert isinstance(db, SQLiteDatabase)
        await db.run_transaction(lambda c: sqlite_insert_batch(c, values, attempts, step))

    async def rebuild_rollups(self) -> None:
        """Recompute the hourly roll-ups from the raw rows (see rollup.rebuild)."""
        async with self.db.transaction() as c:
            await rollup.rebuild(c, self.db.dialect)

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
        """USD per key and per team and UTC day since a time: seeds the budget counters at start-up.
        Rows are (key_id, None, day, cost) and (None, team_id, day, cost), from the roll-ups for
        whole hours and from raw rows for the part of an hour before them."""
        h0, _ = _whole_hours(since, None)
        raw = await self.db.fetch(
            "SELECT key_id || '', team_id || '', day || '', SUM(cost) FROM ledger WHERE ts >= ? AND ts < ? "
            "GROUP BY 1, 2, 3",
            (since, h0),
        )
        out: list[tuple[str | None, str | None, str, float]] = [(r[0], r[1], r[2], _num(r[3])) for r in raw]
        rolled = await self.db.fetch(
            "SELECT dim, value, hour / 86400, SUM(cost) FROM ledger_hourly_dim WHERE dim IN ('key', 'team') "
            "AND hour >= ? AND value <> '' GROUP BY dim, value, hour / 86400",
            (h0,),
        )
        for dim, value, d, cost in rolled:
            day = utc_day(int(d) * 86400.0)
            out.append((value, None, day, _num(cost)) if dim == "key" else (None, value, day, _num(cost)))
        return out

    async def spend(
        self, by: str, *, since: float, until: float | None = None, key_id: str | None = None, team_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Requests, tokens and USD grouped by one dimension, most expensive first.

        By provider or vendor, money comes from each attempt (failed attempts are billed too),
        read from the raw attempts; every other grouping uses the request's total, which is the
        sum of its attempts, read from the hourly roll-ups for whole hours and from raw rows for the
        parts of an hour at either end.
        """
        if by not in SPEND_BY:
            raise ValueError(f"cannot group spend by '{by}' (choose from {', '.join(SPEND_BY)})")
        filters, fparams = [], []
        if key_id is not None:
            filters.append("key_id = ?")
            fparams.append(key_id)
        if team_id is not None:
            filters.append("team_id = ?")
            fparams.append(team_id)
        if by in ("provider", "vendor"):
            rows = await self._spend_attempts(by, since, until, filters, fparams)
        else:
            rows = await self._spend_requests(by, since, until, filters, fparams)
        out = [
            {
                by: name,
                "requests": int(r[0] or 0),
                "errors": int(r[1] or 0),
                "input_tokens": int(r[2] or 0),
                "output_tokens": int(r[3] or 0),
                "cached_tokens": int(r[4] or 0),
                "reasoning_tokens": int(r[5] or 0),
                "cost": _num(r[6]),
                "attempts": int(r[7] or 0),
            }
            for name, r in rows.items()
        ]
        out.sort(key=lambda d: (d[by] if by == "day" else -d["cost"], str(d[by])))
        return out

    async def _spend_attempts(
        self, by: str, since: float, until: float | None, filters: list[str], fparams: list[Any]
    ) -> dict[Any, list[Any]]:
        where, params = ["a.ts >= ?"], [since]
        if until is not None:
            where.append("a.ts < ?")
            params.append(until)
        join = ""
        if filters:
            # Attempts carry their request's ts; the ledger row is needed only for key and team,
            # and is bounded by the same ts so that the key's index reads only the period.
            join = "JOIN ledger l ON l.request_id = a.request_id "
            where += [w.replace("a.ts", "l.ts") for w in where] + ["l." + f for f in filters]
            params += params + fparams
        rows = await self.db.fetch(
            f"SELECT a.{by} || '', COUNT(DISTINCT a.request_id), SUM(CASE WHEN a.status >= 400 THEN 1 ELSE 0 END), "
            "SUM(a.input_tokens), SUM(a.output_tokens), 0, 0, SUM(a.cost), COUNT(*) "
            f"FROM ledger_attempts a {join}WHERE {' AND '.join(where)} GROUP BY 1",
            params,
        )
        return {r[0]: list(r[1:]) for r in rows}

    async def _spend_requests(
        self, by: str, since: float, until: float | None, filters: list[str], fparams: list[Any]
    ) -> dict[Any, list[Any]]:
        h0, h1 = _whole_hours(since, until)
        acc: dict[Any, list[Any]] = {}
        col = {"key": "key_id", "team": "team_id", "model": "model_asked", "day": "day"}[by]
        for lo, hi in _edges(since, until, h0, h1):
            where, params = ["ts >= ?", *filters], [lo, *fparams]
            if hi is not None:
                where.append("ts < ?")
                params.append(hi)
            rows = await self.db.fetch(
                f"SELECT {col} || '', COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(input_tokens), "
                "SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens), SUM(cost), SUM(attempts) "
                f"FROM ledger WHERE {' AND '.join(where)} GROUP BY 1",
                params,
            )
            _add(acc, rows)
        if h1 is not None and h1 <= h0:
            return acc
        sums = ("SUM(requests), SUM(CASE WHEN ok = 0 THEN requests ELSE 0 END), SUM(input_tokens), "
                "SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens), SUM(cost), SUM(attempts)")  # fmt: skip
        bound, bparams = "hour >= ?", [h0]
        if h1 is not None:
            bound += " AND hour < ?"
            bparams.append(h1)
        if filters:
            group = "hour / 86400" if by == "day" else f"NULLIF({col}, '')"
            sql = f"SELECT {group}, {sums} FROM ledger_hourly WHERE {bound} AND {' AND '.join(filters)} GROUP BY 1"
            params = [*bparams, *fparams]
        else:
            dim, group = ("", "hour / 86400") if by == "day" else (by, "NULLIF(value, '')")
            sql = f"SELECT {group}, {sums} FROM ledger_hourly_dim WHERE dim = ? AND {bound} GROUP BY 1"
            params = [dim, *bparams]
        rows = await self.db.fetch(sql, params)
        if by == "day":
            rows = [(utc_day(int(r[0]) * 86400.0), *r[1:]) for r in rows]
        _add(acc, rows)
        return acc

    async def vendor_usage(self, since: float, until: float | None = None) -> list[tuple[str, int, int, float]]:
        """(vendor, requests served, tokens, USD of all attempts) over a period: roll-ups for whole
        hours, raw rows for the parts of an hour at either end."""
        h0, h1 = _whole_hours(since, until)
        served: dict[Any, list[Any]] = {}
        billed: dict[Any, list[Any]] = {}
        for lo, hi in _edges(since, until, h0, h1):
            cond, params = ("ts >= ? AND ts < ?", [lo, hi]) if hi is not None else ("ts >= ?", [lo])
            _add(served, await self.db.fetch(
                f"SELECT vendor || '', COUNT(*), SUM(input_tokens + output_tokens) FROM ledger WHERE {cond} "
                "AND vendor IS NOT NULL AND status < 400 GROUP BY 1", params,
            ))  # fmt: skip
            _add(billed, await self.db.fetch(
                f"SELECT vendor || '', SUM(cost) FROM ledger_attempts WHERE {cond} GROUP BY 1", params
            ))  # fmt: skip
        if h1 is None or h1 > h0:
            cond, params = ("hour >= ? AND hour < ?", [h0, h1]) if h1 is not None else ("hour >= ?", [h0])
            _add(served, await self.db.fetch(
                "SELECT value, SUM(requests), SUM(input_tokens + output_tokens) FROM ledger_hourly_dim "
                f"WHERE dim = 'vendor' AND {cond} AND ok = 1 AND value <> '' GROUP BY value", params,
            ))  # fmt: skip
            _add(billed, await self.db.fetch(
                f"SELECT vendor, SUM(cost) FROM ledger_attempts_hourly WHERE {cond} GROUP BY vendor", params
            ))  # fmt: skip
        money = {v: _num(c[0]) for v, c in billed.items()}
        out = [(v, int(r[0] or 0), int(r[1] or 0), money.pop(v, 0.0)) for v, r in served.items()]
        out.extend((v, 0, 0, c) for v, c in money.items())
        return out

    async def deployment_health(self, since: float) -> dict[str, tuple[int, int]]:
        """deployment id -> (attempts, successful attempts) since a time."""
        h0, _ = _whole_hours(since, None)
        acc: dict[Any, list[Any]] = {}
        # `deployment || ''`: grouping by the bare column, SQLite scans the whole (deployment, ts)
        # index to skip a sort, ignoring the time bound (docs/dashboard.md, "Query plans").
        _add(acc, await self.db.fetch(
            "SELECT deployment || '', COUNT(*), SUM(CASE WHEN status < 400 THEN 1 ELSE 0 END) FROM ledger_attempts "
            "WHERE ts >= ? AND ts < ? GROUP BY 1", (since, h0),
        ))  # fmt: skip
        _add(acc, await self.db.fetch(
            "SELECT deployment, SUM(attempts), SUM(CASE WHEN ok = 1 THEN attempts ELSE 0 END) "
            "FROM ledger_attempts_hourly WHERE hour >= ? GROUP BY deployment", (h0,),
        ))  # fmt: skip
        return {d: (int(r[0] or 0), int(r[1] or 0)) for d, r in acc.items()}

    async def count_ledger(self) -> int:
        rows = await self.db.fetch("SELECT COUNT(*) FROM ledger")
        return int(rows[0][0])

    async def purge(self, before: float) -> int:
        """Delete ledger rows and their roll-ups from before the UTC hour that holds `before` (whole
        hours, so what remains of the roll-ups still equals the raw rows), and audit rows older
        than `before`; returns ledger rows deleted."""
        hour = math.floor(before / rollup.HOUR) * rollup.HOUR
        async with self.db.transaction() as c:
            n = await c.fetch("SELECT COUNT(*) FROM ledger WHERE ts < ?", (hour,))
            await c.execute("DELETE FROM ledger_attempts WHERE ts < ?", (hour,))
            await c.execute("DELETE FROM ledger WHERE ts < ?", (hour,))
            # The histograms' key leads with (dim, value): delete through it, one value at a time,
            # rather than scan every histogram row (values listed before their sums go).
            await c.execute(
                "DELETE FROM ledger_hourly_hist WHERE hour < ? AND (dim, value) IN "
                "(SELECT DISTINCT dim, value FROM ledger_hourly_dim WHERE hour < ?)",
                (hour, hour),
            )
            for table in ("ledger_hourly", "ledger_hourly_dim", "ledger_attempts_hourly"):
                await c.execute(f"DELETE FROM {table} WHERE hour < ?", (hour,))
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


def _whole_hours(since: float, until: float | None) -> tuple[int, int | None]:
    """The first and the end of the whole UTC hours inside [since, until) (until None: open)."""
    h0 = math.ceil(since / rollup.HOUR) * rollup.HOUR
    return h0, None if until is None else math.floor(until / rollup.HOUR) * rollup.HOUR


def _edges(since: float, until: float | None, h0: int, h1: int | None) -> list[tuple[float, float | None]]:
    """The parts of [since, until) the roll-ups do not cover, to be read from raw rows."""
    if h1 is not None and h1 <= h0:
        return [(since, until)]  # not one whole hour: all raw
    out: list[tuple[float, float | None]] = []
    if since < h0:
        out.append((since, float(h0)))
    if h1 is not None and until is not None and h1 < until:
        out.append((float(h1), until))
    return out


def _add(acc: dict[Any, list[Any]], rows: Sequence[Sequence[Any]]) -> None:
    """Sum rows (name, numbers...) into acc by name; None counts as 0, and PostgreSQL's numeric
    sums of integers (Decimal) become ints, so they add to floats."""
    for r in rows:
        nums = [0 if v is None else int(v) if isinstance(v, Decimal) else v for v in r[1:]]
        cur = acc.get(r[0])
        if cur is None:
            acc[r[0]] = nums
        else:
            for i, v in enumerate(nums):
                cur[i] += v


def limits_with(base: Limits, changes: dict[str, Any]) -> Limits:
    d = limits_dict(base)
    d.update(changes)
    return Limits(**d)  # type: ignore[arg-type]
