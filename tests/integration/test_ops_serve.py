"""`polyroute serve` as a real process: SIGHUP reload (one worker and N workers), SIGTERM letting an
open stream finish, metrics summed across workers, JSON logs with no upstream key in them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from polyroute.config.load import load_config
from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from tests.helpers.gateway import free_port

ROOT = Path(__file__).resolve().parents[2]
MASTER = "master-key-0123456789abcdef"
KEY_ONE = "sk-upstream-one-0123456789abcdef"
KEY_TWO = "sk-upstream-two-0123456789abcdef"
KEY_THREE = "sk-upstream-three-0123456789abcdef"
START_TIMEOUT = 60.0


def call(method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path, config: Path) -> None:
        self.proc = proc
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = log
        self.config = config

    def ready(self) -> dict[str, object]:
        status, body = call("GET", self.base_url + "/health/ready")
        assert status == 200, body
        return dict(json.loads(body))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, what: str, predicate: object, timeout: float = 30) -> None:
        """Poll an observable condition of the server (not a sleep hoping for timing)."""
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            if self.proc.poll() is not None:
                raise AssertionError(f"polyroute exited ({self.proc.returncode}) waiting for {what}:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, body = call("GET", self.base_url + "/metrics")
        assert status == 200, body
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode())
            for s in fam.samples
        }


@contextmanager
def serve(tmp: Path, config_text: str, *, workers: int = 1, log_level: str = "info") -> Iterator[Served]:
    config = tmp / "polyroute.yaml"
    config.write_text(config_text)
    log = tmp / "serve.log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "POLYROUTE_CONFIG")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "polyroute", "serve", "--config", str(config), "--port", str(port),
             "--workers", str(workers), "--log-level", log_level, "--log-format", "json"],
            cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    s = Served(proc, port, log, config)
    try:

        def up() -> bool:
            try:
                return call("GET", s.base_url + "/health/ready")[0] == 200
            except OSError:
                return False

        s.wait_until("the server to be ready", up, START_TIMEOUT)
        yield s
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def config(emu: EmulatorServer, tmp: Path, key: str, extra: str = "") -> str:
    return f"""
server: {{master_key: '{MASTER}'}}
database: {{url: 'sqlite:///{tmp}/gov.db'}}
ledger: {{spool_dir: '{tmp}/spool'}}
providers:
  up: {{type: openai, base_url: '{emu.sdk_base_url}', api_key: {key}}}
