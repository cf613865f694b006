"""`polyroute compare --judge`: an emulator plays the judge with canned verdicts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from polyroute.cli import main
from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from polyroute.learned_router.records import load_records


def setup(tmp_path: Path, factory: Callable[..., EmulatorServer]) -> tuple[list[str], EmulatorServer]:
    a = factory("openai", behaviour=Behaviour(text="answer from a"))
    b = factory("openai", behaviour=Behaviour(text="answer from b"))
    judge = factory("openai")
    cfg = tmp_path / "polyroute.yaml"
    cfg.write_text(f"""
providers:
  pa: {{type: openai, api_key: k, base_url: "{a.sdk_base_url}"}}
  pb: {{type: openai, api_key: k, base_url: "{b.sdk_base_url}"}}
  pj: {{type: openai, api_key: k, base_url: "{judge.sdk_base_url}"}}
models:
  a: {{deployments: [{{provider: pa, model: gpt-4o-mini, input_price: 1, output_price: 1}}]}}
  b: {{deployments: [{{provider: pb, model: gpt-4o-mini, input_price: 2, output_price: 2}}]}}
  judge: {{deployments: [{{provider: pj, model: gpt-4o, input_price: 5, output_price: 5}}]}}
""")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "p1", "prompt": "Explain tides."}) + "\n"
                       + json.dumps({"id": "p2", "prompt": "Name a prime.", "reference": "7"}) + "\n")
    args = ["compare", "--prompts", str(prompts), "--models", "a,b", "--config", str(cfg), "--judge", "judge",
            "--concurrency", "1", "--quiet", "--out", str(tmp_path / "out")]
    return args, judge


def rows(tmp_path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    return {(r["id"], r["model"]): r for r in map(json.loads, lines)}


def test_absolute_judge(tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]) -> None:
    args, judge = setup(tmp_path, emulator_factory)
    # With concurrency 1 the judge is asked in order: p1/a, p1/b, p2/a (unreadable, asked again), p2/b.
    judge.enqueue(*(Behaviour(text=t) for t in (
        "Clear and correct. Rating: [[10]]", "Vague. Rating: [[4]]",
        "I am not sure what to say.", "Sorry: Rating: 7", "Wrong. [[1]]",
    )))
    assert main(args) == 0
    got = rows(tmp_path)
    assert got[("p1", "a")]["quality"] == 1.0 and got[("p1", "a")]["judge_rating"] == 10.0
    assert got[("p1", "b")]["quality"] == pytest.approx(3 / 9)
    assert got[("p2", "a")]["quality"] == pytest.approx(6 / 9)
    assert got[("p2", "b")]["quality"] == 0.0
    assert got[("p1", "a")]["score_method"] == "judge-absolute"
    assert "Rating: [[10]]" in got[("p1", "a")]["judge_reply"]

    asked = [r.body for r in judge.requests]
    assert len(asked) == 5 and all(body["temperature"] == 0 for body in asked)
    first = asked[0]["messages"]
    assert first[0]["role"] == "system" and "Rating: [[5]]" in first[0]["content"]
    assert "Explain tides." in first[1]["content"] and "answer from a" in first[1]["content"]
    assert "Reference Answer" not in first[1]["content"]
    assert "[The Start of Reference Answer]\n7\n" in asked[2]["messages"][1]["content"]
    # The retry keeps the unreadable reply and asks again for the format.
    assert asked[3]["messages"][-2] == {"role": "assistant", "content": "I am not sure what to say."}

    records = load_records(tmp_path / "out" / "routing.jsonl")
    assert [r.scores for r in records] == [{"a": 1.0, "b": pytest.approx(3 / 9)},
                                           {"a": pytest.approx(6 / 9), "b": 0.0}]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["judge_calls"] == 5 and summary["judge_failures"] == 0
    assert summary["judge_cost_usd"] > 0


def test_pairwise_judge_in_both_orders(tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]) -> None:
    args, judge = setup(tmp_path, emulator_factory)
    # p1: (a,b) -> A, (b,a) -> B: a wins both. p2: (a,b) -> [[C]], (b,a) -> nonsense twice (unknown).
    judge.enqueue(*(Behaviour(text=t) for t in ("[[A]]", "[[B]]", "It is a tie: [[C]]", "hmm", "still hmm")))
    assert main([*args, "--judge-mode", "pairwise"]) == 0
    got = rows(tmp_path)
    assert (got[("p1", "a")]["quality"], got[("p1", "b")]["quality"]) == (1.0, 0.0)
    assert (got[("p2", "a")]["quality"], got[("p2", "b")]["quality"]) == (0.5, 0.5)
    asked = [r.body["messages"][1]["content"] for r in judge.requests]
    assert asked[0].index("answer from a") < asked[0].index("answer from b")
    assert asked[1].index("answer from b") < asked[1].index("answer from a")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["judge_failures"] == 1 and summary["judge_calls"] == 5


def test_unreadable_judge_leaves_quality_unknown(tmp_path: Path,
                                                 emulator_factory: Callable[..., EmulatorServer]) -> None:
    args, judge = setup(tmp_path, emulator_factory)
    judge.set_behaviour(text="no idea")
    assert main(args) == 0
    assert all(r["quality"] is None for r in rows(tmp_path).values())
    assert (tmp_path / "out" / "routing.jsonl").read_text() == ""
    assert len(judge.requests) == 8  # every answer asked twice, then given up on
