"""The ledger's rows: one per request, one per attempt inside it. Also the spool's line format."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

LEDGER_COLUMNS = (
    "request_id", "ts", "day", "key_id", "team_id", "api", "model_asked", "route", "deployment",
    "provider", "vendor", "attempts", "input_tokens", "output_tokens", "cached_tokens",
    "cache_write_tokens", "reasoning_tokens", "estimated", "cost", "latency_ms", "ttft_ms", "status",
    "error_class", "error_message", "stream", "tags", "end_user", "prompt", "response",
)  # fmt: skip

ATTEMPT_COLUMNS = (
    "request_id", "n", "ts", "deployment", "provider", "vendor", "status", "error", "latency_ms",
    "input_tokens", "output_tokens", "cost",
)  # fmt: skip


class AttemptRow(msgspec.Struct, kw_only=True):
    n: int
    deployment: str
    provider: str
    vendor: str
    status: int
    error: str | None
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost: float


class LedgerRow(msgspec.Struct, kw_only=True):
    request_id: str
    ts: float
    day: str
    key_id: str | None
    team_id: str | None
    api: str
    model_asked: str
    route: str
    deployment: str | None
    provider: str | None
    vendor: str | None
    attempts: list[AttemptRow]
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    estimated: bool
    cost: float
    latency_ms: float
    ttft_ms: float | None
    status: int
    error_class: str | None
    error_message: str | None
    stream: bool
    tags: list[str] | None
    end_user: str | None
    prompt: str | None = None
    response: str | None = None

    def ledger_values(self) -> tuple[object, ...]:
        return (
            self.request_id, self.ts, self.day, self.key_id, self.team_id, self.api, self.model_asked,
            self.route, self.deployment, self.provider, self.vendor, len(self.attempts),
            self.input_tokens, self.output_tokens, self.cached_tokens, self.cache_write_tokens,
            self.reasoning_tokens, int(self.estimated), float(self.cost), float(self.latency_ms),
            None if self.ttft_ms is None else float(self.ttft_ms), self.status, self.error_class,
            self.error_message, int(self.stream),
            None if self.tags is None else msgspec.json.encode(self.tags).decode(),
            self.end_user, self.prompt, self.response,
        )  # fmt: skip

    def attempt_values(self) -> tuple[tuple[object, ...], ...]:
        return tuple(
            (
                self.request_id, a.n, self.ts, a.deployment, a.provider, a.vendor, a.status, a.error,
                float(a.latency_ms), a.input_tokens, a.output_tokens, float(a.cost),
            )
            for a in self.attempts
        )

    @classmethod
    def from_values(cls, values: Sequence[Any], attempts: Sequence[Sequence[Any]]) -> LedgerRow:
        """The row back from its ledger_values() and attempt_values() (for the spool)."""
        d = dict(zip(LEDGER_COLUMNS, values, strict=True))
        del d["attempts"]
        d["estimated"], d["stream"] = bool(d["estimated"]), bool(d["stream"])
        d["tags"] = msgspec.json.decode(d["tags"]) if d["tags"] is not None else None
        return cls(
            attempts=[
                AttemptRow(n=a[1], deployment=a[3], provider=a[4], vendor=a[5], status=a[6], error=a[7],
                           latency_ms=a[8], input_tokens=a[9], output_tokens=a[10], cost=a[11])
                for a in attempts
            ],
            **d,
        )  # fmt: skip


encode_row = msgspec.json.Encoder().encode
decode_row = msgspec.json.Decoder(LedgerRow).decode
