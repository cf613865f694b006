"""Train on each RouterBench task's train split, judge on its test split (11 models, real costs).

For every task: AIQ (area under the non-decreasing convex hull of the cost-quality curve, normalised by
the single models' cost range) and the least cost that reaches the best single model's test quality,
for the router and for the baselines (best static mix of single models, random model, oracle).

    .venv/bin/python bench/router/bench_routerbench.py [--data-dir DIR] [--tasks arc_challenge,mbpp,winograde]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from polyroute.learned_router.evaluate import evaluate
from polyroute.learned_router.records import load_records, to_matrix
from polyroute.learned_router.train import TrainConfig, train

DEFAULT_DIR = "/work/shared/data/routing"


def run_task(data_dir: Path, task: str, cfg: TrainConfig) -> dict[str, Any]:
    train_m = to_matrix(load_records(data_dir / f"routerbench_{task}_train.jsonl"))
    test_m = to_matrix(load_records(data_dir / f"routerbench_{task}_test.jsonl"), train_m.models)
    router = train(train_m, cfg)
    res = evaluate(router, test_m)
    cq = res["cost_quality"]
    row: dict[str, Any] = {
        "train_records": len(train_m.prompts),
        "test_records": len(test_m.prompts),
        "best_single": cq["best_single"],
        "stage2": router.info.get("stage2"),
        "alphas": router.info.get("alphas"),
    }
    for name in ("router", "static_mix", "random", "oracle"):
        row[name] = {k: cq[name][k] for k in ("aiq", "cost_to_match_best_single", "max_quality")}
    row["router_aiq_at_least_static"] = cq["router"]["aiq"] >= cq["static_mix"]["aiq"]
    r_cost = cq["router"]["cost_to_match_best_single"]
    s_cost = cq["static_mix"]["cost_to_match_best_single"]
    row["router_cost_to_best_at_most_static"] = r_cost is not None and r_cost <= s_cost
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=DEFAULT_DIR)
    ap.add_argument("--tasks", default="arc_challenge,mbpp,winograde")
    args = ap.parse_args()
    t0 = time.perf_counter()
    report = {t: run_task(Path(args.data_dir), t, TrainConfig()) for t in args.tasks.split(",")}
    print(json.dumps(report, indent=1))
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
