"""The nginx configuration of docs/operations.md, run for real in front of a gateway: streams pass
unbuffered, /metrics is refused from outside, the client address and nginx's request id reach the
access log."""

from __future__ import annotations

import logging
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
from tests.helpers.gateway import RunningGateway, run_gateway
from tests.helpers.nginx import nginx_binary, run_nginx

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


@pytest.fixture
def nginx_in_front(openai_emulator: EmulatorServer) -> Iterator[tuple[str, RunningGateway]]:
    nginx_binary()  # skip before starting anything when nginx is missing
    cfg = f"""
providers:
  up: {{type: openai, base_url: '{openai_emulator.sdk_base_url}', api_key: sk-upstream-0123456789}}
models:
  m: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
ops: {{logging: {{access_log: true}}}}
"""
    with run_gateway(cfg) as g, run_nginx(DOC, [g.port]) as base:
        yield base, g


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