models:
  m: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
{extra}
"""


def file_hash(path: Path) -> str:
    return load_config(path)[1]


def ask(s: Served, content: str = "x") -> None:
    openai.OpenAI(base_url=s.base_url + "/v1", api_key=MASTER, max_retries=0).chat.completions.create(
        model="m", messages=[{"role": "user", "content": content}]
    )


def test_sighup_reloads_in_place(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    with serve(tmp_path, config(openai_emulator, tmp_path, KEY_ONE)) as s:
        pid_before = s.ready()["pid"]
        ask(s)
        assert openai_emulator.last_request.header("authorization") == f"Bearer {KEY_ONE}"
        s.config.write_text(config(openai_emulator, tmp_path, KEY_TWO))
        new_hash = file_hash(s.config)
        s.proc.send_signal(signal.SIGHUP)
        s.wait_until("the new hash in /health/ready", lambda: s.ready()["config_hash"] == new_hash)
        assert s.ready()["pid"] == pid_before  # reloaded in place, not restarted
        ask(s)
        assert openai_emulator.last_request.header("authorization") == f"Bearer {KEY_TWO}"
        # An invalid file: logged, refused, the running configuration stays.
        s.config.write_text(config(openai_emulator, tmp_path, KEY_THREE, extra="bogus_section: 1"))
        s.proc.send_signal(signal.SIGHUP)
        s.wait_until("the refusal in the log", lambda: "NOT reloaded" in s.log_text())
        assert s.ready()["config_hash"] == new_hash
        ask(s)
        assert openai_emulator.last_request.header("authorization") == f"Bearer {KEY_TWO}"


def test_sigterm_lets_an_open_stream_finish(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(10)]
    with serve(tmp_path, config(openai_emulator, tmp_path, KEY_ONE, "ops: {logging: {access_log: true}}")) as s:
        # 10 chunks 0.3 s apart upstream: the stream is open when SIGTERM arrives.
        openai_emulator.enqueue(Behaviour(text=" ".join(words), chunks=len(words), chunk_delay=0.3))
        c = openai.OpenAI(base_url=s.base_url + "/v1", api_key=MASTER, max_retries=0)
        it = iter(c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True))
        got = [next(it)]
        s.proc.send_signal(signal.SIGTERM)
        got.extend(it)
        text = "".join(ch.choices[0].delta.content or "" for ch in got if ch.choices)
        assert text.split() == words
        assert s.proc.wait(40) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
        lines = [json.loads(line) for line in s.log_text().splitlines() if line.startswith("{")]
        access = [x for x in lines if x["logger"] == "polyroute.access" and x["path"] == "/v1/chat/completions"]
        assert access and access[-1]["status"] == 200 and access[-1]["stream"] is True
        assert "result_status" not in access[-1]
        # Written although the process ends by the signal uvicorn raises again (before atexit).
        assert lines[-1]["msg"] == f"Finished server process [{s.proc.pid}]"


def test_sigusr1_logs_where_each_task_waits(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    with serve(tmp_path, config(openai_emulator, tmp_path, KEY_ONE)) as s:
        openai_emulator.enqueue(Behaviour(text="a b c", chunks=3, chunk_delay=2.0))
        c = openai.OpenAI(base_url=s.base_url + "/v1", api_key=MASTER, max_retries=0)
        it = iter(c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True))
        next(it)  # the request's task is now parked on the upstream's next chunk
        s.proc.send_signal(signal.SIGUSR1)
        s.wait_until("the stack dump", lambda: "stack dump (SIGUSR1)" in s.log_text())
        dump = next(
            json.loads(line)["msg"] for line in s.log_text().splitlines() if "stack dump (SIGUSR1)" in line
        )
        assert "--- thread MainThread" in dump
        # The streaming request's task, down to the frame of the gateway that awaits the upstream.
        tasks = dump.split("--- task ")[1:]
        assert any("polyroute/server/app.py" in t and "polyroute/routing/" in t for t in tasks), dump
        list(it)
        assert s.proc.poll() is None  # the dump does not disturb the worker


def test_workers_reload_together_and_share_metrics(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    extra = "ops: {metrics: {sample_interval: 0.2}}"
    with serve(tmp_path, config(openai_emulator, tmp_path, KEY_ONE, extra), workers=2) as s:
        first = str(s.ready()["config_hash"])
        n = 20
        for i in range(n):
            ask(s, f"q{i}")
        labels = (("key", "master"), ("model", "m"), ("provider", "up"), ("status", "200"))
        # Each worker adds its counts to the shared directory every 0.2 s; the scrape sums them.
        s.wait_until(f"{n} requests summed over workers",
                     lambda: s.metrics().get(("polyroute_requests_total", labels)) == n)

        def all_on(digest: str, old: str) -> bool:
            m = s.metrics()
            # config_info is the max over live workers: the old hash reads 0 only once every
            # worker has moved off it.
            return (m.get(("polyroute_config_info", (("config_hash", digest),))) == 1
                    and m.get(("polyroute_config_info", (("config_hash", old),))) == 0)

        s.config.write_text(config(openai_emulator, tmp_path, KEY_TWO, extra))
        second = file_hash(s.config)
        s.proc.send_signal(signal.SIGHUP)  # to the supervisor, which passes it to each worker
        s.wait_until("every worker on the second config", lambda: all_on(second, first))

        # POST /admin/reload reaches one worker; it reloads and has the supervisor signal the rest.
        s.config.write_text(config(openai_emulator, tmp_path, KEY_THREE, extra))
        third = file_hash(s.config)
        status, body = call("POST", s.base_url + "/admin/reload", {"authorization": f"Bearer {MASTER}"}, b"")
        assert status == 200, body
        answer = json.loads(body)
        assert answer["status"] == "reloaded" and answer["workers"] == "all (signalled)"
        s.wait_until("every worker on the third config", lambda: all_on(third, second))
        for i in range(6):
            ask(s, f"r{i}")
            assert openai_emulator.last_request.header("authorization") == f"Bearer {KEY_THREE}"


def test_json_logs_never_show_an_upstream_key(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    extra = "ops: {logging: {redact: ['project-nightingale'], access_log: true}}"
    with serve(tmp_path, config(openai_emulator, tmp_path, KEY_ONE, extra), log_level="debug") as s:
        ask(s)
        c = openai.OpenAI(base_url=s.base_url + "/v1", api_key=MASTER, max_retries=0)
        # A confused client sends the upstream key (and a configured secret) where a model name goes:
        # the access line would print it.
        for model in (KEY_ONE, "project-nightingale"):
            with pytest.raises(openai.NotFoundError):
                c.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}],
                                          extra_headers={"x-request-id": model})
        status, _ = call("GET", s.base_url + "/v1/models", {"x-request-id": "probe-1"})
        assert status == 200
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(40) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    text = s.log_text()
    assert KEY_ONE not in text and "project-nightingale" not in text and MASTER not in text
    lines = [line for line in text.splitlines() if line.strip()]
    # Everything after the CLI's two start-up lines is one JSON object per line.
    objs = [json.loads(line) for line in lines if not line.startswith("polyroute:")]
    assert all({"ts", "level", "logger", "msg", "pid"} <= o.keys() for o in objs)
    access = [o for o in objs if o["logger"] == "polyroute.access"]
    assert [a["status"] for a in access if a["path"] == "/v1/chat/completions"] == [200, 404, 404]
    assert any(a.get("client_request_id") == "probe-1" for a in access)
    assert any("[redacted]" in json.dumps(a) for a in access)
