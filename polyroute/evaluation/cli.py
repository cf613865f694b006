"""`polyroute compare`: run prompts on several models (or judge stored shadow pairs) and report.

    polyroute compare --prompts prompts.jsonl --models a,b [--judge MODEL | --reference] [--out DIR]
    polyroute compare --shadow shadow.jsonl [--judge MODEL] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from polyroute.config.schema import Config
from polyroute.core.gateway import Gateway
from polyroute.evaluation.compare import (
    CompareError,
    CompareRun,
    CompareSettings,
    check_models,
    run_compare,
    score_all,
)
from polyroute.evaluation.judge import JUDGE_MODES
from polyroute.evaluation.outputs import Written, write_outputs
from polyroute.evaluation.scoring import DEFAULT_TOLERANCE, METHODS
from polyroute.evaluation.summary import print_summary, usd

T = TypeVar("T")


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "compare",
        help="compare models on a prompts file (or judge shadow pairs) and write routing records",
        description="Run every prompt on every model through the gateway's own providers, score the "
        "answers (reference answers or an LLM judge), and write results.jsonl, routing.jsonl (for "
        "`polyroute router train`), summary.json and a self-contained report.html. See docs/evaluation.md.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", metavar="FILE", help="prompts JSONL: {prompt|messages, reference?, task?, id?}")
    source.add_argument("--shadow", metavar="FILE", help="a shadow store (JSONL) to judge instead of running prompts")
    parser.add_argument("--models", help="comma-separated model names from the config (with --prompts)")
    scoring = parser.add_mutually_exclusive_group()
    scoring.add_argument("--judge", metavar="MODEL", help="score with this model as an LLM judge")
    scoring.add_argument("--reference", action="store_true",
                         help="score against the prompts' reference answers (the default)")
    parser.add_argument("--judge-mode", choices=JUDGE_MODES, default="absolute",
                        help="absolute: 1-10 rating per answer; pairwise: every pair, both orders (default absolute)")
    parser.add_argument("--match", choices=METHODS, default="auto",
                        help="reference matching (and shadow agreement) method (default auto)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"numeric match tolerance, relative above 1 (default {DEFAULT_TOLERANCE})")
    parser.add_argument("--config", "-c", help="gateway YAML config (default: in-house model + vendor keys in env)")
    parser.add_argument("--out", metavar="DIR", help="output directory (default: compare-YYYYmmdd-HHMMSS)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    parser.add_argument("--max-tokens", type=int, default=None, help="max output tokens per answer")
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the model's)")
    parser.add_argument("--no-stream", action="store_true", help="ask without streaming (no time to first token)")
    parser.add_argument("--title", default=None, help="report title")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.set_defaults(func=main)
    return parser


def subset_config(cfg: Config, names: Sequence[str]) -> Config:
    """Only the named models and their providers, without fallbacks: every answer must be the
    named model's, and a comparison of vendor models must not load the in-house one."""
    models = {n: msgspec.structs.replace(cfg.models[n], fallbacks=[], shadow=None) for n in names if n in cfg.models}
    used = {d.provider for m in models.values() for d in m.deployments}
    providers = {n: p for n, p in cfg.providers.items() if n in used}
    return msgspec.structs.replace(cfg, models=models, providers=providers)


async def with_gateway(cfg: Config, digest: str, work: Callable[[Gateway], Awaitable[T]]) -> T:
    # No policies: comparisons are an operator's tool, not a caller's traffic (see docs/evaluation.md).
    gateway = Gateway(cfg, digest, [])
    await gateway.start()
    try:
        return await work(gateway)
    finally:
        await gateway.close()


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), disable=quiet, transient=False,
    )


def main(args: argparse.Namespace) -> int:
    err = Console(stderr=True)
    try:
        return _main(args, err)
    except CompareError as exc:
        err.print(f"polyroute compare: {exc}", markup=False)
        return 2


def _settings(args: argparse.Namespace, models: list[str]) -> CompareSettings:
    if args.concurrency < 1:
        raise CompareError("--concurrency must be at least 1")
    return CompareSettings(
        models=models, judge=args.judge, judge_mode=args.judge_mode, match=args.match, tolerance=args.tolerance,
        concurrency=args.concurrency, max_tokens=args.max_tokens, temperature=args.temperature,
        stream=not args.no_stream,
    )


def _load_config(args: argparse.Namespace) -> tuple[Config, str, str]:
    from polyroute.config.load import ConfigError
    from polyroute.server.factory import resolve_config

    try:
        return resolve_config(args.config)
    except ConfigError as exc:
        raise CompareError(f"invalid configuration: {exc}") from None


