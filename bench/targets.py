"""Start the systems under test (polyroute, LiteLLM, Portkey) against the nginx upstream.

Every starter returns a Running handle or raises Skip with the reason, so one system that does not
start costs its rows only.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import payloads
import procstat
import setup_env
import yaml
from netutil import free_port, wait_http
from upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent
POLYROUTE = ROOT / ".venv" / "bin" / "polyroute"
MASTER_KEY = "sk-bench-master-0123456789"
CHAT = "/v1/chat/completions"


class Skip(Exception):
    """The system could not be started or does not answer correctly; its rows are skipped."""


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    headers: dict[str, str] = field(default_factory=dict)
    stream_headers: dict[str, str] | None = None
    short_stream_headers: dict[str, str] | None = None
    log: Path | None = None
    stream_error: str | None = None  # set when streaming does not work; its rows are then skipped

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            procstat.stop(self.proc)


def _spawn(cmd: list[str], cpus: str, log: Path, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.Popen[bytes]:
    full = ["taskset", "-c", cpus, "nice", "-n", "-20", *cmd]
    return subprocess.Popen(full, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=cwd)


def _tail(log: Path, n: int = 1500) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10) -> tuple[int, bytes]:
    assert url.startswith("http://127.0.0.1"), url
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e).encode()


def verified(r: Running) -> Running:
    """`r` once it answers well-formed requests; stopped (and Skip raised) if it does not."""
    try:
        verify(r)
    except Skip:
        r.stop()
        raise
    return r


def verify(r: Running, path: str = CHAT, anthropic: bool = False) -> None:
    """One non-streaming request must come back well-formed, else Skip; a broken stream is noted on `r`."""
    body = payloads.messages_request() if anthropic else payloads.chat_request()
    status, data = post(r.base + path, body, r.headers)
    ok = status == 200
    if ok:
        try:
            obj = orjson.loads(data)
            ok = bool(obj.get("content")) if anthropic else bool(obj.get("choices"))
        except orjson.JSONDecodeError:
            ok = False
    if not ok:
        raise Skip(f"{r.name} {path}: HTTP {status}: {data[:300]!r}")
    sbody = payloads.messages_request(payloads.STREAM_MODEL, stream=True) if anthropic else \
        payloads.chat_request(stream=True)
    status, data = post(r.base + path, sbody, r.stream_headers or r.headers, timeout=30)
    marker = b"message_stop" if anthropic else b"[DONE]"
    if status != 200 or marker not in data or data.count(b"\n\n") < payloads.STREAM_CHUNKS_LONG:
        r.stream_error = f"{r.name} {path} stream: HTTP {status}, {len(data)} bytes: {data[:200]!r}"


# --- polyroute ------------------------------------------------------------------------------------

def polyroute_config(up: Upstream, workdir: Path, governed: bool, shared: tuple[str, str] | None = None) -> dict[str, object]:
    def provider(url: str) -> dict[str, object]:
        return {"type": "openai", "base_url": url + "/v1", "api_key": "sk-bench"}

    def model(provider_name: str) -> dict[str, object]:
        return {"deployments": [{"provider": provider_name, "model": payloads.UPSTREAM_MODEL,
                                 "input_price": 0.15, "output_price": 0.6}]}

    cfg: dict[str, object] = {
        "providers": {"upstream": provider(up.json_url), "upstream_sse": provider(up.sse_url),
                      "upstream_sse_short": provider(up.sse_short_url)},
        "models": {payloads.GATEWAY_MODEL: model("upstream"), payloads.STREAM_MODEL: model("upstream_sse"),
                   payloads.STREAM_SHORT_MODEL: model("upstream_sse_short")},
    }
    if governed:
        cfg["server"] = {"master_key": MASTER_KEY}
        cfg["database"] = {"url": f"sqlite:///{workdir / 'polyroute-bench.db'}"}
        cfg["ledger"] = {"enabled": True}
        cfg["governance"] = {"require_keys": True}
        if shared is not None:  # (PostgreSQL DSN, Redis URL): the several-instances set-up
            cfg["database"] = {"url": shared[0]}
            cfg["governance"] = {"require_keys": True, "counters": "redis", "redis_url": shared[1]}
    return cfg


def start_polyroute(up: Upstream, workdir: Path, name: str, workers: int, governed: bool,
                    cpus: str, shared: tuple[str, str] | None = None) -> Running:
    if not POLYROUTE.exists():
        raise Skip(f"{POLYROUTE} not found (is polyroute installed in the venv?)")
    cfg_path = workdir / f"{name}.yaml"
    if governed:
        (workdir / "polyroute-bench.db").unlink(missing_ok=True)
    cfg_path.write_text(yaml.safe_dump(polyroute_config(up, workdir, governed, shared), sort_keys=False))
    port = free_port()
    log = workdir / f"{name}.log"
    proc = _spawn([str(POLYROUTE), "serve", "--config", str(cfg_path), "--host", "127.0.0.1", "--port", str(port),
                   "--workers", str(workers)], cpus, log, cwd=workdir)
    r = Running(name, proc, port, log=log)
    if not wait_http(r.base + "/health/ready", 90, alive=lambda: proc.poll() is None):
        code = proc.poll()
        r.stop()
        why = f"exited with code {code}" if code is not None else "not ready at /health/ready within 90 s"
        raise Skip(f"{name}: {why}: {_tail(log)}")
    if governed:
        status, data = post(r.base + "/admin/keys", orjson.dumps(
            {"name": "bench", "rpm": 1_000_000_000, "tpm": 1_000_000_000_000, "budget_daily": 1e12}),
            {"Authorization": f"Bearer {MASTER_KEY}"})
        if status != 200:
            r.stop()
            raise Skip(f"{name}: POST /admin/keys -> HTTP {status}: {data[:300]!r}")
        r.headers = {"Authorization": f"Bearer {orjson.loads(data)['key']}"}
        status, _ = post(r.base + CHAT, payloads.chat_request(), {})
        if status not in (401, 403):
            r.stop()
            raise Skip(f"{name}: a request without a key got HTTP {status}; keys are not enforced")
    return verified(r)


class SharedStores:
    """A private PostgreSQL and Redis (tests/helpers/services.py) for the governed-pg row; they run
    on the side CPU with nginx and wrk, as they would on their own hosts."""

    def __init__(self) -> None:
        import contextlib
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.helpers.services import ServiceUnavailable, postgres_server, redis_server

        self._stack = contextlib.ExitStack()
        try:
            pg = self._stack.enter_context(postgres_server())
            rs = self._stack.enter_context(redis_server())
        except (ServiceUnavailable, OSError, RuntimeError) as e:
            self._stack.close()
            raise Skip(f"PostgreSQL/Redis: {e}") from None
        self.urls = (pg.create_database("bench"), rs.url)
        for pid in _pids_under(pg.root) + ([rs.proc.pid] if rs.proc is not None else []):
            subprocess.run(["taskset", "-a", "-c", "-p", "1", str(pid)], capture_output=True, check=False)

    def stop(self) -> None:
        self._stack.close()


def _pids_under(root: Path) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if str(root) in (p / "cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(p.name))
            except OSError:
                continue
    return out


# --- LiteLLM --------------------------------------------------------------------------------------

LITELLM_KEY = "sk-litellm-bench-master"


def start_litellm(up: Upstream, workdir: Path, cpus: str) -> Running:
    try:
        exe = setup_env.ensure_litellm()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        raise Skip(f"litellm: install failed: {e}") from None

    def entry(name: str, url: str) -> dict[str, object]:
        return {"model_name": name, "litellm_params": {"model": f"openai/{payloads.UPSTREAM_MODEL}",
                                                       "api_base": url + "/v1", "api_key": "sk-bench"}}

    cfg = {
        "model_list": [entry(payloads.GATEWAY_MODEL, up.json_url), entry(payloads.STREAM_MODEL, up.sse_url),
                       entry(payloads.STREAM_SHORT_MODEL, up.sse_short_url)],
        # docs.litellm.ai/docs/proxy/prod: master key set, verbose logging off; one Uvicorn worker per
        # process/pod (docs/proxy/server_tuning) - no database, so no spend logs.
        "general_settings": {"master_key": LITELLM_KEY},
        "litellm_settings": {"set_verbose": False, "request_timeout": 600, "telemetry": False},
    }
    cfg_path = workdir / "litellm.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    port = free_port()
    log = workdir / "litellm.log"
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", LITELLM_MASTER_KEY=LITELLM_KEY,
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.pop("DATABASE_URL", None)
    proc = _spawn([str(exe), "--config", str(cfg_path), "--host", "127.0.0.1", "--port", str(port),
                   "--num_workers", "1"], cpus, log, env=env, cwd=workdir)
    r = Running("litellm", proc, port, headers={"Authorization": f"Bearer {LITELLM_KEY}"}, log=log)
    if not wait_http(r.base + "/health/liveliness", 180, alive=lambda: proc.poll() is None):
        code = proc.poll()
        r.stop()
        why = f"exited with code {code}" if code is not None else "not live within 180 s"
        raise Skip(f"litellm: {why}: {_tail(log)}")
    return verified(r)


# --- Portkey --------------------------------------------------------------------------------------

def start_portkey(up: Upstream, workdir: Path, cpus: str) -> Running:
    try:
        entry = setup_env.ensure_portkey()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        raise Skip(f"portkey: install failed: {e}") from None
    port = free_port()
    log = workdir / "portkey.log"
    # Custom hosts on private addresses are refused unless listed (SSRF guard in the gateway).
    env = dict(os.environ, NODE_ENV="production", TRUSTED_CUSTOM_HOSTS="127.0.0.1")
    proc = _spawn(["node", str(entry), f"--port={port}", "--headless"], cpus, log, env=env, cwd=workdir)

    def hdrs(url: str) -> dict[str, str]:
        return {"x-portkey-provider": "openai", "x-portkey-custom-host": url + "/v1",
                "Authorization": "Bearer sk-bench"}

    r = Running("portkey", proc, port, headers=hdrs(up.json_url), stream_headers=hdrs(up.sse_url),
                short_stream_headers=hdrs(up.sse_short_url), log=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if post(r.base + CHAT, payloads.chat_request(), r.headers, timeout=2)[0] == 200:
            break
        time.sleep(0.2)
    return verified(r)
