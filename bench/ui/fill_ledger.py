"""Fill a governance database with synthetic ledger rows, for the dashboard's measurements.

    .venv/bin/python bench/ui/fill_ledger.py /tmp/ui-bench.db --rows 1000000 --days 30
    .venv/bin/python bench/ui/fill_ledger.py postgresql://postgres@127.0.0.1:5432/uibench   # an empty database

The schema is governance's own (its migrations run first); rows are inserted in time order, in
large transactions (SQLite) or with COPY (PostgreSQL), bypassing the ledger writer, so the hourly
roll-ups are rebuilt from them afterwards (`Store.rebuild_rollups`, when the tree has it). A
million rows take about a minute, and as long again for the roll-ups. The data has the shapes the
dashboard aggregates: 60 keys in 8 teams, 7 public models on 6 vendors, ~5% failovers (two
attempts), ~2% errors, log-normal latencies, TTFT on streams.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from polyroute.governance.keys import Key, Limits, Team, display_prefix, hash_key, new_secret  # noqa: E402
from polyroute.governance.rows import ATTEMPT_COLUMNS, LEDGER_COLUMNS, AttemptRow, LedgerRow  # noqa: E402
from polyroute.governance.store import Store  # noqa: E402

# public model -> [(provider, vendor, upstream model, $/M in, $/M out)], primary first
MODELS: dict[str, list[tuple[str, str, str, float, float]]] = {
    "gpt-4o": [("openai", "openai", "gpt-4o", 2.5, 10.0), ("azure", "azure", "gpt-4o", 2.5, 10.0)],
    "gpt-4o-mini": [("openai", "openai", "gpt-4o-mini", 0.15, 0.6)],
    "claude-sonnet": [("anthropic", "anthropic", "claude-sonnet-4-5", 3.0, 15.0)],
    "claude-haiku": [("anthropic", "anthropic", "claude-haiku-4-5", 1.0, 5.0)],
    "gemini-flash": [("gemini", "gemini", "gemini-2.5-flash", 0.3, 2.5)],
    "mistral-small": [("mistral", "mistral", "mistral-small-latest", 0.1, 0.3)],
    "smollm2": [("inhouse", "inhouse", "smollm2-135m-instruct", 0.0, 0.0)],
}
MODEL_WEIGHTS = [30, 25, 15, 10, 10, 5, 5]
TEAMS = ["search", "support", "ads", "research", "mobile", "infra", "growth", "admin"]
KEYS_PER_TEAM = 8  # the "admin" team gets fewer (see below)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


async def _schema(url: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Run governance's migrations and create teams and keys; returns [(key_id, team_id)] and secrets."""
    store = Store.from_url(url)
    await store.open()
    now = time.time()
    pairs: list[tuple[str, str]] = []
    secrets: list[str] = []
    for ti, name in enumerate(TEAMS):
        team = Team(f"team_{ti:02d}", name, Limits(budget_monthly=5000.0 if name != "admin" else None), now, now)
        await store.create_team(team)
        for ki in range(KEYS_PER_TEAM if name != "admin" else 4):
            secret = new_secret()
            kid = f"key_{ti:02d}{ki:02d}"
            lim = Limits(budget_daily=50.0) if ki % 3 == 0 else Limits()
            await store.create_key(
                Key(kid, team.id, f"{name}-{ki}", hash_key(secret), display_prefix(secret), lim, now, now)
            )
            pairs.append((kid, team.id))
            secrets.append(secret)
    await store.close()
    return pairs, secrets


Attempt = tuple[object, ...]


def generate(
    rows: int, start: float, end: float, pairs: list[tuple[str, str]], seed: int = 7, prefix: str = "req"
) -> Iterator[tuple[tuple[object, ...], list[Attempt]]]:
    """(ledger row, attempt rows) as column tuples, in time order over [start, end)."""
    rng = random.Random(seed)
    names = list(MODELS)
    step = (end - start) / rows
    for i in range(rows):
        ts = start + i * step + rng.random() * step
        model = rng.choices(names, MODEL_WEIGHTS)[0]
        deps = MODELS[model]
        key_id, team_id = pairs[rng.randrange(len(pairs))]
        stream = rng.random() < 0.6
        tin = int(rng.lognormvariate(6.0, 1.0)) + 5
        tout = int(rng.lognormvariate(5.0, 0.8)) + 1
        latency = rng.lognormvariate(math.log(900.0), 0.6)
        ttft = latency * rng.uniform(0.1, 0.4) if stream else None
        failover = len(deps) > 1 and rng.random() < 0.05
        failed = rng.random() < 0.02
        attempts: list[tuple[int, str, str, str, int, str | None, float, int, int, float]] = []
        if failover:
            p, v, up, _, _ = deps[0]
            attempts.append((0, f"{model}/{p}/{up}", p, v, 503, "UpstreamError: 503 overloaded", 120.0, 0, 0, 0.0))
        p, v, up, pin, pout = deps[1] if failover else deps[0]
        status = rng.choice([500, 502, 429, 400]) if failed else 200
        cost = 0.0 if failed else (tin * pin + tout * pout) * 1e-6
        dep_id = f"{model}/{p}/{up}" + ("#1" if failover else "")
        attempts.append(
            (len(attempts), dep_id, p, v, status, "UpstreamError: synthetic" if failed else None, latency,
             0 if failed else tin, 0 if failed else tout, cost)
        )  # fmt: skip
        rid = f"{prefix}_{i:024x}"
        row = (
            rid, ts, _day(ts), key_id, team_id, "openai", model, model,
            None if failed else dep_id, None if failed else p, None if failed else v, len(attempts),
            0 if failed else tin, 0 if failed else tout, 0, 0, 0, 0, cost, latency + (120.0 if failover else 0.0),
            ttft, status, "UpstreamError" if failed else None, "synthetic failure" if failed else None,
            int(stream), None, None, None, None,
        )  # fmt: skip
        yield row, [(rid, a[0], ts, *a[1:]) for a in attempts]


