"""What one ledger batch costs the writer: `Store.insert_ledger` of N rows into a big ledger.

    .venv/bin/python bench/ui/writer_cost.py /tmp/polyroute-ui-bench.db              # copies it first
    .venv/bin/python bench/ui/writer_cost.py postgresql://postgres@127.0.0.1:5432/bench  # a copy (TEMPLATE)

The database is copied (SQLite: the file; PostgreSQL: CREATE DATABASE ... TEMPLATE) and the copy is
dropped afterwards, so the filled ledger stays as it was. Rows are the fill's synthetic rows with
current times (the hours the roll-ups are being written to), `--batches` batches of `--size`.

Per batch: wall time, the process's CPU time (SQLite: includes SQLite's work in its own
thread; PostgreSQL: the client side only) and the event loop thread's CPU time; and the lag of a
1 ms timer on the event loop meanwhile (what a request served by the same process would feel:
Python work of the writer, or the GIL held by SQLite's thread while it binds rows). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fill_ledger import as_ledger_row, generate, key_pairs  # noqa: E402

from polyroute.governance.store import Store  # noqa: E402


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def _lag_probe(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - t0) * 1000.0 - 1.0)


async def run(url: str, batches: int, size: int, warmup: int) -> dict[str, Any]:
    store = Store.from_url(url)
    await store.open()
    pairs = key_pairs()
    now = time.time()
    total = (batches + warmup) * size
    wall: list[float] = []
    cpu: list[float] = []
    loop_cpu: list[float] = []
    lags: list[float] = []
    try:
        # Two passes over fresh rows: costs without the probe (its wake-ups are event-loop CPU
        # too), then the probe's lag. A batch spans one second of traffic at 500/s, as under load.
        for probe_pass in (False, True):
            start = now + (total / 500.0 if probe_pass else 0.0)
            rows = [as_ledger_row(r, a) for r, a in generate(
                total, start, start + total / 500.0, pairs, seed=11 + probe_pass, prefix=f"wb{int(probe_pass)}",
            )]  # fmt: skip
            for b in range(batches + warmup):
                batch = rows[b * size : (b + 1) * size]
                stop = asyncio.Event()
                probe_lags: list[float] = []
                probe = asyncio.create_task(_lag_probe(stop, probe_lags)) if probe_pass else None
                await asyncio.sleep(0.005)
                c0, t0, l0 = time.process_time(), time.perf_counter(), time.thread_time()
                await store.insert_ledger(batch)
                t1, c1, l1 = time.perf_counter(), time.process_time(), time.thread_time()
                stop.set()
                if probe is not None:
                    await probe
                if b < warmup:
                    continue
                if probe_pass:
                    lags += probe_lags
                else:
                    wall.append((t1 - t0) * 1000.0)
                    cpu.append((c1 - c0) * 1000.0)
                    loop_cpu.append((l1 - l0) * 1000.0)
    finally:
        await store.close()

    def stats(xs: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(xs), 2), "p90": round(_pct(xs, 0.9), 2), "max": round(max(xs), 2)}

    return {
        "batches": batches,
        "batch_size": size,
        "wall_ms": stats(wall),
        "process_cpu_ms": stats(cpu),
        "event_loop_thread_cpu_ms": stats(loop_cpu),
        "loop_lag_ms": {"p50": round(_pct(lags, 0.5), 2), "p99": round(_pct(lags, 0.99), 2), "max": round(max(lags), 2)},
    }


async def _pg_copy(url: str) -> tuple[str, Any]:
    import asyncpg

    base, name = url.rsplit("/", 1)
    copy = f"wb_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"{base}/postgres")
    await admin.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
    return f"{base}/{copy}", (admin, copy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("db", help="a filled SQLite file, or a filled PostgreSQL database's URL")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    if a.db.startswith(("postgresql://", "postgres://")):

        async def pg() -> dict[str, Any]:
            url, (admin, copy) = await _pg_copy(a.db)
            try:
                return await run(url, a.batches, a.size, a.warmup)
            finally:
                await admin.execute(f'DROP DATABASE "{copy}"')
                await admin.close()

        out = asyncio.run(pg())
    else:
        tmp = Path(tempfile.mkdtemp(prefix="polyroute-wb-"))
        try:
            copy = tmp / "ledger.db"
            shutil.copyfile(a.db, copy)
            out = asyncio.run(run(f"sqlite:///{copy}", a.batches, a.size, a.warmup))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    out["db"] = a.db
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
