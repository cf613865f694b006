"""Run every prompt on every model through the gateway, then score the answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from polyroute.core import types as t
from polyroute.core.gateway import Gateway
from polyroute.evaluation.calls import Outcome, ask, build_request
from polyroute.evaluation.judge import Judge, Judgement
from polyroute.evaluation.prompts import PromptItem
from polyroute.evaluation.results import ResultRow
from polyroute.evaluation.scoring import DEFAULT_TOLERANCE, score_reference

T = TypeVar("T")
Advance = Callable[[], None]


@dataclass
class CompareSettings:
    models: list[str]
    judge: str | None = None
    judge_mode: str = "absolute"
    match: str = "auto"
    tolerance: float = DEFAULT_TOLERANCE
    concurrency: int = 4
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = True


@dataclass
class Group:
    """One prompt's answers: what the judge reads, the reference, result rows and outcomes by model."""

    question: str
    reference: str | None
    rows: dict[str, ResultRow]
    outcomes: dict[str, Outcome]
    match: str | None = None


@dataclass
class CompareRun:
    rows: list[ResultRow]
    judge_cost: float = 0.0
    judge_calls: int = 0
    judge_failures: int = 0
    notes: list[str] = field(default_factory=list)


class CompareError(Exception):
    """A comparison cannot run as asked (unknown model, no references, ...)."""


def transcript(messages: Sequence[t.Message]) -> str:
    """The prompt as a judge reads it: the user's text, or the whole conversation with roles."""
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].text()
    return "\n\n".join(f"{m.role.upper()}: {m.text()}" for m in messages)


def check_models(gateway: Gateway, names: Sequence[str]) -> None:
    chat = gateway.catalog.names("chat")
    unknown = [n for n in names if n not in chat]
    if unknown:
        raise CompareError(
            f"unknown chat model(s) {', '.join(unknown)}; the config offers: {', '.join(chat) or 'none'}"
        )


async def bounded(limit: asyncio.Semaphore, work: Awaitable[T], advance: Advance | None) -> T:
    async with limit:
        result = await work
    if advance is not None:
        advance()
    return result


def total_steps(n_items: int, settings: CompareSettings) -> int:
    return n_items * len(settings.models) + (n_items if settings.judge else 0)


def apply_judgement(rows: dict[str, ResultRow], j: Judgement, mode: str) -> None:
    for model, row in rows.items():
        row.quality = j.scores.get(model)
        row.score_method = f"judge-{mode}"
        row.judge_rating = j.ratings.get(model)
        if mode == "absolute":
            row.judge_reply = j.replies.get(model)
        else:
            row.judge_reply = "\n---\n".join(f"[{k}] {v}" for k, v in j.replies.items() if model in k.split("|")) or None


def apply_reference(rows: dict[str, ResultRow], reference: str, method: str, tolerance: float) -> None:
    for row in rows.values():
        if not row.ok:
            row.quality, row.score_method = 0.0, "error"
            continue
        s = score_reference(row.answer, reference, method, tolerance)
        row.quality, row.score_method, row.extracted = s.value, s.method, s.extracted


async def score_all(
    gateway: Gateway, groups: Sequence[Group], settings: CompareSettings, advance: Advance | None = None
) -> CompareRun:
    """Score the groups' rows in place: against references, or by the judge."""
    run = CompareRun(rows=[r for g in groups for r in g.rows.values()])
    if settings.judge is None:
        missing = 0
        for g in groups:
            if g.reference is None:
                missing += 1
                continue
            apply_reference(g.rows, g.reference, g.match or settings.match, settings.tolerance)
        if missing:
            run.notes.append(f"{missing} prompt(s) have no reference answer and were not scored")
        return run
    judge = Judge(gateway, settings.judge, settings.judge_mode)
    limit = asyncio.Semaphore(settings.concurrency)
    judgements = await asyncio.gather(*(
        bounded(limit, judge.judge(g.question, g.outcomes, g.reference), advance) for g in groups
    ))
    for g, j in zip(groups, judgements, strict=True):
        apply_judgement(g.rows, j, settings.judge_mode)
        run.judge_cost += j.cost
        run.judge_calls += j.calls
        run.judge_failures += j.failures
    if run.judge_failures:
        run.notes.append(f"{run.judge_failures} judgement(s) could not be read; those qualities are null")
    return run


async def run_compare(
    gateway: Gateway, items: Sequence[PromptItem], settings: CompareSettings, advance: Advance | None = None
) -> CompareRun:
    check_models(gateway, settings.models + ([settings.judge] if settings.judge else []))
    if settings.judge is None and not any(i.reference is not None for i in items):
        raise CompareError("no prompt has a 'reference' answer: give --judge MODEL, or add references")
    limit = asyncio.Semaphore(settings.concurrency)

    async def one(item: PromptItem, model: str) -> Outcome:
        req = build_request(model, item.messages, max_tokens=settings.max_tokens,
                            temperature=settings.temperature, stream=settings.stream)
        return await ask(gateway, req)

    jobs = [(item, model) for item in items for model in settings.models]
    outcomes = await asyncio.gather(*(bounded(limit, one(i, m), advance) for i, m in jobs))
    by_item: dict[str, dict[str, Outcome]] = {}
    for (item, model), out in zip(jobs, outcomes, strict=True):
        by_item.setdefault(item.id, {})[model] = out
    groups = [
        Group(
            question=transcript(item.messages),
            reference=item.reference,
            rows={m: ResultRow.from_outcome(item.id, item.task, item.text, item.reference, o)
                  for m, o in by_item[item.id].items()},
            outcomes=by_item[item.id],
            match=item.match,
        )
        for item in items
    ]
    return await score_all(gateway, groups, settings, advance)
