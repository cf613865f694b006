"""An LLM judge, reached through the gateway like any other model.

Rubrics (the prompts are below, close to MT-Bench's, so judges trained on that format follow it):
- absolute: the judge rates one answer from 1 to 10 ("Rating: [[7]]"); quality = (rating - 1) / 9.
  A reference answer, when the prompt has one, is shown to the judge.
- pairwise: the judge picks the better of two answers ("[[A]]", "[[B]]" or "[[C]]" for a tie).
  Every pair of models is judged in both orders, to cancel the judge's position bias; a model's
  quality on a prompt is its share of points (win 1, tie 0.5, loss 0) over its comparisons.

Parsing is lenient (the last `[[...]]`, then "Rating: 7", "7/10", a bare number; for verdicts
"Assistant A", "tie"); an answer that still cannot be parsed is asked once more with a reminder,
and otherwise leaves that quality unknown (null), never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import combinations

from polyroute.core import types as t
from polyroute.core.gateway import Gateway
from polyroute.evaluation.calls import Outcome, ask, build_request

JUDGE_MODES = ("absolute", "pairwise")

ABSOLUTE_SYSTEM = (
    "You are a helpful and impartial judge. Evaluate the quality of the AI assistant's answer to the "
    "user's question. Consider correctness first, then helpfulness, relevance, depth and clarity. "
    "If a reference answer is given, an answer that contradicts it is wrong. Be as objective as possible. "
    'After a short explanation, rate the answer from 1 to 10 strictly in this format: "Rating: [[5]]".'
)
PAIRWISE_SYSTEM = (
    "You are a helpful and impartial judge. Compare the two AI assistants' answers to the user's "
    "question and decide which one is better. Consider correctness first, then helpfulness, relevance, "
    "depth and clarity. If a reference answer is given, an answer that contradicts it is wrong. Do not let "
    "the order of the answers, their length or the assistants' names influence you. After a short "
    'explanation, give your verdict strictly in this format: "[[A]]" if assistant A is better, '
    '"[[B]]" if assistant B is better, "[[C]]" for a tie.'
)
_REMINDER = "Your reply could not be read. Reply again, ending with the verdict in the exact format asked."

_BRACKETED = re.compile(r"\[\[\s*([^\[\]]{1,12}?)\s*\]\]")
_RATING_PATTERNS = (
    re.compile(r"(?i:rating|score)\W{0,4}?[:=]\s*\**\s*(\d+(?:\.\d+)?)"),
    re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b"),
    re.compile(r"^\s*\**(\d+(?:\.\d+)?)\**\s*\.?\s*$"),
)
_VERDICT_PATTERNS = (
    re.compile(r"(?i:verdict)\W{0,4}[:=]?\s*\**\s*(?i:assistant\s+)?([ABC])\b"),
    re.compile(r"(?i:assistant)\s+([AB])\s+(?i:is|was)\s+(?i:better|superior|the better)"),
)
_TIE = re.compile(r"(?i)\b(tie|equally good|equally bad|both (?:are )?equal)\b")


def parse_rating(text: str) -> float | None:
    """A 1-10 rating from a judge's reply, or None."""
    for pattern in (_BRACKETED, *_RATING_PATTERNS):
        for m in reversed(list(pattern.finditer(text))):
            try:
                value = float(m.group(1))
            except ValueError:
                continue
            if 1.0 <= value <= 10.0:
                return value
    return None


def parse_verdict(text: str) -> str | None:
    """'A', 'B' or 'C' (tie) from a judge's reply, or None."""
    for m in reversed(list(_BRACKETED.finditer(text))):
        v = m.group(1).strip().upper()
        if v in ("A", "B", "C"):
            return v
        if v == "TIE":
            return "C"
    for pattern in _VERDICT_PATTERNS:
        found = pattern.findall(text)
        if found:
            return str(found[-1]).upper()
    if _TIE.search(text):
        return "C"
    return None


def rating_to_quality(rating: float) -> float:
    return (rating - 1.0) / 9.0


def _block(title: str, text: str) -> str:
    return f"[The Start of {title}]\n{text}\n[The End of {title}]"


