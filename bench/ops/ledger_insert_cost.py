"""What the ledger writer's SQLite work costs per row, statement by statement.

    .venv/bin/python bench/ops/ledger_insert_cost.py                     # ~10 s
    .venv/bin/python bench/ops/ledger_insert_cost.py --prefill 300000    # into a bigger ledger
    .venv/bin/python bench/ops/ledger_insert_cost.py --random-ids    # ids as before 2026-11-22

Runs the writer's own statements (governance/store.py, governance/rollup.py) on a database made by
the migrations, with batches of rows like the benchmark's, and prints the CPU time per row of each
step: ledger rows, attempt rows, the three ledger roll-ups, the attempts' roll-up and the commit.
CPU time, not wall time: a busy machine disturbs it less. Numbers from this file are quoted in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from polyroute.governance import rollup
from polyroute.governance.rows import ATTEMPT_COLUMNS, LEDGER_COLUMNS
from polyroute.governance.store import (
    _INSERT_ATTEMPT,
    _INSERT_LEDGER,
    SQLITE_BULK_ROWS_PER_STATEMENT,
    SQLITE_ROWS_PER_STATEMENT,
    Store,
    _insert_chunked,
)
from polyroute.server.http import new_request_id

Values = tuple[object, ...]


def batch(n: int, random_ids: bool) -> tuple[list[Values], list[Values]]:
    rows, attempts = [], []
    for i in range(n):
        rid = "req_" + os.urandom(12).hex() if random_ids else new_request_id()
        ts = time.time()
        latency = 0.25 + (i % 7) * 0.05  # a few histogram bins, as real traffic has
        rows.append((rid, ts, "2026-11-22", "key_bench", "team_bench", "openai", "bench-model", "bench-model",
                     "bench-model/upstream/gpt-4o-mini", "upstream", "openai", 1, 20, 30, 0, 0, 0, 0, 1.5e-5,
                     latency, None, 200, None, None, 0, None, None, None, None))  # fmt: skip
        attempts.append((rid, 0, ts, "bench-model/upstream/gpt-4o-mini", "upstream", "openai", 200, None,
                         latency, 20, 30, 1.5e-5))  # fmt: skip
    return rows, attempts


STEP = [SQLITE_ROWS_PER_STATEMENT]


def insert(c: sqlite3.Connection, sql: str, width: int, rows: list[Values]) -> None:
    _insert_chunked(c, sql, width, rows, STEP[0])


def write(c: sqlite3.Connection, rows: list[Values], attempts: list[Values], spent: dict[str, float]) -> None:
    """The statements of store.sqlite_insert_batch, each timed."""

    def timed(name: str, fn: object, *args: object) -> None:
        t = time.process_time()
        fn(*args)  # type: ignore[operator]
        spent[name] = spent.get(name, 0.0) + time.process_time() - t

    c.execute("BEGIN IMMEDIATE")
    last, last_attempt = c.execute(
        "SELECT (SELECT COALESCE(MAX(rowid), 0) FROM ledger), (SELECT COALESCE(MAX(rowid), 0) FROM ledger_attempts)"
    ).fetchone()
    timed("ledger rows", insert, c, _INSERT_LEDGER, len(LEDGER_COLUMNS), rows)
    timed("attempt rows", insert, c, _INSERT_ATTEMPT, len(ATTEMPT_COLUMNS), attempts)
    for name, sql in zip(("roll-up: hourly", "roll-up: per dimension", "roll-up: histograms"), rollup.SQLITE_LEDGER,
                         strict=True):  # fmt: skip
        timed(name, c.execute, sql, (last,))
    timed("roll-up: attempts", c.execute, rollup.SQLITE_ATTEMPTS, (last_attempt,))
    timed("commit", c.execute, "COMMIT")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=500, help="rows per batch (the writer's default batch_size)")
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--prefill", type=int, default=0, help="rows written before the timed batches")
    ap.add_argument("--random-ids", action="store_true", help="random request ids (before 2026-11-22)")
    ap.add_argument("--rows-per-statement", type=int, default=SQLITE_ROWS_PER_STATEMENT,
                    help=f"{SQLITE_ROWS_PER_STATEMENT}; the writer uses {SQLITE_BULK_ROWS_PER_STATEMENT} when behind")
    a = ap.parse_args()
    STEP[0] = a.rows_per_statement
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ledger.db"

        async def migrate() -> None:
            store = Store.from_url(f"sqlite:///{path}")
            await store.open()
            await store.close()

        asyncio.run(migrate())
        c = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):
            c.execute(f"PRAGMA {pragma}")  # as governance/db.py opens it
        for _ in range(a.prefill // a.batch):
            write(c, *batch(a.batch, a.random_ids), {})
        spent: dict[str, float] = {}
        for _ in range(a.batches):
            write(c, *batch(a.batch, a.random_ids), spent)
        n = a.batch * a.batches
        print(f"{n} rows in batches of {a.batch} after {a.prefill} rows; ids: "
              f"{'random' if a.random_ids else 'time-ordered'}")  # fmt: skip
        for name, sec in spent.items():
            print(f"  {name:24s} {sec / n * 1e6:6.2f} us/row")
        print(f"  {'total':24s} {sum(spent.values()) / n * 1e6:6.2f} us/row (CPU)")


if __name__ == "__main__":
    main()
