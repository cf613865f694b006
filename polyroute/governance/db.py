"""Two database drivers behind one small interface: SQLite (embedded, WAL) and PostgreSQL (asyncpg).

SQL is written once, with `?` placeholders; the PostgreSQL driver numbers them ($1, $2, ...).
Migrations are versioned SQL files per dialect (governance/migrations/<dialect>/NNNN_name.sql),
applied in order at start-up inside one transaction, under a lock so that several workers starting
at once apply each version exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

Row = tuple[Any, ...]
T = TypeVar("T")

log = logging.getLogger("polyroute.governance")
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
SQLITE_BUSY_MS = 30_000
MIGRATION_WAIT_MS = 15 * 60_000
POOL_CLOSE_TIMEOUT = 5.0


class Conn(Protocol):
    """One connection, possibly inside a transaction."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def script(self, sql: str) -> None: ...


class Database(Protocol):
    dialect: str
    url: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self) -> Any:
        """An async context manager yielding a Conn whose statements commit together."""
        ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def open_database(url: str, *, pool_size: int = 10, connect_timeout: float = 10.0) -> Database:
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        if path.startswith("/"):
            path = path[1:]  # sqlite:///rel.db -> rel.db ; sqlite:////abs.db -> /abs.db
        if not path:
            raise ValueError("a sqlite URL needs a file: sqlite:///./polyroute.db or sqlite:////var/lib/polyroute.db")
        return SQLiteDatabase(url, path)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, pool_size=pool_size, connect_timeout=connect_timeout)
    raise ValueError(
        f"unsupported database URL '{redact_url(url)}': use sqlite:///path.db or postgresql://user:password@host/db"
    )


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) in version order."""
    out = []
    for entry in resources.files("polyroute.governance").joinpath("migrations", dialect).iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text()))
    return sorted(out)


async def migrate(db: Database) -> list[int]:
    """Apply the migrations not yet applied; returns the versions applied now."""
    if db.dialect == "sqlite":
        # Another process's migration may take minutes (a back-fill of roll-ups): wait for it.
        await db.execute(f"PRAGMA busy_timeout={MIGRATION_WAIT_MS}")
    try:
        return await _migrate(db)
    finally:
        if db.dialect == "sqlite":
            await db.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")


async def _migrate(db: Database) -> list[int]:
    applied_now: list[int] = []
    async with db.transaction() as conn:
        if db.dialect == "postgres":
            # Serialises concurrent start-ups; released at commit.
            await conn.execute("SELECT pg_advisory_xact_lock(7243001)")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at DOUBLE PRECISION NOT NULL)"
        )
        done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations(db.dialect):
            if version in done:
                continue
            await conn.script(sql)
            step = _after_migration().get(version)
            if step is not None:
                await step(conn, db.dialect)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", (version, name, time.time())
            )
            applied_now.append(version)
    return applied_now


def _after_migration() -> dict[int, Callable[[Conn, str], Awaitable[None]]]:
    """Steps a migration needs beyond its SQL, run right after it in the same transaction: the
    roll-ups' back-fill shares its SQL with the ledger writer (governance/rollup.py)."""
    from polyroute.governance import rollup

    return {rollup.VERSION: rollup.backfill}


# --- SQLite --------------------------------------------------------------------------------------


class _SQLiteConn:
    """Statements on the database's thread, one hand-over each."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._db.call(_execute, sql, tuple(params))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._db.call(_executemany, sql, [tuple(r) for r in rows])

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._db.call(_fetch, sql, tuple(params))

    async def script(self, sql: str) -> None:
        # executescript would COMMIT the open transaction first; run statement by statement.
        await self._db.call(_script, _statements(sql))


class SQLiteDatabase:
    """One connection, used only from one thread of its own (sqlite3 blocks); a lock keeps
    transactions whole. `run_transaction` runs a whole transaction in one hand-over to that
    thread, which is how the ledger writer inserts a batch: the event loop hears of it once."""

    dialect = "sqlite"

    def __init__(self, url: str, path: str) -> None:
        self.url = url
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polyroute-sqlite")
        self._conn = await asyncio.get_running_loop().run_in_executor(self._thread, self._connect)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        conn.execute("PRAGMA foreign_keys=ON")
        try:
            conn.execute("SELECT ln(2.0), floor(1.5), max(1.0, 0.0)")
        except sqlite3.OperationalError:
            # SQLite built without its math functions: the roll-ups' histogram bins need these.
            conn.create_function("ln", 1, _ln, deterministic=True)
            conn.create_function("floor", 1, _floor, deterministic=True)
        return conn

    async def close(self) -> None:
        if self._conn is not None:
            await self.call(sqlite3.Connection.close)
            self._conn = None
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(connection, *args) on the database's thread."""
        if self._conn is None or self._thread is None:
            raise sqlite3.ProgrammingError(f"database {self.url} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, self._conn, *args)

    async def run_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(connection) inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK if it raises), all on the
        database's thread."""
        async with self._lock:
            return await self.call(_in_transaction, fn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self._lock:
            await self.call(_execute, "BEGIN IMMEDIATE", ())
            try:
                yield _SQLiteConn(self)
            except BaseException:
                await self.call(_execute, "ROLLBACK", ())
                raise
            await self.call(_execute, "COMMIT", ())

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._lock:
            return await self.call(_fetch, sql, tuple(params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        async with self._lock:
            await self.call(_execute, sql, tuple(params))


# What runs on the SQLite thread.


def _execute(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
    conn.execute(sql, params)


def _executemany(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(sql, rows)


def _fetch(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Row]:
    return [tuple(r) for r in conn.execute(sql, params).fetchall()]


def _script(conn: sqlite3.Connection, statements: list[str]) -> None:
    for stmt in statements:
        conn.execute(stmt)


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return out


# --- PostgreSQL ----------------------------------------------------------------------------------


_QMARK = re.compile(r"\?")


def _numbered(sql: str) -> str:
    n = 0

    def repl(_: re.Match[str]) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    return _QMARK.sub(repl, sql)


class _PGConn:
    def __init__(self, conn: Any) -> None:
        self._c = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._c.execute(_numbered(sql), *params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._c.executemany(_numbered(sql), [tuple(r) for r in rows])

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(r) for r in await self._c.fetch(_numbered(sql), *params)]

    async def script(self, sql: str) -> None:
        await self._c.execute(sql)


class PostgresDatabase:
    dialect = "postgres"

    def __init__(self, url: str, *, pool_size: int, connect_timeout: float) -> None:
        self.url = url
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._pool: Any = None

    async def open(self) -> None:
        import asyncpg

        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size, timeout=self.connect_timeout
            )
        except Exception as exc:
            # asyncpg's messages may quote the DSN; never let a password reach a log.
            raise ConnectionError(
                f"cannot connect to PostgreSQL at {redact_url(self.url)}: {type(exc).__name__}"
            ) from None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # asyncpg's close() waits for every connection to come back to the pool, without limit: a
        # stop must not hang on one a cancelled task never returned (its query dies with it).
        try:
            await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("PostgreSQL: connections still in use %.0f s into the stop; closing them", POOL_CLOSE_TIMEOUT)
            pool.terminate()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PGConn(conn)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._pool.acquire() as conn:
            return await _PGConn(conn).fetch(sql, params)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        async with self._pool.acquire() as conn:
            await _PGConn(conn).execute(sql, params)


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (our migrations have no ';' inside literals)."""
    lines = [ln for ln in sql.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _ln(x: float | None) -> float | None:
    return math.log(x) if x is not None and x > 0 else None


def _floor(x: float | None) -> float | None:
    return float(math.floor(x)) if x is not None else None
