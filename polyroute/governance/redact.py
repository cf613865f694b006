"""Scrubbing text before it is stored: configured patterns, and every secret the config holds."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "[REDACTED]"


class Redactor:
    def __init__(self, patterns: Iterable[str] = (), secrets: Iterable[str | None] = ()) -> None:
        self.patterns = [re.compile(p) for p in patterns]
        # Longest first, so a secret that contains another is replaced whole.
        lits = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.secrets = re.compile("|".join(re.escape(s) for s in lits)) if lits else None

    def secrets_only(self, text: str) -> str:
        return self.secrets.sub(MASK, text) if self.secrets is not None else text

    def apply(self, text: str) -> str:
        text = self.secrets_only(text)
        for p in self.patterns:
            text = p.sub(MASK, text)
        return text
