"""Time-bucketed aggregates over the ledger, with closed buckets cached: raw rows with one indexed
query per bucket, hourly roll-ups (governance/rollup.py) with one query per run of buckets.

Why one query per bucket on raw rows: SQLite groups with a sort, and sorting a million rows by
(bucket, ...) costs more than reading them; a query per bucket reads the same rows through the `ts`
index with only a small sort each (half the time). Roll-ups hold a few rows per hour, so one
query answers every missing bucket. Either way the cache is natural: a bucket that ended a while
ago no longer changes, so its rows are kept and a dashboard that refreshes re-reads only the last
bucket or two.

Buckets sit on an absolute grid (index = floor(ts / width)), so cache entries are shared by every
period that covers them. A bucket is cached once it ended SETTLE seconds ago (a request's row is
written when it ends, up to a flush interval later), for RECENT_TTL while it is under an hour old
and OLD_TTL after; rows that arrive later than that (a spool replayed after a database outage)
show up when the entry expires.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polyroute.ui.histogram import bin_sql
from polyroute.ui.reader import Reader, Row

WIDTHS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 180
SETTLE = 120.0
RECENT_TTL = 60.0
OLD_TTL = 3600.0


@dataclass(frozen=True)
class Grid:
    width: int
    first: int  # bucket index of the first bucket
    last: int  # bucket index of the last bucket (inclusive)

    @property
    def start(self) -> float:
        return float(self.first * self.width)

    @property
    def end(self) -> float:
        return float((self.last + 1) * self.width)

    def indexes(self) -> range:
        return range(self.first, self.last + 1)

    def times(self) -> list[int]:
        return [i * self.width for i in self.indexes()]


def grid_for(since: float, until: float, width: int | None = None) -> Grid:
    """The smallest width that covers [since, until) in at most MAX_BUCKETS buckets."""
    span = max(1.0, until - since)
    if width is None:
        width = next((w for w in WIDTHS if span / w <= MAX_BUCKETS), WIDTHS[-1])
    first = math.floor(since / width)
    last = max(first, math.ceil(until / width) - 1)
    return Grid(width, first, last)


@dataclass(frozen=True)
class Kind:
    """One aggregate: per bucket, `SELECT groups, aggregates FROM table WHERE ts in bucket AND ...`.

    A kind whose `time` column is `hour` reads an hourly roll-up (governance/rollup.py): it fits
    grids whose width is a whole number of hours, and answers all of its buckets in one query."""

    name: str
    table: str
    groups: tuple[str, ...]
    aggregates: tuple[str, ...]
    where: str = ""
    # Group first by the histogram bin of this column (polyroute/ui/histogram.py).
    bins: str | None = None
    time: str = "ts"

    @property
    def rollup(self) -> bool:
        return self.time == "hour"

    def sql(self, conditions: Sequence[str], dialect: str, width: int | None = None) -> str:
        """With `width`, one query for a range of buckets, each row led by its bucket's index."""
        # Text columns are grouped as `col || ''`: an expression, so SQLite does not pick the
        # (col, ts) index to avoid a sort and then read the whole table, ignoring the time range.
        groups = (bin_sql(self.bins, dialect), *self.groups) if self.bins else self.groups
        if width is not None:
            groups = (f"{self.time} / {int(width)}", *groups)
        cols = [*groups, *self.aggregates]
        t = self.time
        cond = " AND ".join([f"{t} >= ?", f"{t} < ?", *conditions, *([self.where] if self.where else [])])
        sql = f"SELECT {', '.join(cols)} FROM {self.table} WHERE {cond}"
        if groups:
            sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(groups)))
        return sql


def rollup_fits(grid: Grid) -> bool:
    """Hourly roll-ups answer a grid exactly when its buckets are whole UTC hours."""
    return grid.width % 3600 == 0


class BucketCache:
    """LRU of bucket results, bounded by the rows it holds (a breakdown bucket can hold hundreds)."""

    def __init__(self, max_rows: int = 200_000) -> None:
        self.max_rows = max_rows
        self.rows = 0
        self._d: OrderedDict[tuple[Any, ...], tuple[float, list[Row]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...], now: float) -> list[Row] | None:
        hit = self._d.get(key)
        if hit is None or hit[0] <= now:
            if hit is not None:
                self._drop(key)
            self.misses += 1
            return None
        self._d.move_to_end(key)
        self.hits += 1
        return hit[1]

    def put(self, key: tuple[Any, ...], rows: list[Row], expires: float) -> None:
        if key in self._d:
            self._drop(key)
        # Many rows repeat the same model, key and vendor names: keep one copy of each.
        rows = [tuple(sys.intern(v) if type(v) is str else v for v in r) for r in rows]
        self._d[key] = (expires, rows)
        self.rows += len(rows) + 1
        while self.rows > self.max_rows and self._d:
            self._drop(next(iter(self._d)))

    def _drop(self, key: tuple[Any, ...]) -> None:
        _, rows = self._d.pop(key)
        self.rows -= len(rows) + 1

    def clear(self) -> None:
        self._d.clear()
        self.rows = 0


async def fetch_buckets(
    reader: Reader,
    cache: BucketCache,
    kind: Kind,
    grid: Grid,
    conditions: Sequence[str] = (),
    params: Sequence[Any] = (),
    now: float | None = None,
) -> dict[int, list[Row]]:
    """{bucket index: rows} for every bucket of the grid."""
    now = time.time() if now is None else now
    if kind.rollup and not rollup_fits(grid):
        raise ValueError(f"{kind.name} reads hourly roll-ups: buckets of {grid.width} s do not fit")
    sql = kind.sql(conditions, reader.dialect)
    tag = (kind.name, sql, tuple(params), grid.width)
    out: dict[int, list[Row]] = {}
    missing: list[int] = []
    for i in grid.indexes():
        rows = cache.get((*tag, i), now)
        if rows is None:
            missing.append(i)
        else:
            out[i] = rows
    if not missing:
        return out
    w = grid.width
    fresh: dict[int, list[Row]] = {}
    if kind.rollup:
        # A few rows per hour: one query for the whole run of missing buckets, split by bucket.
        fresh = {i: [] for i in missing}
        lo, hi = missing[0], missing[-1] + 1
        for r in await reader.fetch(kind.sql(conditions, reader.dialect, w), (lo * w, hi * w, *params)):
            b = int(r[0])
            if b in fresh:
                fresh[b].append(tuple(r[1:]))
    else:
        # Split a long run of buckets across the reader's connections: SQLite reads in parallel.
        n = max(1, min(reader.parallelism, len(missing) // 8))
        chunks = [missing[k::n] for k in range(n)]
        parts = await asyncio.gather(
            *(reader.fetch_many([(sql, (i * w, (i + 1) * w, *params)) for i in chunk]) for chunk in chunks)
        )
        fresh = dict(zip([i for c in chunks for i in c], [r for p in parts for r in p], strict=True))
    for i, rows in fresh.items():
        out[i] = rows
        end = (i + 1) * w
        if end <= now - SETTLE:
            cache.put((*tag, i), rows, now + (RECENT_TTL if end > now - 3600 else OLD_TTL))
    return out
