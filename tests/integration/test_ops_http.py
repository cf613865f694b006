"""Operations over real HTTP: /metrics, the access log and request ids, /health/ready, and
POST /admin/reload (validation, key rotation, in-flight streams finishing on the old catalogue)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from polyroute.ops.policy import OpsPolicy
from polyroute.ops.registry import HealthResult, registry_of
from polyroute.ops.setup import ops_of
from tests.helpers.gateway import RunningGateway, run_gateway
from tests.helpers.services import RedisServer, own_redis  # noqa: F401

MASTER = "master-key-0123456789abcdef"


def call(method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def scrape(g: RunningGateway, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, h, body = call("GET", g.base_url + "/metrics", headers)
    assert status == 200, body
    assert h["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class AccessLines(logging.Handler):
    """Collects access-log records; waits for them without sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.cond:
            self.records.append(record)
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 10) -> list[logging.LogRecord]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.records) >= n, timeout), f"{len(self.records)} of {n} lines"
            return list(self.records)


@pytest.fixture
def access_lines() -> Iterator[AccessLines]:
    h = AccessLines()
    lg = logging.getLogger("polyroute.access")
    old = lg.level
    lg.setLevel(logging.INFO)
    lg.addHandler(h)
    try:
        yield h
    finally:
        lg.removeHandler(h)
        lg.setLevel(old)


def config(emu: EmulatorServer, tmp: Path, *, key: str = "sk-upstream-one-0123456789", master: bool = True,
           extra: str = "") -> str:
    server = f"server: {{master_key: '{MASTER}'}}\n" if master else ""
    governance = (
        f"database: {{url: 'sqlite:///{tmp}/gov.db'}}\nledger: {{spool_dir: '{tmp}/spool'}}\n" if master else ""
    )
    return f"""{server}{governance}
providers:
  up: {{type: openai, base_url: '{emu.sdk_base_url}', api_key: {key}}}
models:
  m: {{deployments: [{{provider: up, model: gpt-4o-mini, input_price: 1, output_price: 2}}]}}
{extra}
"""


@pytest.fixture
def gw(openai_emulator: EmulatorServer, tmp_path: Path) -> Iterator[RunningGateway]:
    with run_gateway(config(openai_emulator, tmp_path, master=False, extra="ops: {logging: {access_log: true}}")) as g:
        yield g


def client(g: RunningGateway, key: str = "any") -> openai.OpenAI:
    return openai.OpenAI(base_url=g.openai_base, api_key=key, max_retries=0)


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_count_requests_tokens_cost_errors_and_ttft(gw: RunningGateway, openai_emulator: EmulatorServer) -> None:
    c = client(gw)
    c.chat.completions.create(model="m", messages=[{"role": "user", "content": "one two three"}])
    for _ in c.chat.completions.create(model="m", messages=[{"role": "user", "content": "stream me"}], stream=True,
                                       stream_options={"include_usage": True}):
        pass
    openai_emulator.enqueue(Behaviour(status=429))
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="no-such-model-7f3a", messages=[{"role": "user", "content": "x"}])
    s = scrape(gw)
    ok = {"model": "m", "provider": "up", "status": "200", "key": "-"}
    assert metric(s, "polyroute_requests_total", **ok) == 2
    assert metric(s, "polyroute_requests_total", model="m", provider="up", status="429", key="-") == 1
    # Unknown model names collapse into one label value: callers cannot grow the series.
    assert metric(s, "polyroute_requests_total", model="other", provider="-", status="404", key="-") == 1
    assert not any("no-such-model" in str(k) for k in s)
    assert metric(s, "polyroute_tokens_total", **ok, type="input") > 0
    assert metric(s, "polyroute_tokens_total", **ok, type="output") > 0
    assert metric(s, "polyroute_cost_usd_total", **ok) > 0
    assert metric(s, "polyroute_request_errors_total", model="m", provider="up", kind="rate_limit_error") == 1
    assert metric(s, "polyroute_time_to_first_token_seconds_count", model="m", provider="up") == 1
    assert metric(s, "polyroute_request_duration_seconds_count", model="m", provider="up", stream="true") == 1
    assert metric(s, "polyroute_request_duration_seconds_count", model="m", provider="up", stream="false") == 2
    assert metric(s, "polyroute_upstream_attempts_total", provider="up", deployment="m/up/gpt-4o-mini", status="429") == 1
    assert metric(s, "polyroute_breaker_state", model="m", deployment="m/up/gpt-4o-mini", provider="up") == 0
    assert metric(s, "polyroute_requests_in_flight") == 0
    assert metric(s, "polyroute_config_info", config_hash=gw.gateway.config_hash) == 1


