"""The dashboard's questions to the ledger, each answered from indexed, bucketed queries.

Grids of whole hours (periods over ~2 days) read the hourly roll-ups (governance/rollup.py):
`ledger_hourly_dim` and `ledger_hourly_hist` with no filter or one (team, key, model or provider),
`ledger_hourly` for breakdowns with filters, `ledger_attempts_hourly` for attempts. Shorter
periods, and percentiles with two filters or more, read raw rows: every query on `ledger` is
bounded by `ts` (index `ledger(ts)`) or by a filter column with time (`ledger(key_id, ts)`,
`(team_id, ts)`, `(model_asked, ts)`, `(provider, ts)`, `(vendor, ts)`); `ledger_attempts` by `ts`.
The plans are checked in tests/integration/test_ui_queries.py.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import Any

import orjson

from polyroute.governance.rollup import HIST_DIMS
from polyroute.governance.rows import ATTEMPT_COLUMNS, LEDGER_COLUMNS
from polyroute.ui import histogram
from polyroute.ui.buckets import BucketCache, Grid, Kind, fetch_buckets, rollup_fits
from polyroute.ui.reader import Reader

_ERR = "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)"

# --- raw rows --------------------------------------------------------------------------------------
_SUMS = ("COUNT(*)", _ERR, "SUM(input_tokens)", "SUM(output_tokens)", "SUM(cost)")
TRAFFIC = Kind("traffic", "ledger", (), _SUMS, bins="latency_ms")
TTFT = Kind("ttft", "ledger", (), ("COUNT(*)",), "ttft_ms IS NOT NULL", bins="ttft_ms")
BY_MODEL = Kind("by_model", "ledger", ("model_asked || ''",), _SUMS)
BY_KEY = Kind("by_key", "ledger", ("key_id || ''",), _SUMS)
VENDOR_SERVED = Kind(
    "vendor_served",
    "ledger",
    ("vendor || ''",),
    ("COUNT(*)", "SUM(input_tokens + output_tokens)"),
    "vendor IS NOT NULL AND status < 400",
)
VENDOR_BILLED = Kind("vendor_billed", "ledger_attempts", ("vendor || ''",), ("COUNT(*)", _ERR, "SUM(cost)"))
KEY_SPEND = Kind("key_spend", "ledger", ("key_id || ''", "team_id || ''"), ("COUNT(*)", "SUM(cost)"))

# --- hourly roll-ups ('' stands for NULL in their keys) --------------------------------------------
_R_SUMS = ("SUM(requests)", "SUM(CASE WHEN ok = 0 THEN requests ELSE 0 END)", "SUM(input_tokens)",
           "SUM(output_tokens)", "SUM(cost)")  # fmt: skip
# One dimension's sums and histograms; the caller adds `dim = ? AND value = ?`.
R_TRAFFIC = Kind("r_traffic", "ledger_hourly_dim", (), _R_SUMS, time="hour")
R_HIST = Kind("r_hist", "ledger_hourly_hist", ("bin",), ("SUM(latency)", "SUM(ttft)"), time="hour")
R_BY_MODEL = Kind("r_by_model", "ledger_hourly_dim", ("NULLIF(value, '')",), _R_SUMS, "dim = 'model'", time="hour")
R_BY_KEY = Kind("r_by_key", "ledger_hourly_dim", ("NULLIF(value, '')",), _R_SUMS, "dim = 'key'", time="hour")
# Every combination of dimensions: breakdowns under filters (same column names as the ledger).
R_BY_MODEL_F = Kind("r_by_model_f", "ledger_hourly", ("NULLIF(model_asked, '')",), _R_SUMS, time="hour")
R_BY_KEY_F = Kind("r_by_key_f", "ledger_hourly", ("NULLIF(key_id, '')",), _R_SUMS, time="hour")
R_VENDOR_SERVED = Kind(
    "r_vendor_served",
    "ledger_hourly_dim",
    ("value",),
    ("SUM(requests)", "SUM(input_tokens + output_tokens)"),
    "dim = 'vendor' AND ok = 1 AND value <> ''",
    time="hour",
)
R_VENDOR_BILLED = Kind(
    "r_vendor_billed",
    "ledger_attempts_hourly",
    ("vendor",),
    ("SUM(attempts)", "SUM(CASE WHEN ok = 0 THEN attempts ELSE 0 END)", "SUM(cost)"),
    time="hour",
)
R_KEY_SPEND = Kind(
    "r_key_spend",
    "ledger_hourly_dim",
    ("dim", "value"),
    ("SUM(requests)", "SUM(cost)"),
    "dim IN ('key', 'team') AND value <> ''",
    time="hour",
)

LIST_COLUMNS = (
    "request_id", "ts", "key_id", "team_id", "api", "model_asked", "route", "deployment", "provider",
    "vendor", "attempts", "input_tokens", "output_tokens", "cost", "latency_ms", "ttft_ms", "status",
    "error_class", "stream", "end_user",
)  # fmt: skip


@dataclass(frozen=True)
class Filters:
    team: str | None = None
    key: str | None = None
    model: str | None = None
    provider: str | None = None
    vendor: str | None = None

    @classmethod
    def from_query(cls, q: dict[str, str]) -> Filters:
        # An empty value (`?team=`) is no filter, as the page means it.
        return cls(*(q.get(k) or None for k in ("team", "key", "model", "provider", "vendor")))

    def single(self) -> tuple[str, str] | None:
        """(dim, value) when the roll-ups' one-dimension tables answer these filters: ('', '')
        for none, or the one filter set; None for two filters or more."""
        set_ = [(d, v) for d, v in (("team", self.team), ("key", self.key), ("model", self.model),
                                    ("provider", self.provider), ("vendor", self.vendor)) if v is not None]  # fmt: skip
        if not set_:
            return "", ""
        return set_[0] if len(set_) == 1 and set_[0][0] in HIST_DIMS else None

    def sql(self, dialect: str = "postgres") -> tuple[list[str], list[Any]]:
        """Conditions on the ledger (and `ledger_hourly`, whose columns have the same names). On
        SQLite, which keeps no statistics, only the likeliest most selective filter (key, then
        team, model, provider, vendor) may use its (col, ts) index: the others are written
        `+col = ?`, which no index serves, so a key and a model read the key's rows, not the
        model's. PostgreSQL's planner knows the data and needs no help."""
        conds: list[str] = []
        params: list[Any] = []
        for col, v in (("key_id", self.key), ("team_id", self.team), ("model_asked", self.model),
                       ("provider", self.provider), ("vendor", self.vendor)):  # fmt: skip
            if v is not None:
                conds.append(f"{'+' if conds and dialect == 'sqlite' else ''}{col} = ?")
                params.append(v)
        return conds, params


def _f(v: Any) -> float:
    return float(v) if v is not None else 0.0


def _i(v: Any) -> int:
    return int(v) if v is not None else 0


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


@dataclass
class _Bucket:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    def __post_init__(self) -> None:
        self.latency: dict[int, int] = {}
        self.ttft: dict[int, int] = {}


async def _traffic(reader: Reader, cache: BucketCache, grid: Grid, f: Filters) -> dict[int, _Bucket]:
    """Per bucket: sums and the latency and TTFT histograms, from roll-ups when they can answer."""
    out = {i: _Bucket() for i in grid.indexes()}
    one = f.single()
    if rollup_fits(grid) and one is not None:
        conds, params = ["dim = ?", "value = ?"], list(one)
        sums, hist = await asyncio.gather(
            fetch_buckets(reader, cache, R_TRAFFIC, grid, conds, params),
            fetch_buckets(reader, cache, R_HIST, grid, conds, params),
        )
        for i, b in out.items():
            for n, e, a, o, c in sums[i]:
                b.requests, b.errors, b.input_tokens, b.output_tokens, b.cost = _i(n), _i(e), _i(a), _i(o), _f(c)
            for bin_, lat, tt in hist[i]:
                if _i(lat):
                    b.latency[_i(bin_)] = _i(lat)
                if _i(tt):
                    b.ttft[_i(bin_)] = _i(tt)
        return out
    conds, params = f.sql(reader.dialect)
    traffic, ttft = await asyncio.gather(
        fetch_buckets(reader, cache, TRAFFIC, grid, conds, params),
        fetch_buckets(reader, cache, TTFT, grid, conds, params),
    )
    for i, b in out.items():
        for bin_, n, e, a, o, c in traffic[i]:
            histogram.merge(b.latency, [(_i(bin_), _i(n))])
            b.requests += _i(n)
            b.errors += _i(e)
            b.input_tokens += _i(a)
            b.output_tokens += _i(o)
            b.cost += _f(c)
        histogram.merge(b.ttft, ((_i(bin_), _i(n)) for bin_, n in ttft[i]))
    return out


async def overview(reader: Reader, cache: BucketCache, grid: Grid, f: Filters) -> dict[str, Any]:
    buckets = await _traffic(reader, cache, grid, f)
    series: dict[str, list[Any]] = {k: [] for k in (
        "requests", "errors", "input_tokens", "output_tokens", "cost",
        "latency_p50", "latency_p99", "ttft_p50", "ttft_p99",
    )}  # fmt: skip
    lat_all: dict[int, int] = {}
    ttft_all: dict[int, int] = {}
    for i in grid.indexes():
        b = buckets[i]
        histogram.merge(lat_all, b.latency.items())
        histogram.merge(ttft_all, b.ttft.items())
        series["requests"].append(b.requests)
        series["errors"].append(b.errors)
        series["input_tokens"].append(b.input_tokens)
        series["output_tokens"].append(b.output_tokens)
        series["cost"].append(round(b.cost, 9))
        series["latency_p50"].append(_ms(histogram.percentile(b.latency, 0.5)))
        series["latency_p99"].append(_ms(histogram.percentile(b.latency, 0.99)))
        series["ttft_p50"].append(_ms(histogram.percentile(b.ttft, 0.5)))
        series["ttft_p99"].append(_ms(histogram.percentile(b.ttft, 0.99)))
    requests = sum(series["requests"])
    errors = sum(series["errors"])
    totals = {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "input_tokens": sum(series["input_tokens"]),
        "output_tokens": sum(series["output_tokens"]),
        "cost": sum(series["cost"]),
        "latency_p50": _ms(histogram.percentile(lat_all, 0.5)),
        "latency_p99": _ms(histogram.percentile(lat_all, 0.99)),
        "ttft_p50": _ms(histogram.percentile(ttft_all, 0.5)),
        "ttft_p99": _ms(histogram.percentile(ttft_all, 0.99)),
    }
    return {"t": grid.times(), "width": grid.width, "series": series, "totals": totals}


async def breakdown(reader: Reader, cache: BucketCache, grid: Grid, f: Filters, top: int = 15) -> dict[str, Any]:
    """Requests, errors, tokens and spend per model and per key over the period, biggest spend first."""
    conds, params = f.sql(reader.dialect)
    kinds = (BY_MODEL, BY_KEY)
    if rollup_fits(grid):
        kinds = (R_BY_MODEL_F, R_BY_KEY_F) if conds else (R_BY_MODEL, R_BY_KEY)
    parts = await asyncio.gather(*(fetch_buckets(reader, cache, k, grid, conds, params) for k in kinds))
    out: dict[str, Any] = {}
    for dim, buckets in zip(("model", "key"), parts, strict=True):
        acc: dict[str | None, list[float]] = {}
        for rows in buckets.values():
            for name, n, e, a, o, c in rows:
                sums = acc.setdefault(name, [0, 0, 0, 0, 0.0])
                sums[0] += _i(n)
                sums[1] += _i(e)
                sums[2] += _i(a)
                sums[3] += _i(o)
                sums[4] += _f(c)
        rows_out: list[dict[str, Any]] = [
            {dim: name, "requests": int(v[0]), "errors": int(v[1]), "input_tokens": int(v[2]),
             "output_tokens": int(v[3]), "cost": v[4]}
            for name, v in acc.items()
        ]  # fmt: skip
        rows_out.sort(key=lambda r: (-r["cost"], -r["requests"]))
        out[dim] = rows_out[:top]
    return out


async def vendor_series(reader: Reader, cache: BucketCache, grid: Grid) -> dict[str, Any]:
    """Per vendor and bucket: requests served and tokens (ledger), attempts, failures, spend (attempts)."""
    kinds = (R_VENDOR_SERVED, R_VENDOR_BILLED) if rollup_fits(grid) else (VENDOR_SERVED, VENDOR_BILLED)
    served, billed = await asyncio.gather(*(fetch_buckets(reader, cache, k, grid) for k in kinds))
    vendors = sorted({r[0] for rows in served.values() for r in rows} | {r[0] for rows in billed.values() for r in rows})
    n = len(grid.times())
    req = {v: [0] * n for v in vendors}
    tok = {v: [0] * n for v in vendors}
    att = {v: [0] * n for v in vendors}
    fail = {v: [0] * n for v in vendors}
    usd = {v: [0.0] * n for v in vendors}
    for j, i in enumerate(grid.indexes()):
        for v, cnt, tokens in served[i]:
            req[v][j] = _i(cnt)
            tok[v][j] = _i(tokens)
        for v, cnt, failed, c in billed[i]:
            att[v][j] = _i(cnt)
            fail[v][j] = _i(failed)
            usd[v][j] = round(_f(c), 9)
    tot_req = sum(sum(x) for x in req.values()) or 0
    tot_tok = sum(sum(x) for x in tok.values()) or 0
    tot_usd = sum(sum(x) for x in usd.values()) or 0.0
    totals = []
    for v in vendors:
        r, t, c = sum(req[v]), sum(tok[v]), sum(usd[v])
        totals.append({
            "vendor": v, "requests": r, "requests_share": r / tot_req if tot_req else 0.0,
            "tokens": t, "tokens_share": t / tot_tok if tot_tok else 0.0,
            "cost": c, "cost_share": c / tot_usd if tot_usd else 0.0,
            "attempts": sum(att[v]), "failed_attempts": sum(fail[v]),
        })  # fmt: skip
    totals.sort(key=lambda d: (-d["requests"], d["vendor"]))
    return {
        "t": grid.times(),
        "width": grid.width,
        "vendors": vendors,
        "requests": req,
        "cost": usd,
        "totals": totals,
    }


async def key_spend(reader: Reader, cache: BucketCache, grid: Grid) -> dict[str, dict[str, dict[str, float]]]:
    """Requests and USD per key and team, over the whole grid ("key", "team") and its last bucket
    ("key_last", "team_last"): with day buckets from the month's start, this month and today."""
    rolled = rollup_fits(grid)
    buckets = await fetch_buckets(reader, cache, R_KEY_SPEND if rolled else KEY_SPEND, grid)
    out: dict[str, dict[str, dict[str, float]]] = {"key": {}, "team": {}, "key_last": {}, "team_last": {}}
    for i, rows in buckets.items():
        last = i == grid.last
        for row in rows:
            # Roll-up rows are (dim, value, n, usd); raw rows (key, team, n, usd).
            pairs: list[tuple[str, Any]] = [(row[0], row[1])] if rolled else [("key", row[0]), ("team", row[1])]
            for dim, name in pairs:
                if name is None:
                    continue
                for d in (out[dim], out[dim + "_last"]) if last else (out[dim],):
                    acc = d.setdefault(name, {"requests": 0, "cost": 0.0})
                    acc["requests"] += _i(row[2])
                    acc["cost"] += _f(row[3])
    return out