def absolute_prompt(question: str, answer: str, reference: str | None) -> list[t.Message]:
    parts = [f"[Question]\n{question}"]
    if reference is not None:
        parts.append(_block("Reference Answer", reference))
    parts.append(_block("Assistant's Answer", answer))
    return [
        t.Message(role="system", content=[t.TextPart(text=ABSOLUTE_SYSTEM)]),
        t.Message(role="user", content=[t.TextPart(text="\n\n".join(parts))]),
    ]


def pairwise_prompt(question: str, answer_a: str, answer_b: str, reference: str | None) -> list[t.Message]:
    parts = [f"[User Question]\n{question}"]
    if reference is not None:
        parts.append(_block("Reference Answer", reference))
    parts.append(_block("Assistant A's Answer", answer_a))
    parts.append(_block("Assistant B's Answer", answer_b))
    return [
        t.Message(role="system", content=[t.TextPart(text=PAIRWISE_SYSTEM)]),
        t.Message(role="user", content=[t.TextPart(text="\n\n".join(parts))]),
    ]


@dataclass
class Judgement:
    """What the judge said about one prompt's answers: quality per model (None = unknown)."""

    scores: dict[str, float | None]
    # Raw judge replies, for the results file: model -> rating reply (absolute) or
    # "a|b" -> verdict reply (pairwise).
    replies: dict[str, str] = field(default_factory=dict)
    ratings: dict[str, float] = field(default_factory=dict)
    cost: float = 0.0
    calls: int = 0
    failures: int = 0


class Judge:
    def __init__(self, gateway: Gateway, model: str, mode: str = "absolute", *, max_tokens: int = 512) -> None:
        if mode not in JUDGE_MODES:
            raise ValueError(f"judge mode must be one of {JUDGE_MODES}")
        self.gateway = gateway
        self.model = model
        self.mode = mode
        self.max_tokens = max_tokens

    def calls_per_prompt(self, n_models: int) -> int:
        return n_models if self.mode == "absolute" else n_models * (n_models - 1)

    async def _ask(self, messages: list[t.Message], parse: type[float] | type[str], j: Judgement) -> tuple[str, object]:
        reply = ""
        for attempt in range(2):
            req = build_request(self.model, messages, max_tokens=self.max_tokens, temperature=0.0, stream=False)
            out: Outcome = await ask(self.gateway, req, api="judge")
            j.cost += out.cost
            j.calls += 1
            if not out.ok:
                return out.error or "judge call failed", None
            reply = out.text
            value = parse_rating(reply) if parse is float else parse_verdict(reply)
            if value is not None:
                return reply, value
            if attempt == 0:
                messages = [*messages, t.Message(role="assistant", content=[t.TextPart(text=reply)]),
                            t.Message(role="user", content=[t.TextPart(text=_REMINDER)])]
        return reply, None

    async def judge(self, question: str, answers: dict[str, Outcome], reference: str | None = None) -> Judgement:
        """Judge one prompt's answers (failed answers score 0 without asking the judge)."""
        j = Judgement(scores={})
        if self.mode == "absolute":
            for model, out in answers.items():
                if not out.ok:
                    j.scores[model] = 0.0
                    continue
                reply, value = await self._ask(absolute_prompt(question, out.text, reference), float, j)
                j.replies[model] = reply
                if isinstance(value, float):
                    j.ratings[model] = value
                    j.scores[model] = rating_to_quality(value)
                else:
                    j.failures += 1
                    j.scores[model] = None
            return j
        points: dict[str, list[float]] = {m: [] for m in answers}
        for a, b in combinations(answers, 2):
            for first, second in ((a, b), (b, a)):
                oa, ob = answers[first], answers[second]
                if not oa.ok or not ob.ok:
                    verdict: str | None = "C" if oa.ok == ob.ok else ("A" if oa.ok else "B")
                else:
                    reply, value = await self._ask(pairwise_prompt(question, oa.text, ob.text, reference), str, j)
                    j.replies[f"{first}|{second}"] = reply
                    verdict = value if isinstance(value, str) else None
                if verdict is None:
                    j.failures += 1
                    continue
                win = {"A": 1.0, "B": 0.0, "C": 0.5}[verdict]
                points[first].append(win)
                points[second].append(1.0 - win)
        for model, got in points.items():
            j.scores[model] = sum(got) / len(got) if got else None
        return j
