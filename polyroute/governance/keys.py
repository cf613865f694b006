"""Virtual keys and teams: the records, how keys are made and hashed, and model allow-lists.

A key is shown once, at creation; only its SHA-256 and a short display prefix are stored, so a
database leak does not leak usable keys (the secret has 256 bits, so an unsalted hash is enough).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

KEY_PREFIX = "sk-pr-"
# Characters of the key kept for display ("sk-pr-AbCd12"): 36 of 256 secret bits.
DISPLAY_CHARS = len(KEY_PREFIX) + 6

BudgetMode = Literal["hard", "alert"]


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_CHARS]


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_id(kind: str) -> str:
    # Sortable by creation time, unguessable enough for an identifier (not a secret).
    return f"{kind}_{int(time.time() * 1000):x}{os.urandom(5).hex()}"


class ModelRule:
    """An allow-list: exact names and shell-style globs ("gpt-4o*"). None allows every model."""

    __slots__ = ("exact", "globs", "source")

    def __init__(self, patterns: list[str] | None) -> None:
        self.source = list(patterns) if patterns is not None else None
        self.exact: frozenset[str] = frozenset(p for p in patterns or () if not _is_glob(p))
        self.globs: tuple[str, ...] = tuple(p for p in patterns or () if _is_glob(p))

    def allows(self, model: str) -> bool:
        if self.source is None:
            return True
        return model in self.exact or any(fnmatch.fnmatchcase(model, g) for g in self.globs)


def _is_glob(p: str) -> bool:
    return any(c in p for c in "*?[")


@dataclass
class Limits:
    """What one key or team may do; None means unlimited."""

    allowed_models: list[str] | None = None
    budget_daily: float | None = None
    budget_monthly: float | None = None
    budget_mode: BudgetMode = "hard"
    rpm: int | None = None
    tpm: int | None = None


@dataclass
class Team:
    id: str
    name: str
    limits: Limits = field(default_factory=Limits)
    created_at: float = 0.0
    updated_at: float = 0.0
    rule: ModelRule = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rule = ModelRule(self.limits.allowed_models)


@dataclass
class Key:
    id: str
    team_id: str
    name: str
    key_hash: str
    prefix: str
    limits: Limits = field(default_factory=Limits)
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    rule: ModelRule = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rule = ModelRule(self.limits.allowed_models)

    def usable(self, now: float) -> str | None:
        """None when the key may be used, else why not."""
        if self.revoked_at is not None:
            return "this API key has been revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "this API key has expired"
        return None

    def public(self) -> dict[str, object]:
        """What the admin API and the CLI show: never the hash, never the secret."""
        return {
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "prefix": self.prefix,
            **limits_dict(self.limits),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        }


def team_public(t: Team) -> dict[str, object]:
    return {"id": t.id, "name": t.name, **limits_dict(t.limits), "created_at": t.created_at}


def limits_dict(lim: Limits) -> dict[str, object]:
    return {
        "allowed_models": lim.allowed_models,
        "budget_daily": lim.budget_daily,
        "budget_monthly": lim.budget_monthly,
        "budget_mode": lim.budget_mode,
        "rpm": lim.rpm,
        "tpm": lim.tpm,
    }


# The largest rpm / tpm both databases store (64-bit integers).
MAX_LIMIT = 2**63 - 1
LIMIT_FIELDS = ("allowed_models", "budget_daily", "budget_monthly", "budget_mode", "rpm", "tpm")


def check_limits(values: dict[str, object]) -> dict[str, object]:
    """Validate limit fields given by an admin (API body or CLI); returns them normalised."""
    out: dict[str, object] = {}
    for k, v in values.items():
        if k not in LIMIT_FIELDS:
            raise ValueError(f"unknown field '{k}' (limits are: {', '.join(LIMIT_FIELDS)})")
        if v is None:
            out[k] = None
        elif k == "allowed_models":
            if not isinstance(v, list) or not all(isinstance(m, str) and m for m in v):
                raise ValueError("'allowed_models' must be a list of model names (globs allowed)")
            out[k] = list(v)
        elif k == "budget_mode":
            if v not in ("hard", "alert"):
                raise ValueError("'budget_mode' must be 'hard' (refuse over budget) or 'alert' (log and allow)")
            out[k] = v
        elif k in ("budget_daily", "budget_monthly"):
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise ValueError(f"'{k}' must be a number of USD >= 0")
            out[k] = float(v)
        else:
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_LIMIT:
                raise ValueError(f"'{k}' must be a whole number from 1 to {MAX_LIMIT}")
            out[k] = v
    return out
