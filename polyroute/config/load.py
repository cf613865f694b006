"""Loading and validating the YAML configuration, with messages naming file, field and fix."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from polyroute.config.schema import Config

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MSGSPEC_PATH = re.compile(r" - at `\$\.?(.*)`$")


class ConfigError(Exception):
    """Invalid configuration; the message names the file, the field and the fix."""

    def __init__(self, source: str, field: str, problem: str, fix: str) -> None:
        self.source, self.field, self.problem, self.fix = source, field, problem, fix
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {problem}. Fix: {fix}")


def _substitute(node: Any, path: str, source: str, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            value = env.get(name)
            if value is None or value == "":
                if default is not None:
                    return default
                raise ConfigError(
                    source,
                    path,
                    f"environment variable {name} is not set",
                    f"export {name}=... before starting, or write ${{{name}:-default}}",
                )
            return value

        return _ENV.sub(repl, node)
    if isinstance(node, dict):
        return {k: _substitute(v, f"{path}.{k}" if path else str(k), source, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{path}[{i}]", source, env) for i, v in enumerate(node)]
    return node


def parse_config(text: str, source: str, env: Mapping[str, str] | None = None) -> Config:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, where, f"not valid YAML ({getattr(exc, 'problem', exc)})", "correct the YAML syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(source, "", "the top level must be a mapping", "start with 'providers:' and 'models:'")
    raw = _substitute(raw, "", source, os.environ if env is None else env)
    cfg = _convert(raw, source)
    check_references(cfg, source)
    check_features(cfg, source)
    return cfg


def check_references(cfg: Config, source: str) -> None:
    from polyroute.providers.registry import provider_class, requirements_problem

    for name, p in cfg.providers.items():
        problem = requirements_problem(p)
        if problem:
            raise ConfigError(source, f"providers.{name}", problem[0], problem[1])
    for model_name, m in cfg.models.items():
        for j, cand in enumerate(m.candidates or ()):
            other = cfg.models.get(cand)
            if other is None or cand == model_name or other.candidates:
                raise ConfigError(
                    source,
                    f"models.{model_name}.candidates[{j}]",
                    f"'{cand}' is not a model with its own deployments",
                    "name models declared under 'models:' that list deployments",
                )
        if not m.deployments and not m.candidates:
            raise ConfigError(
                source,
                f"models.{model_name}.deployments",
                "a model needs at least one deployment",
                "add a deployment, or 'candidates:' naming other models",
            )
        for i, d in enumerate(m.deployments):
            if d.provider not in cfg.providers:
                known = ", ".join(sorted(cfg.providers)) or "none"
                raise ConfigError(
                    source,
                    f"models.{model_name}.deployments[{i}].provider",
                    f"unknown provider '{d.provider}' (declared: {known})",
                    "declare it under 'providers:' or correct the name",
                )
            ptype = cfg.providers[d.provider].type
            if m.kind == "embedding" and not provider_class(ptype).capabilities.embeddings:
                raise ConfigError(
                    source,
                    f"models.{model_name}.deployments[{i}].provider",
                    f"provider '{d.provider}' (type {ptype}) serves no embeddings",
                    "use a provider type with an embeddings API, or make this a chat model",
                )
            if ptype == "inhouse":
                from polyroute.providers.inhouse.models import model_problem

                problem = model_problem(d.model, m.kind)
                if problem:
                    raise ConfigError(source, f"models.{model_name}.deployments[{i}].model", *problem)
            for price in ("input_price", "output_price", "cached_input_price", "cache_write_price"):
                v = getattr(d, price)
                if v is not None and v < 0:
                    raise ConfigError(
                        source, f"models.{model_name}.deployments[{i}].{price}", "a price cannot be negative", "use USD per million tokens, >= 0"
                    )
            if d.weight < 0:
                raise ConfigError(source, f"models.{model_name}.deployments[{i}].weight", "weight cannot be negative", "use a weight >= 0")
        for j, fb in enumerate(m.fallbacks):
            if fb not in cfg.models:
                raise ConfigError(
                    source,
                    f"models.{model_name}.fallbacks[{j}]",
                    f"unknown model '{fb}'",
                    "name a model declared under 'models:'",
                )
            if fb == model_name:
                raise ConfigError(source, f"models.{model_name}.fallbacks[{j}]", "a model cannot fall back to itself", "remove it")


def _validation_error(exc: msgspec.ValidationError, prefix: str, source: str) -> ConfigError:
    text = str(exc)
    m = _MSGSPEC_PATH.search(text)
    inner = m.group(1) if m else ""
    field = prefix + ("." if prefix and inner and not inner.startswith("[") else "") + inner
    problem = text[: m.start()] if m else text
    fix = "see the configuration reference in README.md"
    if "unknown field" in problem:
        fix = "remove or correct the misspelt field (" + fix + ")"
    elif "Invalid enum value" in problem or "Invalid value" in problem:
        fix = "use one of the documented values (" + fix + ")"
    return ConfigError(source, field, problem, fix)


def _convert(raw: dict[str, Any], source: str) -> Config:
    # msgspec reports mapping keys as `[...]`; validating the named sections one entry at a
    # time lets the message name the provider or model at fault.
    from polyroute.config.schema import ModelConfig, ProviderConfig

    for section, schema in (("providers", ProviderConfig), ("models", ModelConfig)):
        entries = raw.get(section)
        if isinstance(entries, dict):
            for name, value in entries.items():
                try:
                    msgspec.convert(value, schema, strict=False)
                except msgspec.ValidationError as exc:
                    raise _validation_error(exc, f"{section}.{name}", source) from None
    try:
        return msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, "", source) from None


def check_features(cfg: Config, source: str) -> None:
    """Checks owned by features that live outside the config package (imported late: they
    import this module for ConfigError)."""
    from polyroute.evaluation.shadow import check_shadow
    from polyroute.routing.redis_state import check as check_routing_state

    check_shadow(cfg, source)
    check_routing_state(cfg, source)


def load_config(path: str | Path) -> tuple[Config, str]:
    """The config and its content hash (shown in /health/ready to compare instances)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(str(p), "", f"cannot read the file ({exc.strerror})", "pass an existing file to --config") from None
    cfg = parse_config(text, str(p))
    return cfg, hashlib.sha256(text.encode()).hexdigest()[:16]


def config_hash(cfg: Config) -> str:
    return hashlib.sha256(msgspec.json.encode(cfg)).hexdigest()[:16]
