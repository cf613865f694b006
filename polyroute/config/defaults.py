"""The catalogue used when no config file is given: the in-house model, plus every vendor whose
API key is in the environment. A config file, when given, is the whole truth instead."""

from __future__ import annotations

from collections.abc import Mapping

from polyroute.config.schema import Config, DeploymentConfig, ModelConfig, ProviderConfig

INHOUSE_CHAT = "smollm2-135m-instruct"
INHOUSE_EMBEDDING = "all-minilm-l6-v2"

# env var with the key -> (provider type, env var that may override the base URL, models)
_VENDORS: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "OPENAI_API_KEY": (
        "openai",
        "OPENAI_BASE_URL",
        [("gpt-4o", "chat"), ("gpt-4o-mini", "chat"), ("gpt-4.1", "chat"), ("gpt-4.1-mini", "chat"),
         ("text-embedding-3-small", "embedding")],
    ),
    "ANTHROPIC_API_KEY": (
        "anthropic",
        "ANTHROPIC_BASE_URL",
        [("claude-sonnet-4-5", "chat"), ("claude-haiku-4-5", "chat"), ("claude-opus-4-1", "chat")],
    ),
    "MISTRAL_API_KEY": (
        "mistral",
        "MISTRAL_BASE_URL",
        [("mistral-large-latest", "chat"), ("mistral-small-latest", "chat"), ("mistral-embed", "embedding")],
    ),
    "DEEPSEEK_API_KEY": ("deepseek", "DEEPSEEK_BASE_URL", [("deepseek-chat", "chat"), ("deepseek-reasoner", "chat")]),
    "XAI_API_KEY": ("xai", "XAI_BASE_URL", [("grok-4", "chat"), ("grok-3-mini", "chat")]),
    "GEMINI_API_KEY": (
        "gemini",
        "GEMINI_BASE_URL",
        [("gemini-2.5-pro", "chat"), ("gemini-2.5-flash", "chat"), ("gemini-embedding-001", "embedding")],
    ),
}


def default_config(env: Mapping[str, str]) -> Config:
    providers: dict[str, ProviderConfig] = {"inhouse": ProviderConfig(type="inhouse")}
    models: dict[str, ModelConfig] = {
        INHOUSE_CHAT: ModelConfig(
            deployments=[DeploymentConfig(provider="inhouse", model=INHOUSE_CHAT)],
            description="SmolLM2-135M-Instruct, running inside polyroute (offline, no key)",
        ),
        INHOUSE_EMBEDDING: ModelConfig(
            kind="embedding",
            deployments=[DeploymentConfig(provider="inhouse", model=INHOUSE_EMBEDDING)],
            description="all-MiniLM-L6-v2 (int8 ONNX), running inside polyroute",
        ),
    }
    for key_var, (ptype, url_var, vendor_models) in _VENDORS.items():
        key = env.get(key_var)
        if not key:
            continue
        providers[ptype] = ProviderConfig(type=ptype, api_key=key, base_url=env.get(url_var) or None)  # type: ignore[arg-type]
        for model, kind in vendor_models:
            models[model] = ModelConfig(kind=kind, deployments=[DeploymentConfig(provider=ptype, model=model)])  # type: ignore[arg-type]
    azure_key, azure_endpoint = env.get("AZURE_OPENAI_API_KEY"), env.get("AZURE_OPENAI_ENDPOINT")
    if azure_key and azure_endpoint:
        providers["azure"] = ProviderConfig(
            type="azure",
            api_key=azure_key,
            base_url=azure_endpoint,
            api_version=env.get("AZURE_OPENAI_API_VERSION") or env.get("OPENAI_API_VERSION") or "2024-10-21",
        )
        # Azure model names are the customer's deployment names: list them, comma-separated.
        for dep in (env.get("AZURE_OPENAI_DEPLOYMENTS") or env.get("AZURE_OPENAI_DEPLOYMENT") or "").split(","):
            if dep.strip():
                name = f"azure/{dep.strip()}"
                models[name] = ModelConfig(deployments=[DeploymentConfig(provider="azure", model=dep.strip())])
    return Config(providers=providers, models=models)
