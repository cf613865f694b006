"""The dashboard's ledger queries: right numbers on SQLite and PostgreSQL alike, keyset pages that
neither skip nor repeat rows, every query on an index (EXPLAIN QUERY PLAN on SQLite), closed
buckets cached, and the histogram percentiles within their documented error."""

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

from polyroute.governance.rows import AttemptRow, LedgerRow
from polyroute.governance.store import Store, utc_day
from polyroute.ui import histogram, queries
from polyroute.ui.buckets import SETTLE, BucketCache, Grid, fetch_buckets, grid_for
from polyroute.ui.reader import Query, Reader, Row, SQLiteReader, reader_for
from tests.helpers.governance import db_url  # noqa: F401
from tests.helpers.services import postgres  # noqa: F401

pytestmark = pytest.mark.integration

NOW = time.time()
KINDS = (queries.TRAFFIC, queries.TTFT, queries.BY_MODEL, queries.BY_KEY, queries.VENDOR_SERVED,
         queries.VENDOR_BILLED, queries.KEY_SPEND)  # fmt: skip


def synthetic(n: int, seed: int = 3, span: float = 6 * 3600.0) -> list[LedgerRow]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ts = NOW - span + span * i / n
        failed = i % 17 == 0
        model = ("alpha", "beta", "gamma")[i % 3]
        vendor = ("openai", "anthropic")[i % 2]
        cost = 0.0 if failed else 0.001 * (1 + i % 5)
        attempts = [AttemptRow(n=0, deployment=f"{model}/{vendor}", provider=vendor, vendor=vendor,
                               status=503 if failed else 200, error="x" if failed else None,
                               latency_ms=100.0, input_tokens=10, output_tokens=20, cost=cost)]  # fmt: skip
        rows.append(LedgerRow(
            request_id=f"req_{i:08d}", ts=ts, day=utc_day(ts), key_id=f"key_{i % 4}", team_id=f"team_{i % 2}",
            api="openai", model_asked=model, route=model, deployment=None if failed else f"{model}/{vendor}",
            provider=None if failed else vendor, vendor=None if failed else vendor, attempts=attempts,
            input_tokens=0 if failed else 10, output_tokens=0 if failed else 20, cached_tokens=0,
            cache_write_tokens=0, reasoning_tokens=0, estimated=False, cost=cost,
            latency_ms=rng.lognormvariate(math.log(500), 0.5), ttft_ms=50.0 + i % 100 if i % 2 else None,
            status=503 if failed else 200, error_class="UpstreamError" if failed else None,
            error_message="boom" if failed else None, stream=bool(i % 2), tags=None, end_user=None,
        ))  # fmt: skip
    return rows


async def _filled(url: str, rows: Sequence[LedgerRow]) -> Store:
    store = Store.from_url(url)
    await store.open()
    for i in range(0, len(rows), 500):
        await store.insert_ledger(rows[i : i + 500])
    return store


