"""Markdown summary of a Part A results.json (bench/results/stacks-*/results.json).

    .venv/bin/python bench/stacks/summarize.py bench/results/stacks-<stamp>/results.json
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _load(row: dict[str, Any], c: int) -> dict[str, Any] | None:
    return next((x for x in row.get("loads", []) if x["concurrency"] == c and x["kind"] == "json"), None)


def main(path: str) -> None:
    rows = json.load(open(path))
    direct = next(r for r in rows if r["name"] == "direct")
    d1 = _load(direct, 1)
    assert d1 is not None
    dst, dss = direct["stream_timing"], direct["short_stream_timing"]
    print("| stack (server+client) | c=1 p50 ms | added p50 ms | c=16 req/s | c=64 req/s | CPU ms/req c=16 | "
          "req/s per core (1/CPU) | TTFB ms (20-chunk) | TTLB ms (500) | added µs/chunk | CPU ms/stream | RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['name']} | failed: {r['error'][:80]} |")
            continue
        l1, l16, l64 = _load(r, 1), _load(r, 16), _load(r, 64)
        if not (l1 and l16 and l64):
            continue
        st, ss = r.get("stream_timing"), r.get("short_stream_timing")
        is_direct = r["name"] == "direct"
        cpu = l16["cpu_ms_per_req"]
        per_chunk = "-"
        if st and ss and not is_direct:
            extra = (st["ttlb_p50_ms"] - ss["ttlb_p50_ms"]) - (dst["ttlb_p50_ms"] - dss["ttlb_p50_ms"])
            per_chunk = f"{extra * 1000 / 480:.1f}"
        def f(x: float, fmt: str, hide: bool = is_direct) -> str:
            return "-" if hide else format(x, fmt)

        rss = max(r.get("rss_mb") or [0])
        cells = [r["name"], f"{l1['p50_ms']:.3f}", f(l1["p50_ms"] - d1["p50_ms"], ".3f"), f"{l16['rps']:,.0f}",
                 f"{l64['rps']:,.0f}", f(cpu, ".3f"), f(1000 / cpu if cpu else 0, ",.0f"),
                 f"{ss['ttfb_p50_ms']:.3f}" if ss else "-", f"{st['ttlb_p50_ms']:.3f}" if st else "-", per_chunk,
                 f(st["cpu_ms_per_stream"], ".2f") if st else "-", f(rss, ".0f")]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
