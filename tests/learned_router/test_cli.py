"""``router train`` then ``router eval`` as a user runs them, in a subprocess."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from polyroute.learned_router.cli import cmd_eval, main, register

from .synthetic import records, write


def run(*args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "polyroute.learned_router", "router", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    out = json.loads(lines[0])
    assert isinstance(out, dict)
    return out


def test_train_then_eval_round_trip(tmp_path: Path) -> None:
    train_file = write(tmp_path / "train.jsonl", records(60, seed=1))
    test_file = write(tmp_path / "test.jsonl", records(40, seed=2))
    artifact = tmp_path / "router.npz"
    trained = run("train", "--data", str(train_file), "--out", str(artifact))
    assert artifact.exists() and trained["records"] == 60
    result = run("eval", "--router", str(artifact), "--data", str(test_file))
    routellm = result["routellm"]
    assert isinstance(routellm, dict)
    # the router separates easy from hard perfectly; random and prompt length do not
    assert routellm["router"]["cpt_50_pct"] < routellm["random"]["cpt_50_pct"]
    # perfect ranking with half the prompts hard: the gap closes linearly until 50 % strong calls
    assert routellm["router"]["apgr"] > 0.74
    assert routellm["router"]["cpt_50_pct"] < 26.0
    cq = result["cost_quality"]
    assert isinstance(cq, dict)
    assert cq["router"]["aiq"] >= cq["static_mix"]["aiq"]
    assert cq["router"]["cost_to_match_best_single"] < cq["static_mix"]["cost_to_match_best_single"]


def test_eval_on_data_without_the_routers_models_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_file = write(tmp_path / "train.jsonl", records(30))
    other = write(tmp_path / "other.jsonl", [{"prompt": "p", "scores": {"a": 1.0, "b": 0.0}}])
    artifact = tmp_path / "router.npz"
    assert main(["router", "train", "--data", str(train_file), "--out", str(artifact)]) == 0
    capsys.readouterr()
    assert main(["router", "eval", "--router", str(artifact), "--data", str(other)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error:" in captured.err and "acme/cheap-1" in captured.err


def test_register_adds_router_subcommands() -> None:
    parser = argparse.ArgumentParser(prog="polyroute")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["router", "eval", "--router", "r.npz", "--data", "d.jsonl"])
    assert args.func is cmd_eval
    with pytest.raises(SystemExit):
        parser.parse_args(["router", "train", "--data", "d.jsonl"])  # --out is required