def as_ledger_row(row: tuple[object, ...], attempts: list[Attempt]) -> LedgerRow:
    """The writer's object for a generated row (for timing `Store.insert_ledger`)."""
    d = dict(zip(LEDGER_COLUMNS, row, strict=True))
    d["attempts"] = [
        AttemptRow(**{k: v for k, v in zip(ATTEMPT_COLUMNS, a, strict=True) if k not in ("request_id", "ts")})  # type: ignore[arg-type]
        for a in attempts
    ]
    d["estimated"], d["stream"] = bool(d["estimated"]), bool(d["stream"])
    return LedgerRow(**d)  # type: ignore[arg-type]


def key_pairs() -> list[tuple[str, str]]:
    """[(key_id, team_id)] as `_schema` creates them (without touching a database)."""
    return [(f"key_{ti:02d}{ki:02d}", f"team_{ti:02d}") for ti, name in enumerate(TEAMS)
            for ki in range(KEYS_PER_TEAM if name != "admin" else 4)]  # fmt: skip


def fill(target: str, rows: int, days: float, seed: int = 7) -> dict[str, object]:
    """Fill a new SQLite file (a path) or an empty PostgreSQL database (a postgresql:// URL), then
    build the hourly roll-ups from the rows (the bulk load bypasses the ledger writer)."""
    postgres = target.startswith(("postgresql://", "postgres://"))
    if not postgres and Path(target).exists():
        raise SystemExit(f"{target} exists: give a new file")
    url = target if postgres else f"sqlite:///{target}"
    pairs, _ = asyncio.run(_schema(url))
    end = time.time()
    start = end - days * 86400.0
    t0 = time.perf_counter()
    rows_iter = generate(rows, start, end, pairs, seed)
    attempts_total = asyncio.run(_fill_postgres(url, rows_iter)) if postgres else _fill_sqlite(Path(target), rows_iter)
    filled = time.perf_counter() - t0
    t1 = time.perf_counter()
    rolled = asyncio.run(_rollups(url))
    return {
        "rows": rows,
        "attempts": attempts_total,
        "days": days,
        "seconds": round(filled, 1),
        "rollup_seconds": round(time.perf_counter() - t1, 1) if rolled else None,
        "size_mb": round(Path(target).stat().st_size / 1e6, 1) if not postgres else None,
    }


def _fill_sqlite(path: Path, rows: Iterator[tuple[tuple[object, ...], list[Attempt]]]) -> int:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    ins_l = f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)}) VALUES ({', '.join('?' * len(LEDGER_COLUMNS))})"
    ins_a = (
        f"INSERT INTO ledger_attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({', '.join('?' * len(ATTEMPT_COLUMNS))})"
    )
    batch_l: list[tuple[object, ...]] = []
    batch_a: list[Attempt] = []
    total = 0

    def flush() -> None:
        con.execute("BEGIN")
        con.executemany(ins_l, batch_l)
        con.executemany(ins_a, batch_a)
        con.execute("COMMIT")
        batch_l.clear()
        batch_a.clear()

    for row, attempts in rows:
        batch_l.append(row)
        batch_a.extend(attempts)
        total += len(attempts)
        if len(batch_l) >= 50_000:
            flush()
    if batch_l:
        flush()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return total


async def _fill_postgres(url: str, rows: Iterator[tuple[tuple[object, ...], list[Attempt]]]) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    total = 0
    try:
        batch_l: list[tuple[object, ...]] = []
        batch_a: list[Attempt] = []
        for row, attempts in rows:
            batch_l.append(row)
            batch_a.extend(attempts)
            total += len(attempts)
            if len(batch_l) >= 50_000:
                await conn.copy_records_to_table("ledger", records=batch_l, columns=list(LEDGER_COLUMNS))
                await conn.copy_records_to_table("ledger_attempts", records=batch_a, columns=list(ATTEMPT_COLUMNS))
                batch_l, batch_a = [], []
        if batch_l:
            await conn.copy_records_to_table("ledger", records=batch_l, columns=list(LEDGER_COLUMNS))
            await conn.copy_records_to_table("ledger_attempts", records=batch_a, columns=list(ATTEMPT_COLUMNS))
        # What autovacuum would have done on a database that grew over a month.
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return total


async def _rollups(url: str) -> bool:
    """Rebuild the roll-ups from the rows, when this tree's governance has them."""
    store = Store.from_url(url)
    await store.open()
    try:
        rebuild = getattr(store, "rebuild_rollups", None)
        if rebuild is None:
            return False
        await rebuild()
        if store.db.dialect == "postgres":
            await store.db.execute("VACUUM ANALYZE")
        return True
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("db", help="new SQLite file to create, or an empty PostgreSQL database's postgresql:// URL")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=float, default=30.0, help="spread the rows evenly over the last N days")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    print(fill(a.db, a.rows, a.days, a.seed))


if __name__ == "__main__":
    main()
