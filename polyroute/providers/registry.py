"""The closed set of provider types, known to the config loader.

Adding a vendor means one entry here and one small module; nothing in the request path changes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyroute.config.schema import ProviderConfig
    from polyroute.providers.base import Provider

# type -> "module:Class"; imported lazily so a gateway without the in-house model never loads it.
PROVIDER_TYPES: dict[str, str] = {
    "openai": "polyroute.providers.openai_compat:OpenAI",
    "azure": "polyroute.providers.openai_compat:Azure",
    "mistral": "polyroute.providers.openai_compat:Mistral",
    "deepseek": "polyroute.providers.openai_compat:DeepSeek",
    "xai": "polyroute.providers.openai_compat:XAI",
    "vllm": "polyroute.providers.openai_compat:VLLM",
    "ollama": "polyroute.providers.openai_compat:Ollama",
    "llamacpp": "polyroute.providers.openai_compat:LlamaCpp",
    "openai_compatible": "polyroute.providers.openai_compat:OpenAICompatible",
    "anthropic": "polyroute.providers.anthropic:Anthropic",
    "gemini": "polyroute.providers.gemini:Gemini",
    "inhouse": "polyroute.providers.inhouse.provider:InHouse",
}

_NEEDS_BASE_URL = {"azure", "vllm", "openai_compatible"}
_NEEDS_KEY = {"openai", "azure", "anthropic", "gemini", "mistral", "deepseek", "xai"}


def provider_class(type_: str) -> type[Provider]:
    module, _, cls = PROVIDER_TYPES[type_].partition(":")
    return getattr(importlib.import_module(module), cls)


def create_provider(name: str, config: ProviderConfig) -> Provider:
    return provider_class(config.type)(name, config)


def requirements_problem(config: ProviderConfig) -> tuple[str, str] | None:
    """(problem, fix) when a provider's config lacks what its type needs."""
    if config.type in _NEEDS_BASE_URL and not config.base_url:
        return (f"type '{config.type}' needs 'base_url'", "set base_url to the server's URL (e.g. http://host:8000/v1)")
    if config.type in _NEEDS_KEY and not config.api_key:
        return (f"type '{config.type}' needs 'api_key'", "set api_key: ${ENV_VAR} with the vendor's key in that variable")
    if config.type == "azure" and not config.api_version:
        return ("type 'azure' needs 'api_version'", "set api_version, e.g. 2024-10-21")
    return None
