"""Routing records: one prompt, how well each model answered it, and (optionally) what it cost.

This is the JSONL format ``polyroute compare`` and shadow traffic write, and the shared routing data:
``{"prompt": str, "scores": {model: 0..1}, "costs": {model: usd} (optional), "task": str (optional)}``.
``task`` is only for reports and grouped cross-validation; it is never a routing feature.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polyroute.learned_router.pricing import estimate_cost


@dataclass(frozen=True)
class Record:
    prompt: str
    scores: dict[str, float]
    costs: dict[str, float] = field(default_factory=dict)
    task: str = ""


def parse_record(obj: object) -> Record:
    if not isinstance(obj, dict):
        raise ValueError("record must be a JSON object")
    prompt = obj.get("prompt")
    scores = obj.get("scores")
    if not isinstance(prompt, str) or not isinstance(scores, dict) or not scores:
        raise ValueError("record needs a string 'prompt' and a non-empty 'scores' object")
    costs = obj.get("costs") or {}
    if not isinstance(costs, dict):
        raise ValueError("'costs' must be an object")
    task = obj.get("task") or ""
    return Record(
        prompt=prompt,
        scores={str(k): float(v) for k, v in scores.items()},
        costs={str(k): float(v) for k, v in costs.items()},
        task=str(task),
    )


def load_records(path: str | Path) -> list[Record]:
    records: list[Record] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(parse_record(json.loads(line)))
            except (ValueError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from exc
    if not records:
        raise ValueError(f"{path}: no records")
    return records


@dataclass(frozen=True)
class Matrix:
    """Records as arrays over a fixed model order; only models scored on every record are kept."""

    prompts: list[str]
    tasks: list[str]
    models: list[str]
    quality: np.ndarray  # (n, m)
    cost: np.ndarray  # (n, m) in USD, measured or priced
    cost_source: str  # "records", "price_table" or "equal"

    def subset(self, idx: Sequence[int] | np.ndarray) -> Matrix:
        ix = np.asarray(idx, dtype=np.int64)
        return Matrix(
            prompts=[self.prompts[i] for i in ix],
            tasks=[self.tasks[i] for i in ix],
            models=self.models,
            quality=self.quality[ix],
            cost=self.cost[ix],
            cost_source=self.cost_source,
        )


def common_models(records: Iterable[Record]) -> list[str]:
    recs = list(records)
    models = set(recs[0].scores)
    for r in recs[1:]:
        models &= set(r.scores)
    return sorted(models)


def to_matrix(records: Sequence[Record], models: Sequence[str] | None = None) -> Matrix:
    """Arrange records over ``models`` (default: every model scored on all records).

    Costs: the record's own where every record has one for every model; otherwise priced from the
    price table and the prompt's length when every model is in the table; otherwise all equal (0).
    """
    if not records:
        raise ValueError("no records")
    names = list(models) if models is not None else common_models(records)
    if len(names) < 2:
        raise ValueError(f"need at least two models scored on every record, got {names}")
    missing = [m for m in names if any(m not in r.scores for r in records)]
    if missing:
        raise ValueError(f"models missing from some records: {missing}")
    quality = np.array([[r.scores[m] for m in names] for r in records], dtype=np.float64)
    cost_source = "equal"
    cost = np.zeros_like(quality)
    if all(all(m in r.costs for m in names) for r in records):
        cost = np.array([[r.costs[m] for m in names] for r in records], dtype=np.float64)
        cost_source = "records"
    else:
        priced = [[estimate_cost(m, r.prompt) for m in names] for r in records]
        if all(c is not None for row in priced for c in row):
            cost = np.array(priced, dtype=np.float64)
            cost_source = "price_table"
    return Matrix(
        prompts=[r.prompt for r in records],
        tasks=[r.task for r in records],
        models=names,
        quality=quality,
        cost=cost,
        cost_source=cost_source,
    )