def _main(args: argparse.Namespace, err: Console) -> int:
    out_dir = Path(args.out or time.strftime("compare-%Y%m%d-%H%M%S"))
    if args.shadow:
        return _shadow(args, err, out_dir)
    from polyroute.evaluation.prompts import PromptsError, load_prompts

    models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    if len(models) < 1 or len(set(models)) != len(models):
        raise CompareError("--models needs one or more distinct model names (comma-separated)")
    try:
        items = load_prompts(args.prompts)
    except PromptsError as exc:
        raise CompareError(str(exc)) from None
    settings = _settings(args, models)
    cfg, digest, source = _load_config(args)
    missing = [m for m in [*models, *([args.judge] if args.judge else [])] if m not in cfg.models]
    if missing:
        raise CompareError(f"unknown model(s) {', '.join(missing)}; the config offers: {', '.join(sorted(cfg.models))}")
    cfg = subset_config(cfg, [*models, *([args.judge] if args.judge else [])])
    steps = len(items) * len(models) + (len(items) if args.judge else 0)
    with _progress(args.quiet) as progress:
        bar = progress.add_task(f"{len(items)} prompts x {len(models)} models", total=steps)
        run = asyncio.run(with_gateway(cfg, digest, lambda gw: run_compare(
            gw, items, settings, lambda: progress.advance(bar))))
    meta = {
        "prompts": args.prompts, "prompt count": len(items), "models": ", ".join(models), "config": source,
        "scoring": f"judge {args.judge} ({args.judge_mode})" if args.judge else f"reference ({args.match})",
        "streaming": settings.stream, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    written = write_outputs(out_dir, run, models, meta, args.title or f"polyroute compare: {', '.join(models)}")
    return _finish(written, run, err)


def _shadow(args: argparse.Namespace, err: Console, out_dir: Path) -> int:
    from polyroute.evaluation.shadow.pairs import apply_agreement, groups_from_pairs
    from polyroute.evaluation.shadow.store import load_pairs

    try:
        pairs = load_pairs(args.shadow)
    except (OSError, ValueError) as exc:
        raise CompareError(f"cannot read the shadow store: {exc}") from None
    if not pairs:
        raise CompareError(f"{args.shadow}: no shadow pairs yet")
    models, groups = groups_from_pairs(pairs)
    settings = _settings(args, models)
    if args.judge:
        cfg, digest, source = _load_config(args)
        if args.judge not in cfg.models:
            raise CompareError(f"unknown judge model {args.judge}; the config offers: {', '.join(sorted(cfg.models))}")
        cfg = subset_config(cfg, [args.judge])

        async def judged(gw: Gateway) -> CompareRun:
            check_models(gw, [args.judge])
            return await score_all(gw, groups, settings, lambda: progress.advance(bar))

        with _progress(args.quiet) as progress:
            bar = progress.add_task(f"judging {len(groups)} shadow pairs", total=len(groups))
            run = asyncio.run(with_gateway(cfg, digest, judged))
        scoring = f"judge {args.judge} ({args.judge_mode})"
    else:
        apply_agreement(groups, args.match, args.tolerance)
        run = CompareRun(rows=[r for g in groups for r in g.rows.values()])
        run.notes.append("no --judge: candidates are scored by agreement with the primary answer (taken as "
                         "right), a weak proxy; give --judge MODEL for real quality scores")
        scoring, source = f"agreement with the primary ({args.match})", "-"
    meta = {"shadow store": args.shadow, "pairs": len(pairs), "models": ", ".join(models), "config": source,
            "scoring": scoring, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    written = write_outputs(out_dir, run, models, meta, args.title or f"polyroute shadow comparison: {', '.join(models)}")
    return _finish(written, run, err)


def _finish(written: Written, run: CompareRun, err: Console) -> int:
    # Piped output is not cut to 80 columns: the table is meant to be read whole.
    out = Console() if sys.stdout.isatty() else Console(width=200)
    print_summary(out, written.summaries, "per-model summary")
    if run.judge_calls:
        out.print(f"judge: {run.judge_calls} calls, {usd(run.judge_cost)}", markup=False)
    for note in run.notes:
        err.print(f"note: {note}", markup=False)
    out.print(f"results:  {written.results}", markup=False)
    out.print(f"routing:  {written.routing} ({written.records} records)", markup=False)
    out.print(f"summary:  {written.summary}", markup=False)
    out.print(f"report:   {written.report}", markup=False)
    answered = sum(s.answers - s.errors for s in written.summaries)
    return 0 if answered else 1
