"""Writing a comparison's files: results.jsonl, routing.jsonl, summary.json, report.html."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyroute.evaluation.compare import CompareRun
from polyroute.evaluation.report import render_report
from polyroute.evaluation.results import routing_records, write_jsonl
from polyroute.evaluation.summary import ModelSummary, summarise


@dataclass
class Written:
    out_dir: Path
    results: Path
    routing: Path
    summary: Path
    report: Path
    summaries: list[ModelSummary]
    records: int
    records_skipped: int


def write_outputs(out_dir: Path, run: CompareRun, models: list[str], meta: dict[str, Any], title: str) -> Written:
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = summarise(run.rows, models)
    records, skipped = routing_records(run.rows, models)
    paths = {name: out_dir / name for name in ("results.jsonl", "routing.jsonl", "summary.json", "report.html")}
    write_jsonl(paths["results.jsonl"], (r.to_dict() for r in run.rows))
    write_jsonl(paths["routing.jsonl"], records)
    notes = list(run.notes)
    if len(models) < 2:
        notes.append("routing.jsonl is empty: a routing record compares at least two models")
    elif skipped:
        notes.append(f"{skipped} prompt(s) left out of routing.jsonl (a failed answer or an unknown quality)")
    summary = {
        **meta,
        "models": {s.model: s.to_dict() for s in summaries},
        "judge_cost_usd": run.judge_cost,
        "judge_calls": run.judge_calls,
        "judge_failures": run.judge_failures,
        "routing_records": len(records),
        "routing_records_skipped": skipped,
        "notes": notes,
    }
    paths["summary.json"].write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report_meta = {**meta, "judge cost": f"${run.judge_cost:.6f} ({run.judge_calls} calls)"} if run.judge_calls else meta
    paths["report.html"].write_text(render_report(title, run.rows, summaries, report_meta, notes), encoding="utf-8")
    run.notes = notes
    return Written(out_dir, paths["results.jsonl"], paths["routing.jsonl"], paths["summary.json"],
                   paths["report.html"], summaries, len(records), skipped)
