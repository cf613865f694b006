"""Config loading: env substitution and errors that name file, field and fix."""

from __future__ import annotations

import pytest

from polyroute.config.defaults import INHOUSE_CHAT, default_config
from polyroute.config.load import ConfigError, parse_config

GOOD = """
providers:
  oa: {type: openai, api_key: "${OA_KEY}"}
models:
  gpt:
    deployments: [{provider: oa, model: gpt-4o-mini}]
"""


def test_env_substitution() -> None:
    cfg = parse_config(GOOD, "p.yaml", env={"OA_KEY": "sk-1"})
    assert cfg.providers["oa"].api_key == "sk-1"


@pytest.mark.parametrize(
    ("text", "env", "field", "words"),
    [
        (GOOD, {}, "providers.oa.api_key", "OA_KEY is not set"),
        (GOOD.replace("openai", "openia"), {"OA_KEY": "k"}, "providers.oa.type", "Invalid enum value"),
        (GOOD.replace("model: gpt-4o-mini", "modle: x"), {"OA_KEY": "k"}, "models.gpt.deployments[0]", "unknown field"),
        (GOOD.replace("provider: oa", "provider: nope"), {"OA_KEY": "k"}, "models.gpt.deployments[0].provider", "unknown provider"),
        (GOOD + "    fallbacks: [ghost]\n", {"OA_KEY": "k"}, "models.gpt.fallbacks[0]", "unknown model"),
        ("providers: [1, 2", {}, "line", "not valid YAML"),
        (GOOD.replace('api_key: "${OA_KEY}"', 'base_url: "http://x"'), {}, "providers.oa", "needs 'api_key'"),
    ],
)
def test_errors_name_file_field_and_fix(text: str, env: dict[str, str], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "p.yaml", env=env)
    msg = str(ei.value)
    assert msg.startswith("p.yaml: ") and field in msg and words in msg and "Fix:" in msg


def test_default_catalogue_adds_vendors_with_keys() -> None:
    cfg = default_config({})
    assert list(cfg.providers) == ["inhouse"] and INHOUSE_CHAT in cfg.models
    cfg = default_config({"ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g", "ANTHROPIC_BASE_URL": "http://h"})
    assert set(cfg.providers) == {"inhouse", "anthropic", "gemini"}
    assert cfg.providers["anthropic"].base_url == "http://h"
    assert "claude-sonnet-4-5" in cfg.models and "gemini-2.5-flash" in cfg.models


def test_embedding_model_on_a_provider_without_embeddings() -> None:
    text = """
providers:
  a: {type: anthropic, api_key: k}
models:
  emb: {kind: embedding, deployments: [{provider: a, model: claude-haiku-4-5}]}
"""
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "p.yaml", env={})
    assert ei.value.field == "models.emb.deployments[0].provider" and "serves no embeddings" in ei.value.problem
