"""The dashboard's settings: a `ui:` section of the config when the schema has one, else environment
variables, else defaults (docs/dashboard.md#settings)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import msgspec

from polyroute.config.schema import UIConfig

ENV_PREFIX = "POLYROUTE_UI_"


# The `ui:` section's schema lives with the rest of the config; this module resolves it.
UISettings = UIConfig


def from_env(env: Mapping[str, str]) -> UISettings:
    raw: dict[str, Any] = {}
    for field in ("enabled", "reports_dir", "preferences", "session_ttl", "admin_teams", "secret"):
        v = env.get(ENV_PREFIX + field.upper())
        if v is None:
            continue
        if field == "admin_teams":
            raw[field] = [t.strip() for t in v.split(",") if t.strip()]
        elif field == "enabled":
            raw[field] = v.strip().lower() not in ("0", "false", "no", "off")
        elif field == "session_ttl":
            raw[field] = float(v)
        else:
            raw[field] = v
    return msgspec.convert(raw, UISettings)


def resolve(config: object, env: Mapping[str, str] | None = None) -> UISettings:
    """The config's `ui:` section if the schema has one (a Struct or a mapping), else the environment."""
    section = getattr(config, "ui", None)
    if section is not None:
        data = msgspec.to_builtins(section) if isinstance(section, msgspec.Struct) else section
        return msgspec.convert(data, UISettings)
    return from_env(os.environ if env is None else env)