def test_numbers_and_pages_on_both_databases(db_url: str) -> None:  # noqa: F811
    rows = synthetic(1200)

    async def main() -> None:
        store = await _filled(db_url, rows)
        reader = reader_for(store.db)
        try:
            grid = grid_for(NOW - 7 * 3600, NOW)
            ov = await queries.overview(reader, BucketCache(), grid, queries.Filters())
            tot = ov["totals"]
            assert tot["requests"] == len(rows)
            assert tot["errors"] == sum(1 for r in rows if r.status >= 400)
            assert tot["cost"] == pytest.approx(sum(r.cost for r in rows))
            assert tot["input_tokens"] == sum(r.input_tokens for r in rows)
            assert sum(ov["series"]["requests"]) == len(rows)
            lat = sorted(r.latency_ms for r in rows)
            for q, name in ((0.5, "latency_p50"), (0.99, "latency_p99")):
                exact = lat[min(len(lat) - 1, int(q * len(lat)))]
                assert tot[name] == pytest.approx(exact, rel=0.07), name
            ttft = sorted(r.ttft_ms for r in rows if r.ttft_ms is not None)
            assert tot["ttft_p50"] == pytest.approx(ttft[len(ttft) // 2], rel=0.07)

            one = await queries.overview(reader, BucketCache(), grid, queries.Filters(key="key_1", model="beta"))
            assert one["totals"]["requests"] == sum(1 for r in rows if r.key_id == "key_1" and r.model_asked == "beta")

            br = await queries.breakdown(reader, BucketCache(), grid, queries.Filters())
            assert {r["model"]: r["requests"] for r in br["model"]} == {"alpha": 400, "beta": 400, "gamma": 400}
            assert sum(r["cost"] for r in br["key"]) == pytest.approx(sum(r.cost for r in rows))

            vs = await queries.vendor_series(reader, BucketCache(), grid)
            served = {v["vendor"]: v["requests"] for v in vs["totals"]}
            assert served == {v: sum(1 for r in rows if r.vendor == v and r.status < 400) for v in ("openai", "anthropic")}
            assert sum(v["cost"] for v in vs["totals"]) == pytest.approx(sum(r.cost for r in rows))
            assert sum(v["failed_attempts"] for v in vs["totals"]) == sum(1 for r in rows if r.status >= 400)

            ks = await queries.key_spend(reader, BucketCache(), grid_for(NOW - 86400 * 2, NOW, 86400))
            assert sum(v["requests"] for v in ks["key"].values()) == len(rows)

            # Keyset pages: newest first, every row exactly once, in order.
            seen: list[str] = []
            cursor = None
            while True:
                page = await queries.ledger_page(reader, queries.Filters(), since=NOW - 86400, until=NOW + 1,
                                                 cursor=cursor, limit=97)  # fmt: skip
                seen += [r["request_id"] for r in page["rows"]]
                cursor = page["next"]
                if cursor is None:
                    break
            assert seen == [r.request_id for r in sorted(rows, key=lambda r: r.ts, reverse=True)]
            errors = await queries.ledger_page(reader, queries.Filters(team="team_0"), since=NOW - 86400,
                                               until=NOW + 1, status="error", limit=500)  # fmt: skip
            assert {r["request_id"] for r in errors["rows"]} == {
                r.request_id for r in rows if r.status >= 400 and r.team_id == "team_0"
            }
            detail = await queries.ledger_request(reader, rows[17].request_id)
            assert detail is not None and detail["status"] == 503
            assert [a["status"] for a in detail["attempt_rows"]] == [503]
            assert await queries.ledger_request(reader, "req_missing") is None
        finally:
            reader.close()
            await store.close()

    asyncio.run(main())


def test_ties_on_the_same_timestamp_are_paged_once(tmp_path: Path) -> None:
    rows = synthetic(50)
    for r in rows:
        r.ts = NOW - 100  # every row at the same instant: the tie-breaker decides

    async def main() -> None:
        store = await _filled(f"sqlite:///{tmp_path}/t.db", rows)
        reader = reader_for(store.db)
        ids: list[str] = []
        cursor = None
        for _ in range(20):
            page = await queries.ledger_page(reader, queries.Filters(), since=NOW - 1000, until=NOW, cursor=cursor, limit=7)
            ids += [r["request_id"] for r in page["rows"]]
            cursor = page["next"]
            if cursor is None:
                break
        reader.close()
        await store.close()
        assert sorted(ids) == sorted(r.request_id for r in rows) and len(ids) == len(set(ids))

    asyncio.run(main())


def _plans(path: Path, sql: str, params: Sequence[Any]) -> list[str]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql, tuple(params))]
    finally:
        con.close()


def _indexed(plans: list[str]) -> bool:
    """Every table access is a SEARCH through an index: no full SCAN of the ledger."""
    access = [p for p in plans if p.startswith(("SCAN", "SEARCH"))]
    return bool(access) and all(p.startswith("SEARCH") and "INDEX" in p for p in access)


def test_every_query_uses_an_index(tmp_path: Path) -> None:
    asyncio.run(_filled(f"sqlite:///{tmp_path}/p.db", synthetic(200)))
    db = tmp_path / "p.db"
    filters = [queries.Filters(), queries.Filters(key="k"), queries.Filters(team="t"), queries.Filters(model="m"),
               queries.Filters(vendor="v"), queries.Filters(provider="p"), queries.Filters(key="k", model="m")]  # fmt: skip
    for kind in KINDS:
        for f in filters if kind.table == "ledger" else [queries.Filters()]:
            conds, params = f.sql("sqlite")
            plans = _plans(db, kind.sql(conds, "sqlite"), [NOW - 60, NOW, *params])
            assert _indexed(plans), (kind.name, f, plans)
            # The time range bounds the search (not only a filter column's index with ts unused).
            assert any("ts>?" in p and "ts<?" in p for p in plans), (kind.name, f, plans)
    recent = _plans(db, "SELECT deployment || '', COUNT(*) FROM ledger_attempts WHERE ts >= ? GROUP BY 1", [NOW])
    assert _indexed(recent) and any("ledger_attempts_ts" in p for p in recent), recent

    class Capture:
        dialect = "sqlite"
        parallelism = 1
        sql: list[tuple[str, list[Any]]] = []

        async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
            self.sql.append((sql, list(params)))
            return []

    cap = Capture()
    cursor = queries.encode_cursor(NOW - 5, 123)
    for f in filters:
        for status in (None, "error"):
            asyncio.run(queries.ledger_page(cap, f, since=NOW - 86400, until=NOW, status=status, cursor=cursor))  # type: ignore[arg-type]
    for sql, params in cap.sql:
        plans = _plans(db, sql, params)
        assert _indexed(plans), (sql, plans)
        assert not any("TEMP B-TREE" in p for p in plans), (sql, plans)  # no sort: the index is the order


