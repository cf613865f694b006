"""Routing records, summaries, the HTML report and the shadow config checks, without a network."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from polyroute.config.load import ConfigError, parse_config
from polyroute.evaluation.report import render_report
from polyroute.evaluation.results import ResultRow, routing_records
from polyroute.evaluation.shadow import shadow_policies
from polyroute.evaluation.shadow.pairs import apply_agreement, groups_from_pairs
from polyroute.evaluation.shadow.store import load_pairs, open_store, store_problem
from polyroute.evaluation.summary import summarise, win_shares
from polyroute.evaluation.svg import nice_ticks
from polyroute.learned_router.records import parse_record


def row(item: str, model: str, quality: float | None, cost: float = 0.001, latency: float | None = 100.0,
        error: str | None = None, task: str = "t") -> ResultRow:
    return ResultRow(
        id=item, task=task, model=model, prompt=f"prompt {item}", answer="x", reference=None, quality=quality,
        score_method="exact", cost_usd=cost, latency_ms=latency, ttft_ms=latency and latency / 2,
        input_tokens=10, output_tokens=5, usage_estimated=False, deployment=None, provider=None,
        status=200 if error is None else 503, error=error,
    )


ROWS = [
    row("1", "a", 1.0, 0.001, 100), row("1", "b", 0.0, 0.010, 300),
    row("2", "a", 1.0, 0.001, 120), row("2", "b", 1.0, 0.010, 320),
    row("3", "a", 0.0, 0.002, 140), row("3", "b", 1.0, 0.020, 340),
    row("4", "a", 0.0, 0.001, None, error="UpstreamError: boom"), row("4", "b", 1.0, 0.010, 360),
]


def test_routing_records_skip_failed_or_unscored_prompts() -> None:
    records, skipped = routing_records([*ROWS, row("5", "a", None), row("5", "b", 1.0)], ["a", "b"])
    assert skipped == 2
    assert [r["prompt"] for r in records] == ["prompt 1", "prompt 2", "prompt 3"]
    first = parse_record(records[0])  # the learned router's own parser accepts them
    assert first.scores == {"a": 1.0, "b": 0.0}
    assert first.costs == {"a": 0.001, "b": 0.010}
    assert first.task == "t"


def test_win_shares_split_ties() -> None:
    wins, contested = win_shares(ROWS, ["a", "b"])
    # 1: a; 2: tie; 3: b; 4: b (a failed)
    assert contested == 4
    assert wins == {"a": 1.5, "b": 2.5}


def test_summary_figures() -> None:
    a, b = summarise(ROWS, ["a", "b"])
    # A failed answer scores 0 (as the scorers set it) and has no latency.
    assert (a.answers, a.errors, a.scored) == (4, 1, 4)
    assert a.mean_quality == pytest.approx(0.5)
    assert a.total_cost_usd == pytest.approx(0.005)
    assert a.latency_p50_ms == 120.0
    assert b.mean_quality == pytest.approx(0.75)
    assert b.latency_p95_ms == pytest.approx(357.0)
    assert a.win_rate == pytest.approx(1.5 / 4) and b.win_rate == pytest.approx(2.5 / 4)


def test_report_is_self_contained_with_plots() -> None:
    html = render_report("t <x>", ROWS, summarise(ROWS, ["a", "b"]), {"k": "v"}, ["a note"])
    for plot in ("plot-cost-quality", "plot-win-rate", "plot-latency", "plot-ttft"):
        assert f'<svg id="{plot}"' in html
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "t &lt;x&gt;" in html and "a note" in html
    # Both models are plotted on the cost-quality chart.
    chart = re.search(r'<svg id="plot-cost-quality".*?</svg>', html, re.S)
    assert chart is not None and chart.group(0).count("<circle") == 2


def test_nice_ticks_cover_the_range() -> None:
    ticks = nice_ticks(0.0, 0.0033)
    assert ticks[0] == 0.0 and ticks[-1] >= 0.0033 and len(ticks) <= 8
    assert nice_ticks(5.0, 5.0)[-1] > 5.0


def test_store_specs() -> None:
    assert store_problem("shadow/pairs.jsonl") is None
    assert store_problem("jsonl:/tmp/x.jsonl") is None
    assert store_problem("C:/data/x.jsonl") is None
    assert "unknown store scheme 'postgres:'" in (store_problem("postgres://db/x") or "")
    assert store_problem("jsonl:") == "the store path is empty"
    assert str(open_store("jsonl:/tmp/x.jsonl").path) == "/tmp/x.jsonl"  # type: ignore[attr-defined]


CONFIG = """
providers:
  p: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
models:
  big:
    deployments: [{provider: p, model: m1}]
    shadow: {models: [small], sample_rate: 0.5, store: pairs.jsonl}
  small:
    deployments: [{provider: p, model: m2}]
  emb:
    kind: embedding
    deployments: [{provider: p, model: e}]
"""


def test_shadow_config_parses_into_one_policy() -> None:
    cfg = parse_config(CONFIG, "t.yaml", env={})
    shadow = cfg.models["big"].shadow
    assert shadow is not None and shadow.models == ["small"] and shadow.sample_rate == 0.5
    policies = shadow_policies(cfg)
    assert len(policies) == 1
    assert shadow_policies(parse_config(CONFIG.replace("    shadow:", "    #"), "t.yaml", env={})) == []


@pytest.mark.parametrize(
    ("shadow", "field", "problem"),
    [
        ("{models: [nope]}", "models.big.shadow.models[0]", "unknown model 'nope'"),
        ("{models: [emb]}", "models.big.shadow.models[0]", "not a chat model"),
        ("{models: [big]}", "models.big.shadow.models[0]", "cannot shadow itself"),
        ("{models: []}", "models.big.shadow.models", "no candidate models"),
        ("{models: [small], sample_rate: 1.5}", "models.big.shadow.sample_rate", "between 0 and 1"),
        ("{models: [small], max_queue: 0}", "models.big.shadow.max_queue", "at least 1"),
        ("{models: [small], store: 'redis://x'}", "models.big.shadow.store", "unknown store scheme"),
    ],
)
def test_shadow_config_errors_name_the_field(shadow: str, field: str, problem: str) -> None:
    text = CONFIG.replace("{models: [small], sample_rate: 0.5, store: pairs.jsonl}", shadow)
    # Validated with the rest of the file at start-up (and by `polyroute check-config`).
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.yaml", env={})
    assert info.value.field == field
    assert problem in info.value.problem


def test_shadow_pairs_scored_by_agreement(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"id": "r1", "route": "big", "prompt": "2+2?", "messages": [{"role": "user", "content": '
        '[{"type": "text", "text": "2+2?"}]}], "primary": {"model": "big", "answer": "4", "cost_usd": 0.01, '
        '"latency_ms": 10}, "candidates": [{"model": "small", "answer": "The answer is 4", "cost_usd": 0.001, '
        '"latency_ms": 5, "status": 200, "error": null}]}\n'
    )
    models, groups = groups_from_pairs(load_pairs(path))
    assert models == ["big", "small"]
    apply_agreement(groups, "auto", 1e-6)
    records, skipped = routing_records([r for g in groups for r in g.rows.values()], models)
    assert skipped == 0
    assert records == [{"prompt": "2+2?", "scores": {"big": 1.0, "small": 1.0},
                        "costs": {"big": 0.01, "small": 0.001}, "task": "shadow/big"}]


def test_load_pairs_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"prompt": "p", "scores": {"a": 1}}\n')
    with pytest.raises(ValueError, match=r"x\.jsonl:1: not a shadow pair"):
        load_pairs(path)
