"""The dashboard's endpoints on a big ledger: fill SQLite or PostgreSQL with synthetic rows, start a
real gateway on it (loopback), sign in, and time every data endpoint cold (first call, empty cache)
and warm.

    .venv/bin/python bench/ui/measure.py                      # 1M rows over 30 days in /tmp/polyroute-ui-bench.db
    .venv/bin/python bench/ui/measure.py --rows 200000 --db /tmp/small.db --repeat 5
    .venv/bin/python bench/ui/measure.py --postgres postgresql://postgres@127.0.0.1:5432/uibench  # filled if empty

Writes bench/results/ui-<stamp>.json and prints a table (milliseconds, client-side, over HTTP).
The gateway's upstreams are never called: nothing here sends inference traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvicorn  # noqa: E402
from fill_ledger import MODELS, fill  # noqa: E402

from polyroute.governance.db import redact_url  # noqa: E402

MASTER = "bench-master-key-0123456789abcdef"


def config(url: str, spool: Path) -> str:
    providers = {p for deps in MODELS.values() for p, *_ in deps if p != "inhouse"}
    lines = [f"server: {{master_key: '{MASTER}'}}", f"database: {{url: '{url}'}}",
             f"ledger: {{spool_dir: '{spool}', retention_days: null}}", "providers:"]  # fmt: skip
    for p in sorted(providers):
        extra = ", api_version: '2024-10-21'" if p == "azure" else ""
        lines.append(f"  {p}: {{type: {p}, base_url: 'http://127.0.0.1:9', api_key: unused{extra}}}")
    lines.append("models:")
    for name, deps in MODELS.items():
        real = [d for d in deps if d[0] != "inhouse"]
        if not real:
            continue
        lines.append(f"  {name}:")
        lines.append("    deployments: [" + ", ".join(f"{{provider: {p}, model: {m}}}" for p, _, m, *_ in real) + "]")
    lines.append("    fallbacks: [gpt-4o-mini]")  # the last model falls back to another vendor
    return "\n".join(lines) + "\n"


async def _has_rows(url: str) -> bool:
    from polyroute.governance.db import open_database

    db = open_database(url)
    await db.open()
    try:
        rows = await db.fetch("SELECT to_regclass('ledger') IS NOT NULL")
        return bool(rows[0][0]) and bool(await db.fetch("SELECT 1 FROM ledger LIMIT 1"))
    finally:
        await db.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client:
    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(self, method: str, path: str, body: Any = None) -> tuple[float, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"content-type": "application/json", "sec-fetch-site": "same-origin"})  # fmt: skip
        t0 = time.perf_counter()
        with self.opener.open(req, timeout=300) as r:
            raw = r.read()
        return (time.perf_counter() - t0) * 1000.0, json.loads(raw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, default=Path("/tmp/polyroute-ui-bench.db"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--postgres", metavar="URL", help="a PostgreSQL database instead of --db (filled when empty)")
    ap.add_argument("--repeat", type=int, default=5, help="warm calls per endpoint")
    a = ap.parse_args()
    filled = None
    if a.postgres:
        url = a.postgres
        if not asyncio.run(_has_rows(url)):
            print(f"filling {url} with {a.rows} rows over {a.days} days ...", file=sys.stderr)
            filled = fill(url, a.rows, a.days)
            print(filled, file=sys.stderr)
        work = Path(tempfile.mkdtemp(prefix="polyroute-ui-bench-"))
    else:
        url = f"sqlite:///{a.db}"
        if not a.db.exists():
            print(f"filling {a.db} with {a.rows} rows over {a.days} days ...", file=sys.stderr)
            filled = fill(str(a.db), a.rows, a.days)
            print(filled, file=sys.stderr)
        work = a.db.parent
    name = "pg" if a.postgres else a.db.name
    spool = work / (name + "-spool")
    cfg_path = work / (name + ".yaml")
    cfg_path.write_text(config(url, spool))

    from polyroute.server.factory import build_app

    os.environ["POLYROUTE_UI_REPORTS_DIR"] = str(work)
    app = build_app(str(cfg_path))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    while not server.started:
        time.sleep(0.05)
    startup = time.perf_counter() - t0
    c = Client(f"http://127.0.0.1:{port}")
    c.call("POST", "/ui/api/login", {"key": MASTER})
    _, filters = c.call("GET", "/ui/api/filters")
    key = filters["keys"][5]["id"]
    team = filters["teams"][1]["id"]
    endpoints = [
        ("overview 1h", "overview?since=1h"),
        ("overview 24h", "overview?since=24h"),
        ("overview 24h, one model", "overview?since=24h&model=gpt-4o-mini"),
        ("overview 7d", "overview?since=7d"),
        ("overview 30d", "overview?since=30d"),
        ("overview 30d, one key", f"overview?since=30d&key={key}"),
        ("overview 30d, one model", "overview?since=30d&model=claude-haiku"),
        ("overview 30d, one team", f"overview?since=30d&team={team}"),
        ("overview 30d, one provider", "overview?since=30d&provider=openai"),
        ("overview 30d, key + model", f"overview?since=30d&key={key}&model=gpt-4o-mini"),
        ("breakdown 24h", "overview/breakdown?since=24h"),
        ("breakdown 30d", "overview/breakdown?since=30d"),
        ("breakdown 30d, one model", "overview/breakdown?since=30d&model=gpt-4o-mini"),
        ("vendors 7d", "vendors?since=7d"),
        ("vendors 30d", "vendors?since=30d"),
        ("routes", "routes"),
        ("keys (month-to-date spend)", "keys"),
        ("ledger page 1", "ledger?since=30d&limit=50"),
        ("ledger errors only", "ledger?since=30d&status=error&limit=50"),
        ("ledger one key", f"ledger?since=30d&key={key}&limit=50"),
        ("ledger provider filter", "ledger?since=24h&provider=mistral&limit=50"),
    ]
    results: dict[str, dict[str, float]] = {}
    for label, path in endpoints:
        cold, _ = c.call("GET", "/ui/api/" + path)
        warm = [c.call("GET", "/ui/api/" + path)[0] for _ in range(a.repeat)]
        results[label] = {"cold_ms": round(cold, 1), "warm_median_ms": round(statistics.median(warm), 1),
                          "warm_max_ms": round(max(warm), 1)}  # fmt: skip
        print(f"{label:36s} cold {cold:8.1f} ms   warm median {statistics.median(warm):7.1f} ms", flush=True)
    # Deep pagination: page 1, then 200 pages further by cursor (keyset: every page costs the same).
    _, page = c.call("GET", "/ui/api/ledger?since=30d&limit=50")
    times = []
    for _ in range(200):
        ms, page = c.call("GET", "/ui/api/ledger?since=30d&limit=50&cursor=" + urllib.parse.quote(page["next"]))
        times.append(ms)
    results["ledger pages 2..201 (cursor)"] = {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
    print(f"{'ledger pages 2..201 (cursor)':36s} median {statistics.median(times):7.1f} ms   max {max(times):7.1f} ms")
    rid = page["rows"][-1]["request_id"]
    ms, _ = c.call("GET", "/ui/api/ledger/request?id=" + rid)
    results["ledger one request (page 201's last row)"] = {"ms": round(ms, 1)}
    print(f"{'ledger one request':36s} {ms:8.1f} ms")
    server.should_exit = True
    thread.join(60)
    out = {
        "rows": a.rows if filled else None, "db": redact_url(url), "filled": filled, "gateway_startup_s": round(startup, 2),
        "results": results, "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }  # fmt: skip
    dest = ROOT / "bench" / "results" / f"ui-{'pg-' if a.postgres else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
