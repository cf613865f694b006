"""Part A: measure candidate HTTP stacks (server x client) as minimal pass-through proxies.

    .venv/bin/python bench/stacks/compare.py [--quick] [--servers ...] [--clients ...]

Layout: the proxy is pinned to CPU 0, nginx and wrk to CPU 1 (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import sched  # noqa: E402

import measure  # noqa: E402
import payloads  # noqa: E402
import procstat  # noqa: E402
import setup_env  # noqa: E402
import upstream  # noqa: E402
from netutil import free_port, wait_http  # noqa: E402

VENV = ROOT / ".venv" / "bin"
SERVERS = ["uvicorn", "granian-asgi", "granian-rsgi", "aiohttp"]
CLIENTS = ["aiohttp", "httpx", "httpx2", "pyreqwest", "aiosonic", "raw"]
EXTRA_CLIENTS = {"httpx", "pyreqwest", "aiosonic"}  # from /work/peers/stack-extras, not the project venv


def server_cmd(server: str, port: int) -> list[str]:
    common_g = ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "1", "--no-ws",
                "--workers", "1", "--runtime-threads", "1", "--no-access-log", "--log-level", "warning"]
    if server == "uvicorn":
        return [str(VENV / "uvicorn"), "asgi_app:app", "--host", "127.0.0.1", "--port", str(port), "--loop",
                "uvloop", "--http", "httptools", "--lifespan", "off", "--no-access-log", "--log-level", "warning"]
    if server == "granian-asgi":
        return [str(VENV / "granian"), "--interface", "asgi", *common_g, "asgi_app:app"]
    if server == "granian-rsgi":
        return [str(VENV / "granian"), "--interface", "rsgi", *common_g, "rsgi_app:app"]
    if server == "aiohttp":
        return [str(VENV / "python"), str(HERE / "aiohttp_app.py"), "--port", str(port)]
    raise ValueError(server)


def start_proxy(server: str, client: str, up: upstream.Upstream, cpus: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ)
    path = [str(HERE)]
    if client in EXTRA_CLIENTS:
        path.append(setup_env.STACK_EXTRAS)
    env.update(PYTHONPATH=os.pathsep.join(path), STACK_CLIENT=client, STACK_UPSTREAM=up.json_url,
               STACK_UPSTREAM_SSE=up.sse_url, STACK_UPSTREAM_SSE_SHORT=up.sse_short_url)
    cmd = ["taskset", "-c", cpus, *sched.prefix("other"), *server_cmd(server, port)]
    proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    ok = wait_http(url, 30, "POST", payloads.chat_request(), {"Content-Type": "application/json"},
                   alive=lambda: proc.poll() is None)
    if ok:
        ok = wait_http(url, 10, "POST", payloads.chat_request(stream=True), {"Content-Type": "application/json"},
                       alive=lambda: proc.poll() is None)
    if not ok:
        procstat.stop(proc)
        raise RuntimeError(f"{server}+{client} did not start: {log.read_text()[-1500:]}")
    return proc, port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 s per load level instead of 6")
    ap.add_argument("--servers", nargs="*", default=SERVERS)
    ap.add_argument("--clients", nargs="*", default=CLIENTS)
    ap.add_argument("--concurrency", nargs="*", type=int, default=[1, 16, 64])
    ap.add_argument("--no-fifo", action="store_true", help="do not use SCHED_FIFO for latency runs")
    ap.add_argument("--out", default=str(BENCH / "results"))
    a = ap.parse_args()
    sched.exit_on_sigterm()
    print("autogroup:", sched.boost_autogroup(), flush=True)
    setup_env.ensure_apt()
    if set(a.clients) & EXTRA_CLIENTS:
        setup_env.ensure_stack_extras()
    secs, warm = (2.0, 1.0) if a.quick else (6.0, 1.0)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = Path(a.out) / f"stacks-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    up = upstream.start(work, "1", sched.prefix("other"))
    results: list[dict[str, object]] = []
    try:
        direct = measure.Target("direct", up.json_url + "/v1/chat/completions", payloads.chat_request(),
                                stream_url=up.sse_url + "/v1/chat/completions",
                                stream_body=payloads.chat_request(stream=True),
                                short_stream_url=up.sse_short_url + "/v1/chat/completions",
                                short_stream_body=payloads.chat_request(stream=True), root_pids=[])
        combos = [("direct", "-")] + [(s, c) for s in a.servers for c in a.clients]
        for server, client in combos:
            name = "direct" if server == "direct" else f"{server}+{client}"
            proc = None
            try:
                if server == "direct":
                    t = direct
                else:
                    proc, port = start_proxy(server, client, up, "0", work / f"{name}.log")
                    base = f"http://127.0.0.1:{port}/v1/chat/completions"
                    t = measure.Target(name, base, payloads.chat_request(), stream_url=base,
                                       stream_body=payloads.chat_request(stream=True), short_stream_url=base,
                                       short_stream_body=payloads.chat_request(stream=True, short=True),
                                       root_pids=[proc.pid])
                row: dict[str, object] = {"name": name, "server": server, "client": client, "loads": []}
                for c in a.concurrency:
                    if c == 1:
                        # direct: wrk on the proxy's core so wrk<->nginx stays cross-core like the proxies' hops
                        lr = measure.latency_load(t, "json", secs, warm, "0" if server == "direct" else "1",
                                                  not a.no_fifo, [up.proc.pid])
                    else:
                        lr = measure.load(t, "json", c, secs, warm, "1", "other", [up.proc.pid])
                    row["loads"].append(measure.as_dict(lr))  # type: ignore[attr-defined]
                    print(f"{name:28s} c={c:<3d} {lr.rps:8.0f} req/s p50 {lr.p50_ms:6.3f} p99 {lr.p99_ms:6.3f} ms "
                          f"cpu {lr.cpu_ms_per_req:6.3f} ms/req err {lr.errors} bg {lr.background_cpu_pct:3.0f}%",
                          flush=True)
                sl = measure.load(t, "stream", 16, secs, warm, "1", "other", [up.proc.pid])
                row["stream_load"] = measure.as_dict(sl)
                n, lim = (200, 20) if a.quick else (500, 60)
                st = measure.stream_timing(t, True, n, lim, not a.no_fifo, [up.proc.pid])
                ss = measure.stream_timing(t, False, n, lim, not a.no_fifo, [up.proc.pid])
                row["stream_timing"] = measure.as_dict(st) if st else None
                row["short_stream_timing"] = measure.as_dict(ss) if ss else None
                if st and ss:
                    print(f"{name:28s} stream500: {sl.rps:6.0f} streams/s c=16; ttfb(20) {ss.ttfb_p50_ms:.3f} "
                          f"ttlb(20) {ss.ttlb_p50_ms:.3f} ttlb(500) {st.ttlb_p50_ms:.3f} ms p50, "
                          f"cpu {st.cpu_ms_per_stream:.2f} ms/stream", flush=True)
                if proc is not None:
                    row["rss_mb"] = procstat.workers_rss_mb(proc.pid)
                results.append(row)
            except Exception as e:  # one broken candidate must not lose the others' numbers
                print(f"{name}: FAILED {e}", flush=True)
                results.append({"name": name, "server": server, "client": client, "error": str(e)[-500:]})
            finally:
                if proc is not None:
                    procstat.stop(proc)
                (work / "results.json").write_text(json.dumps(results, indent=1))
    finally:
        up.stop()
    print(f"results: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
