"""One measurement = one load level against one target, with CPU, RSS and background load."""

from __future__ import annotations

import os
import sched
import statistics
import time
from dataclasses import asdict, dataclass, field

import procstat
import streamclient
import wrkrun


@dataclass
class Target:
    name: str
    url: str  # full URL of the non-streaming endpoint
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    stream_url: str | None = None  # long (500-chunk) stream endpoint
    stream_body: bytes | None = None
    short_stream_url: str | None = None
    short_stream_body: bytes | None = None
    root_pids: list[int] = field(default_factory=list)  # process trees whose CPU/RSS we account
    stream_headers: dict[str, str] | None = None  # when streams need other headers (Portkey's custom host)
    short_stream_headers: dict[str, str] | None = None
    cores: int = 1  # cores the target may use (for the FIFO-throttling guard)
    stream_error: str | None = None  # why streaming rows are skipped, when they are


@dataclass
class LoadResult:
    target: str
    kind: str  # "json" or "stream"
    concurrency: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_ms_per_req: float
    background_cpu_pct: float  # CPU used by processes outside this benchmark, in % of one core
    server_util: float  # target's CPU seconds per wall second during the run
    sched: str
    seconds: float


@dataclass
class StreamTiming:
    target: str
    chunks: int
    samples: int
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    ttlb_p50_ms: float
    ttlb_p99_ms: float
    body_bytes: int
    cpu_ms_per_stream: float
    sched: str


def _pids(t: Target) -> list[int]:
    return [p for r in t.root_pids for p in procstat.tree(r)]


def load(t: Target, kind: str, concurrency: int, seconds: float, warmup: float, wrk_cpus: str | None,
         mode: str, other_pids: list[int]) -> LoadResult:
    """wrk for `seconds` (after `warmup`) at `concurrency`; mode 'fifo' | 'other' | 'none'."""
    url, body = (t.url, t.body) if kind == "json" else (t.stream_url, t.stream_body)
    headers = t.headers if kind == "json" else (t.stream_headers or t.headers)
    assert url is not None and body is not None
    if mode != "none":
        sched.apply(other_pids, mode, gateways=t.root_pids)
    if warmup > 0:
        wrkrun.run(url, body, headers, concurrency, warmup, wrk_cpus, prefix=sched.prefix(mode))
    pids = _pids(t)
    own = pids + [p for r in other_pids for p in procstat.tree(r)]
    cpu0, own0, (busy0, tot0) = procstat.cpu_seconds(pids), procstat.cpu_seconds(own), sched.busy_jiffies()
    r = wrkrun.run(url, body, headers, concurrency, seconds, wrk_cpus, prefix=sched.prefix(mode))
    cpu1, own1, (busy1, tot1) = procstat.cpu_seconds(pids), procstat.cpu_seconds(own), sched.busy_jiffies()
    if mode != "none":
        sched.apply(other_pids, "other", gateways=t.root_pids)
    # wrk's own CPU is counted in its rusage, not visible here; subtract it via the children clock.
    ticks = procstat.TICK
    foreign = (busy1 - busy0) / ticks - (own1 - own0) - r.cpu_seconds
    wall = max((tot1 - tot0) / ticks, 1e-9)
    return LoadResult(
        target=t.name, kind=kind, concurrency=concurrency, rps=r.rps, p50_ms=r.p50_us / 1e3,
        p90_ms=r.p90_us / 1e3, p99_ms=r.p99_us / 1e3, requests=r.requests, errors=r.errors,
        cpu_ms_per_req=(cpu1 - cpu0) * 1e3 / r.requests if r.requests else float("nan"),
        background_cpu_pct=max(0.0, 100.0 * foreign / wall * (os.cpu_count() or 1)),
        server_util=(cpu1 - cpu0) / (r.duration_us / 1e6) if r.duration_us else 0.0, sched=mode, seconds=seconds,
    )


def latency_load(t: Target, kind: str, seconds: float, warmup: float, wrk_cpus: str | None, fifo: bool,
                 other_pids: list[int], server_cores: int = 1) -> LoadResult:
    """Concurrency-1 run, under SCHED_FIFO when asked and safe.

    FIFO shields tails from other tenants, but a FIFO task that keeps a core ~busy is throttled by the
    kernel (RT throttling above 95% of a core: 50 ms stalls each second); such targets are re-measured
    at nice -20.
    """
    lr = load(t, kind, 1, seconds, warmup, wrk_cpus, "fifo" if fifo else "other", other_pids)
    if fifo and lr.server_util > 0.93 * max(server_cores, t.cores):
        lr = load(t, kind, 1, seconds, warmup, wrk_cpus, "other", other_pids)
        lr.sched = "other (fifo would throttle)"
    return lr


def stream_timing(t: Target, long: bool, count: int, max_seconds: float, fifo: bool,
                  other_pids: list[int]) -> StreamTiming | None:
    url, body = (t.stream_url, t.stream_body) if long else (t.short_stream_url, t.short_stream_body)
    headers = (t.stream_headers if long else t.short_stream_headers) or t.headers
    if url is None or body is None:
        return None
    mode = "fifo" if fifo else "none"
    if fifo:
        sched.apply(other_pids, "fifo", gateways=t.root_pids)
    pids = _pids(t)
    try:
        with sched.self_fifo(fifo):
            cpu0 = procstat.cpu_seconds(pids)
            samples = streamclient.run(url, body, headers, count, max_seconds)
            cpu1 = procstat.cpu_seconds(pids)
    finally:
        if fifo:
            sched.apply(other_pids, "other", gateways=t.root_pids)
    if not samples:
        return None
    ttfb = sorted(s.ttfb_ns / 1e6 for s in samples)
    ttlb = sorted(s.ttlb_ns / 1e6 for s in samples)
    n = len(samples)
    return StreamTiming(
        target=t.name, chunks=500 if long else 20, samples=n, ttfb_p50_ms=statistics.median(ttfb),
        ttfb_p99_ms=ttfb[min(n - 1, int(n * 0.99))], ttlb_p50_ms=statistics.median(ttlb),
        ttlb_p99_ms=ttlb[min(n - 1, int(n * 0.99))], body_bytes=samples[0].body_bytes,
        cpu_ms_per_stream=(cpu1 - cpu0) * 1e3 / n, sched=mode,
    )


def as_dict(x: LoadResult | StreamTiming) -> dict[str, object]:
    return asdict(x)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
