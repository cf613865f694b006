"""Reference scoring, judge-reply parsing and the prompts file of `polyroute compare`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from polyroute.evaluation.judge import parse_rating, parse_verdict, rating_to_quality
from polyroute.evaluation.prompts import PromptsError, load_prompts
from polyroute.evaluation.scoring import extract_choice, normalise, resolve_method, score_reference


@pytest.mark.parametrize(
    ("answer", "reference", "method", "expected"),
    [
        ("Paris", "Paris", "exact", 1.0),
        ("paris", "Paris", "exact", 0.0),
        ("  Hello,   World! ", "hello world", "normalised", 1.0),
        ("The capital is Paris.", "paris", "normalised", 0.0),
        ("The capital is Paris.", "paris", "contains", 1.0),
        ("Parisian food", "paris", "contains", 0.0),
        ("The capital is Paris.", "Paris", "auto", 1.0),
        ("x is 3, so the answer is 42.", "42", "numeric", 1.0),
        ("It costs 1,234.50 dollars", "1234.5", "numeric", 1.0),
        ("#### 18", "18", "numeric", 1.0),
        ("about 3.1416", "3.14159", "numeric", 0.0),
        ("no number here", "7", "numeric", 0.0),
        ("The answer is (B).", "B", "choice", 1.0),
        ("C. Because the others are wrong", "(C)", "choice", 1.0),
        ("Answer: d", "D", "choice", 1.0),
        ("A cat sat on the mat", "A", "choice", 0.0),
        ("the answer is a dog", "A", "choice", 0.0),
        ("**B**", "B", "auto", 1.0),
        ("B", "C", "auto", 0.0),
    ],
)
def test_score_reference(answer: str, reference: str, method: str, expected: float) -> None:
    assert score_reference(answer, reference, method).value == expected


def test_numeric_tolerance_is_relative_above_one() -> None:
    assert score_reference("1000.4", "1000", "numeric", tolerance=1e-3).value == 1.0
    assert score_reference("1002", "1000", "numeric", tolerance=1e-3).value == 0.0
    assert score_reference("0.0004", "0", "numeric", tolerance=1e-3).value == 1.0


def test_auto_picks_a_method_from_the_reference() -> None:
    assert resolve_method("B") == "choice"
    assert resolve_method("(b)") == "choice"
    assert resolve_method("-12.5") == "numeric"
    assert resolve_method("$1,200") == "numeric"
    assert resolve_method("Paris") == "normalised"
    s = score_reference("I pick B", "C")
    assert (s.method, s.extracted) == ("choice", None)


def test_normalise_and_choice_extraction() -> None:
    assert normalise("  Ça   VA?! ") == "ça va"
    assert extract_choice("I think option c is right") == "C"
    assert extract_choice("(D) is correct") == "D"
    assert extract_choice("None of them") is None


@pytest.mark.parametrize(
    ("reply", "rating"),
    [
        ("Good answer. Rating: [[8]]", 8.0),
        ("[[11]] oops. Rating: 3", 3.0),
        ('{"rating": 4}', 4.0),
        ("**Rating:** 10", 10.0),
        ("I would give it 6 out of 10.", 6.0),
        ("7", 7.0),
        ("Rating: [[0]]", None),
        ("I cannot rate this.", None),
    ],
)
def test_parse_rating(reply: str, rating: float | None) -> None:
    assert parse_rating(reply) == rating


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("A is more precise. [[A]]", "A"),
        ("[[A]] was my first thought, but final: [[B]]", "B"),
        ("[[C]]", "C"),
        ("[[tie]]", "C"),
        ("Verdict: B", "B"),
        ("Assistant A is better overall.", "A"),
        ("They are equally good.", "C"),
        ("Hmm.", None),
    ],
)
def test_parse_verdict(reply: str, verdict: str | None) -> None:
    assert parse_verdict(reply) == verdict


def test_rating_maps_onto_zero_one() -> None:
    assert rating_to_quality(1) == 0.0
    assert rating_to_quality(10) == 1.0
    assert rating_to_quality(5.5) == pytest.approx(0.5)


def _write(path: Path, *rows: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_prompts_file(tmp_path: Path) -> None:
    items = load_prompts(_write(
        tmp_path / "p.jsonl",
        {"prompt": "What is 2+2?", "reference": 4, "task": "math"},
        "",
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}],
         "id": "geo-1", "match": "contains", "reference": "Paris"},
    ))
    assert [i.id for i in items] == ["1", "geo-1"]
    assert items[0].reference == "4" and items[0].task == "math" and items[0].text == "What is 2+2?"
    assert [m.role for m in items[1].messages] == ["system", "user"]
    assert items[1].text == "Be brief.\nCapital of France?"
    assert items[1].match == "contains"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"reference": "x"}, "exactly one of 'prompt'"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "exactly one of 'prompt'"),
        ({"prompt": "a", "refrence": "x"}, "unknown fields ['refrence']"),
        ({"messages": [{"role": "wizard", "content": "b"}]}, "'messages' is not valid"),
        ({"prompt": "a", "match": "fuzzy"}, "'match' must be one of"),
        ("not json", "Expecting value"),
    ],
)
def test_prompts_file_errors_name_the_line(tmp_path: Path, row: object, message: str) -> None:
    path = _write(tmp_path / "p.jsonl", {"prompt": "fine"}, row)
    with pytest.raises(PromptsError, match=r"p\.jsonl:2: .*" + re.escape(message)):
        load_prompts(path)


def test_prompts_duplicate_ids_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(PromptsError, match="duplicate id 'x'"):
        load_prompts(_write(tmp_path / "d.jsonl", {"prompt": "a", "id": "x"}, {"prompt": "b", "id": "x"}))
    with pytest.raises(PromptsError, match="no prompts"):
        load_prompts(_write(tmp_path / "e.jsonl", ""))