class CountingReader:
    dialect = "sqlite"
    parallelism = 2

    def __init__(self, inner: Reader) -> None:
        self.inner = inner
        self.queries = 0

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.queries += 1
        return await self.inner.fetch(sql, params)

    async def fetch_many(self, qs: Sequence[Query]) -> list[list[Row]]:
        self.queries += len(qs)
        return await self.inner.fetch_many(qs)

    def close(self) -> None:
        self.inner.close()


def test_closed_buckets_come_from_the_cache(tmp_path: Path) -> None:
    asyncio.run(_filled(f"sqlite:///{tmp_path}/c.db", synthetic(300)))

    async def main() -> None:
        reader = CountingReader(SQLiteReader(str(tmp_path / "c.db")))
        cache = BucketCache()
        grid = grid_for(NOW - 6 * 3600, NOW, 900)
        first = await fetch_buckets(reader, cache, queries.TRAFFIC, grid, now=NOW)
        assert reader.queries == len(grid.indexes())
        again = await fetch_buckets(reader, cache, queries.TRAFFIC, grid, now=NOW)
        assert again == first
        open_buckets = sum(1 for i in grid.indexes() if (i + 1) * grid.width > NOW - SETTLE)
        assert 1 <= open_buckets <= 2
        assert reader.queries == len(grid.indexes()) + open_buckets
        # Another filter is another question: nothing shared.
        await fetch_buckets(reader, cache, queries.TRAFFIC, grid, ["key_id = ?"], ["key_1"], now=NOW)
        assert reader.queries == 2 * len(grid.indexes()) + open_buckets
        reader.close()

    asyncio.run(main())


def test_cache_is_bounded_by_rows() -> None:
    cache = BucketCache(max_rows=100)
    for i in range(50):
        cache.put(("k", i), [("model", 1)] * 9, NOW + 100)
    assert cache.rows <= 100
    assert cache.get(("k", 49), NOW) is not None and cache.get(("k", 0), NOW) is None
    assert cache.get(("k", 49), NOW + 200) is None  # expired


def test_histogram_percentiles() -> None:
    rng = random.Random(1)
    values = [rng.lognormvariate(math.log(800), 1.0) for _ in range(20000)]
    hist: dict[int, int] = {}
    histogram.merge(hist, ((histogram.bin_of(v), 1) for v in values))
    values.sort()
    for q in (0.5, 0.9, 0.99):
        exact = values[int(q * len(values))]
        assert histogram.percentile(hist, q) == pytest.approx(exact, rel=0.065)
    assert histogram.percentile({}, 0.5) is None
    assert histogram.percentile({histogram.bin_of(0.0): 5}, 0.5) == pytest.approx(0.0, abs=0.07)
    # SQL and Python bin alike (SQLite's cast truncates: floor for these non-negative values).
    con = sqlite3.connect(":memory:")
    for v in (0.0, 0.4, 1.0, 99.9, 12345.6):
        (b,) = con.execute(f"SELECT {histogram.bin_sql('?', 'sqlite')}", (v,)).fetchone()
        assert b == histogram.bin_of(v)


def test_grid_widths() -> None:
    g = grid_for(NOW - 86400, NOW)
    assert g.width == 900 and len(g.indexes()) <= 97 and g.start <= NOW - 86400 and g.end >= NOW
    assert grid_for(NOW - 30 * 86400, NOW).width == 6 * 3600
    assert grid_for(NOW - 3600, NOW).width == 60
    assert Grid(60, 10, 12).times() == [600, 660, 720]
