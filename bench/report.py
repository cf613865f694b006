"""Markdown tables, target checks and a plot from one run's results.json."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

Row = dict[str, Any]

TARGETS = {
    "added_p50_ms": 0.4, "added_p99_ms": 1.2, "rps_c16_1w": 5000.0, "ttfb_added_ms": 0.5,
    "per_chunk_us": 20.0, "rss_mb": 150.0,
}


def _load(row: Row, c: int, kind: str = "json") -> Row | None:
    for lr in row.get("loads", []):
        if lr["concurrency"] == c and lr["kind"] == kind:
            return lr
    return None


def _fmt(x: float | None, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def per_chunk_us(row: Row, direct: Row) -> float | None:
    """Extra time per SSE event: (TTLB500 - TTLB20) over direct's, divided by the 480 extra events."""
    try:
        g = row["stream"]["long"]["ttlb_p50_ms"] - row["stream"]["short"]["ttlb_p50_ms"]
        d = direct["stream"]["long"]["ttlb_p50_ms"] - direct["stream"]["short"]["ttlb_p50_ms"]
    except (KeyError, TypeError):
        return None
    return (g - d) * 1000 / 480


def tables(rows: list[Row], meta: dict[str, Any]) -> str:
    by = {r["name"]: r for r in rows if "error" not in r}
    direct = by.get("direct")
    peers = {p: by.get(p) for p in ("litellm", "portkey")}
    out: list[str] = []
    out.append(f"All numbers below come from one run: `{meta['command']}` started {meta['started']}, "
               f"finished {meta['finished']}, one nginx upstream instance, same machine "
               f"({meta['machine']}). Mode: {meta['mode']}.\n")
    out.append("### Non-streaming (POST, 491-byte completion)\n")
    out.append("| system | c | req/s | vs direct | vs LiteLLM | vs Portkey | p50 ms | p99 ms | added p50 ms | "
               "added p99 ms | CPU ms/req | errors | bg CPU % | sched |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if "error" in r:
            continue
        for lr in r.get("loads", []):
            if lr["kind"] != "json":
                continue
            c = lr["concurrency"]
            d = _load(direct, c) if direct else None
            pl = {p: (_load(v, c) if v else None) for p, v in peers.items()}
            add50 = lr["p50_ms"] - d["p50_ms"] if d and r is not direct else None
            add99 = lr["p99_ms"] - d["p99_ms"] if d and r is not direct else None
            out.append(
                f"| {r['name']} | {c} | {_fmt(lr['rps'], 0)} | {_ratio(lr['rps'], d['rps'] if d else None)} | "
                f"{_ratio(lr['rps'], pl['litellm']['rps'] if pl['litellm'] else None)} | "
                f"{_ratio(lr['rps'], pl['portkey']['rps'] if pl['portkey'] else None)} | "
                f"{_fmt(lr['p50_ms'], 3)} | {_fmt(lr['p99_ms'], 3)} | {_fmt(add50, 3)} | {_fmt(add99, 3)} | "
                f"{_fmt(lr['cpu_ms_per_req'], 3) if r is not direct else '-'} | {lr['errors']} | "
                f"{lr['background_cpu_pct']:.0f} | {lr['sched']} |")
    out.append("\n### Streaming (SSE; TTFB/TTLB at concurrency 1 from a raw-socket client; streams/s from wrk)\n")
    out.append("| system | TTFB p50 ms (20-chunk) | added TTFB ms | TTLB p50 ms (20) | TTLB p50 ms (500) | "
               "TTLB p99 ms (500) | added per chunk µs | CPU ms/stream (500) | 500-chunk streams/s c=16 | "
               "vs direct |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s = r.get("stream") or {}
        if "error" in r or not s.get("long") or not s.get("short"):
            continue
        sl = _load(r, 16, "stream")
        dl = _load(direct, 16, "stream") if direct else None
        added = s["short"]["ttfb_p50_ms"] - direct["stream"]["short"]["ttfb_p50_ms"] if direct and r is not direct \
            else None
        pc = per_chunk_us(r, direct) if direct and r is not direct else None
        out.append(
            f"| {r['name']} | {_fmt(s['short']['ttfb_p50_ms'], 3)} | {_fmt(added, 3)} | "
            f"{_fmt(s['short']['ttlb_p50_ms'], 3)} | {_fmt(s['long']['ttlb_p50_ms'], 3)} | "
            f"{_fmt(s['long']['ttlb_p99_ms'], 3)} | {_fmt(pc, 1)} | "
            f"{_fmt(s['long']['cpu_ms_per_stream'], 2) if r is not direct else '-'} | "
            f"{_fmt(sl['rps'], 0) if sl else '-'} | {_ratio(sl['rps'] if sl else None, dl['rps'] if dl else None)} |")
    out.append("\n### Memory (RSS after the run, MB; every process of the system, largest first)\n")
    out.append("| system | processes | RSS MB |")
    out.append("|---|---:|---|")
    for r in rows:
        if "error" in r or r["name"] == "direct" or not r.get("rss_mb"):
            continue
        out.append(f"| {r['name']} | {len(r['rss_mb'])} | {', '.join(f'{x:.0f}' for x in r['rss_mb'])} |")
    skipped = [r for r in rows if "error" in r or r.get("stream_error")]
    if skipped:
        out.append("\n### Skipped\n")
        for r in skipped:
            what = r.get("error") or f"streaming rows only: {r['stream_error']}"
            out.append(f"- **{r['name']}**: {what[:400]}")
    out.append("\n### Targets (polyroute, 1 worker unless stated)\n")
    out.extend(target_checks(rows))
    return "\n".join(out) + "\n"


def target_checks(rows: list[Row]) -> list[str]:
    by = {r["name"]: r for r in rows if "error" not in r}
    direct, bare, two = by.get("direct"), by.get("polyroute"), by.get("polyroute-2w")
    lines = ["| target | limit | measured | met |", "|---|---:|---:|---|"]

    def add(what: str, limit: str, value: float | None, ok: bool | None, nd: int = 3) -> None:
        lines.append(f"| {what} | {limit} | {_fmt(value, nd)} | {'-' if ok is None else ('yes' if ok else 'NO')} |")

    if not (direct and bare):
        return ["polyroute rows missing: no target checks."]
    # The targets hold "with keys, limits and the SQLite ledger on": the governed row is
    # checked too, each target once per row.
    for row in (bare, by.get("polyroute-governed")):
        if row is None:
            continue
        tag = "" if row is bare else " (governed)"
        d1, b1 = _load(direct, 1), _load(row, 1)
        if d1 and b1:
            a50, a99 = b1["p50_ms"] - d1["p50_ms"], b1["p99_ms"] - d1["p99_ms"]
            add(f"added latency p50, c=1 (ms){tag}", f"≤ {TARGETS['added_p50_ms']}", a50, a50 <= TARGETS["added_p50_ms"])
            add(f"added latency p99, c=1 (ms){tag}", f"≤ {TARGETS['added_p99_ms']}", a99, a99 <= TARGETS["added_p99_ms"])
        b16 = _load(row, 16)
        if b16:
            add(f"req/s, 1 worker, c=16{tag}", f"≥ {TARGETS['rps_c16_1w']:,.0f}", b16["rps"],
                b16["rps"] >= TARGETS["rps_c16_1w"], 0)
        s = row.get("stream") or {}
        if s.get("short") and direct.get("stream"):
            added = s["short"]["ttfb_p50_ms"] - direct["stream"]["short"]["ttfb_p50_ms"]
            add(f"added time to first byte (ms){tag}", f"≤ {TARGETS['ttfb_added_ms']}", added,
                added <= TARGETS["ttfb_added_ms"])
        pc = per_chunk_us(row, direct)
        if pc is not None:
            add(f"added time per chunk (µs){tag}", f"≤ {TARGETS['per_chunk_us']:.0f}", pc,
                pc <= TARGETS["per_chunk_us"], 1)
    if two:
        for c in (16, 64):
            b, t = _load(bare, c), _load(two, c)
            if b and t:
                add(f"2 workers / 1 worker req/s, c={c}", "near 2 (see note)", t["rps"] / b["rps"], None, 2)
    for r in (bare, two):
        if r and r.get("rss_mb"):
            worst = max(r["rss_mb"])
            add(f"RSS per process, {r['name']} (MB)", f"≤ {TARGETS['rss_mb']:.0f}", worst,
                worst <= TARGETS["rss_mb"], 0)
    return lines


def plot(rows: list[Row], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ok = [r for r in rows if "error" not in r]
    fig, ax = plt.subplots(2, 2, figsize=(13, 9))
    for r in ok:
        pts = sorted((lr["concurrency"], lr["rps"]) for lr in r.get("loads", []) if lr["kind"] == "json")
        if pts:
            ax[0][0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=r["name"])
    ax[0][0].set(xscale="log", yscale="log", xlabel="concurrency", ylabel="req/s", title="Throughput (non-streaming)")
    ax[0][0].legend(fontsize=7)
    names = [r["name"] for r in ok if _load(r, 1)]
    p50 = [_load(r, 1)["p50_ms"] for r in ok if _load(r, 1)]  # type: ignore[index]
    p99 = [_load(r, 1)["p99_ms"] for r in ok if _load(r, 1)]  # type: ignore[index]
    x = range(len(names))
    ax[0][1].bar([i - 0.2 for i in x], p50, 0.4, label="p50")
    ax[0][1].bar([i + 0.2 for i in x], p99, 0.4, label="p99")
    ax[0][1].set(yscale="log", ylabel="ms", title="Latency at concurrency 1")
    ax[0][1].set_xticks(list(x), names, rotation=30, ha="right", fontsize=7)
    ax[0][1].legend()
    cpu_names = [r["name"] for r in ok if r["name"] != "direct" and _load(r, 16)]
    cpu = [_load(r, 16)["cpu_ms_per_req"] for r in ok if r["name"] != "direct" and _load(r, 16)]  # type: ignore[index]
    ax[1][0].bar(cpu_names, cpu)
    ax[1][0].set(yscale="log", ylabel="CPU ms per request", title="CPU per request (c=16)")
    ax[1][0].tick_params(axis="x", rotation=30, labelsize=7)
    sn = [r for r in ok if (r.get("stream") or {}).get("long") and (r.get("stream") or {}).get("short")]
    xs = range(len(sn))
    ax[1][1].bar([i - 0.2 for i in xs], [r["stream"]["short"]["ttfb_p50_ms"] for r in sn], 0.4, label="TTFB (20-chunk)")
    ax[1][1].bar([i + 0.2 for i in xs], [r["stream"]["long"]["ttlb_p50_ms"] for r in sn], 0.4, label="TTLB (500-chunk)")
    ax[1][1].set(yscale="log", ylabel="ms (p50)", title="Streaming at concurrency 1")
    ax[1][1].set_xticks(list(xs), [r["name"] for r in sn], rotation=30, ha="right", fontsize=7)
    ax[1][1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
