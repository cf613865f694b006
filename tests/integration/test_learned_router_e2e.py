"""compare -> train -> serve `auto`: the learned router sends easy prompts to the cheap model and
hard ones to the strong model, and the ledger shows what that saved.

Upstreams are two OpenAI emulators: "cheap" echoes the prompt (so it is right exactly when the
answer is in the question: the easy prompts), "strong" always answers with text that contains
every reference (right on everything). Prices make strong 20x dearer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from polyroute.cli import main as polyroute_main
from polyroute.emulators.testing import EmulatorServer
from tests.helpers.governance import governance_yaml, governed

COLOURS = ["blue", "green", "red", "yellow", "purple", "orange", "pink", "brown"]
THINGS = ["sky", "grass", "apple", "banana", "plum", "carrot", "flamingo", "bear", "sea", "leaf"]
TOPICS = ["prime factorisation", "integral", "eigenvalue", "recurrence", "modular inverse", "determinant",
          "derivative", "series limit", "combinatorial count", "probability puzzle"]


def easy(i: int, rng: random.Random) -> dict[str, str]:
    c, thing = rng.choice(COLOURS), rng.choice(THINGS)
    return {"id": f"e{i}", "prompt": f"Quick one: the {thing} is {c}. What colour is the {thing}?", "reference": c, "task": "easy"}


def hard(i: int, rng: random.Random) -> dict[str, str]:
    topic = rng.choice(TOPICS)
    return {"id": f"h{i}", "prompt": f"Solve this {topic} problem step by step and give the final number {i}.",
            "reference": "forty-two", "task": "hard"}


def test_compare_train_serve_auto(emulator_factory: Callable[..., EmulatorServer], tmp_path: Path) -> None:
    cheap, strong = emulator_factory("openai"), emulator_factory("openai")
    strong.set_behaviour(text="Reasoned carefully: forty-two. (" + " ".join(COLOURS) + ")")
    providers = f"""
providers:
  cheap-up: {{type: openai, base_url: '{cheap.sdk_base_url}', api_key: k1}}
  strong-up: {{type: openai, base_url: '{strong.sdk_base_url}', api_key: k2}}
"""
    models = """
models:
  cheap: {deployments: [{provider: cheap-up, model: small, input_price: 0.5, output_price: 1.0}]}
  strong: {deployments: [{provider: strong-up, model: large, input_price: 10, output_price: 20}]}
"""
    rng = random.Random(7)
    prompts = [easy(i, rng) for i in range(60)] + [hard(i, rng) for i in range(60)]
    rng.shuffle(prompts)
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    (tmp_path / "compare.yaml").write_text(providers + models)

    # 1. compare: every prompt on both models through the gateway's providers, scored by reference.
    out = tmp_path / "cmp"
    assert polyroute_main(["compare", "--prompts", str(tmp_path / "prompts.jsonl"), "--models", "cheap,strong",
                           "--config", str(tmp_path / "compare.yaml"), "--match", "contains", "--out", str(out),
                           "--quiet"]) == 0
    records = [json.loads(line) for line in (out / "routing.jsonl").read_text().splitlines()]
    assert len(records) == 120
    assert all(r["scores"] == {"cheap": 1.0, "strong": 1.0} for r in records if r["task"] == "easy")
    assert all(r["scores"] == {"cheap": 0.0, "strong": 1.0} for r in records if r["task"] == "hard")

    # 2. train the router on them.
    router = tmp_path / "router.npz"
    assert polyroute_main(["router", "train", "--data", str(out / "routing.jsonl"), "--out", str(router)]) == 0

    # 3. serve `auto` over both candidates, with the ledger on.
    auto = f"""
  auto:
    strategy: quality
    candidates: [cheap, strong]
    quality: {{router: '{router}', quality_per_dollar: 500}}
"""
    cfg = governance_yaml(f"sqlite:///{tmp_path}/ledger.db", tmp_path / "spool", master=False) + providers + models + auto
    held_out = random.Random(99)
    tests = [easy(100 + i, held_out) for i in range(10)] + [hard(100 + i, held_out) for i in range(10)]
    with governed(cfg) as g:
        client = openai.OpenAI(base_url=g.openai_base, api_key="any", max_retries=0)
        choices: dict[str, list[str]] = {"easy": [], "hard": []}
        for p in tests:
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": p["prompt"]}])
            assert raw.headers["x-polyroute-router-choice"] in ("cheap", "strong")
            assert raw.headers["x-polyroute-router-reason"]
            choices[p["task"]].append(raw.headers["x-polyroute-router-choice"])
            assert p["reference"] in (raw.parse().choices[0].message.content or "")  # right answer either way
        # The same prompts sent to the strong model, to price the alternative.
        for p in tests:
            client.chat.completions.create(model="strong", messages=[{"role": "user", "content": p["prompt"]}])
        rows = g.ledger()

    assert choices["easy"] == ["cheap"] * 10
    assert choices["hard"] == ["strong"] * 10
    auto_rows = [r for r in rows if r["model_asked"] == "auto"]
    strong_rows = [r for r in rows if r["model_asked"] == "strong"]
    assert len(auto_rows) == len(strong_rows) == 20 and all(r["status"] == 200 for r in rows)
    assert sum(1 for r in auto_rows if r["provider"] == "cheap-up") == 10
    auto_cost = sum(r["cost"] for r in auto_rows)
    strong_cost = sum(r["cost"] for r in strong_rows)
    # Half the traffic went to a model 20x cheaper per token: the ledger shows the saving.
    assert 0 < auto_cost < 0.75 * strong_cost, (auto_cost, strong_cost)


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
