"""Per-model figures of a comparison, and the terminal table.

Win rate: on each prompt, the model(s) with the highest quality share one win (two tied models
get half each), so win rates add up to 1 over the prompts where any model was scored.
Latency and TTFT percentiles are over successful answers; mean quality counts a failed answer as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from polyroute.evaluation.results import ResultRow


@dataclass
class ModelSummary:
    model: str
    answers: int
    errors: int
    scored: int
    mean_quality: float | None
    total_cost_usd: float
    mean_cost_usd: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    mean_output_tokens: float
    win_rate: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


def win_shares(rows: Sequence[ResultRow], models: Sequence[str]) -> tuple[dict[str, float], int]:
    """(wins per model, prompts counted)."""
    by_id: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.model in models and r.quality is not None:
            by_id.setdefault(r.id, {})[r.model] = r.quality
    wins = dict.fromkeys(models, 0.0)
    for scores in by_id.values():
        best = max(scores.values())
        top = [m for m, q in scores.items() if q == best]
        for m in top:
            wins[m] += 1.0 / len(top)
    return wins, len(by_id)


def summarise(rows: Sequence[ResultRow], models: Sequence[str]) -> list[ModelSummary]:
    wins, contested = win_shares(rows, models)
    out: list[ModelSummary] = []
    for m in models:
        mine = [r for r in rows if r.model == m]
        ok = [r for r in mine if r.ok]
        scored = [r.quality for r in mine if r.quality is not None]
        latencies = [r.latency_ms for r in ok if r.latency_ms is not None]
        ttfts = [r.ttft_ms for r in ok if r.ttft_ms is not None]
        total = sum(r.cost_usd for r in mine)
        out.append(ModelSummary(
            model=m,
            answers=len(mine),
            errors=len(mine) - len(ok),
            scored=len(scored),
            mean_quality=sum(scored) / len(scored) if scored else None,
            total_cost_usd=total,
            mean_cost_usd=total / len(mine) if mine else 0.0,
            latency_p50_ms=percentile(latencies, 50),
            latency_p95_ms=percentile(latencies, 95),
            ttft_p50_ms=percentile(ttfts, 50),
            ttft_p95_ms=percentile(ttfts, 95),
            mean_output_tokens=sum(r.output_tokens for r in ok) / len(ok) if ok else 0.0,
            win_rate=wins[m] / contested if contested else None,
        ))
    return out


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def usd(v: float) -> str:
    return f"${v:.6f}" if v < 0.01 else f"${v:.4f}"


def print_summary(console: Console, summaries: Sequence[ModelSummary], title: str) -> None:
    table = Table(title=title)
    for col in ("model", "answers", "errors", "quality", "total cost", "cost/answer", "p50 latency",
                "p95 latency", "p50 TTFT", "win rate"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for s in summaries:
        table.add_row(
            s.model,
            str(s.answers),
            str(s.errors),
            _num(s.mean_quality, ".3f"),
            usd(s.total_cost_usd),
            usd(s.mean_cost_usd),
            _num(s.latency_p50_ms, ".0f") + " ms" if s.latency_p50_ms is not None else "-",
            _num(s.latency_p95_ms, ".0f") + " ms" if s.latency_p95_ms is not None else "-",
            _num(s.ttft_p50_ms, ".0f") + " ms" if s.ttft_p50_ms is not None else "-",
            _num(None if s.win_rate is None else s.win_rate * 100, ".1f") + "%" if s.win_rate is not None else "-",
        )
    console.print(table)
