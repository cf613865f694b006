"""Stored shadow pairs -> comparison groups, scored by a judge or by agreement with the primary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from polyroute.core import types as t
from polyroute.evaluation.calls import Outcome
from polyroute.evaluation.compare import Group, transcript
from polyroute.evaluation.results import ResultRow
from polyroute.evaluation.scoring import score_reference


def _outcome(entry: dict[str, Any]) -> Outcome:
    latency = entry.get("latency_ms")
    ttft = entry.get("ttft_ms")
    return Outcome(
        model=str(entry["model"]),
        text=str(entry.get("answer") or ""),
        latency=(latency or 0.0) / 1000,
        ttft=ttft / 1000 if ttft is not None else None,
        cost=float(entry.get("cost_usd") or 0.0),
        input_tokens=int(entry.get("input_tokens") or 0),
        output_tokens=int(entry.get("output_tokens") or 0),
        deployment=entry.get("deployment"),
        provider=entry.get("provider"),
        status=int(entry.get("status") or 200),
        error=entry.get("error"),
    )


def _question(pair: dict[str, Any]) -> str:
    try:
        messages = msgspec.convert(pair.get("messages") or [], list[t.Message])
    except msgspec.ValidationError:
        messages = []
    return transcript(messages) if messages else str(pair["prompt"])


def groups_from_pairs(pairs: Sequence[dict[str, Any]]) -> tuple[list[str], list[Group]]:
    """(every model seen, in first-seen order; one group per pair, primary first)."""
    models: list[str] = []
    groups: list[Group] = []
    for pair in pairs:
        outcomes: dict[str, Outcome] = {}
        for entry in [pair["primary"], *pair["candidates"]]:
            out = _outcome(entry)
            outcomes.setdefault(out.model, out)
        for m in outcomes:
            if m not in models:
                models.append(m)
        task = f"shadow/{pair.get('route', '')}"
        rows = {m: ResultRow.from_outcome(str(pair.get("id", len(groups))), task, str(pair["prompt"]), None, o)
                for m, o in outcomes.items()}
        groups.append(Group(question=_question(pair), reference=None, rows=rows, outcomes=outcomes))
    return models, groups


def apply_agreement(groups: Sequence[Group], method: str, tolerance: float) -> None:
    """Without a judge: the primary's answer is taken as right (1.0) and each candidate scores by
    matching it (`scoring` methods). A weak proxy, sound only for short, checkable answers."""
    for g in groups:
        primary = next(iter(g.rows.values()))
        for row in g.rows.values():
            if not row.ok:
                row.quality, row.score_method = 0.0, "error"
            elif row is primary:
                row.quality, row.score_method = 1.0, "agreement-primary"
            else:
                s = score_reference(row.answer, primary.answer, method, tolerance)
                row.quality, row.score_method, row.extracted = s.value, f"agreement-{s.method}", s.extracted
