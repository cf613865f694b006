"""The configuration file's schema: one YAML file, validated whole at start-up.

Unknown fields are rejected (a typo must not silently mean "default"), and the set of provider
types is closed and known here, so the loader can name the field and the fix.
"""

from __future__ import annotations

from typing import Literal

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


class Timeouts(C):
    connect: float = 5.0
    # Until the first token (streaming) or the whole answer (non-streaming).
    first_token: float = 60.0
    # Longest silence between two stream chunks before the stream counts as dead.
    idle: float = 60.0
    total: float = 600.0


class ProviderConfig(C):
    type: ProviderType
    base_url: str | None = None
    api_key: str | None = None
    # Azure OpenAI's api-version query parameter.
    api_version: str | None = None
    headers: dict[str, str] | None = None
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    max_connections: int = 256
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
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    weight: float = 1.0
    context_window: int | None = None
    name: str | None = None


class ModelConfig(C):
    deployments: list[DeploymentConfig]
    kind: Literal["chat", "embedding"] = "chat"
    strategy: Strategy = "priority"
    fallbacks: list[str] = msgspec.field(default_factory=list)
    # Falling back to a much weaker model (e.g. the in-house one) must be asked for.
    allow_weak_fallback: bool = False
    description: str | None = None


class ServerConfig(C):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 10 * 1024 * 1024
    master_key: str | None = None


class Config(C):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    providers: dict[str, ProviderConfig] = msgspec.field(default_factory=dict)
    models: dict[str, ModelConfig] = msgspec.field(default_factory=dict)
