"""5-fold cross-validation of the learned router on RouteLLM's MMLU records (GPT-4 vs Mixtral).

Two splits: random folds (subjects shared between train and test) and folds grouped by subject
(GroupKFold on ``task``: test subjects never seen in training). Every hyperparameter is chosen inside
the training fold (see polyroute/learned_router/train.py). Reports RouteLLM's APGR and CPT(50 %/80 %)
per fold (mean +- std) and on the pooled out-of-fold scores, next to the prompt-length and random
baselines.

    .venv/bin/python bench/router/bench_mmlu_cv.py [--data FILE] [--jobs 2] [--splits random,group]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import GroupKFold, KFold

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from polyroute.learned_router.evaluate import length_scores
from polyroute.learned_router.features import HashedCounts, dense_matrix, hash_counts
from polyroute.learned_router.metrics import routellm_summary
from polyroute.learned_router.records import Matrix, load_records, to_matrix
from polyroute.learned_router.train import TrainConfig, train

DEFAULT_DATA = "/work/shared/data/routing/routellm_mmlu.jsonl"


def run_fold(
    matrix: Matrix, counts: HashedCounts, dense: np.ndarray, tr: np.ndarray, te: np.ndarray, cfg: TrainConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    router = train(matrix.subset(tr), cfg, counts=counts.rows(tr), dense=dense[tr])
    quality, gap = router.predict_from(counts.rows(te), dense[te])
    si = int(np.argmax(router.mean_quality))
    score = gap if gap is not None else quality[:, si] - quality[:, 1 - si]
    return score, router.info


def summarise(values: list[dict[str, float]]) -> dict[str, str]:
    keys = values[0].keys()
    return {k: f"{np.mean([v[k] for v in values]):.4f} +- {np.std([v[k] for v in values]):.4f}" for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--splits", default="random,group")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--kinds", default="", help="restrict stage 2, e.g. 'gbm' (default: choose in each fold)")
    ap.add_argument("--holdout-by-task", choices=("yes", "no"), default="yes",
                    help="stage-2 hold-out of whole tasks (TrainConfig.holdout_by_task)")
    ap.add_argument("--save-oof", help="write the out-of-fold scores to this .npz")
    args = ap.parse_args()

    t0 = time.perf_counter()
    matrix = to_matrix(load_records(args.data))
    cfg = TrainConfig(holdout_by_task=args.holdout_by_task == "yes")
    if args.kinds:
        cfg = replace(cfg, big_kinds=tuple(args.kinds.split(",")))
    counts = hash_counts(matrix.prompts, cfg.bits)
    dense = dense_matrix(matrix.prompts)
    strong = int(np.argmax(matrix.quality.mean(axis=0)))
    qs, qw = matrix.quality[:, strong], matrix.quality[:, 1 - strong]
    tasks = np.array(matrix.tasks)
    idx = np.arange(len(matrix.prompts))
    report: dict[str, Any] = {"data": args.data, "records": len(idx), "strong": matrix.models[strong]}
    lengths = length_scores(matrix.prompts)
    rng = np.random.default_rng(0)
    oofs: dict[str, np.ndarray] = {}
    for split in args.splits.split(","):
        if split == "random":
            folds = list(KFold(args.folds, shuffle=True, random_state=0).split(idx))
        elif split == "group":
            folds = list(GroupKFold(args.folds).split(idx, groups=tasks))
        else:
            raise SystemExit(f"unknown split {split}")
        results = Parallel(n_jobs=args.jobs)(
            delayed(run_fold)(matrix, counts, dense, tr, te, cfg) for tr, te in folds
        )
        oof = np.zeros(len(idx))
        per_fold: dict[str, list[dict[str, float]]] = {"router": [], "prompt_length": [], "random": []}
        for (_tr, te), (score, _info) in zip(folds, results, strict=True):
            oof[te] = score
            per_fold["router"].append(routellm_summary(score, qs[te], qw[te]))
            per_fold["prompt_length"].append(routellm_summary(lengths[te], qs[te], qw[te]))
            per_fold["random"].append(routellm_summary(rng.random(len(te)), qs[te], qw[te]))
        report[split] = {
            "per_fold_mean": {k: summarise(v) for k, v in per_fold.items()},
            "pooled_router": {k: round(v, 4) for k, v in routellm_summary(oof, qs, qw).items()},
            "pooled_prompt_length": {k: round(v, 4) for k, v in routellm_summary(lengths, qs, qw).items()},
            "fold_info": [
                {k: info.get(k) for k in ("alphas", "stage2", "stage2_inner_score", "prior_weight", "prior_inner_score", "train_seconds")} for _, info in results
            ],
        }
        oofs[split] = oof
        print(json.dumps({split: report[split]}, indent=1), flush=True)
    if args.save_oof:
        np.savez(args.save_oof, **oofs)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({"seconds": report["seconds"]}))


if __name__ == "__main__":
    main()
