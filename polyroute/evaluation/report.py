"""The self-contained HTML report: summary table, inline-SVG plots, per-task table, every answer.

One file, no scripts, no external resources: it opens offline and can be mailed as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from polyroute.evaluation import svg
from polyroute.evaluation.results import ResultRow
from polyroute.evaluation.summary import ModelSummary, usd

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}
td.text{text-align:left;white-space:pre-wrap;max-width:420px;font-family:ui-monospace,monospace;font-size:.8rem}
.meta{color:#555;font-size:.9rem}.note{color:#a15c00}
.plots{display:flex;flex-wrap:wrap;gap:1rem}
svg.plot{background:#fff;border:1px solid #eee}
svg .grid{stroke:#eee}svg .frame{stroke:#ccc}svg .tick{font-size:11px;fill:#555}
svg .axis-label,svg .series-label,svg .point-label{font-size:12px;fill:#333}
svg .plot-title{font-size:14px;font-weight:600;fill:#222}
details{margin:.3rem 0}summary{cursor:pointer}
"""


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def _q(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _summary_table(summaries: Sequence[ModelSummary]) -> str:
    head = ("model", "answers", "errors", "mean quality", "total cost", "mean cost", "p50 latency",
            "p95 latency", "p50 TTFT", "p95 TTFT", "mean output tokens", "win rate")
    rows = [
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in (
            s.model, str(s.answers), str(s.errors), _q(s.mean_quality), usd(s.total_cost_usd),
            usd(s.mean_cost_usd), _ms(s.latency_p50_ms), _ms(s.latency_p95_ms), _ms(s.ttft_p50_ms),
            _ms(s.ttft_p95_ms), f"{s.mean_output_tokens:.1f}",
            "-" if s.win_rate is None else f"{s.win_rate * 100:.1f}%",
        )) + "</tr>"
        for s in summaries
    ]
    return ('<table id="summary"><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"
            + "".join(rows) + "</table>")


def _task_table(rows: Sequence[ResultRow], models: Sequence[str]) -> str:
    tasks = sorted({r.task for r in rows if r.task})
    if not tasks:
        return ""
    cells: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r.task and r.quality is not None:
            cells.setdefault((r.task, r.model), []).append(r.quality)
    out = ['<h2>Mean quality per task</h2><table id="tasks"><tr><th>task</th>']
    out += [f"<th>{escape(m)}</th>" for m in models]
    out.append("</tr>")
    for task in tasks:
        out.append(f"<tr><td>{escape(task)}</td>")
        for m in models:
            vs = cells.get((task, m), [])
            out.append(f"<td>{_q(sum(vs) / len(vs) if vs else None)}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _answers(rows: Sequence[ResultRow], models: Sequence[str], limit: int) -> str:
    by_id: dict[str, dict[str, ResultRow]] = {}
    for r in rows:
        by_id.setdefault(r.id, {})[r.model] = r
    out = [f"<h2>Answers</h2><p class='meta'>{len(by_id)} prompt(s)"
           + (f", the first {limit} shown" if len(by_id) > limit else "") + "; full rows in results.jsonl</p>"]
    for item_id, got in list(by_id.items())[:limit]:
        first = next(iter(got.values()))
        scores = ", ".join(f"{m}: {_q(got[m].quality)}" for m in models if m in got)
        out.append(f"<details><summary>{escape(item_id)}"
                   + (f" [{escape(first.task)}]" if first.task else "")
                   + f" - {escape(scores)}</summary><table><tr><th>model</th><th>answer</th><th>quality</th>"
                   "<th>cost</th><th>latency</th></tr>")
        out.append(f"<tr><td>prompt</td><td class='text'>{escape(first.prompt)}</td><td></td><td></td><td></td></tr>")
        if first.reference is not None:
            out.append(f"<tr><td>reference</td><td class='text'>{escape(first.reference)}</td>"
                       "<td></td><td></td><td></td></tr>")
        for m in models:
            if m not in got:
                continue
            r = got[m]
            answer = r.answer if r.ok else f"ERROR: {r.error}"
            out.append(f"<tr><td>{escape(m)}</td><td class='text'>{escape(answer)}</td><td>{_q(r.quality)}</td>"
                       f"<td>{escape(usd(r.cost_usd))}</td><td>{_ms(r.latency_ms)}</td></tr>")
        out.append("</table></details>")
    return "".join(out)


def render_report(
    title: str,
    rows: Sequence[ResultRow],
    summaries: Sequence[ModelSummary],
    meta: dict[str, Any],
    notes: Sequence[str] = (),
    max_answers: int = 300,
) -> str:
    models = [s.model for s in summaries]
    scored = [s for s in summaries if s.mean_quality is not None]
    plots = [
        svg.scatter(
            [(s.model, s.mean_cost_usd * 1000, s.mean_quality or 0.0) for s in scored],
            title="Cost vs quality", x_label="USD per 1,000 answers (mean)", y_label="mean quality (0..1)",
            plot_id="plot-cost-quality", x_fmt=lambda v: f"${v:.3g}", y_fmt=lambda v: f"{v:.2f}",
            y_range=(0.0, 1.0),
        ),
        svg.bars(
            [(s.model, s.win_rate or 0.0) for s in summaries],
            title="Win rate (share of prompts with the best answer)", x_label="win rate",
            plot_id="plot-win-rate", x_fmt=lambda v: f"{v * 100:.0f}%", x_max=1.0,
        ),
        svg.boxplots(
            [(m, [r.latency_ms for r in rows if r.model == m and r.latency_ms is not None]) for m in models],
            title="Latency (whole answer)", x_label="milliseconds", plot_id="plot-latency",
        ),
    ]
    if any(r.ttft_ms is not None for r in rows):
        plots.append(svg.boxplots(
            [(m, [r.ttft_ms for r in rows if r.model == m and r.ttft_ms is not None]) for m in models],
            title="Time to first token", x_label="milliseconds", plot_id="plot-ttft",
        ))
    meta_html = "".join(f"<div><b>{escape(k)}</b>: {escape(str(v))}</div>" for k, v in meta.items())
    notes_html = "".join(f"<p class='note'>{escape(n)}</p>" for n in notes)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><div class='meta'>{meta_html}</div>{notes_html}"
        f"<h2>Summary</h2>{_summary_table(summaries)}"
        f"<h2>Plots</h2><div class='plots'>{''.join(plots)}</div>"
        f"{_task_table(rows, models)}{_answers(rows, models, max_answers)}"
        "</body></html>"
    )
