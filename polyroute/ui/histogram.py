"""Latency percentiles from histograms the database computes: log-spaced bins, counted in SQL.

A percentile needs every value, which is a million rows to move out of the database; a histogram
is a few dozen (bin, count) pairs per time bucket, merges by addition (buckets into a period, cached
buckets with fresh ones), and bounds the error: bin b holds [e^(b/16) - 1, e^((b+1)/16) - 1), 6.45%
wide, and the value is interpolated inside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

SCALE = 16


def bin_sql(column: str, dialect: str) -> str:
    """The bin of a column in SQL (SQLite needs its math functions: 3.35+, or the connection
    registers them). SQLite truncates a cast, which is floor here and twice as fast as floor();
    PostgreSQL rounds a cast, so it gets floor(). A negative value (never written, but a ledger
    writer must not fail on one: PostgreSQL's ln() raises) counts as 0. The hourly roll-ups bin
    with this same expression, so their percentiles equal those from raw rows."""
    if dialect == "sqlite":
        return f"CAST(ln(max({column}, 0.0) + 1.0) * {SCALE} AS INTEGER)"
    return f"CAST(floor(ln(GREATEST({column}, 0.0) + 1.0) * {SCALE}) AS INTEGER)"


def bin_of(value: float) -> int:
    return math.floor(math.log(max(value, 0.0) + 1.0) * SCALE)


def bounds(b: int) -> tuple[float, float]:
    return math.exp(b / SCALE) - 1.0, math.exp((b + 1) / SCALE) - 1.0


def merge(into: dict[int, int], pairs: Iterable[tuple[int, int]]) -> None:
    for b, n in pairs:
        into[b] = into.get(b, 0) + n


def percentile(hist: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of the values counted in `hist`; None when it is empty."""
    total = sum(hist.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    bins = sorted(hist)
    for b in bins:
        n = hist[b]
        if n <= 0:
            continue
        if seen + n >= rank:
            lo, hi = bounds(b)
            return lo + (hi - lo) * max(0.0, min(1.0, (rank - seen) / n))
        seen += n
    return bounds(bins[-1])[1]
