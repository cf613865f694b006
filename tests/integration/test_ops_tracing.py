"""OpenTelemetry traces: GenAI attributes on an in-memory exporter, W3C parent propagation, and a
real OTLP/HTTP export to a collector on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from polyroute.config.schema import TracingConfig
from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from polyroute.ops.setup import ops_of
from polyroute.ops.tracing import Tracer
from tests.helpers.gateway import RunningGateway, free_port, run_gateway


def config(emu: EmulatorServer, extra: str = "") -> str:
    return f"""
providers:
  up: {{type: openai, base_url: '{emu.sdk_base_url}', api_key: sk-upstream-0123456789abcdef}}
models:
  m: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
  e: {{kind: embedding, deployments: [{{provider: up, model: text-embedding-3-small}}]}}
{extra}
"""


@pytest.fixture
def traced(openai_emulator: EmulatorServer) -> Iterator[tuple[RunningGateway, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    with run_gateway(config(openai_emulator)) as g:
        ops = ops_of(g.app)
        assert ops is not None
        tracer = Tracer(TracingConfig(enabled=True), exporter=exporter, batch=False)
        tracer.catalog_changed(g.gateway.catalog)
        ops.tracer = tracer
        yield g, exporter


def test_chat_span_follows_genai_conventions(traced: tuple[RunningGateway, InMemorySpanExporter]) -> None:
    g, exporter = traced
    c = openai.OpenAI(base_url=g.openai_base, api_key="k", max_retries=0)
    raw = c.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hello there"}], max_tokens=50, temperature=0.5,
        extra_headers={"x-request-id": "caller-1"},
    )
    (span,) = exporter.get_finished_spans()
    a: dict[str, Any] = dict(span.attributes or {})
    assert span.name == "chat m" and span.kind == SpanKind.SERVER
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == "m" and a["gen_ai.response.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.max_tokens"] == 50 and a["gen_ai.request.temperature"] == 0.5
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["polyroute.request_id"] == raw.headers["x-request-id"]
    assert a["polyroute.client_request_id"] == "caller-1"
    assert a["polyroute.deployment"] == "m/up/gpt-4o-mini" and a["http.response.status_code"] == 200
    assert span.end_time is not None and span.start_time is not None and span.end_time > span.start_time
    (event,) = span.events
    assert event.name == "polyroute.attempt" and (event.attributes or {})["http.response.status_code"] == 200
    assert span.status.status_code != StatusCode.ERROR


def test_failed_request_and_embeddings(traced: tuple[RunningGateway, InMemorySpanExporter], openai_emulator: EmulatorServer) -> None:
    g, exporter = traced
    c = openai.OpenAI(base_url=g.openai_base, api_key="k", max_retries=0)
    openai_emulator.enqueue(Behaviour(status=429))
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    c.embeddings.create(model="e", input=["a", "b"])
    failed, emb = exporter.get_finished_spans()
    assert failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "rate_limit_error"
    assert emb.name == "embeddings e" and (emb.attributes or {})["gen_ai.operation.name"] == "embeddings"


def test_incoming_traceparent_becomes_the_parent(traced: tuple[RunningGateway, InMemorySpanExporter]) -> None:
    g, exporter = traced
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    c = openai.OpenAI(base_url=g.openai_base, api_key="k", max_retries=0)
    c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                              extra_headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    (span,) = exporter.get_finished_spans()
    assert span.context is not None and format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent_id


class Collector(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        Collector.bodies.append(self.rfile.read(n))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_spans_are_exported_over_otlp_http(openai_emulator: EmulatorServer, tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    port = free_port()
    server = HTTPServer(("127.0.0.1", port), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Collector.bodies = []
    extra = f"ops: {{tracing: {{enabled: true, endpoint: 'http://127.0.0.1:{port}/v1/traces', service_name: gw-test}}}}"
    try:
        with run_gateway(config(openai_emulator, extra)) as g:
            c = openai.OpenAI(base_url=g.openai_base, api_key="k", max_retries=0)
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        # Closing the gateway flushed the batch processor.
    finally:
        server.shutdown()
    spans = []
    services = set()
    for body in Collector.bodies:
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            services |= {a.value.string_value for a in rs.resource.attributes if a.key == "service.name"}
            for ss in rs.scope_spans:
                spans.extend(ss.spans)
    assert services == {"gw-test"}
    assert [s.name for s in spans] == ["chat m"]
    attrs = {a.key: a.value for a in spans[0].attributes}
    assert attrs["gen_ai.provider.name"].string_value == "openai"
