"""`polyroute compare` end to end: two emulator-backed models, reference scoring, every output file."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from polyroute.cli import main
from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from polyroute.learned_router.records import load_records, to_matrix

PRICES = {"cheap": (0.15, 0.60), "pricey": (2.50, 10.00)}


def write_config(tmp_path: Path, cheap: EmulatorServer, pricey: EmulatorServer) -> Path:
    path = tmp_path / "polyroute.yaml"
    path.write_text(f"""
providers:
  up-cheap: {{type: openai, api_key: k1, base_url: "{cheap.sdk_base_url}"}}
  up-pricey: {{type: openai, api_key: k2, base_url: "{pricey.sdk_base_url}"}}
models:
  cheap:
    deployments: [{{provider: up-cheap, model: gpt-4o-mini, input_price: 0.15, output_price: 0.60}}]
  pricey:
    deployments: [{{provider: up-pricey, model: gpt-4o, input_price: 2.50, output_price: 10.00}}]
""")
    return path


def write_prompts(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


PROMPTS: list[dict[str, Any]] = [
    {"id": "sum", "prompt": "What is 2+2?", "reference": "4", "task": "math"},
    {"id": "capital", "prompt": "What is the capital of France?", "reference": "Paris", "task": "geo"},
    {"id": "mc", "messages": [{"role": "system", "content": "Answer with a letter."},
                              {"role": "user", "content": "2+2? A. 3  B. 4"}], "reference": "B", "task": "math"},
]


def test_compare_with_references(tmp_path: Path, emulator_factory: Callable[..., EmulatorServer],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    # cheap is right on arithmetic only; pricey is right on everything, and slow to start.
    cheap = emulator_factory("openai", behaviour=Behaviour(text="The answer is 4. So (B)."))
    pricey = emulator_factory("openai")
    pricey.enqueue(*(Behaviour(text=t, first_token_delay=0.2) for t in ("4", "Paris", "B")))
    out = tmp_path / "out"
    rc = main(["compare", "--prompts", str(write_prompts(tmp_path, PROMPTS)), "--models", "cheap,pricey",
               "--config", str(write_config(tmp_path, cheap, pricey)), "--out", str(out), "--concurrency", "1",
               "--reference", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out

    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 6
    by = {(r["id"], r["model"]): r for r in rows}
    assert {k: by[k]["quality"] for k in by} == {
        ("sum", "cheap"): 1.0, ("sum", "pricey"): 1.0,
        ("capital", "cheap"): 0.0, ("capital", "pricey"): 1.0,
        ("mc", "cheap"): 1.0, ("mc", "pricey"): 1.0,
    }
    assert by[("sum", "cheap")]["score_method"] == "numeric" and by[("sum", "cheap")]["extracted"] == "4"
    assert by[("mc", "cheap")]["score_method"] == "choice" and by[("mc", "cheap")]["extracted"] == "B"
    for r in rows:
        assert r["error"] is None and r["status"] == 200
        assert r["input_tokens"] > 0 and r["output_tokens"] > 0 and not r["usage_estimated"]
        price_in, price_out = PRICES[r["model"]]
        assert r["cost_usd"] == pytest.approx((r["input_tokens"] * price_in + r["output_tokens"] * price_out) / 1e6)
        assert r["ttft_ms"] is not None and r["latency_ms"] >= r["ttft_ms"] > 0
        if r["model"] == "pricey":
            assert r["ttft_ms"] >= 200  # the emulator's first-token delay, seen through streaming
    # Every answer was asked for as a stream (TTFT), without fallbacks, with the prompt as given.
    for emu in (cheap, pricey):
        assert [r.body["stream"] for r in emu.requests] == [True, True, True]
    assert pricey.requests[2].body["messages"][0] == {"role": "system", "content": "Answer with a letter."}

    records = load_records(out / "routing.jsonl")
    assert [r.prompt for r in records] == ["What is 2+2?", "What is the capital of France?",
                                           "Answer with a letter.\n2+2? A. 3  B. 4"]
    assert records[1].scores == {"cheap": 0.0, "pricey": 1.0}
    assert records[1].costs["pricey"] == pytest.approx(by[("capital", "pricey")]["cost_usd"])
    assert [r.task for r in records] == ["math", "geo", "math"]
    matrix = to_matrix(records)
    assert matrix.models == ["cheap", "pricey"] and matrix.cost_source == "records"

    summary = json.loads((out / "summary.json").read_text())
    s_cheap, s_pricey = summary["models"]["cheap"], summary["models"]["pricey"]
    assert s_cheap["mean_quality"] == pytest.approx(2 / 3) and s_pricey["mean_quality"] == 1.0
    # Wins: sum and mc are ties (half each), capital goes to pricey.
    assert s_cheap["win_rate"] == pytest.approx(1 / 3) and s_pricey["win_rate"] == pytest.approx(2 / 3)
    assert s_cheap["total_cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows if r["model"] == "cheap"))
    assert s_pricey["total_cost_usd"] > s_cheap["total_cost_usd"]
    assert s_pricey["ttft_p50_ms"] >= 200
    assert summary["routing_records"] == 3 and summary["routing_records_skipped"] == 0

    html = (out / "report.html").read_text()
    for plot in ("plot-cost-quality", "plot-latency", "plot-ttft", "plot-win-rate"):
        assert f'<svg id="{plot}"' in html
    assert "<script" not in html and not re.search(r"""(src|href)=["']?(https?:)?//""", html)

    table = printed[printed.index("per-model summary"):]
    cheap_line = next(line for line in table.splitlines() if " cheap " in line)
    assert "0.667" in cheap_line and "33.3%" in cheap_line
    assert str(out / "routing.jsonl") in printed


