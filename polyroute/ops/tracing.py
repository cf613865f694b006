"""OpenTelemetry traces (off by default; needs the `otel` extra, imported only when enabled).

One span per request, kind SERVER, named `{gen_ai.operation.name} {gen_ai.request.model}`
("chat gpt-4o", "embeddings text-embedding-3-small"), with the GenAI semantic conventions'
attributes (gen_ai.operation.name, gen_ai.provider.name, gen_ai.request.model,
gen_ai.response.model, gen_ai.usage.*, error.type) and the gateway's own (polyroute.*). Each
upstream attempt is an event on it (deployment, provider, status, latency), so failovers show.
The deprecated `gen_ai.system` is set too, to the same value, for backends that still key on it.

The span is built in the policy's `after` from the request context, with the request's real start
time, and exported by a BatchSpanProcessor thread: the request path never waits on the collector.
An incoming W3C `traceparent` makes the span its child.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from polyroute.config.schema import TracingConfig
from polyroute.core import types as t
from polyroute.core.context import RequestContext
from polyroute.ops.logs import REDACTOR

if TYPE_CHECKING:
    from polyroute.core.catalog import Catalog
    from polyroute.ops.current import Current

# gen_ai.provider.name for each provider type: the conventions' well-known values where there is one.
PROVIDER_NAMES = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "inhouse": "polyroute.inhouse",
}


class Tracer:
    def __init__(self, config: TracingConfig, exporter: Any = None, *, batch: bool = True) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # endpoint None: the exporter reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or uses its default.
            exporter = OTLPSpanExporter(endpoint=config.endpoint, headers=config.headers)
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("polyroute")
        self.propagator = TraceContextTextMapPropagator()
        self._server = SpanKind.SERVER
        self._status, self._error = Status, StatusCode.ERROR
        self.deployments: dict[str, str] = {}  # deployment id -> upstream model
        self.vendors: dict[str, str] = {}  # provider name -> gen_ai.provider.name

    def catalog_changed(self, catalog: Catalog) -> None:
        self.deployments = {d.id: d.upstream_model for r in catalog.routes.values() for d in r.deployments}
        self.vendors = {
            name: PROVIDER_NAMES.get(p.config.type, p.config.type) for name, p in catalog.providers.items()
        }

    def _parent(self, scope: Any) -> Any:
        if scope is None:
            return None
        carrier: dict[str, str] = {}
        for k, v in scope.get("headers") or ():
            if k == b"traceparent" or k == b"tracestate":
                carrier[k.decode()] = v.decode("latin-1")
        return self.propagator.extract(carrier) if carrier else None

    def record(self, ctx: RequestContext, now: float, scope: Any, cur: Current | None) -> None:
        req = ctx.request
        op = "embeddings" if isinstance(req, t.EmbeddingRequest) else "chat"
        asked = ctx.model_asked or ctx.route
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": op,
            "gen_ai.request.model": asked,
            "polyroute.request_id": ctx.request_id,
            "polyroute.api": ctx.api,
            "polyroute.status": ctx.status,
            "polyroute.stream": ctx.stream,
            "polyroute.attempts": len(ctx.attempts),
            "polyroute.cost_usd": ctx.cost,
            "http.response.status_code": ctx.status,
        }
        if ctx.route:
            attrs["polyroute.model"] = ctx.route
        if ctx.provider:
            vendor = self.vendors.get(ctx.provider, ctx.provider)
            attrs["gen_ai.provider.name"] = vendor
            attrs["gen_ai.system"] = vendor
            attrs["polyroute.provider"] = ctx.provider
        if ctx.deployment:
            attrs["polyroute.deployment"] = ctx.deployment
            served = self.deployments.get(ctx.deployment)
            if served:
                attrs["gen_ai.response.model"] = served
        if isinstance(req, t.ChatRequest):
            if req.max_tokens is not None:
                attrs["gen_ai.request.max_tokens"] = req.max_tokens
            if req.temperature is not None:
                attrs["gen_ai.request.temperature"] = req.temperature
            if req.top_p is not None:
                attrs["gen_ai.request.top_p"] = req.top_p
        u = ctx.usage
        if u is not None:
            attrs["gen_ai.usage.input_tokens"] = u.input_tokens
            attrs["gen_ai.usage.output_tokens"] = u.output_tokens
            if u.cached_input_tokens:
                attrs["gen_ai.usage.cache_read.input_tokens"] = u.cached_input_tokens
            if u.cache_write_tokens:
                attrs["gen_ai.usage.cache_creation.input_tokens"] = u.cache_write_tokens
            if u.reasoning_tokens:
                attrs["gen_ai.usage.reasoning.output_tokens"] = u.reasoning_tokens
            if u.estimated:
                attrs["polyroute.usage_estimated"] = True
        if ctx.stream and ctx.ttft is not None:
            attrs["polyroute.ttft_ms"] = round(ctx.ttft * 1000, 3)
        if ctx.fallback_reason:
            attrs["polyroute.fallback_reason"] = ctx.fallback_reason
        if cur is not None and cur.client_request_id:
            attrs["polyroute.client_request_id"] = cur.client_request_id
        kid = getattr(ctx.key, "id", None) if ctx.key is not None else None
        if isinstance(kid, str):
            attrs["polyroute.key_id"] = kid
        if ctx.error is not None:
            attrs["error.type"] = ctx.error.kind
        end_ns = time.time_ns()
        start_ns = end_ns - int((now - ctx.started) * 1e9)
        span = self.tracer.start_span(
            f"{op} {asked}", context=self._parent(scope), kind=self._server, attributes=attrs, start_time=start_ns
        )
        for a in ctx.attempts:
            ev: dict[str, Any] = {
                "polyroute.deployment": a.deployment,
                "polyroute.provider": a.provider,
                "http.response.status_code": a.status,
                "polyroute.latency_ms": round(a.latency * 1000, 3),
            }
            if a.error:
                ev["polyroute.error"] = REDACTOR.redact(a.error)
            span.add_event("polyroute.attempt", ev)
        if ctx.error is not None:
            span.set_status(self._status(self._error, REDACTOR.redact(str(ctx.error))))
        span.end(end_time=end_ns)

    def shutdown(self) -> None:
        """Export what is queued and stop (blocking: call it off the event loop)."""
        self.provider.shutdown()