def test_metrics_master_key_mode(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    cfg = config(openai_emulator, tmp_path, extra="ops: {metrics: {access: master_key}}")
    with run_gateway(cfg) as g:
        status, _, body = call("GET", g.base_url + "/metrics")
        assert status == 401 and b"master key" in body
        assert call("GET", g.base_url + "/metrics", {"authorization": "Bearer wrong"})[0] == 401
        scrape(g, {"authorization": f"Bearer {MASTER}"})


def test_metrics_can_be_switched_off(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    with run_gateway(config(openai_emulator, tmp_path, master=False, extra="ops: {metrics: {enabled: false}}")) as g:
        assert call("GET", g.base_url + "/metrics")[0] == 404
        client(g).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


# --- access log and request ids -----------------------------------------------------------------


def test_access_log_line_per_request_with_request_ids(gw: RunningGateway, access_lines: AccessLines) -> None:
    c = client(gw)
    raw = c.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hello"}], extra_headers={"x-request-id": "trace 42<script>"}
    )
    rid = raw.headers["x-request-id"]
    assert rid.startswith("req_")  # the gateway's own id stays the ledger key
    assert raw.headers["x-client-request-id"] == "trace42script"
    line = access_lines.wait_for(1)[-1]
    f = line.__dict__
    assert f["request_id"] == rid and f["client_request_id"] == "trace42script"
    assert (f["method"], f["path"], f["status"]) == ("POST", "/v1/chat/completions", 200)
    assert f["model"] == "m" and f["provider"] == "up" and f["deployment"] == "m/up/gpt-4o-mini"
    assert f["input_tokens"] > 0 and f["output_tokens"] > 0 and f["cost"] > 0 and f["duration_ms"] > 0
    assert f["client"] == "127.0.0.1" and f["stream"] is False

    for _ in c.chat.completions.create(model="m", messages=[{"role": "user", "content": "s"}], stream=True):
        pass
    line = access_lines.wait_for(2)[-1].__dict__
    assert line["stream"] is True and line["ttft_ms"] >= 0 and line["status"] == 200

    # Routes outside the gateway get an id and a line too.
    status, h, _ = call("GET", gw.base_url + "/nope", {"x-request-id": "abc"})
    assert status == 404 and h["x-request-id"].startswith("req_") and h["x-client-request-id"] == "abc"
    line = access_lines.wait_for(3)[-1].__dict__
    assert line["status"] == 404 and line["path"] == "/nope" and line["request_id"] == h["x-request-id"]


def test_access_log_can_be_switched_off(openai_emulator: EmulatorServer, tmp_path: Path, access_lines: AccessLines) -> None:
    with run_gateway(config(openai_emulator, tmp_path, master=False, extra="ops: {logging: {access_log: false}}")) as g:
        status, h, _ = call("GET", g.base_url + "/health/live")
        assert status == 200 and "x-request-id" in h
        client(g).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert access_lines.records == []


# --- health -----------------------------------------------------------------------------------


def test_health_live_and_ready(gw: RunningGateway) -> None:
    status, _, body = call("GET", gw.base_url + "/health/live")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, body = call("GET", gw.base_url + "/health/ready")
    ready = json.loads(body)
    assert status == 200 and ready["status"] == "ready" and ready["config_hash"] == gw.gateway.config_hash
    assert ready["checks"] == {}


def test_ready_is_degraded_or_unavailable_by_check(gw: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("polyroute.ops.routes.HEALTH_CACHE_SECONDS", 0.0)
    reg = registry_of(gw.gateway)
    assert reg is not None

    async def spooling() -> HealthResult:
        return HealthResult(False, "spool active")

    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    reg.add_health("ledger", spooling)
    status, _, body = call("GET", gw.base_url + "/health/ready")
    ready = json.loads(body)
    # Degraded still serves: HTTP 200, so load balancers keep the instance.
    assert status == 200 and ready["status"] == "degraded"
    assert ready["checks"]["ledger"] == {"ok": False, "detail": "spool active"}
    ops = ops_of(gw.app)
    assert isinstance(ops, OpsPolicy)
    ops.config = msgspec.structs.replace(ops.config, health_check_timeout=0.2)
    reg.add_health("queue", hangs, critical=True)
    status, _, body = call("GET", gw.base_url + "/health/ready")
    ready = json.loads(body)
    assert status == 503 and ready["status"] == "unavailable"
    assert ready["checks"]["queue"] == {"ok": False, "detail": "no answer within 0.2 s", "critical": True}
    s = scrape(gw)
    assert metric(s, "polyroute_health_check_up", check="ledger") == 0
    assert metric(s, "polyroute_health_check_up", check="queue") == 0


def test_ready_degraded_when_redis_is_down(
    openai_emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_redis: RedisServer  # noqa: F811
) -> None:
    monkeypatch.setattr("polyroute.ops.routes.HEALTH_CACHE_SECONDS", 0.0)
    cfg = config(openai_emulator, tmp_path, extra=f"governance: {{counters: redis, redis_url: '{own_redis.url}'}}")
    with run_gateway(cfg) as g:
        ready = json.loads(call("GET", g.base_url + "/health/ready")[2])
        assert ready["status"] == "ready" and ready["checks"]["redis"]["ok"] is True
        assert ready["checks"]["database"]["ok"] is True
        own_redis.stop()
        status, _, body = call("GET", g.base_url + "/health/ready")
        ready = json.loads(body)
        assert status == 200 and ready["status"] == "degraded"
        assert ready["checks"]["redis"]["ok"] is False and "redis" in ready["checks"]["redis"]["detail"]


# --- reload -----------------------------------------------------------------------------------


def reload_call(g: RunningGateway, key: str | None = MASTER) -> tuple[int, dict[str, Any]]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    status, _, body = call("POST", g.base_url + "/admin/reload", headers, b"")
    return status, json.loads(body)


def test_reload_needs_a_master_key(gw: RunningGateway) -> None:
    status, body = reload_call(gw)
    assert status == 403 and "server.master_key" in body["error"]["message"]


def test_reload_validates_first_then_rotates_keys(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "polyroute.yaml"
    path.write_text(config(openai_emulator, tmp_path, key="sk-upstream-one-0123456789"))
    with run_gateway(path.read_text()) as g:
        ops = ops_of(g.app)
        assert ops is not None and ops.reloader is not None
        ops.reloader.path = str(path)
        c = client(g, MASTER)
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert openai_emulator.last_request.header("authorization") == "Bearer sk-upstream-one-0123456789"
        assert reload_call(g, None)[0] == 401
        assert reload_call(g, "not-the-master-key")[0] == 401

        # An invalid file: 400 naming file, field and fix; the running config is untouched.
        running = g.gateway.config_hash
        path.write_text(config(openai_emulator, tmp_path, key="sk-upstream-two-0123456789").replace(
            "model: gpt-4o-mini", "model: gpt-4o-mini, wieght: 3"))
        status, body = reload_call(g)
        assert status == 400
        err = body["error"]
        assert err["file"] == str(path) and err["field"] == "models.m.deployments[0]" and "wieght" in err["problem"]
        assert "fix" in err and g.gateway.config_hash == running
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert openai_emulator.last_request.header("authorization") == "Bearer sk-upstream-one-0123456789"

        # A valid file with a rotated key: new requests use it, /health/ready shows the new hash.
        path.write_text(config(openai_emulator, tmp_path, key="sk-upstream-two-0123456789"))
        status, body = reload_call(g)
        assert status == 200 and body["status"] == "reloaded" and body["changes"]["providers"]["changed"] == ["up"]
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert openai_emulator.last_request.header("authorization") == "Bearer sk-upstream-two-0123456789"
        ready = json.loads(call("GET", g.base_url + "/health/ready")[2])
        assert ready["config_hash"] == body["config_hash"] != running and "reloaded_at" in ready
        assert reload_call(g)[1]["status"] == "unchanged"
        s = scrape(g)
        assert metric(s, "polyroute_config_reloads_total", result="invalid") == 1
        assert metric(s, "polyroute_config_info", config_hash=body["config_hash"]) == 1
        assert metric(s, "polyroute_config_info", config_hash=running) == 0


def test_stream_in_flight_finishes_on_the_old_catalogue(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "polyroute.yaml"
    path.write_text(config(openai_emulator, tmp_path, key="sk-upstream-one-0123456789"))
    words = [f"w{i}" for i in range(12)]
    with run_gateway(path.read_text()) as g:
        ops = ops_of(g.app)
        assert ops is not None and ops.reloader is not None
        ops.reloader.path = str(path)
        old_provider = g.gateway.catalog.providers["up"]
        c = client(g, MASTER)
        # The stream takes 12 x 0.25 s upstream: it is still running while the reload happens.
        openai_emulator.enqueue(Behaviour(text=" ".join(words), chunks=len(words), chunk_delay=0.25))
        stream = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
        it = iter(stream)
        got = [next(it)]
        path.write_text(config(openai_emulator, tmp_path, key="sk-upstream-two-0123456789"))
        status, body = reload_call(g)
        assert status == 200 and body["draining_requests"] == 1
        # A new request goes out with the new key while the old stream is still open.
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "y"}])
        assert openai_emulator.last_request.header("authorization") == "Bearer sk-upstream-two-0123456789"
        assert ops.reloader.retired and old_provider._session is not None  # type: ignore[attr-defined]
        got.extend(it)
        text = "".join(ch.choices[0].delta.content or "" for ch in got if ch.choices)
        assert text.split() == words
        stream_req = [r for r in openai_emulator.requests if r.body and r.body.get("stream")][-1]
        assert stream_req.header("authorization") == "Bearer sk-upstream-one-0123456789"
        # Once the stream is done, the replaced provider is closed.
        deadline = time.monotonic() + 10
        while ops.reloader.retired and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not ops.reloader.retired and old_provider._session is None  # type: ignore[attr-defined]
