"""Start-up checks of the ops section."""

from __future__ import annotations

import pytest

from polyroute.config.load import ConfigError, parse_config
from polyroute.ops.policy import OpsPolicy
from polyroute.ops.setup import ops_policies


def test_tracing_needs_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config("ops: {tracing: {enabled: true}}", "<test>")
    monkeypatch.setattr("polyroute.ops.setup._find", lambda module: None)
    with pytest.raises(ConfigError) as info:
        ops_policies(cfg)
    assert info.value.field == "ops.tracing.enabled" and "polyroute[otel]" in info.value.fix


def test_ops_section_defaults_and_typos() -> None:
    (policy,) = ops_policies(parse_config("providers: {}", "<test>"))
    assert isinstance(policy, OpsPolicy)
    assert policy.metrics is not None and policy.config.metrics.access == "loopback"
    assert not policy.config.logging.access_log and not policy.config.tracing.enabled
    with pytest.raises(ConfigError) as info:
        parse_config("ops: {metrics: {acess: open}}", "<test>")
    assert info.value.field == "ops.metrics" and "acess" in info.value.problem
    with pytest.raises(ConfigError) as info:
        parse_config("ops: {metrics: {access: public}}", "<test>")
    assert info.value.field == "ops.metrics.access"
