"""The rows `polyroute compare` writes: one per prompt x model, and the routing records made of them.

results.jsonl (one object per line):
    {"id", "task", "model", "prompt", "answer", "reference", "quality" (0..1 or null),
     "score_method", "extracted", "judge_rating", "judge_reply", "cost_usd", "latency_ms",
     "ttft_ms", "input_tokens", "output_tokens", "usage_estimated", "deployment", "provider",
     "status", "error"}
routing.jsonl: the shared routing-record format (polyroute.learned_router.records):
    {"prompt", "scores": {model: 0..1}, "costs": {model: usd}, "task"}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from polyroute.evaluation.calls import Outcome


@dataclass
class ResultRow:
    id: str
    task: str
    model: str
    prompt: str
    answer: str
    reference: str | None
    quality: float | None
    score_method: str | None
    cost_usd: float
    latency_ms: float | None
    ttft_ms: float | None
    input_tokens: int
    output_tokens: int
    usage_estimated: bool
    deployment: str | None
    provider: str | None
    status: int
    error: str | None = None
    extracted: str | None = None
    judge_rating: float | None = None
    judge_reply: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_outcome(cls, item_id: str, task: str, prompt: str, reference: str | None, out: Outcome) -> ResultRow:
        return cls(
            id=item_id,
            task=task,
            model=out.model,
            prompt=prompt,
            answer=out.text,
            reference=reference,
            quality=None,
            score_method=None,
            cost_usd=out.cost,
            latency_ms=round(out.latency * 1000, 3) if out.ok else None,
            ttft_ms=round(out.ttft * 1000, 3) if out.ttft is not None and out.ok else None,
            input_tokens=out.input_tokens,
            output_tokens=out.output_tokens,
            usage_estimated=out.usage_estimated,
            deployment=out.deployment,
            provider=out.provider,
            status=out.status,
            error=out.error,
        )


def routing_records(rows: Iterable[ResultRow], models: Sequence[str]) -> tuple[list[dict[str, Any]], int]:
    """One record per prompt on which every model it was sent to answered and was scored (at
    least two models); returns (records, prompts skipped). Models are listed in `models` order.

    A failed answer or an unreadable judgement says nothing about a model's quality on that
    prompt, and the router's training needs every model scored on every record.
    """
    by_id: dict[str, dict[str, ResultRow]] = {}
    for r in rows:
        by_id.setdefault(r.id, {})[r.model] = r
    records: list[dict[str, Any]] = []
    skipped = 0
    for got in by_id.values():
        here = [m for m in models if m in got]
        if len(here) < 2 or any(not got[m].ok or got[m].quality is None for m in here):
            skipped += 1
            continue
        first = got[here[0]]
        records.append({
            "prompt": first.prompt,
            "scores": {m: got[m].quality for m in here},
            "costs": {m: got[m].cost_usd for m in here},
            "task": first.task,
        })
    return records, skipped


def write_jsonl(path: Path, objects: Iterable[dict[str, Any]]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for obj in objects:
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    return n