def test_compare_records_failures_and_keeps_them_out_of_routing(
    tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]
) -> None:
    cheap = emulator_factory("openai", behaviour=Behaviour(text="4"))
    pricey = emulator_factory("openai", behaviour=Behaviour(text="4"))
    pricey.enqueue(Behaviour(status=400, error_message="bad request, for this test"))
    out = tmp_path / "out"
    prompts = write_prompts(tmp_path, [PROMPTS[0], {"id": "two", "prompt": "And 1+3?", "reference": "4"}])
    rc = main(["compare", "--prompts", str(prompts), "--models", "cheap,pricey",
               "--config", str(write_config(tmp_path, cheap, pricey)), "--out", str(out), "--concurrency", "1",
               "--no-stream", "--quiet"])
    assert rc == 0
    rows = {(r["id"], r["model"]): r for r in read_jsonl(out / "results.jsonl")}
    failed = rows[("sum", "pricey")]
    assert failed["status"] == 400 and "bad request, for this test" in failed["error"]
    assert failed["quality"] == 0.0 and failed["score_method"] == "error" and failed["latency_ms"] is None
    assert rows[("two", "pricey")]["quality"] == 1.0
    assert rows[("two", "pricey")]["ttft_ms"] is None  # --no-stream: no time to first token
    assert [r.prompt for r in load_records(out / "routing.jsonl")] == ["And 1+3?"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["pricey"]["errors"] == 1 and summary["routing_records_skipped"] == 1


def test_compare_refuses_unknown_models_and_missing_references(
    tmp_path: Path, emulator_factory: Callable[..., EmulatorServer], capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator_factory("openai")
    cfg = str(write_config(tmp_path, emu, emu))
    prompts = str(write_prompts(tmp_path, [{"prompt": "hi"}]))
    assert main(["compare", "--prompts", prompts, "--models", "cheap,nope", "--config", cfg, "-q"]) == 2
    assert "unknown model(s) nope" in capsys.readouterr().err
    assert main(["compare", "--prompts", prompts, "--models", "cheap,pricey", "--config", cfg, "-q",
                 "--out", str(tmp_path / "o")]) == 2
    assert "give --judge MODEL" in capsys.readouterr().err
    assert emu.requests == []
