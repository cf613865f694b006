"""The outputs of `polyroute compare` in the configured folder: each sub-folder with a summary.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_REPORTS = 200
FILES = ("summary.json", "report.html", "results.jsonl", "routing.jsonl")


def _count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return None


def list_reports(folder: str) -> list[dict[str, Any]]:
    root = Path(folder)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        summary = d / "summary.json"
        if d.is_dir() and not d.name.startswith(".") and summary.is_file():
            found.append((summary.stat().st_mtime, d))
    found.sort(key=lambda x: (-x[0], x[1].name))
    out = []
    for mtime, d in found[:MAX_REPORTS]:
        try:
            s = json.loads((d / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            s = {}
        models = s.get("models") if isinstance(s.get("models"), dict) else {}
        out.append(
            {
                "name": d.name,
                "modified": mtime,
                "title": s.get("title"),
                "models": sorted(models),
                "routing_records": s.get("routing_records"),
                "has_report": (d / "report.html").is_file(),
            }
        )
    return out


def report_dir(folder: str, name: str) -> Path | None:
    """The report folder called `name`, only if it is a direct child of `folder` (no path tricks)."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        return None
    root = Path(folder).resolve()
    d = (root / name).resolve()
    if d.parent != root or not (d / "summary.json").is_file():
        return None
    return d


def report_detail(folder: str, name: str) -> dict[str, Any] | None:
    d = report_dir(folder, name)
    if d is None:
        return None
    try:
        summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = None
    return {
        "name": name,
        "summary": summary,
        "files": {f: (d / f).is_file() for f in FILES},
        "results": _count_lines(d / "results.jsonl"),
        "routing_records": _count_lines(d / "routing.jsonl"),
    }


def report_html(folder: str, name: str) -> bytes | None:
    d = report_dir(folder, name)
    if d is None:
        return None
    try:
        return (d / "report.html").read_bytes()
    except OSError:
        return None
