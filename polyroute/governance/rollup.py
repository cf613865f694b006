"""Hourly roll-ups of the ledger, kept exact by the transaction that inserts the ledger rows.

Reports and dashboard charts over days and weeks read these instead of a million raw rows:

- `ledger_hourly`: sums per hour and every combination of team, key, model, provider, vendor and
  outcome (ok: status < 400). Answers sums with any filters (breakdowns, spend reports).
- `ledger_hourly_dim`: the same sums per hour and ONE dimension (`dim` = '' for everything, or
  'team', 'key', 'model', 'provider', 'vendor'; `value` its value). A handful of rows per hour, so
  unfiltered and single-filter views read hundreds of rows instead of hundreds of thousands.
- `ledger_hourly_hist`: per hour and one dimension (not vendor), the latency and TTFT histograms
  in polyroute/ui/histogram.py's bins, so percentiles from roll-ups equal those from raw rows.
- `ledger_attempts_hourly`: attempts per hour, deployment, provider, vendor and outcome.

'' stands for NULL in the roll-ups' keys (a unique key treats NULLs as distinct, which would defeat
the upserts); readers turn it back with NULLIF. No real team, key, model or provider is called ''.

Only rows the batch really inserted are rolled up, so a replayed spool (inserts are idempotent on
the request id) counts nothing twice: SQLite rolls up the ledger rows whose rowid is above the
table's largest before the insert (writes are serialised, and new rows get larger rowids);
PostgreSQL stages the batch in temporary tables, inserts from them with `ON CONFLICT DO NOTHING
RETURNING` in a CTE, and rolls up what that returns (exact also when several writers race).
All of it is SQL: the writer's Python work per batch is binding the rows, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from polyroute.governance.db import Conn
from polyroute.governance.rows import ATTEMPT_COLUMNS, LEDGER_COLUMNS
from polyroute.ui.histogram import bin_sql

HOUR = 3600
VERSION = 2  # the migration that creates the roll-ups (and back-fills them, see `backfill`)

SUM_DIMS = ("", "team", "key", "model", "provider", "vendor")
HIST_DIMS = ("", "team", "key", "model", "provider")
DIM_COLUMN = {"team": "team_id", "key": "key_id", "model": "model_asked", "provider": "provider", "vendor": "vendor"}
TABLES = ("ledger_hourly", "ledger_hourly_dim", "ledger_hourly_hist", "ledger_attempts_hourly")

SUMS = ("requests", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "cost", "attempts")
_SUM_EXPR = ("COUNT(*)", "SUM(l.input_tokens)", "SUM(l.output_tokens)", "SUM(l.cached_tokens)",
             "SUM(l.reasoning_tokens)", "SUM(l.cost)", "SUM(l.attempts)")  # fmt: skip
_OK = "CASE WHEN {}.status < 400 THEN 1 ELSE 0 END"
_FULL_KEY = ("hour", "key_id", "team_id", "model_asked", "provider", "vendor", "ok")
_ATT_KEY = ("hour", "deployment", "provider", "vendor", "ok")
_ATT_SUMS = ("attempts", "input_tokens", "output_tokens", "cost", "latency_ms")

# PostgreSQL types of the ledger's columns (text unless named), for the staging tables.
_PG_TYPES = {
    "ts": "float8", "attempts": "int4", "input_tokens": "int8", "output_tokens": "int8", "cached_tokens": "int8",
    "cache_write_tokens": "int8", "reasoning_tokens": "int8", "estimated": "int4", "cost": "float8",
    "latency_ms": "float8", "ttft_ms": "float8", "status": "int4", "stream": "int4", "n": "int4",
}  # fmt: skip


def hour_sql(column: str, dialect: str) -> str:
    """The start of the UTC hour of a UNIX time, as an integer (SQLite's cast truncates: floor for
    the positive times of a ledger)."""
    if dialect == "sqlite":
        return f"CAST({column} / {HOUR} AS INTEGER) * {HOUR}"
    return f"CAST(floor({column} / {HOUR}) AS BIGINT) * {HOUR}"


def _ctes(src: str, dialect: str) -> dict[str, str]:
    """The batch seen twice, computed once per statement: `f`, its rows summed per hour and every
    combination of dimensions (a few hundred rows for 500 requests), and `b`, each row's hour,
    dimensions and histogram bins (ln() once per row, not once per dimension), counted."""
    hour = hour_sql("l.ts", dialect)
    f = (
        f"SELECT {hour} AS hour, COALESCE(l.key_id, '') AS key_id, COALESCE(l.team_id, '') AS team_id, "
        "l.model_asked AS model_asked, COALESCE(l.provider, '') AS provider, COALESCE(l.vendor, '') AS vendor, "
        f"{_OK.format('l')} AS ok, "
        + ", ".join(f"{e} AS {c}" for e, c in zip(_SUM_EXPR, SUMS, strict=True))
        + f" FROM {src} AS l GROUP BY 1, 2, 3, 4, 5, 6, 7"
    )
    # Counted per distinct (hour, dimensions, bins) before the histogram's ten arms read it: a batch
    # of similar requests shrinks to a few dozen rows, and the roll-up's cost per ledger row went
    # from 4.8-5.8 to 1.8-1.9 µs (bench/ops/ledger_insert_cost.py, seven latency bins).
    b = (
        f"SELECT {hour} AS hour, COALESCE(l.key_id, '') AS key_id, COALESCE(l.team_id, '') AS team_id, "
        "l.model_asked AS model_asked, COALESCE(l.provider, '') AS provider, "
        f"{bin_sql('l.latency_ms', dialect)} AS lbin, "
        f"CASE WHEN l.ttft_ms IS NULL THEN NULL ELSE {bin_sql('l.ttft_ms', dialect)} END AS tbin, COUNT(*) AS n "
        f"FROM {src} AS l GROUP BY 1, 2, 3, 4, 5, 6, 7"
    )
    return {"f": f, "b": b}


def _upsert(table: str, key: Sequence[str], sums: Sequence[str]) -> str:
    sets = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums)
    return f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"


def _value(dim: str) -> str:
    return f"{DIM_COLUMN[dim]}" if dim else "''"


def _bodies(hist_dims: Sequence[str] = HIST_DIMS) -> list[tuple[str, str]]:
    """(the CTE it reads, the INSERT) for each ledger roll-up. One statement per table; within it
    one GROUP BY per dimension, over the few rows of `f` or the batch's rows in `b`. New rows go in
    in key order: PostgreSQL's heap then keeps one dimension value's hours together (reading one
    key's month from a randomly ordered heap measured 250 ms, from an ordered one 30 ms)."""
    full = (
        f"INSERT INTO ledger_hourly ({', '.join((*_FULL_KEY, *SUMS))}) SELECT * FROM f WHERE true "
        f"ORDER BY 1, 2, 3, 4, 5, 6, 7 {_upsert('ledger_hourly', _FULL_KEY, SUMS)}"
    )
    sums = ", ".join(f"SUM({c})" for c in SUMS)
    per_dim = " UNION ALL ".join(
        f"SELECT '{d}' AS dim, hour, {_value(d)} AS value, ok, {sums} FROM f GROUP BY 2, 3, 4" for d in SUM_DIMS
    )
    dim = (
        f"INSERT INTO ledger_hourly_dim (dim, hour, value, ok, {', '.join(SUMS)}) SELECT * FROM ({per_dim}) AS x "
        f"WHERE true ORDER BY 1, 2, 3, 4 {_upsert('ledger_hourly_dim', ('dim', 'hour', 'value', 'ok'), SUMS)}"
    )
    parts = []
    for d in hist_dims:
        parts.append(f"SELECT '{d}' AS dim, {_value(d)} AS value, hour, lbin AS bin, n AS lat, 0 AS tt FROM b")
        parts.append(f"SELECT '{d}', {_value(d)}, hour, tbin, 0, n FROM b WHERE tbin IS NOT NULL")
    hist = (
        "INSERT INTO ledger_hourly_hist (dim, value, hour, bin, latency, ttft) "
        f"SELECT dim, value, hour, bin, SUM(lat), SUM(tt) FROM ({' UNION ALL '.join(parts)}) AS x "
        "WHERE true GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 "
        f"{_upsert('ledger_hourly_hist', ('dim', 'value', 'hour', 'bin'), ('latency', 'ttft'))}"
    )
    return [("f", full), ("f", dim), ("b", hist)]


def sqlite_statements(src: str, hist_dims: Sequence[str] = HIST_DIMS) -> list[str]:
    """SQLite: one statement per roll-up, each with its CTE over `src` (aliased `l`)."""
    ctes = _ctes(src, "sqlite")
    return [f"WITH {name} AS MATERIALIZED ({ctes[name]}) {body}" for name, body in _bodies(hist_dims)]


def attempt_statement(src: str, dialect: str) -> str:
    """The statement that adds the attempt rows of `src` (aliased `a`) to `ledger_attempts_hourly`."""
    return (
        f"INSERT INTO ledger_attempts_hourly ({', '.join((*_ATT_KEY, *_ATT_SUMS))}) "
        f"SELECT {hour_sql('a.ts', dialect)}, a.deployment, a.provider, a.vendor, {_OK.format('a')}, COUNT(*), "
        "SUM(a.input_tokens), SUM(a.output_tokens), SUM(a.cost), SUM(a.latency_ms) "
        f"FROM {src} AS a WHERE true GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 "
        f"{_upsert('ledger_attempts_hourly', _ATT_KEY, _ATT_SUMS)}"
    )


# --- the writer's statements, built once ------------------------------------------------------------

# SQLite: the rows above the rowid read before the insert (one parameter: each statement reads its
# source once, in its CTE).
SQLITE_LEDGER = sqlite_statements("(SELECT * FROM ledger WHERE rowid > ?)")
SQLITE_ATTEMPTS = attempt_statement("(SELECT * FROM ledger_attempts WHERE rowid > ?)", "sqlite")


def _pg_table(name: str, columns: Sequence[str]) -> str:
    cols = ", ".join(f"{c} {_PG_TYPES.get(c, 'text')}" for c in columns)
    # ON COMMIT DELETE ROWS: emptied by a truncation at commit (deleted rows would pile up: nothing
    # vacuums a temporary table).
    return f"CREATE TEMP TABLE IF NOT EXISTS {name} ({cols}) ON COMMIT DELETE ROWS"


# PostgreSQL: the batch goes to per-connection staging tables (executemany, as before: asyncpg
# encodes the rows a chunk at a time, so the event loop is not held for the whole batch), then one
# statement inserts them into the ledger and rolls up exactly the rows the inserts return.
PG_STAGE = [_pg_table("ledger_batch", LEDGER_COLUMNS), _pg_table("ledger_attempts_batch", ATTEMPT_COLUMNS)]
PG_STAGE_LEDGER = (
    f"INSERT INTO ledger_batch ({', '.join(LEDGER_COLUMNS)}) VALUES ({', '.join('?' * len(LEDGER_COLUMNS))})"
)
PG_STAGE_ATTEMPTS = (
    f"INSERT INTO ledger_attempts_batch ({', '.join(ATTEMPT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ATTEMPT_COLUMNS))})"
)


# What the roll-ups read of the rows inserted (not prompts and answers).
_ROLLED = ("ts", "key_id", "team_id", "model_asked", "provider", "vendor", "status", "input_tokens", "output_tokens",
           "cached_tokens", "reasoning_tokens", "cost", "attempts", "latency_ms", "ttft_ms")  # fmt: skip
_ROLLED_ATTEMPT = ("ts", "deployment", "provider", "vendor", "status", "input_tokens", "output_tokens", "cost",
                   "latency_ms")  # fmt: skip


def _pg_batch() -> str:
    def ins(table: str, columns: Sequence[str], conflict: str, returning: Sequence[str]) -> str:
        # In key order: two writers inserting the same request ids (a replay racing a write) then
        # wait for each other instead of deadlocking on each other's uncommitted rows.
        cols = ", ".join(columns)
        return (
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {table}_batch ORDER BY {conflict} "
            f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {', '.join(returning)}"
        )

    parts = [f"ins AS ({ins('ledger', LEDGER_COLUMNS, 'request_id', _ROLLED)})",
             f"ains AS ({ins('ledger_attempts', ATTEMPT_COLUMNS, 'request_id, n', _ROLLED_ATTEMPT)})"]  # fmt: skip
    parts += [f"{name} AS ({sql})" for name, sql in _ctes("ins", "postgres").items()]
    parts += [f"r{i} AS ({body})" for i, (_, body) in enumerate(_bodies())]
    parts.append(f"ra AS ({attempt_statement('ains', 'postgres')})")
    return "WITH " + ", ".join(parts) + " SELECT (SELECT COUNT(*) FROM ins), (SELECT COUNT(*) FROM ains)"


PG_BATCH = _pg_batch()


# --- migration and rebuild -------------------------------------------------------------------------


async def backfill(conn: Conn, dialect: str) -> None:
    """Roll up every row already in the ledger (the roll-up tables are empty): run by the migration
    that creates them, in its transaction. The writer's statements over the whole table, with the
    histograms one dimension at a time (a million rows sort faster in five pieces)."""
    src = "ledger"
    for name, body in _bodies()[:2] + [b for d in HIST_DIMS for b in _bodies([d])[2:]]:
        cte = _ctes(src, dialect)[name]
        mat = "MATERIALIZED " if dialect == "sqlite" else ""
        await conn.execute(f"WITH {name} AS {mat}({cte}) {body}")
    await conn.execute(attempt_statement("ledger_attempts", dialect))


async def rebuild(conn: Conn, dialect: str) -> None:
    """Recompute every roll-up from the raw rows (after rows were written by something other than
    the ledger writer: a bulk load, an older gateway during a rolling upgrade)."""
    for table in TABLES:
        await conn.execute(f"DELETE FROM {table}")
    await backfill(conn, dialect)
