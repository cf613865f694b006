"""``polyroute router train|eval``: fit a learned router from records, judge one on records.

The lead wires ``register`` into polyroute/cli.py; ``python -m polyroute.learned_router`` runs the same
commands on their own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from polyroute.learned_router.evaluate import evaluate
from polyroute.learned_router.records import load_records, to_matrix
from polyroute.learned_router.router import LearnedRouter
from polyroute.learned_router.train import TrainConfig, train


def cmd_train(args: argparse.Namespace) -> int:
    records = load_records(args.data)
    models = args.models.split(",") if args.models else None
    matrix = to_matrix(records, models)
    router = train(matrix, TrainConfig(quality_per_dollar=args.quality_per_dollar, seed=args.seed))
    router.save(args.out)
    summary = {
        "out": str(args.out),
        "bytes": Path(args.out).stat().st_size,
        "models": router.models,
        "cost_source": router.cost_source,
        **{k: router.info.get(k) for k in ("records", "alphas", "stage2", "stage2_inner_score", "train_seconds")},
    }
    print(json.dumps(summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    router = LearnedRouter.load(args.router)
    matrix = to_matrix(load_records(args.data), router.models)
    result = evaluate(router, matrix, num_results=args.num_results, seed=args.seed, include_points=args.points)
    print(json.dumps(result))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``router`` with ``train`` and ``eval`` to a parent parser's subcommands."""
    router = subparsers.add_parser("router", help="train and evaluate the learned quality router")
    sub = router.add_subparsers(dest="router_command", required=True)

    tr = sub.add_parser("train", help="fit a router on routing records (JSONL)")
    tr.add_argument("--data", required=True, help="records: {prompt, scores, costs?, task?} per line")
    tr.add_argument("--out", required=True, help="artifact path (.npz)")
    tr.add_argument("--models", help="comma-separated models to route between (default: all scored on every record)")
    tr.add_argument(
        "--quality-per-dollar",
        type=float,
        default=0.0,
        help="default knob stored in the artifact: quality (0..1) one USD is worth; 0 = best quality",
    )
    tr.add_argument("--seed", type=int, default=0)
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="judge a router on records; prints one JSON object")
    ev.add_argument("--router", required=True, help="artifact written by 'router train'")
    ev.add_argument("--data", required=True, help="records to judge on (not the training records)")
    ev.add_argument("--num-results", type=int, default=10, help="RouteLLM threshold bins (two models)")
    ev.add_argument("--points", action="store_true", help="include the cost-quality hulls and sweep points")
    ev.add_argument("--seed", type=int, default=0)
    ev.set_defaults(func=cmd_eval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyroute")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
