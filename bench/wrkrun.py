"""Run wrk with a generated Lua script (POST body + headers) and parse its JSON summary."""

from __future__ import annotations

import json
import resource
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

LUA = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


@dataclass
class WrkResult:
    requests: int
    duration_us: int
    errors: int
    p50_us: int
    p90_us: int
    p99_us: int
    mean_us: float
    raw: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # wrk's own user+system time

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0


def lua_script(body: bytes, headers: dict[str, str]) -> str:
    text = body.decode()
    assert "]==]" not in text
    hdrs = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    return LUA.format(body=text, headers=hdrs)


def run(url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float,
        cpus: str | None = None, threads: int = 1, timeout_s: int = 10,
        prefix: list[str] | None = None) -> WrkResult:
    assert url.startswith("http://127.0.0.1"), url
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua_script(body, {"Content-Type": "application/json", **headers}))
        script = f.name
    threads = max(1, min(threads, connections))
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
           "--timeout", f"{timeout_s}s", "-s", script, url]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    cmd = [*(prefix or []), *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 30, check=False)
    finally:
        Path(script).unlink(missing_ok=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    d = json.loads(line[8:])
    errors = sum(int(d[k]) for k in d if k.startswith("err_"))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkResult(d["requests"], d["duration_us"], errors, d["p50_us"], d["p90_us"], d["p99_us"],
                     d["mean_us"], d, cpu)
