"""The hourly roll-ups equal aggregates over the raw rows, on SQLite and PostgreSQL: after batched
inserts, after a spool replay that brings rows already written (and a batch with a row twice),
after the migration's back-fill of a ledger written before the roll-ups existed, and after
retention. The dashboard gives the same answers from roll-ups as from raw rows, and the governance
reports (whole hours from roll-ups, the edges from raw rows) the same as over raw rows."""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from polyroute.governance import rollup
from polyroute.governance.db import Database, migrations, open_database
from polyroute.governance.ledger import LedgerWriter, Spool
from polyroute.governance.rows import LEDGER_COLUMNS, AttemptRow, LedgerRow
from polyroute.governance.store import Store, utc_day
from polyroute.ui import queries
from polyroute.ui.buckets import BucketCache, grid_for
from polyroute.ui.histogram import bin_sql
from polyroute.ui.reader import reader_for
from tests.helpers.governance import db_url  # noqa: F401
from tests.helpers.services import postgres  # noqa: F401

pytestmark = pytest.mark.integration

HOUR = 3600
# A fixed end on an hour boundary plus a bit, so periods cover whole and partial hours alike.
END = math.floor(time.time() / HOUR) * HOUR + 1234.5
SPAN = 30 * HOUR


def rows(n: int, seed: int = 1, prefix: str = "r", span: float = SPAN) -> list[LedgerRow]:
    """Requests over [END - span, END): keys with and without teams, no key at all, failures
    without a vendor, failovers (two attempts), streams with a TTFT."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = END - span + span * rng.random()
        model = rng.choice(["alpha", "beta", "gamma"])
        provider, vendor = rng.choice([("p-openai", "openai"), ("p-azure", "azure"), ("p-local", "inhouse")])
        key = rng.choice(["k1", "k2", "k3", None])
        team = None if key is None else {"k1": "t1", "k2": "t1", "k3": None}[key]
        failed = rng.random() < 0.1
        failover = rng.random() < 0.15
        cost = 0.0 if failed else round(rng.uniform(0.0001, 0.01), 6)
        tin, tout = rng.randint(1, 2000), rng.randint(1, 500)
        attempts = []
        if failover:
            attempts.append(AttemptRow(n=0, deployment=f"{model}/p-down", provider="p-down", vendor="downvendor",
                                       status=503, error="x", latency_ms=50.0, input_tokens=0, output_tokens=0,
                                       cost=0.0002))  # fmt: skip
        attempts.append(AttemptRow(n=len(attempts), deployment=f"{model}/{provider}", provider=provider, vendor=vendor,
                                   status=502 if failed else 200, error="y" if failed else None,
                                   latency_ms=rng.lognormvariate(6.0, 0.7), input_tokens=tin, output_tokens=tout,
                                   cost=cost))  # fmt: skip
        stream = rng.random() < 0.5
        out.append(LedgerRow(
            request_id=f"{prefix}{i:06d}", ts=ts, day=utc_day(ts), key_id=key, team_id=team, api="openai",
            model_asked=model, route=model, deployment=None if failed else f"{model}/{provider}",
            provider=None if failed else provider, vendor=None if failed else vendor, attempts=attempts,
            input_tokens=0 if failed else tin, output_tokens=0 if failed else tout,
            cached_tokens=rng.randint(0, 5), cache_write_tokens=0, reasoning_tokens=rng.randint(0, 9),
            estimated=False, cost=cost + (0.0002 if failover else 0.0),
            latency_ms=rng.lognormvariate(6.5, 0.8), ttft_ms=rng.lognormvariate(5.0, 0.5) if stream else None,
            status=502 if failed else 200, error_class="UpstreamError" if failed else None, error_message=None,
            stream=stream, tags=None, end_user=None,
        ))  # fmt: skip
    return out


async def _insert(store: Store, batch: Sequence[LedgerRow], size: int = 97) -> None:
    for i in range(0, len(batch), size):
        await store.insert_ledger(batch[i : i + size])


def _norm(rows: Sequence[Sequence[Any]], keys: int) -> dict[tuple[Any, ...], tuple[float, ...]]:
    """{key columns: numbers}, the hour as an int, every number as a float."""
    return {(int(r[0]), *r[1:keys]): tuple(float(v) for v in r[keys:]) for r in rows}


def _equal(got: dict[Any, tuple[float, ...]], want: dict[Any, tuple[float, ...]], what: str) -> None:
    assert got.keys() == want.keys(), what
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), (what, k)


async def assert_rollups_match(db: Database) -> int:
    """Every roll-up table equals the same aggregate computed here, independently, from raw rows."""
    d = db.dialect
    hour = rollup.hour_sql("ts", d)
    ok = "CASE WHEN status < 400 THEN 1 ELSE 0 END"
    sums = "COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens), SUM(cost), SUM(attempts)"
    rsums = "requests, input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost, attempts"
    full_raw = await db.fetch(
        f"SELECT {hour}, COALESCE(key_id, ''), COALESCE(team_id, ''), model_asked, COALESCE(provider, ''), "
        f"COALESCE(vendor, ''), {ok}, {sums} FROM ledger GROUP BY 1, 2, 3, 4, 5, 6, 7"
    )
    full = await db.fetch(
        f"SELECT hour, key_id, team_id, model_asked, provider, vendor, ok, {rsums} FROM ledger_hourly"
    )
    _equal(_norm(full, 7), _norm(full_raw, 7), "ledger_hourly")
    for dim in rollup.SUM_DIMS:
        col = f"COALESCE({rollup.DIM_COLUMN[dim]}, '')" if dim else "''"
        raw = await db.fetch(f"SELECT {hour}, {col}, {ok}, {sums} FROM ledger GROUP BY 1, 2, 3")
        rolled = await db.fetch(f"SELECT hour, value, ok, {rsums} FROM ledger_hourly_dim WHERE dim = ?", (dim,))
        _equal(_norm(rolled, 3), _norm(raw, 3), f"ledger_hourly_dim {dim!r}")
    for dim in rollup.HIST_DIMS:
        col = f"COALESCE({rollup.DIM_COLUMN[dim]}, '')" if dim else "''"
        lat = await db.fetch(f"SELECT {hour}, {col}, {bin_sql('latency_ms', d)}, COUNT(*) FROM ledger GROUP BY 1, 2, 3")
        tt = await db.fetch(
            f"SELECT {hour}, {col}, {bin_sql('ttft_ms', d)}, COUNT(*) FROM ledger WHERE ttft_ms IS NOT NULL GROUP BY 1, 2, 3"
        )
        rolled = await db.fetch("SELECT hour, value, bin, latency, ttft FROM ledger_hourly_hist WHERE dim = ?", (dim,))
        assert {k: v[0] for k, v in _norm(rolled, 3).items() if v[0]} == {k: v[0] for k, v in _norm(lat, 3).items()}
        assert {k: v[1] for k, v in _norm(rolled, 3).items() if v[1]} == {k: v[0] for k, v in _norm(tt, 3).items()}
    att_raw = await db.fetch(
        f"SELECT {hour}, deployment, provider, vendor, {ok}, COUNT(*), SUM(input_tokens), SUM(output_tokens), "
        "SUM(cost), SUM(latency_ms) FROM ledger_attempts GROUP BY 1, 2, 3, 4, 5"
    )
    att = await db.fetch(
        "SELECT hour, deployment, provider, vendor, ok, attempts, input_tokens, output_tokens, cost, latency_ms "
        "FROM ledger_attempts_hourly"
    )
    _equal(_norm(att, 5), _norm(att_raw, 5), "ledger_attempts_hourly")
    return len(full)


def test_batches_and_spool_replay_count_each_row_once(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    first, second = rows(700, seed=1), rows(300, seed=2, prefix="s")

    async def main() -> None:
        store = Store.from_url(db_url)
        await store.open()
        try:
            await _insert(store, first)
            assert await assert_rollups_match(store.db) > 0
            # A spool written while the database "timed out" though the commit went through: rows
            # already in, new rows, and one row twice in the same segment.
            spool = Spool(tmp_path / "spool")
            spool.append(first[100:400])
            spool.append(second)
            spool.append(second[:1])
            spool.rotate()
            writer = LedgerWriter(store, spool, batch_size=64)
            assert await writer.replay() == 300 + 300 + 1
            assert not spool.pending()
            assert await store.count_ledger() == 1000
            await assert_rollups_match(store.db)
            # The same batch again, whole: nothing moves.
            before = await store.db.fetch("SELECT SUM(requests), SUM(cost) FROM ledger_hourly_dim WHERE dim = ''")
            await store.insert_ledger(first[:50])
            after = await store.db.fetch("SELECT SUM(requests), SUM(cost) FROM ledger_hourly_dim WHERE dim = ''")
            assert before == after and int(after[0][0]) == 1000

            # Retention deletes whole hours of rows and of roll-ups together.
            n = await store.purge(END - 20 * HOUR)
            assert 0 < n < 1000
            assert await store.count_ledger() == 1000 - n
            await assert_rollups_match(store.db)
            oldest = await store.db.fetch("SELECT MIN(hour) FROM ledger_hourly_dim")
            assert int(oldest[0][0]) == math.floor((END - 20 * HOUR) / HOUR) * HOUR

            # The rebuild gives back what the writer kept.
            before_rows = await store.db.fetch("SELECT COUNT(*), SUM(latency) FROM ledger_hourly_hist")
            await store.rebuild_rollups()
            assert await store.db.fetch("SELECT COUNT(*), SUM(latency) FROM ledger_hourly_hist") == before_rows
        finally:
            await store.close()

    asyncio.run(main())


def test_racing_writers_count_each_row_once(db_url: str) -> None:  # noqa: F811
    """Two processes' writers (two stores) insert the same rows at once, in different batches and
    orders, as when two workers replay copies of the same rows: each row is rolled up once, and
    the upserts (taken in key order) do not deadlock."""
    data = rows(800, seed=8, span=3 * HOUR)

    async def main() -> None:
        a, b = Store.from_url(db_url), Store.from_url(db_url)
        await a.open()
        await b.open()
        try:
            shuffled = data[:]
            random.Random(9).shuffle(shuffled)
            await asyncio.gather(_insert(a, data, size=50), _insert(b, shuffled, size=70))
            assert await a.count_ledger() == len(data)
            await assert_rollups_match(a.db)
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_migration_backfills_a_ledger_written_before_rollups(db_url: str) -> None:  # noqa: F811
    old = rows(900, seed=3)

    async def main() -> None:
        # Schema version 1 only, and rows written the way the previous release wrote them.
        db = open_database(db_url)
        await db.open()
        try:
            async with db.transaction() as c:
                await c.execute(
                    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                    "applied_at DOUBLE PRECISION NOT NULL)"
                )
                v1 = next(m for m in migrations(db.dialect) if m[0] == 1)
                await c.script(v1[2])
                await c.execute("INSERT INTO schema_migrations VALUES (1, 'initial', 0)")
                marks = ", ".join("?" * len(LEDGER_COLUMNS))
                await c.executemany(f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)}) VALUES ({marks})",
                                    [r.ledger_values() for r in old])  # fmt: skip
                await c.executemany(
                    "INSERT INTO ledger_attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [a for r in old for a in r.attempt_values()],
                )
        finally:
            await db.close()
        store = Store.from_url(db_url)
        assert await store.open() == [2, 3]
        try:
            assert await assert_rollups_match(store.db) > 0
            # And the writer carries on from there.
            await _insert(store, rows(200, seed=4, prefix="new"))
            await assert_rollups_match(store.db)
        finally:
            await store.close()

    asyncio.run(main())


def _raw_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "rollup_fits", lambda grid: False)


def _same(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats to 1e-9 relative (sums in another order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def test_dashboard_answers_the_same_from_rollups(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    data = rows(1500, seed=5)
    filters = [queries.Filters(), queries.Filters(key="k1"), queries.Filters(team="t1"), queries.Filters(model="beta"),
               queries.Filters(provider="p-azure"), queries.Filters(vendor="azure"),
               queries.Filters(key="k2", model="alpha")]  # fmt: skip

    async def answers(reader: Any, grids: list[Any]) -> list[Any]:
        out: list[Any] = []
        for g in grids:
            for f in filters:
                out.append(await queries.overview(reader, BucketCache(), g, f))
                out.append(await queries.breakdown(reader, BucketCache(), g, f))
            out.append(await queries.vendor_series(reader, BucketCache(), g))
            out.append(await queries.key_spend(reader, BucketCache(), g))
        return out

    async def main() -> None:
        store = Store.from_url(db_url)
        await store.open()
        reader = reader_for(store.db)
        try:
            await _insert(store, data, size=500)
            grids = [grid_for(END - SPAN, END, 3600), grid_for(END - SPAN, END, 3 * 3600),
                     grid_for(END - SPAN, END, 86400)]  # fmt: skip
            rolled = await answers(reader, grids)
            assert rolled[0]["totals"]["requests"] == len(data)
            with monkeypatch.context() as m:
                _raw_path(m)
                raw = await answers(reader, grids)
            _same(rolled, raw)
        finally:
            reader.close()
            await store.close()

    asyncio.run(main())


def test_governance_reports_match_raw_rows(db_url: str) -> None:  # noqa: F811
    data = rows(1200, seed=6)
    since, until = END - 25 * HOUR - 777.0, END - 3 * HOUR + 55.0  # partial hours at both ends

    async def main() -> None:
        store = Store.from_url(db_url)
        await store.open()
        try:
            await _insert(store, data)
            for by in ("key", "team", "model", "day", "provider", "vendor"):
                for kw in ({}, {"key_id": "k1"}, {"team_id": "t1"}):
                    got = await store.spend(by, since=since, until=until, **kw)
                    expected = _spend(data, by, since, until, **kw)
                    assert {g[by]: g for g in got}.keys() == expected.keys(), (by, kw)
                    for g in got:
                        w = expected[g[by]]
                        assert (g["requests"], g["errors"], g["input_tokens"], g["attempts"]) == w[:4], (by, kw)
                        assert g["cost"] == pytest.approx(w[4])
            # Less than an hour, inside one hour: raw rows only.
            short = await store.spend("model", since=END - 1200, until=END - 60)
            assert sum(r["requests"] for r in short) == sum(1 for r in data if END - 1200 <= r.ts < END - 60)

            usage = {v: (n, tok, usd) for v, n, tok, usd in await store.vendor_usage(since, until)}
            inside = [r for r in data if since <= r.ts < until]
            for v in {a.vendor for r in inside for a in r.attempts}:
                n, tok, usd = usage[v]
                ok = [r for r in inside if r.vendor == v and r.status < 400]
                assert (n, tok) == (len(ok), sum(r.input_tokens + r.output_tokens for r in ok))
                assert usd == pytest.approx(sum(a.cost for r in inside for a in r.attempts if a.vendor == v))

            health = await store.deployment_health(since)
            after = [a for r in data if r.ts >= since for a in r.attempts]
            assert health == {d: (sum(1 for a in after if a.deployment == d),
                                  sum(1 for a in after if a.deployment == d and a.status < 400))
                              for d in {a.deployment for a in after}}  # fmt: skip

            seeded: dict[tuple[str, str], float] = {}
            for key, team, day, usd in await store.spend_since(since):
                for sid in (f"key:{key}" if key else None, f"team:{team}" if team else None):
                    if sid:
                        seeded[(sid, day)] = seeded.get((sid, day), 0.0) + usd
            want: dict[tuple[str, str], float] = {}
            for r in data:
                if r.ts >= since:
                    for sid in (f"key:{r.key_id}" if r.key_id else None, f"team:{r.team_id}" if r.team_id else None):
                        if sid:
                            want[(sid, r.day)] = want.get((sid, r.day), 0.0) + r.cost
            assert seeded.keys() == want.keys()
            for sid_day, usd_want in want.items():
                assert seeded[sid_day] == pytest.approx(usd_want)
        finally:
            await store.close()

    asyncio.run(main())


def _spend(
    data: list[LedgerRow], by: str, since: float, until: float, key_id: str | None = None, team_id: str | None = None
) -> dict[Any, tuple[int, int, int, int, float]]:
    """What `Store.spend` should say, from the rows themselves."""
    acc: dict[Any, list[Any]] = {}
    for r in data:
        if not (since <= r.ts < until) or (key_id and r.key_id != key_id) or (team_id and r.team_id != team_id):
            continue
        if by in ("provider", "vendor"):
            per: dict[str, list[Any]] = {}
            for a in r.attempts:
                p = per.setdefault(getattr(a, by), [0, 0, 0, 0, 0.0])
                p[1] += a.status >= 400
                p[2] += a.input_tokens
                p[3] += 1
                p[4] += a.cost
            for vendor_or_provider, p in per.items():
                s = acc.setdefault(vendor_or_provider, [0, 0, 0, 0, 0.0])
                s[0] += 1
                for i in range(1, 5):
                    s[i] += p[i]
            continue
        name: str | None = {"key": r.key_id, "team": r.team_id, "model": r.model_asked, "day": r.day}[by]
        s = acc.setdefault(name, [0, 0, 0, 0, 0.0])
        s[0] += 1
        s[1] += r.status >= 400
        s[2] += r.input_tokens
        s[3] += len(r.attempts)
        s[4] += r.cost
    return {k: (v[0], v[1], v[2], v[3], v[4]) for k, v in acc.items()}


def test_every_rollup_and_governance_query_searches_an_index(tmp_path: Path) -> None:
    """EXPLAIN QUERY PLAN on SQLite (no statistics, so the plans are the planner's defaults): the
    roll-ups are searched by their primary key and the hour range, raw rows through an index."""
    path = tmp_path / "plans.db"
    captured: list[tuple[str, list[Any]]] = []

    async def main() -> None:
        store = Store.from_url(f"sqlite:///{path}")
        await store.open()
        try:
            await _insert(store, rows(300, seed=7))
            inner = store.db.fetch

            async def capture(sql: str, params: Sequence[Any] = ()) -> list[Any]:
                captured.append((sql, list(params)))
                return await inner(sql, params)

            store.db.fetch = capture  # type: ignore[method-assign]
            since, until = END - 25 * HOUR - 777.0, END - 3 * HOUR + 55.0
            for by in ("key", "team", "model", "day", "provider", "vendor"):
                await store.spend(by, since=since, until=until)
                await store.spend(by, since=since, until=until, key_id="k1")
            await store.spend_since(since)
            await store.vendor_usage(since, until)
            await store.deployment_health(since)
        finally:
            await store.close()

    asyncio.run(main())
    g = grid_for(END - SPAN, END, 3 * HOUR)
    for kind, conds, params in [
        (queries.R_TRAFFIC, ["dim = ?", "value = ?"], ["key", "k1"]),
        (queries.R_HIST, ["dim = ?", "value = ?"], ["", ""]),
        (queries.R_BY_MODEL, [], []), (queries.R_BY_KEY, [], []),
        (queries.R_BY_MODEL_F, *queries.Filters(team="t1", model="beta").sql("sqlite")),
        (queries.R_BY_KEY_F, *queries.Filters(provider="p-azure").sql("sqlite")),
        (queries.R_VENDOR_SERVED, [], []), (queries.R_VENDOR_BILLED, [], []), (queries.R_KEY_SPEND, [], []),
    ]:  # fmt: skip
        captured.append((kind.sql(conds, "sqlite", g.width), [g.start, g.end, *params]))
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for sql, params in captured:
            plans = [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql, params)]
            access = [p for p in plans if p.startswith(("SCAN", "SEARCH"))]
            # Only a CTE of a few rows (the per-batch `f` / `b` are not read here) may be scanned.
            assert access and all(p.startswith("SEARCH") for p in access), (sql, plans)
            for p in access:
                if any(t in p for t in rollup.TABLES):
                    assert "USING PRIMARY KEY" in p and "hour>?" in p, (sql, plans)
                else:
                    assert "INDEX" in p, (sql, plans)
                    # Raw rows bounded by time (or looked up by request id inside a join).
                    assert "ts>?" in p or "(request_id=?)" in p, (sql, plans)
    finally:
        con.close()
    assert len(captured) > 30
