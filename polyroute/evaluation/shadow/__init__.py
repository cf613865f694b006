"""Shadow traffic: the policy that mirrors requests, the pair store, and the config checks."""

from __future__ import annotations

from polyroute.config.load import ConfigError
from polyroute.config.schema import Config, ShadowConfig
from polyroute.core.policy import Policy
from polyroute.evaluation.shadow.store import store_problem


def check_shadow(cfg: Config, source: str = "configuration") -> None:
    """Reject shadow settings that cannot work, naming the field and the fix."""
    for name, mc in cfg.models.items():
        sc = mc.shadow
        if sc is None:
            continue
        where = f"models.{name}.shadow"
        if mc.kind != "chat":
            raise ConfigError(source, where, "only chat models can mirror traffic", "remove 'shadow' from this model")
        if not sc.models:
            raise ConfigError(source, f"{where}.models", "no candidate models", "list the models to mirror to")
        for i, m in enumerate(sc.models):
            target = cfg.models.get(m)
            if target is None:
                raise ConfigError(source, f"{where}.models[{i}]", f"unknown model '{m}'",
                                  "name a model declared under 'models:'")
            if target.kind != "chat":
                raise ConfigError(source, f"{where}.models[{i}]", f"'{m}' is not a chat model", "name a chat model")
            if m == name:
                raise ConfigError(source, f"{where}.models[{i}]", "a model cannot shadow itself", "remove it")
        if not 0.0 <= sc.sample_rate <= 1.0:
            raise ConfigError(source, f"{where}.sample_rate", "must be between 0 and 1", "e.g. 0.1 mirrors 10%")
        if sc.max_queue < 1:
            raise ConfigError(source, f"{where}.max_queue", "must be at least 1", "e.g. 64")
        if sc.max_concurrency < 1:
            raise ConfigError(source, f"{where}.max_concurrency", "must be at least 1", "e.g. 4")
        problem = store_problem(sc.store)
        if problem:
            raise ConfigError(source, f"{where}.store", problem, "give a JSONL file path, e.g. shadow/pairs.jsonl")


def shadow_policies(cfg: Config) -> list[Policy]:
    """The shadow policy when any model has `shadow:` set; none otherwise."""
    routes: dict[str, ShadowConfig] = {n: mc.shadow for n, mc in cfg.models.items() if mc.shadow is not None}
    if not routes:
        return []
    check_shadow(cfg)
    from polyroute.evaluation.shadow.policy import ShadowPolicy

    return [ShadowPolicy(routes)]
