"""The plan of every query the dashboard and the governance reports send, on a filled ledger.

    .venv/bin/python bench/ui/explain.py /tmp/polyroute-ui-bench.db
    .venv/bin/python bench/ui/explain.py postgresql://postgres@127.0.0.1:5432/uibench

Runs each endpoint's queries (the dashboard's query functions and the Store's report methods) for
the periods and filters the pages offer, records every statement, then EXPLAINs each distinct one
(SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN ANALYZE) and prints the access paths. A full
read of `ledger` or `ledger_attempts` (SQLite `SCAN`, PostgreSQL `Seq Scan`) is flagged BAD.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from polyroute.governance.db import _numbered  # noqa: E402
from polyroute.governance.store import Store  # noqa: E402
from polyroute.ui import queries  # noqa: E402
from polyroute.ui.buckets import BucketCache, grid_for  # noqa: E402
from polyroute.ui.reader import Query, Reader, Row, reader_for  # noqa: E402

RAW = ("ledger", "ledger_attempts")


class Recorder:
    """A reader that records (label, sql, params) and answers through the real one."""

    def __init__(self, inner: Reader) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self.parallelism = 1
        self.label = ""
        self.seen: dict[str, tuple[str, str, list[Any]]] = {}

    def _keep(self, sql: str, params: Sequence[Any]) -> None:
        self.seen.setdefault(sql, (self.label, sql, list(params)))

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._keep(sql, params)
        return await self.inner.fetch(sql, params)

    async def fetch_many(self, qs: Sequence[Query]) -> list[list[Row]]:
        for sql, params in qs:
            self._keep(sql, params)
        return await self.inner.fetch_many(qs)

    def close(self) -> None:
        self.inner.close()


async def record(url: str, key: str, model: str) -> list[tuple[str, str, list[Any]]]:
    store = Store.from_url(url)
    await store.open()
    rec = Recorder(reader_for(store.db))
    now = time.time()
    filters = {"": queries.Filters(), "key": queries.Filters(key=key), "model": queries.Filters(model=model),
               "team": queries.Filters(team="team_01"), "provider": queries.Filters(provider="openai"),
               "key+model": queries.Filters(key=key, model=model)}  # fmt: skip
    try:
        for period in ("1h", "24h", "7d", "30d"):
            seconds = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}[period]
            grid = grid_for(now - seconds, now)
            for name, f in filters.items():
                rec.label = f"overview {period} {name}"
                await queries.overview(rec, BucketCache(), grid, f)
                rec.label = f"breakdown {period} {name}"
                await queries.breakdown(rec, BucketCache(), grid, f)
            rec.label = f"vendors {period}"
            await queries.vendor_series(rec, BucketCache(), grid)
        rec.label = "keys (month to date)"
        await queries.key_spend(rec, BucketCache(), grid_for(now - 22 * 86400, now, 86400))
        rec.label = "routes"
        await queries.recent_attempts(rec, 300)
        for name, f in filters.items():
            for status in (None, "error"):
                rec.label = f"ledger page {name} {status or ''}"
                page = await queries.ledger_page(rec, f, since=now - 30 * 86400, until=now, status=status)
                if page["next"]:
                    rec.label = f"ledger next page {name} {status or ''}"
                    await queries.ledger_page(rec, f, since=now - 30 * 86400, until=now, status=status,
                                              cursor=page["next"])  # fmt: skip
        rec.label = "ledger request"
        await queries.ledger_request(rec, "req_000000000000000000000001")
        # Governance: its reports and start-up queries go through the Store's own connection.
        inner = store.db.fetch

        async def fetch(sql: str, params: Sequence[Any] = ()) -> list[Any]:
            rec._keep(sql, params)
            return await inner(sql, params)

        store.db.fetch = fetch  # type: ignore[method-assign]
        since, until = now - 7 * 86400 - 600, now - 1800
        for by in ("key", "team", "model", "day", "provider", "vendor"):
            rec.label = f"report spend by {by}"
            await store.spend(by, since=since, until=until)
            await store.spend(by, since=since, until=until, key_id=key)
        rec.label = "report dependency"
        await store.vendor_usage(since, until)
        await store.deployment_health(since)
        rec.label = "start-up spend_since"
        await store.spend_since(now - 22 * 86400)
    finally:
        rec.close()
        await store.close()
    return list(rec.seen.values())


def _access_sqlite(path: str, sql: str, params: list[Any]) -> tuple[list[str], float]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        plan = [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql, params)]
        t0 = time.perf_counter()
        con.execute(sql, params).fetchall()
        return [p for p in plan if p.startswith(("SCAN", "SEARCH"))], (time.perf_counter() - t0) * 1000
    finally:
        con.close()


async def _access_pg(url: str, sql: str, params: list[Any]) -> tuple[list[str], float]:
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        rows = await con.fetch("EXPLAIN (ANALYZE, FORMAT TEXT) " + _numbered(sql), *params)
        lines = [r[0] for r in rows]
        ms = float(re.search(r"Execution Time: ([\d.]+)", lines[-1]).group(1))  # type: ignore[union-attr]
        scans = [ln.strip().lstrip("-> ").split("  (")[0] for ln in lines if "Scan" in ln and " on " in ln]
        return scans, ms
    finally:
        await con.close()


def _bad(dialect: str, access: list[str]) -> bool:
    for a in access:
        for t in RAW:
            if dialect == "sqlite" and re.match(rf"SCAN {t}\b(?! USING)", a):
                return True
            if dialect == "postgres" and re.match(rf"(Parallel )?Seq Scan on {t}\b", a):
                return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("db", help="a filled SQLite file, or a filled PostgreSQL database's URL")
    ap.add_argument("--key", default="key_0105")
    ap.add_argument("--model", default="gpt-4o-mini")
    a = ap.parse_args()
    pg = a.db.startswith(("postgresql://", "postgres://"))
    url = a.db if pg else f"sqlite:///{a.db}"
    recorded = asyncio.run(record(url, a.key, a.model))
    bad = 0
    for label, sql, params in recorded:
        if pg:
            access, ms = asyncio.run(_access_pg(url, sql, params))
        else:
            access, ms = _access_sqlite(a.db, sql, params)
        flag = "BAD " if _bad("postgres" if pg else "sqlite", access) else "    "
        bad += flag != "    "
        print(f"{flag}{ms:8.1f} ms  {label:32s} {' | '.join(access)}")
    print(f"{len(recorded)} distinct statements, {bad} reading a whole raw table")


if __name__ == "__main__":
    main()
