"""Metrics recorded from request contexts, sampled gauges, and who may read /metrics."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from polyroute.config.load import parse_config
from polyroute.config.schema import MetricsConfig
from polyroute.core import errors as e
from polyroute.core.context import Attempt, RequestContext
from polyroute.core.gateway import Gateway
from polyroute.core.types import Usage
from polyroute.ops.metrics import Metrics
from polyroute.ops.registry import Registry
from polyroute.ops.routes import is_loopback, metrics_refusal

SECRET = "sk-caller-secret-0123456789"


class Key:
    id = "key_123"
    prefix = "sk-pr"


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    m.flush()
    out = {}
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: Metrics, name: str, **labels: str) -> float:
    return samples(m).get((name, tuple(sorted(labels.items()))), 0.0)


def ctx(
    model: str = "m", provider: str | None = "up", status: int = 200, stream: bool = False, key: Any = None
) -> RequestContext:
    c = RequestContext("req_1", "openai", api_key=SECRET)
    c.route = c.model_asked = model
    c.provider = provider
    c.status = status
    c.stream = stream
    c.key = key
    c.usage = Usage(input_tokens=10, output_tokens=20, cached_input_tokens=4)
    c.cost = 0.5
    a = Attempt("m/up/x", "up")
    a.status = status
    c.attempts = [a]
    if stream:
        c.ttft = 0.2
    return c


def make(**cfg: Any) -> Metrics:
    m = Metrics(MetricsConfig(**cfg), Registry())
    m.set_models(["m"])
    return m


def test_request_tokens_cost_and_latency() -> None:
    m = make()
    c = ctx(key=Key())
    m.record(c, c.started + 1.5)
    m.record(c, c.started + 0.1)
    labels = {"model": "m", "provider": "up", "status": "200", "key": "key_123"}
    assert value(m, "polyroute_requests_total", **labels) == 2
    assert value(m, "polyroute_tokens_total", **labels, type="input") == 20
    assert value(m, "polyroute_tokens_total", **labels, type="output") == 40
    assert value(m, "polyroute_tokens_total", **labels, type="cached_input") == 8
    assert value(m, "polyroute_cost_usd_total", **labels) == 1.0
    assert value(m, "polyroute_request_duration_seconds_count", model="m", provider="up", stream="false") == 2
    assert value(m, "polyroute_request_duration_seconds_bucket", model="m", provider="up", stream="false", le="1.0") == 1
    assert value(m, "polyroute_upstream_attempts_total", provider="up", deployment="m/up/x", status="200") == 2
    # Not a stream: no time-to-first-token observation.
    assert value(m, "polyroute_time_to_first_token_seconds_count", model="m", provider="up") == 0


def test_streams_observe_time_to_first_token() -> None:
    m = make()
    c = ctx(stream=True)
    m.record(c, c.started + 1)
    assert value(m, "polyroute_time_to_first_token_seconds_count", model="m", provider="up") == 1
    assert value(m, "polyroute_time_to_first_token_seconds_bucket", model="m", provider="up", le="0.2") == 1


def test_counts_are_exported_only_after_a_flush_then_exactly() -> None:
    m = make()
    c = ctx()
    for _ in range(1000):
        m.record(c, c.started)
    text = m.render().decode()  # without a flush: deferred
    assert 'polyroute_requests_total{key="-",model="m",provider="up",status="200"} 1000.0' not in text
    assert value(m, "polyroute_requests_total", model="m", provider="up", status="200", key="-") == 1000


def test_the_callers_secret_never_becomes_a_label() -> None:
    m = make()
    c = ctx(key=None)  # the presented key is ctx.api_key: never a label
    m.record(c, c.started)
    assert SECRET not in m.render().decode()


def test_key_label_off_and_unknown_models_collapse() -> None:
    m = make(key_label=False)
    c = ctx(model="made-up-model-12345", provider=None, status=404, key=Key())
    c.attempts = []
    c.error = e.NotFound("no such model")
    m.record(c, c.started)
    assert value(m, "polyroute_requests_total", model="other", provider="-", status="404", key="-") == 1
    assert value(m, "polyroute_request_errors_total", model="other", provider="-", kind=c.error.kind) == 1
    assert "made-up-model" not in m.render().decode()


def test_fallbacks_counted_by_reason() -> None:
    m = make()
    c = ctx()
    c.fallback_reason = "context_length"
    m.record(c, c.started)
    assert value(m, "polyroute_fallbacks_total", model="m", reason="context_length") == 1


def test_sampled_queues_gauges_and_breakers() -> None:
    cfg = parse_config(
        """
providers:
  up: {type: openai, base_url: 'http://127.0.0.1:9/v1', api_key: k, breaker: {consecutive_failures: 2}}
models:
  m: {deployments: [{provider: up, model: x}]}
""",
        "<test>",
    )
    gw = Gateway(cfg, "h1")
    reg = Registry()
    m = Metrics(MetricsConfig(), reg)
    depth = {"n": 3.0}
    assert reg.add_queue("ledger", lambda: depth["n"])
    assert not reg.add_queue("ledger", lambda: 0.0)  # the first registration wins
    series = {("a",): 1.0, ("b",): 2.0}
    reg.add_gauge("polyroute_widgets", lambda: list(series.items()), help="widgets", labels=["kind"])
    reg.add_queue("broken", lambda: 1 / 0)  # a failing gauge does not break the others
    target = gw.router.routes["m"].targets[0]
    now = gw.router.clock()
    target.breaker.failure(now)
    target.breaker.failure(now)
    m.sample(gw)
    assert value(m, "polyroute_queue_depth", queue="ledger") == 3
    assert value(m, "polyroute_widgets", kind="b") == 2
    assert value(m, "polyroute_breaker_state", model="m", deployment=target.key, provider="up") == 2
    # A series that goes away is dropped, not left at its last value.
    del series[("a",)]
    m.sample(gw)
    assert ("polyroute_widgets", (("kind", "a"),)) not in samples(m)


def test_config_hash_info_follows_reloads() -> None:
    m = make()
    m.set_config_hash("aaa")
    m.set_config_hash("bbb")
    assert value(m, "polyroute_config_info", config_hash="aaa") == 0
    assert value(m, "polyroute_config_info", config_hash="bbb") == 1


def scope(host: str | None, token: str | None = None) -> dict[str, Any]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return {"client": (host, 5000) if host else None, "headers": headers}


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.5.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True), (None, True),
     ("10.0.0.8", False), ("2001:db8::1", False), ("not-an-ip", False)],
)  # fmt: skip
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(scope(host)) is loopback


def test_metrics_access_modes() -> None:
    mk = "master-key-0123456789"
    # loopback (default): local scrapers freely, others with the master key
    assert metrics_refusal(scope("127.0.0.1"), "loopback", None) is None
    status, body = metrics_refusal(scope("10.0.0.8"), "loopback", None) or (0, {})
    assert status == 403 and "server.master_key" in body["error"]["message"]
    assert (metrics_refusal(scope("10.0.0.8"), "loopback", mk) or (0,))[0] == 401
    assert (metrics_refusal(scope("10.0.0.8", "wrong"), "loopback", mk) or (0,))[0] == 401
    assert metrics_refusal(scope("10.0.0.8", mk), "loopback", mk) is None
    # master_key: even loopback callers need it
    assert (metrics_refusal(scope("127.0.0.1"), "master_key", mk) or (0,))[0] == 401
    assert metrics_refusal(scope("127.0.0.1", mk), "master_key", mk) is None
    # open
    assert metrics_refusal(scope("10.0.0.8"), "open", None) is None
