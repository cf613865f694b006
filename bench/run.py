"""polyroute performance benchmark: direct vs polyroute (bare, governed, 2 workers, /v1/messages) vs peers.

    .venv/bin/python bench/run.py --quick      # ~3 min: 3 s per load level
    .venv/bin/python bench/run.py              # full: 8 s per load level, 500 stream samples
    .venv/bin/python bench/run.py --only direct polyroute --no-peers

Installs what it needs (apt nginx/wrk; LiteLLM and Portkey under /work/peers), starts its own nginx
upstream on 127.0.0.1, and writes results.json, report.md and plot.png to bench/results/run-<stamp>/.
Every load loop is bounded in time (wrk -d) and count (stream samples); all traffic is to 127.0.0.1.
See docs/performance.md for the method and how to read the numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import sched  # noqa: E402

import measure  # noqa: E402
import payloads  # noqa: E402
import procstat  # noqa: E402
import report  # noqa: E402
import setup_env  # noqa: E402
import targets  # noqa: E402
import upstream  # noqa: E402

ROWS = ["direct", "polyroute", "polyroute-messages", "polyroute-governed", "polyroute-governed-pg", "polyroute-2w",
        "litellm", "portkey"]
SERVER_CPUS = "0"  # the system under test gets core 0 ...
SIDE_CPUS = "1"  # ... nginx and wrk share core 1


@dataclass
class Settings:
    seconds: float
    warmup: float
    concurrency: list[int]
    stream_samples: int
    stream_seconds: float
    fifo: bool


def measure_target(t: measure.Target, s: Settings, up: upstream.Upstream, direct: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"name": t.name, "loads": [], "stream": {}, "stream_error": t.stream_error}
    if t.stream_error:
        print(f"  {t.name}: streaming rows skipped: {t.stream_error}", flush=True)
    side = [up.proc.pid]
    for c in s.concurrency:
        if c == 1:
            # direct: wrk on core 0 so wrk<->nginx crosses cores like every gateway hop does
            lr = measure.latency_load(t, "json", s.seconds, s.warmup, "0" if direct else SIDE_CPUS, s.fifo, side)
        else:
            lr = measure.load(t, "json", c, s.seconds, s.warmup, SIDE_CPUS, "other", side)
        row["loads"].append(measure.as_dict(lr))
        print(f"  {t.name:22s} c={c:<3d} {lr.rps:9.0f} req/s  p50 {lr.p50_ms:7.3f}  p99 {lr.p99_ms:7.3f} ms  "
              f"cpu {lr.cpu_ms_per_req:7.3f} ms/req  err {lr.errors}  bg {lr.background_cpu_pct:3.0f}%  [{lr.sched}]",
              flush=True)
    if t.stream_url:
        sl = measure.load(t, "stream", 16, s.seconds, s.warmup, SIDE_CPUS, "other", side)
        row["loads"].append(measure.as_dict(sl))
        for key, long in (("short", False), ("long", True)):
            st = measure.stream_timing(t, long, s.stream_samples, s.stream_seconds, s.fifo, side)
            row["stream"][key] = measure.as_dict(st) if st else None
        lo, sh = row["stream"].get("long"), row["stream"].get("short")
        if lo and sh:
            print(f"  {t.name:22s} stream: {sl.rps:7.0f} streams/s (500 chunks, c=16, err {sl.errors}); "
                  f"TTFB(20) {sh['ttfb_p50_ms']:.3f}  TTLB(20) {sh['ttlb_p50_ms']:.3f}  "
                  f"TTLB(500) {lo['ttlb_p50_ms']:.3f} ms p50", flush=True)
    if t.root_pids:
        row["rss_mb"] = [x for p in t.root_pids for x in procstat.workers_rss_mb(p)]
    return row


def target_of(name: str, r: targets.Running, path: str = targets.CHAT, anthropic: bool = False,
              cores: int = 1, stream_error: str | None = None) -> measure.Target:
    url = r.base + path
    if anthropic:
        body, sb = payloads.messages_request(), payloads.messages_request(payloads.STREAM_MODEL, stream=True)
        ssb = payloads.messages_request(payloads.STREAM_SHORT_MODEL, stream=True)
    else:
        body, sb, ssb = payloads.chat_request(), payloads.chat_request(stream=True), \
            payloads.chat_request(stream=True, short=True)
    stream_error = stream_error or r.stream_error
    surl = None if stream_error else url
    return measure.Target(name, url, body, dict(r.headers), stream_url=surl, stream_body=sb, short_stream_url=surl,
                          short_stream_body=ssb, root_pids=[r.proc.pid], stream_headers=r.stream_headers,
                          short_stream_headers=r.short_stream_headers, cores=cores, stream_error=stream_error)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s per load level, 150 stream samples")
    ap.add_argument("--only", nargs="*", choices=ROWS, help="run only these rows (direct is always run)")
    ap.add_argument("--no-peers", action="store_true", help="skip LiteLLM and Portkey")
    ap.add_argument("--no-fifo", action="store_true", help="no SCHED_FIFO for concurrency-1 and stream timing")
    ap.add_argument("--seconds", type=float, help="override seconds per load level")
    ap.add_argument("--out", default=str(BENCH / "results"))
    a = ap.parse_args()
    sched.exit_on_sigterm()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    command = "python bench/run.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    print("autogroup:", sched.boost_autogroup(), flush=True)
    setup_env.ensure_apt()
    have_plot = setup_env.ensure_matplotlib()
    s = Settings(3, 1, [1, 16, 64], 150, 15, not a.no_fifo) if a.quick else Settings(8, 2, [1, 16, 64], 500, 60,
                                                                                   not a.no_fifo)
    if a.seconds:
        s.seconds = a.seconds
    rows = [r for r in ROWS if (not a.only or r in a.only or r == "direct")
            and not (a.no_peers and r in ("litellm", "portkey"))]
    work = Path(a.out) / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True, exist_ok=True)
    up = upstream.start(work, SIDE_CPUS, sched.prefix("other"))
    results: list[dict[str, Any]] = []

    def save() -> None:
        (work / "results.json").write_text(json.dumps({"meta": meta, "rows": results}, indent=1))

    meta: dict[str, Any] = {
        "command": command, "started": started, "finished": "(running)", "mode": "quick" if a.quick else "full",
        "machine": f"{platform.node()}, {platform.machine()}, {procstat.os.cpu_count()} CPUs, {platform.release()}",
        "settings": s.__dict__, "layout": f"server cpus {SERVER_CPUS} (2 workers: 0,1); nginx+wrk cpus {SIDE_CPUS}",
    }
    # One system may serve several rows (polyroute bare serves /v1/chat/completions and /v1/messages).
    systems: list[tuple[list[str], Callable[[], list[measure.Target]]]] = []
    running: list[targets.Running | targets.SharedStores] = []

    def _keep(r: targets.Running) -> targets.Running:
        running.append(r)
        return r

    def polyroute(name: str, workers: int, governed: bool, with_messages: bool,
                  shared: bool = False) -> Callable[[], list[measure.Target]]:
        def start() -> list[measure.Target]:
            cpus = SERVER_CPUS if workers == 1 else "0,1"
            stores = targets.SharedStores() if shared else None
            if stores is not None:
                running.append(stores)
            r = targets.start_polyroute(up, work, name, workers, governed, cpus,
                                        stores.urls if stores is not None else None)
            running.append(r)
            out = [target_of(name, r, cores=len(cpus.split(",")))]
            if with_messages:
                try:
                    r.stream_error = None
                    targets.verify(r, "/v1/messages", anthropic=True)
                    out.append(target_of("polyroute-messages", r, "/v1/messages", anthropic=True,
                                         stream_error=r.stream_error))
                except targets.Skip as e:
                    results.append({"name": "polyroute-messages", "error": str(e)})
                    print(f"SKIP polyroute-messages: {e}", flush=True)
            return out
        return start

    if "polyroute" in rows or "polyroute-messages" in rows:
        systems.append((["polyroute"], polyroute("polyroute", 1, False, "polyroute-messages" in rows)))
    if "polyroute-governed" in rows:
        systems.append((["polyroute-governed"], polyroute("polyroute-governed", 1, True, False)))
    if "polyroute-governed-pg" in rows:
        systems.append((["polyroute-governed-pg"], polyroute("polyroute-governed-pg", 1, True, False, shared=True)))
    if "polyroute-2w" in rows:
        systems.append((["polyroute-2w"], polyroute("polyroute-2w", 2, False, False)))
    if "litellm" in rows:
        systems.append((["litellm"], lambda: [target_of("litellm", _keep(targets.start_litellm(up, work, SERVER_CPUS)))]))
    if "portkey" in rows:
        systems.append((["portkey"], lambda: [target_of("portkey", _keep(targets.start_portkey(up, work, SERVER_CPUS)))]))

    try:
        print(f"== direct (nginx {up.json_url})", flush=True)
        direct = measure.Target("direct", up.json_url + targets.CHAT, payloads.chat_request(),
                                stream_url=up.sse_url + targets.CHAT, stream_body=payloads.chat_request(stream=True),
                                short_stream_url=up.sse_short_url + targets.CHAT,
                                short_stream_body=payloads.chat_request(stream=True, short=True))
        results.append(measure_target(direct, s, up, direct=True))
        save()
        for names, start in systems:
            print(f"== {', '.join(names)}", flush=True)
            try:
                tlist = start()
            except targets.Skip as e:
                print(f"SKIP {names[0]}: {e}", flush=True)
                results.append({"name": names[0], "error": str(e)})
                save()
                continue
            try:
                for t in tlist:
                    results.append(measure_target(t, s, up, direct=False))
                    save()
            except Exception as e:  # a crash mid-run loses this system's rows, not the run
                print(f"FAILED {names[0]}: {e}", flush=True)
                results.append({"name": names[0], "error": f"failed during measurement: {e}"})
            finally:
                while running:
                    running.pop().stop()
    finally:
        while running:
            running.pop().stop()
        up.stop()
        meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        save()
    md = report.tables(results, meta)
    (work / "report.md").write_text(md)
    plotted = have_plot and report.plot(results, work / "plot.png")
    print("\n" + md)
    print(f"results: {work / 'results.json'}\nreport:  {work / 'report.md'}" +
          (f"\nplot:    {work / 'plot.png'}" if plotted else "\n(plot skipped: matplotlib unavailable)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
