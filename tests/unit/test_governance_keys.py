"""Virtual keys: format, hashing, allow-lists, limit validation."""

from __future__ import annotations

import hashlib

import pytest

from polyroute.governance.keys import (
    KEY_PREFIX,
    Key,
    ModelRule,
    check_limits,
    display_prefix,
    hash_key,
    new_secret,
    same_hash,
)
from polyroute.governance.redact import MASK, Redactor


def test_secret_format_and_hash() -> None:
    s = new_secret()
    assert s.startswith(KEY_PREFIX) and len(s) >= len(KEY_PREFIX) + 40
    assert new_secret() != s
    assert hash_key(s) == hashlib.sha256(s.encode()).hexdigest()
    assert display_prefix(s) == s[:12] and s not in display_prefix(s) + "x"
    assert same_hash(hash_key(s), hash_key(s)) and not same_hash(hash_key(s), hash_key(s + "x"))


def test_public_view_never_has_hash_or_secret() -> None:
    s = new_secret()
    k = Key("key_1", "team_1", "bot", hash_key(s), display_prefix(s))
    shown = repr(k.public())
    assert hash_key(s) not in shown and s not in shown and display_prefix(s) in shown


def test_model_rule_exact_and_globs() -> None:
    assert ModelRule(None).allows("anything")
    r = ModelRule(["gpt-4o-mini", "claude-*"])
    assert r.allows("gpt-4o-mini") and r.allows("claude-haiku-4-5")
    assert not r.allows("gpt-4o") and not r.allows("xclaude-1")
    assert not ModelRule([]).allows("gpt-4o-mini")


def test_key_usable() -> None:
    k = Key("k", "t", "", "h", "p", expires_at=100.0)
    assert k.usable(99.0) is None and "expired" in (k.usable(100.0) or "")
    k.revoked_at = 50.0
    assert "revoked" in (k.usable(10.0) or "")


@pytest.mark.parametrize(
    "bad",
    [{"rpm": 0}, {"tpm": 1.5}, {"budget_daily": -1}, {"budget_mode": "soft"}, {"allowed_models": "gpt"}, {"x": 1},
     {"rpm": True}],
)  # fmt: skip
def test_check_limits_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        check_limits(bad)


def test_check_limits_normalises() -> None:
    assert check_limits({"budget_daily": 5, "rpm": 10, "allowed_models": ["a"], "tpm": None}) == {
        "budget_daily": 5.0, "rpm": 10, "allowed_models": ["a"], "tpm": None,
    }  # fmt: skip


def test_redactor_patterns_and_secrets() -> None:
    r = Redactor([r"\b\d{3}-\d{2}-\d{4}\b"], ["sk-upstream-abcdef", None, "x"])
    out = r.apply("ssn 123-45-6789 key sk-upstream-abcdef ok")
    assert "123-45-6789" not in out and "sk-upstream-abcdef" not in out and out.count(MASK) == 2
    assert r.secrets_only("123-45-6789") == "123-45-6789"


def test_config_errors_name_their_field() -> None:
    from polyroute.config.load import ConfigError, parse_config
    from polyroute.server.factory import build_policies

    for text, field in (
        ("server: {master_key: short}\n", "server.master_key"),
        ("ledger: {redact: ['(unclosed']}\n", "ledger.redact[0]"),
        ("database: {url: 'mysql://x'}\n", "database.url"),
        ("governance: {counters: redis}\n", "governance.redis_url"),
    ):
        with pytest.raises(ConfigError) as exc:
            build_policies(parse_config(text, "t", env={}))
        assert field in str(exc.value)
    assert build_policies(parse_config("{}", "t", env={})) == [] or all(
        type(p).__name__ != "Governance" for p in build_policies(parse_config("{}", "t", env={}))
    )
