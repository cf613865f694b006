"""Prometheus metrics: what each request did, and gauges sampled from the running components.

The request path pays for a dict look-up of the request's label children (cached per label
combination) and a few counter increments; nothing else. Queue depths, breaker states and
in-flight counts are read by a sampler every `ops.metrics.sample_interval` seconds and just
before a scrape.

With `polyroute serve --workers N` the CLI sets PROMETHEUS_MULTIPROC_DIR before the workers
start: every worker writes its values to files there, and whichever worker answers the scrape
sums them (docs/operations.md#metrics).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from polyroute.config.schema import MetricsConfig
from polyroute.core.context import RequestContext
from polyroute.ops.registry import Registry

if TYPE_CHECKING:
    from polyroute.core.gateway import Gateway

log = logging.getLogger("polyroute.ops")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
BREAKER_STATES = {"closed": 0.0, "half-open": 1.0, "half_open": 1.0, "open": 2.0}
# Label combinations kept in the per-request cache; past it the cache starts over (the series
# themselves stay in prometheus_client).
MAX_CACHED = 20_000
OTHER = "other"  # model label of requests for models the catalogue does not know
NONE = "-"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class _Series:
    """One label combination's children, and the counts not yet added to them.

    Counters are summed here in plain floats and added to prometheus_client (whose every
    increment takes a lock) by `flush`, run by the sampler and before every scrape."""

    __slots__ = (
        "c_cache_write",
        "c_cached",
        "c_cost",
        "c_input",
        "c_output",
        "c_reasoning",
        "c_requests",
        "cache_write",
        "cached",
        "cost",
        "dirty",
        "duration",
        "input",
        "output",
        "reasoning",
        "requests",
        "ttft",
    )

    def __init__(self, requests: Any, cost: Any, tokens: dict[str, Any], duration: Any, ttft: Any) -> None:
        self.c_requests = requests
        self.c_cost = cost
        self.c_input = tokens["input"]
        self.c_output = tokens["output"]
        self.c_cached = tokens["cached_input"]
        self.c_cache_write = tokens["cache_write"]
        self.c_reasoning = tokens["reasoning"]
        self.duration = duration
        self.ttft = ttft
        self.dirty = False
        self.requests = self.input = self.output = self.cached = self.cache_write = self.reasoning = 0
        self.cost = 0.0

    def flush(self) -> None:
        if self.requests:
            self.c_requests.inc(self.requests)
        if self.input:
            self.c_input.inc(self.input)
        if self.output:
            self.c_output.inc(self.output)
        if self.cached:
            self.c_cached.inc(self.cached)
        if self.cache_write:
            self.c_cache_write.inc(self.cache_write)
        if self.reasoning:
            self.c_reasoning.inc(self.reasoning)
        if self.cost:
            self.c_cost.inc(self.cost)
        self.requests = self.input = self.output = self.cached = self.cache_write = self.reasoning = 0
        self.cost = 0.0
        self.dirty = False


class Metrics:
    def __init__(self, config: MetricsConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.multiprocess = multiprocess_dir() is not None
        # `_created` series double the exposition and no dashboard here uses them.
        disable_created_metrics()
        # A private registry: several gateways in one process (tests) do not collide, and in
        # multiprocess mode the exposition reads the files instead.
        self.prom = CollectorRegistry(auto_describe=False)
        r = self.prom
        req = ("model", "provider", "status", "key")
        self.requests = Counter("polyroute_requests", "Requests by served model, provider, status and key.", req, registry=r)
        self.tokens = Counter(
            "polyroute_tokens", "Tokens by model, provider, status, key and type (input includes cached).",
            (*req, "type"), registry=r,
        )
        self.cost = Counter("polyroute_cost_usd", "Upstream cost in USD.", req, registry=r)
        self.errors = Counter(
            "polyroute_request_errors", "Failed requests by error kind.", ("model", "provider", "kind"), registry=r
        )
        self.duration = Histogram(
            "polyroute_request_duration_seconds", "Request latency, start to last byte (streams included).",
            ("model", "provider", "stream"), buckets=LATENCY_BUCKETS, registry=r,
        )
        self.ttft = Histogram(
            "polyroute_time_to_first_token_seconds", "Streams: request start to the first upstream event.",
            ("model", "provider"), buckets=TTFT_BUCKETS, registry=r,
        )
        self.attempts = Counter(
            "polyroute_upstream_attempts", "Calls to upstream deployments (failover makes several per request).",
            ("provider", "deployment", "status"), registry=r,
        )
        self.fallbacks = Counter(
            "polyroute_fallbacks", "Requests served by another model than asked, by reason.", ("model", "reason"),
            registry=r,
        )
        self.in_flight = Gauge(
            "polyroute_requests_in_flight", "Requests inside the gateway now.", registry=r, multiprocess_mode="livesum"
        )
        self.queue_depth = Gauge(
            "polyroute_queue_depth", "Items waiting in a queue (ledger writer, in-house model, ...).", ("queue",),
            registry=r, multiprocess_mode="livesum",
        )
        self.breaker = Gauge(
            "polyroute_breaker_state", "Circuit breaker per deployment: 0 closed, 1 half-open, 2 open (worst worker).",
            ("model", "deployment", "provider"), registry=r, multiprocess_mode="livemax",
        )
        self.deployment_in_flight = Gauge(
            "polyroute_deployment_in_flight", "Calls in flight per deployment.", ("deployment",),
            registry=r, multiprocess_mode="livesum",
        )
        self.config_info = Gauge(
            "polyroute_config_info", "1 for the configuration hash a worker runs (several: workers disagree).",
            ("config_hash",), registry=r, multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "polyroute_config_reloads", "Configuration reloads by result.", ("result",), registry=r
        )
        self.health = Gauge(
            "polyroute_health_check_up", "Dependency checks of /health/ready: 1 passing, 0 failing (worst worker).",
            ("check",), registry=r, multiprocess_mode="livemin",
        )
        self.counters_transitions = Counter(
            "polyroute_counters_transitions", "Limit/budget counters switching away from Redis (to the fallback "
            "mode: local, open, closed) or back to it (redis).", ("to",), registry=r,
        )  # fmt: skip
        self.log_dropped = Gauge(
            "polyroute_log_records_dropped", "Log records dropped because the log queue was full.",
            registry=r, multiprocess_mode="livesum",
        )
        self._custom: dict[str, Gauge] = {}
        self._series: dict[tuple[str, str, int, str, bool], _Series] = {}
        self._children: dict[tuple[Any, ...], Any] = {}
        self._dirty: list[_Series] = []
        self._pending: dict[Any, int] = {}
        self._sampled: dict[str, set[tuple[str, ...]]] = {}
        self.models: frozenset[str] = frozenset()
        self._hash: str | None = None

    # --- request path -----------------------------------------------------------------------

    def _key(self, key: Any) -> str:
        if key is None or not self.config.key_label:
            return NONE
        # A governance key record: its public id. Never the secret the caller presented.
        kid = getattr(key, "id", None)
        return kid if isinstance(kid, str) else NONE

    def _make(self, k: tuple[str, str, int, str, bool]) -> _Series:
        if len(self._series) >= MAX_CACHED:
            self.flush()
            self._series.clear()
        model, provider, status, key, stream = k
        labels = (model, provider, str(status), key)
        s = _Series(
            self.requests.labels(*labels),
            self.cost.labels(*labels),
            {t: self.tokens.labels(*labels, t) for t in ("input", "output", "cached_input", "cache_write", "reasoning")},
            self.duration.labels(model, provider, "true" if stream else "false"),
            self.ttft.labels(model, provider),
        )
        self._series[k] = s
        return s

    def _count(self, metric: Any, *labels: str) -> None:
        """One more for this child of a counter, added at the next flush."""
        k = (id(metric), *labels)
        c = self._children.get(k)
        if c is None:
            if len(self._children) >= MAX_CACHED:
                self.flush()
                self._children.clear()
            c = self._children[k] = metric.labels(*labels)
        p = self._pending
        p[c] = p.get(c, 0) + 1

    def record(self, ctx: RequestContext, now: float) -> None:
        route = ctx.route
        model = route if route in self.models else OTHER
        provider = ctx.provider
        if provider is None:
            provider = ctx.attempts[-1].provider if ctx.attempts else NONE
        k = (model, provider, ctx.status, self._key(ctx.key), ctx.stream)
        s = self._series.get(k)
        if s is None:
            s = self._make(k)
        s.requests += 1
        u = ctx.usage
        if u is not None:
            s.input += u.input_tokens
            s.output += u.output_tokens
            s.cached += u.cached_input_tokens
            s.cache_write += u.cache_write_tokens
            s.reasoning += u.reasoning_tokens
        s.cost += ctx.cost
        if not s.dirty:
            s.dirty = True
            self._dirty.append(s)
        # Histograms are observed at once: a bucket has no public "add n" to defer to.
        s.duration.observe(now - ctx.started)
        if ctx.stream and ctx.ttft is not None:
            s.ttft.observe(ctx.ttft)
        if ctx.error is not None:
            self._count(self.errors, model, provider, ctx.error.kind)
        for a in ctx.attempts:
            self._count(self.attempts, a.provider, a.deployment, str(a.status))
        if ctx.fallback_reason:
            self._count(self.fallbacks, model, ctx.fallback_reason)

    def flush(self) -> None:
        """Add the counts summed since the last flush to the exported counters."""
        dirty, self._dirty = self._dirty, []
        for s in dirty:
            s.flush()
        pending, self._pending = self._pending, {}
        for child, n in pending.items():
            child.inc(n)

    # --- sampled gauges ---------------------------------------------------------------------

    def set_models(self, names: Iterable[str]) -> None:
        self.models = frozenset(names)

    def set_config_hash(self, digest: str) -> None:
        if self._hash is not None and self._hash != digest:
            self.config_info.labels(self._hash).set(0)
        self.config_info.labels(digest).set(1)
        self._hash = digest

    def _replace(self, gauge: Gauge, name: str, values: dict[tuple[str, ...], float]) -> None:
        """Set a labelled gauge to exactly these series (series that went away are dropped)."""
        for labels, v in values.items():
            gauge.labels(*labels).set(v)
        old = self._sampled.get(name, set())
        for labels in old - values.keys():
            if self.multiprocess:
                gauge.labels(*labels).set(0)  # files cannot forget a series
            else:
                try:
                    gauge.remove(*labels)
                except KeyError:
                    pass
        self._sampled[name] = set(values)

    def sample(self, gateway: Gateway) -> None:
        from polyroute.ops.logs import dropped_records

        self.flush()

        queues: dict[tuple[str, ...], float] = {}
        for name, fn in list(self.registry.queues.items()):
            try:
                queues[(name,)] = float(fn())
            except Exception:
                log.debug("queue gauge %s failed", name, exc_info=True)
        self._replace(self.queue_depth, "queue", queues)
        for spec in list(self.registry.gauges.values()):
            try:
                self._sample_custom(spec.name, spec.help, spec.labels, spec.mode, spec.fn())
            except Exception:
                log.debug("gauge %s failed", spec.name, exc_info=True)
        breakers: dict[tuple[str, ...], float] = {}
        inflight: dict[tuple[str, ...], float] = {}
        router = gateway.router
        try:
            now = router.clock()
            for rt in router.routes.values():
                for x in rt.targets:
                    breakers[(rt.name, x.key, x.dep.provider_name)] = BREAKER_STATES.get(x.breaker.state(now), 0.0)
                    inflight[(x.key,)] = float(x.capacity.inflight())
        except Exception:  # the routing package's internals are its own; a change must not break scrapes
            log.debug("reading breaker states failed", exc_info=True)
        self._replace(self.breaker, "breaker", breakers)
        self._replace(self.deployment_in_flight, "deployment_in_flight", inflight)
        self.log_dropped.set(dropped_records())

    def _sample_custom(self, name: str, help: str, labels: tuple[str, ...], mode: str, value: Any) -> None:
        g = self._custom.get(name)
        if g is None:
            g = self._custom[name] = Gauge(name, help, labels, registry=self.prom, multiprocess_mode=mode)  # type: ignore[arg-type]
        if not labels:
            g.set(float(value))
            return
        self._replace(g, name, {tuple(lv): float(v) for lv, v in value})

    # --- exposition -------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition; blocking (reads files in multiprocess mode): call it in a thread."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            reg = CollectorRegistry(auto_describe=False)
            multiprocess.MultiProcessCollector(reg)
            return generate_latest(reg)
        return generate_latest(self.prom)

    def process_exited(self) -> None:
        """Drop this worker's live gauges from the shared directory (a clean exit)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            try:
                multiprocess.mark_process_dead(os.getpid())
            except Exception:
                log.debug("mark_process_dead failed", exc_info=True)
