"""A small routing data set where the answer is known: the cheap model is right only on easy prompts."""

from __future__ import annotations

import json
import random
from pathlib import Path

EASY_WORDS = ["add", "two", "three", "plus", "sum", "small", "numbers", "simple", "count", "apples"]
HARD_WORDS = ["prove", "theorem", "manifold", "eigenvalue", "asymptotic", "lemma", "topology", "integral",
              "convergence", "homology"]
CHEAP, STRONG = "acme/cheap-1", "acme/strong-9"


def prompt(kind: str, rng: random.Random) -> str:
    words = EASY_WORDS if kind == "easy" else HARD_WORDS
    body = " ".join(rng.choice(words) for _ in range(rng.randint(5, 12)))
    return f"{body} {rng.randint(0, 999)}?"


def records(n: int, seed: int = 0, with_costs: bool = True) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for i in range(n):
        kind = "easy" if i % 2 == 0 else "hard"
        rec: dict[str, object] = {
            "prompt": prompt(kind, rng),
            "scores": {CHEAP: 1.0 if kind == "easy" else 0.0, STRONG: 1.0},
            "task": kind,
        }
        if with_costs:
            rec["costs"] = {CHEAP: 0.0001, STRONG: 0.01}
        out.append(rec)
    return out


def write(path: Path, recs: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path
