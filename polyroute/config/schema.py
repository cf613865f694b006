"""The configuration file's schema: one YAML file, validated whole at start-up.

Unknown fields are rejected (a typo must not silently mean "default"), and the set of provider
types is closed and known here, so the loader can name the field and the fix.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

ProviderType = Literal[
    "openai",
    "azure",
    "anthropic",
    "gemini",
    "mistral",
    "deepseek",
    "xai",
    "vllm",
    "ollama",
    "llamacpp",
    "openai_compatible",
    "inhouse",
]

Strategy = Literal["priority", "weighted", "least-latency", "least-busy", "cost", "quality"]


class C(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


# Routing value constraints: checked at load time, so the error names the field.
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
PosFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PosInt = Annotated[int, msgspec.Meta(ge=1)]
Ratio = Annotated[float, msgspec.Meta(ge=0, le=1)]


class Timeouts(C):
    # TCP connect to the provider.
    connect: PosFloat = 5.0
    # Streaming: until the first content event. Non-streaming calls are bounded by `total`.
    first_token: PosFloat = 60.0
    # Longest silence between two stream chunks before the stream counts as dead.
    idle: PosFloat = 60.0
    # One attempt, start to last byte.
    total: PosFloat = 600.0


class BreakerConfig(C):
    """Circuit breaker, one per deployment of the provider (docs/routing.md#circuit-breaker).

    Health failures (5xx, 529, timeouts, connection errors) count; 429 does not (it is a
    capacity signal that moves traffic to the next deployment)."""

    enabled: bool = True
    # Open after this many health failures in a row (0: only the ratio below opens it).
    consecutive_failures: NonNegInt = 5
    # Or open when, over the last `window` seconds, at least `min_requests` finished and this
    # share of them failed.
    failure_ratio: Ratio = 0.5
    min_requests: PosInt = 20
    window: PosFloat = 30.0
    # Seconds open before one half-open probe; doubled after each failed probe, up to max_cooldown.
    cooldown: PosFloat = 10.0
    max_cooldown: PosFloat = 120.0


class RetryConfig(C):
    """Retries of a route (docs/routing.md#retries). Failing over to the next deployment is
    immediate and free; a retry is another pass over deployments that already failed."""

    # Extra passes over the route's deployments (the `retries` request option overrides it).
    # Off by default: failover is immediate anyway, and the vendors' SDKs already retry what the
    # gateway marks retryable, so a second retry layer would multiply load during an outage.
    retries: NonNegInt = 0
    # Exponential backoff between passes, with jitter; an upstream Retry-After wins when longer.
    backoff_initial: NonNegFloat = 0.25
    backoff_max: NonNegFloat = 8.0
    # Retry budget: over the last `budget_window` seconds, retries may be at most
    # `budget_ratio` x requests + `budget_min_per_second` x window, so an outage cannot
    # turn into a retry storm.
    budget_ratio: NonNegFloat = 0.2
    budget_min_per_second: NonNegFloat = 1.0
    budget_window: PosFloat = 10.0


class StickyConfig(C):
    """Keep one conversation or end user on one deployment, so vendors' prompt caches hit."""

    # "user": the end-user id (polyroute.end_user, else the body's `user`);
    # "messages": a hash of the first `messages` messages. A per-request sticky_key always wins.
    by: Literal["user", "messages"] = "messages"
    messages: PosInt = 2
    # Seconds an idle conversation stays pinned, and the most pins kept (least recent dropped).
    ttl: PosFloat = 3600.0
    max_entries: PosInt = 100_000


class ProviderConfig(C):
    type: ProviderType
    base_url: str | None = None
    api_key: str | None = None
    # Azure OpenAI's api-version query parameter.
    api_version: str | None = None
    headers: dict[str, str] | None = None
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    # Seconds a deployment is skipped after a 429 that carried no Retry-After.
    rate_limit_cooldown: NonNegFloat = 1.0
    max_connections: int = 256
    # HTTP client for provider calls: "fast" (polyroute.transport, HTTP/1.1) or "aiohttp".
    # A proxy (below, or HTTP(S)_PROXY in the environment) always goes through aiohttp.
    http_client: Literal["fast", "aiohttp"] = "fast"
    proxy: str | None = None
    # Parameters a provider cannot honour: 400 by default, silently dropped when true.
    drop_unsupported_params: bool = False
    # In-house provider: request queue bound and parallel generations.
    max_queue: int = 16
    max_concurrency: int = 1
    context_size: int = 2048


class DeploymentConfig(C):
    provider: str
    model: str
    # USD per million tokens.
    input_price: float | None = None
    output_price: float | None = None
    cached_input_price: float | None = None
    cache_write_price: float | None = None
    # Capacity: requests and tokens per minute, requests in flight. When one is reached the
    # request goes to the next deployment at once (docs/routing.md#capacity).
    rpm: PosInt | None = None
    tpm: PosInt | None = None
    max_concurrency: PosInt | None = None
    # Share of traffic under `strategy: weighted` (0: only when the others cannot serve).
    weight: float = 1.0
    # Prompt + max_tokens the deployment accepts; longer requests go to another deployment/model.
    context_window: PosInt | None = None
    name: str | None = None


class ShadowConfig(C):
    """Mirror a sampled share of this route's answered chat requests to candidate models, in the
    background, and store the pairs for `polyroute compare --shadow` (docs/evaluation.md)."""

    models: list[str]
    sample_rate: float = 0.1
    # A JSONL file path (or `jsonl:PATH`); other schemes are refused until a DB store exists.
    store: str = "polyroute-shadow.jsonl"
    # Mirrored requests waiting or running; more are dropped (and counted), never queued.
    max_queue: int = 64
    max_concurrency: int = 4


class QualityConfig(C):
    """The learned router for `strategy: quality` (docs/evaluation.md)."""

    # Artifact written by `polyroute router train`.
    router: str
    # How much one US dollar of predicted cost is worth in predicted quality (0..1 scale);
    # 0 = best predicted quality whatever the price. None: the artifact's default.
    quality_per_dollar: float | None = None


class ModelConfig(C):
    # A route over `candidates` (other public models) may leave this empty: it then routes over
    # their deployments, and `strategy: quality` chooses the candidate per request.
    deployments: list[DeploymentConfig] = msgspec.field(default_factory=list)
    candidates: list[str] | None = None
    quality: QualityConfig | None = None
    shadow: ShadowConfig | None = None
    kind: Literal["chat", "embedding"] = "chat"
    strategy: Strategy = "priority"
    fallbacks: list[str] = msgspec.field(default_factory=list)
    # Falling back to a much weaker model (e.g. the in-house one) must be asked for.
    allow_weak_fallback: bool = False
    # Whether this model is "much weaker" (see above); by default, when all its deployments are
    # in-house.
    weak: bool | None = None
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    # Deadline in seconds for one request, all attempts and backoff included (the `timeout`
    # request option overrides it). None: each attempt is bounded by its provider's timeouts.
    timeout: PosFloat | None = None
    sticky: StickyConfig | None = None
    description: str | None = None


class ServerConfig(C):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 10 * 1024 * 1024
    master_key: str | None = None
    # Seconds an idle client connection stays open. Longer than a load balancer's own idle timeout
    # (nginx upstream keepalive_timeout and cloud balancers: 60 s), so the balancer closes first
    # and never sends a request on a connection the gateway is closing (a 502).
    keep_alive_timeout: PosFloat = 75.0


class Config(C):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    providers: dict[str, ProviderConfig] = msgspec.field(default_factory=dict)
    models: dict[str, ModelConfig] = msgspec.field(default_factory=dict)
    # Governance: keys, limits, budgets and the ledger (docs/governance.md). Sections defined below.
    database: DatabaseConfig | None = None
    ledger: LedgerConfig | None = None
    governance: GovernanceConfig | None = None
    # Operations: metrics, logs, traces, reload (docs/operations.md). Section defined at the end.
    ops: OpsConfig | None = None
    # The dashboard at /ui (docs/dashboard.md). Section defined at the end.
    ui: UIConfig | None = None
    # Breakers and latency averages shared by several instances (docs/routing.md#several-instances).
    routing_state: RoutingStateConfig | None = None


# --- governance (docs/governance.md) ------------------------------------------------------------


class DatabaseConfig(C):
    # sqlite:///relative/or/absolute/path.db (WAL) or postgresql://user:password@host:5432/dbname
    url: str = "sqlite:///./polyroute.db"
    # PostgreSQL connection pool size (per worker process).
    pool_size: int = 10
    connect_timeout: float = 10.0


class LedgerConfig(C):
    enabled: bool = True
    # In-memory queue between the request path and the database writer; beyond it rows spill to disk.
    queue_size: int = 10000
    batch_size: int = 500
    flush_interval: float = 0.5
    # A batch insert slower than this goes to the spool instead (and is replayed later).
    write_timeout: float = 5.0
    # Where rows wait while the database is slow or down (default: ./polyroute-spool).
    spool_dir: str | None = None
    # Ledger and audit rows older than this are deleted (None keeps everything).
    retention_days: int | None = 90
    # Prompts are not stored unless asked for, and then with the `redact` patterns replaced.
    store_prompts: bool = False
    redact: list[str] = msgspec.field(default_factory=list)


class GovernanceConfig(C):
    # How stale the in-memory key cache may get: revocations from the CLI or another instance
    # take effect within this many seconds (an admin-API revoke takes effect at once).
    key_cache_ttl: float = 5.0
    # Output tokens reserved against budgets when a request does not set max_tokens.
    reserve_output_tokens: int = 4096
    # Where limit and budget counters live: this process ("memory") or a shared Redis ("redis").
    counters: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    # While that Redis is unreachable (docs/governance.md#when-redis-is-unreachable): "local" keeps
    # the same limits and budgets on per-process memory counters, "open" enforces none, "closed"
    # refuses requests of limited keys with a retryable 503. Requests never wait on a dead Redis.
    redis_unavailable: Literal["local", "open", "closed"] = "local"
    # Seconds one Redis call may take before Redis counts as unreachable (connecting included);
    # only requests in flight when Redis stops answering wait this long, later ones do not wait.
    redis_timeout: PosFloat = 0.5
    # Require a virtual key on every request even while no master key and no key exist.
    require_keys: bool = False


# --- operations (docs/operations.md) ------------------------------------------------------------


class MetricsConfig(C):
    enabled: bool = True
    # Who may read GET /metrics: "loopback" (callers on 127.0.0.1/::1 freely, others only with the
    # master key), "open" (anyone who reaches the port) or "master_key" (always the master key).
    access: Literal["loopback", "open", "master_key"] = "loopback"
    # Label request, token and cost counters with the caller's key id (off: one series per model).
    key_label: bool = True
    # Seconds between samples of queue depths, breaker states and in-flight counts.
    sample_interval: PosFloat = 5.0


class LoggingConfig(C):
    # "json" (one object per line) or "text"; unset: json unless stderr is a terminal.
    # `polyroute serve --log-format` wins over this.
    format: Literal["json", "text"] | None = None
    # One line per HTTP request on the `polyroute.access` logger. Off by default: the ledger is the
    # per-request record, and a log line costs 15-25 us of CPU per request (docs/performance.md).
    access_log: bool = False
    # More strings never to print; provider keys, header values and the master key always are.
    redact: list[str] = msgspec.field(default_factory=list)


class TracingConfig(C):
    """OpenTelemetry traces over OTLP/HTTP; needs the `otel` extra (docs/operations.md#tracing)."""

    enabled: bool = False
    # OTLP/HTTP traces URL; unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else http://localhost:4318/v1/traces.
    endpoint: str | None = None
    headers: dict[str, str] | None = None
    service_name: str = "polyroute"
    # Share of requests traced when the caller sent no sampled `traceparent`.
    sample_ratio: Ratio = 1.0


class OpsConfig(C):
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    tracing: TracingConfig = msgspec.field(default_factory=TracingConfig)
    # Seconds a replaced catalogue's providers stay open for requests still using them after a
    # reload (unset: the longest provider `timeouts.total` + 60).
    reload_drain_timeout: PosFloat | None = None
    # Seconds each dependency check of /health/ready may take before it counts as failing.
    health_check_timeout: PosFloat = 2.0


# --- shared routing state (docs/routing.md#several-instances) -----------------------------------


class RoutingStateConfig(C):
    """Where breakers and latency averages live: this process, or shared through Redis."""

    # "memory": each instance on its own; "redis": open breakers and latency averages are shared.
    backend: Literal["memory", "redis"] = "memory"
    # redis://[:password@]host:6379/0 (rediss:// for TLS; ${ENV} allowed). Unset: governance.redis_url.
    redis_url: str | None = None
    # Seconds between two exchanges with Redis (a breaker that opens is published at once).
    sync_interval: PosFloat = 0.25
    # Another instance's latency averages count until this many seconds without an update.
    stale_after: PosFloat = 30.0
    # Prefix of the Redis keys: separate fleets sharing one Redis need different prefixes.
    key_prefix: str = "polyroute:"


# --- dashboard (docs/dashboard.md) -------------------------------------------------------------


class UIConfig(C):
    """The dashboard at /ui (docs/dashboard.md)."""

    # Serve /ui at all.
    enabled: bool = True
    # Folder whose sub-folders are `polyroute compare` outputs (each with a summary.json).
    reports_dir: str = "."
    # JSONL file the playground's votes are appended to (routing-record format).
    preferences: str = "polyroute-preferences.jsonl"
    # Seconds a login lasts.
    session_ttl: float = 8 * 3600.0
    # Virtual keys of these teams may log in as administrators (besides the master key).
    admin_teams: list[str] = msgspec.field(default_factory=lambda: ["admin"])
    # Secret that signs sessions and playground matches; default: derived from the master key (so
    # every worker agrees), or random per process when there is no master key.
    secret: str | None = None
