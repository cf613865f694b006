"""The nginx configuration of docs/operations.md, run for real in front of a gateway: streams pass
unbuffered, /metrics is refused from outside, the client address and nginx's request id reach the
access log."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from tests.helpers.gateway import RunningGateway, free_port, run_gateway

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def nginx_conf_from_doc(d: Path, listen: int, upstream: int) -> str:
    text = DOC.read_text()
    block = re.search(r"```nginx\n(.*?)```", text, re.S)
    assert block, "docs/operations.md has no nginx example"
    conf = block.group(1)
    conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen};")
    lines = [line for line in conf.splitlines() if not re.search(r"ssl_certificate|http2 on;", line)]
    servers = [i for i, line in enumerate(lines) if line.strip().startswith("server 10.0.0.")]
    assert servers, "the example's upstream block changed"
    lines[servers[0]] = f"    server 127.0.0.1:{upstream} max_fails=0;"
    for i in reversed(servers[1:]):
        del lines[i]
    body = "\n".join(lines).replace("allow 10.0.0.0/24;", "allow 127.0.0.1;")
    return (
        f"worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
        f"events {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n"
        f"  client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;\n"
        f"  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n{body}\n}}\n"
    )


@pytest.fixture
def nginx_in_front(openai_emulator: EmulatorServer) -> Iterator[tuple[str, RunningGateway]]:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed (scripts/setup --system installs it)")
        pytest.skip("nginx is not installed")
    cfg = f"""
providers:
  up: {{type: openai, base_url: '{openai_emulator.sdk_base_url}', api_key: sk-upstream-0123456789}}
models:
  m: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
ops: {{logging: {{access_log: true}}}}
"""
    with run_gateway(cfg) as g, tempfile.TemporaryDirectory(prefix="polyroute-ops-nginx-") as tmp:
        d = Path(tmp)
        os.chmod(d, 0o755)  # nginx workers may run as another user
        port = free_port()
        conf = d / "nginx.conf"
        conf.write_text(nginx_conf_from_doc(d, port, g.port))
        proc = subprocess.Popen([binary, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 15
            while not (d / "nginx.pid").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"nginx did not start: {err}")
                time.sleep(0.02)
            yield f"http://127.0.0.1:{port}", g
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.cond:
            self.records.append(record)
            self.cond.notify_all()

    def wait_for(self, n: int) -> list[logging.LogRecord]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.records) >= n, 10)
            return list(self.records)


def test_documented_nginx_config_in_front(nginx_in_front: tuple[str, RunningGateway], openai_emulator: EmulatorServer) -> None:
    base, _ = nginx_in_front
    lines = Lines()
    access = logging.getLogger("polyroute.access")
    old = access.level
    access.setLevel(logging.INFO)
    access.addHandler(lines)
    try:
        # Tokens arrive one by one through nginx (not buffered to the end): each chunk is 0.2 s
        # apart upstream, and the first one is read while the rest are still to come.
        words = [f"w{i}" for i in range(6)]
        openai_emulator.enqueue(Behaviour(text=" ".join(words), chunks=len(words), chunk_delay=0.2))
        c = openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0)
        raw = c.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True,
            extra_headers={"x-forwarded-for": "203.0.113.9"},
        )
        assert raw.headers["x-client-request-id"]  # nginx's $request_id, for correlating both logs
        chunks = []
        first_at = None
        for ch in raw.parse():
            if first_at is None:
                first_at = time.monotonic()
            chunks.append(ch)
        assert first_at is not None and time.monotonic() - first_at > 0.5
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).split() == words
        line = lines.wait_for(1)[-1].__dict__
        assert line["client"] == "203.0.113.9"  # X-Forwarded-For trusted from nginx on loopback
        assert line["client_request_id"] == raw.headers["x-client-request-id"]
    finally:
        access.removeHandler(lines)
        access.setLevel(old)
    try:
        urllib.request.urlopen(base + "/metrics", timeout=10)
        raise AssertionError("/metrics was served through nginx")
    except urllib.error.HTTPError as exc:
        assert exc.code == 403
