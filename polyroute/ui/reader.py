"""Read-only access to the ledger for the dashboard, apart from governance's own connection.

SQLite: the governance store has one connection behind a lock, which the ledger writer and key
look-ups need; a report that reads for a second must not hold it. The dashboard opens its own
read-only connections (WAL lets them read while the writer writes), one per thread of a small pool,
and runs a batch of queries per thread hop. PostgreSQL: governance's connection pool, one pooled
connection and one read transaction (a consistent snapshot) per batch.

SQL uses `?` placeholders for both (the PostgreSQL driver numbers them).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

Row = tuple[Any, ...]
Query = tuple[str, Sequence[Any]]


class Reader(Protocol):
    dialect: str
    # Batches that can run at once (connections that read in parallel).
    parallelism: int

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetch_many(self, queries: Sequence[Query]) -> list[list[Row]]:
        """Run the queries in order on one connection; one result list per query."""
        ...

    def close(self) -> None: ...


class SQLiteReader:
    dialect = "sqlite"

    def __init__(self, path: str, threads: int = 2) -> None:
        self.path = path
        self.parallelism = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="polyroute-ui-db")
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA query_only=1")
            try:
                conn.execute("SELECT ln(2.0), floor(1.5)")
            except sqlite3.OperationalError:
                # SQLite built without its math functions: the histograms need these two.
                conn.create_function("ln", 1, _ln, deterministic=True)
                conn.create_function("floor", 1, _floor, deterministic=True)
            self._local.conn = conn
        return conn

    def _run(self, queries: Sequence[Query]) -> list[list[Row]]:
        conn = self._conn()
        return [conn.execute(sql, tuple(params)).fetchall() for sql, params in queries]

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return (await self.fetch_many([(sql, params)]))[0]

    async def fetch_many(self, queries: Sequence[Query]) -> list[list[Row]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run, list(queries))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class PoolReader:
    """Reads through governance's PostgreSQL pool (its `Database` interface)."""

    def __init__(self, db: Any, parallelism: int = 2) -> None:
        self.db = db
        self.dialect = str(db.dialect)
        self.parallelism = parallelism

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = await self.db.fetch(sql, params)
        return rows

    async def fetch_many(self, queries: Sequence[Query]) -> list[list[Row]]:
        out: list[list[Row]] = []
        async with self.db.transaction() as conn:
            for sql, params in queries:
                out.append(await conn.fetch(sql, params))
        return out

    def close(self) -> None:
        pass  # the pool is governance's


def _ln(x: float | None) -> float | None:
    return math.log(x) if x is not None and x > 0 else None


def _floor(x: float | None) -> float | None:
    return float(math.floor(x)) if x is not None else None


def reader_for(db: Any) -> Reader:
    """A reader over governance's database (`polyroute.governance.db.Database`)."""
    if db.dialect == "sqlite":
        return SQLiteReader(db.path)
    return PoolReader(db)