async def recent_attempts(reader: Reader, seconds: float, now: float | None = None) -> dict[str, dict[str, float]]:
    """Per deployment over the last `seconds`: attempts, successes, tokens, mean latency (ms)."""
    since = (time.time() if now is None else now) - seconds
    rows = await reader.fetch(
        "SELECT deployment || '', COUNT(*), SUM(CASE WHEN status < 400 THEN 1 ELSE 0 END), "
        "SUM(input_tokens + output_tokens), AVG(latency_ms) FROM ledger_attempts WHERE ts >= ? GROUP BY 1",
        (since,),
    )
    return {
        r[0]: {"attempts": _i(r[1]), "ok": _i(r[2]), "tokens": _i(r[3]), "latency_ms": _f(r[4])} for r in rows
    }


# --- the request log ------------------------------------------------------------------------------


def encode_cursor(ts: float, tie: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([ts, tie])).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, Any] | None:
    try:
        v = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], int | float)):
        return None
    return float(v[0]), v[1]


async def ledger_page(
    reader: Reader,
    f: Filters,
    *,
    since: float,
    until: float,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """Newest first, `limit` rows after `cursor`: keyset pagination on (ts, tie-breaker), so page
    1000 costs what page 1 costs. The tie-breaker is SQLite's rowid (inside every index) or the
    request id on PostgreSQL."""
    tie = "rowid" if reader.dialect == "sqlite" else "request_id"
    conds, params = f.sql(reader.dialect)
    conds += ["ts >= ?", "ts < ?"]
    params += [since, until]
    if status == "error":
        conds.append("status >= 400")
    elif status == "ok":
        conds.append("status < 400")
    after = decode_cursor(cursor) if cursor else None
    if after is not None:
        conds.append(f"ts <= ? AND (ts < ? OR {tie} < ?)")
        params += [after[0], after[0], after[1]]
    sql = (
        f"SELECT {', '.join(LIST_COLUMNS)}, {tie} FROM ledger WHERE {' AND '.join(conds)} "
        f"ORDER BY ts DESC, {tie} DESC LIMIT ?"
    )
    rows = await reader.fetch(sql, [*params, limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    items = [_row(dict(zip(LIST_COLUMNS, r[:-1], strict=True))) for r in rows]
    nxt = encode_cursor(rows[-1][1], rows[-1][-1]) if more and rows else None
    return {"rows": items, "next": nxt}


async def ledger_request(reader: Reader, request_id: str) -> dict[str, Any] | None:
    rows, attempts = await reader.fetch_many(
        [
            (f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger WHERE request_id = ?", (request_id,)),
            (f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM ledger_attempts WHERE request_id = ? ORDER BY n", (request_id,)),
        ]
    )
    if not rows:
        return None
    row = _row(dict(zip(LEDGER_COLUMNS, rows[0], strict=True)))
    tags = row.get("tags")
    row["tags"] = orjson.loads(tags) if isinstance(tags, str) and tags else None
    row["attempt_rows"] = [dict(zip(ATTEMPT_COLUMNS, a, strict=True)) for a in attempts]
    return row


def _row(d: dict[str, Any]) -> dict[str, Any]:
    for k in ("stream", "estimated"):
        if k in d:
            d[k] = bool(d[k])
    return d
