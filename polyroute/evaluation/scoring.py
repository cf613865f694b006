"""Scoring an answer against a reference answer: 1.0 when it matches, else 0.0.

Methods (`--match`, or `match` on a prompts-file line):
- exact: the answer, stripped of surrounding whitespace, equals the reference.
- normalised: equal after lower-casing, removing punctuation and collapsing whitespace.
- contains: the normalised reference appears in the normalised answer as whole words
  ("The capital is Paris." matches "paris").
- numeric: the answer's number (the one after "answer is", "answer:" or "####", else the last
  number in the answer) is within the tolerance of the reference: |a - r| <= tol * max(1, |r|).
  A reference that is not a bare number has its number read the same way.
- choice: a multiple-choice letter (A-J) is extracted from the answer ("B", "(B)", "B. ...",
  "The answer is B", "Answer: (b)" ...) and compared with the reference letter.
- auto (default): choice when the reference is a single letter, numeric when it is a number,
  otherwise normalised, falling back to contains.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

METHODS = ("auto", "exact", "normalised", "contains", "numeric", "choice")

DEFAULT_TOLERANCE = 1e-6

_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_FINAL_NUMBER_RE = re.compile(
    r"(?:(?i:answer)\s*(?i:is|:|=)?|####)\s*[*$\s]*(" + _NUMBER + r")"
)
_REFERENCE_NUMBER_RE = re.compile(r"^\s*[$]?\s*(" + _NUMBER + r")\s*%?\s*$")
_LETTER_REF_RE = re.compile(r"^\s*[\(\[]?([A-Ja-j])[\)\]]?\.?\s*$")
_CHOICE_PATTERNS = (
    # "The answer is (B)", "**Answer:** C"; a lower-case letter only when it cannot be a word
    # ("Answer: (b)", "answer is c."), so "the answer is a dog" extracts nothing.
    re.compile(r"(?i:answer)\s*(?i:is|:)?\s*[*:\s]*(?i:option\s+)?[\(\[]?([A-J])[\)\]]?(?![A-Za-z0-9])"),
    re.compile(r"(?i:answer)\s*(?i:is|:)?\s*[*:\s]*(?i:option\s+)?(?:[\(\[]([a-j])[\)\]]|([a-j])(?=\s*$|[.,;:)\]]))"),
    # "B", "B.", "(B) because ...", "**B**" at the very start
    re.compile(r"^\s*[*\s]*[\(\[]?([A-J])[\)\]]?[*]*(?:[.:)\]]|\s*$|\s*\n)"),
    re.compile(r"[\(\[]([A-J])[\)\]]"),
    re.compile(r"(?i:option|choice)\s+([A-Ja-j])(?![A-Za-z0-9])"),
)


@dataclass(frozen=True)
class Score:
    value: float
    method: str
    # What was compared with the reference (the extracted letter or number), for the results file.
    extracted: str | None = None


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return " ".join(text.split())


def parse_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").lstrip("+"))
    except ValueError:
        return None


def answer_number(answer: str) -> str | None:
    """The number an answer commits to: after an "answer is"/"####" marker, else the last one."""
    marked = _FINAL_NUMBER_RE.findall(answer)
    if marked:
        return str(marked[-1])
    found = _NUMBER_RE.findall(answer)
    return str(found[-1]) if found else None


def extract_choice(answer: str) -> str | None:
    for pattern in _CHOICE_PATTERNS:
        m = pattern.search(answer)
        if m:
            return next(g for g in m.groups() if g).upper()
    return None


def reference_letter(reference: str) -> str | None:
    m = _LETTER_REF_RE.match(reference)
    return m.group(1).upper() if m else None


def resolve_method(reference: str, method: str = "auto") -> str:
    if method != "auto":
        return method
    if reference_letter(reference) is not None:
        return "choice"
    if _REFERENCE_NUMBER_RE.match(reference):
        return "numeric"
    return "normalised"


def score_reference(answer: str, reference: str, method: str = "auto",
                    tolerance: float = DEFAULT_TOLERANCE) -> Score:
    if method not in METHODS:
        raise ValueError(f"unknown match method {method!r}; expected one of {METHODS}")
    chosen = resolve_method(reference, method)
    if chosen == "exact":
        return Score(float(answer.strip() == reference.strip()), chosen)
    if chosen == "choice":
        want = reference_letter(reference) or reference.strip().upper()
        got = extract_choice(answer)
        return Score(float(got == want), chosen, got)
    if chosen == "numeric":
        # A reference that is not a bare number (another model's answer, in shadow agreement)
        # is read like an answer.
        m = _REFERENCE_NUMBER_RE.match(reference)
        ref_raw = m.group(1) if m else answer_number(reference)
        ref = parse_number(ref_raw) if ref_raw is not None else None
        raw = answer_number(answer)
        value = parse_number(raw) if raw is not None else None
        ok = ref is not None and value is not None and abs(value - ref) <= tolerance * max(1.0, abs(ref))
        return Score(float(ok), chosen, raw)
    a, r = normalise(answer), normalise(reference)
    if chosen == "normalised" and method == "normalised":
        return Score(float(a == r), chosen)
    if a == r:
        return Score(1.0, chosen)
    contained = bool(r) and f" {r} " in f" {a} "
    # auto falls back to contains; the method says which test passed.
    return Score(float(contained), "contains" if method in ("auto", "contains") else chosen)
