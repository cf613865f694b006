"""The transcript comparison itself must be able to fail."""

from __future__ import annotations

from .shapes import mismatches, stream_mismatches


def test_identical_shapes_agree() -> None:
    assert mismatches({"a": 1, "b": [{"c": "x"}], "d": None}, {"a": 2.5, "b": [{"c": "y"}], "d": None}) == []


def test_missing_extra_and_type_changes_are_reported() -> None:
    problems = mismatches({"a": 1, "b": "s", "n": None}, {"b": 3, "c": True, "n": "x"})
    assert any("missing keys ['a']" in p for p in problems)
    assert any("unexpected keys ['c']" in p for p in problems)
    assert any("$.b: expected string" in p for p in problems)
    assert any("$.n: expected null" in p for p in problems)


def test_arrays_of_objects_compare_by_position_and_scalars_by_type() -> None:
    assert mismatches([{"a": 1}], [{"a": 1}, {"a": 2}]) == ["$: expected 1 items, got 2"]
    assert mismatches([0.1, 0.2], [1.0, 2.0, 3.0]) == []
    assert mismatches([0.1], ["x"]) != []


def test_stream_sequences_collapse_runs_but_not_order() -> None:
    def ev(name: str, delta: str) -> dict:
        return {"event": "content_block_delta",
                "data": {"type": "content_block_delta", "index": 0, "delta": {"type": delta, name: "x"}}}

    golden = [ev("text", "text_delta")]
    assert stream_mismatches("anthropic", golden, [ev("text", "text_delta")] * 3) == []
    assert stream_mismatches("anthropic", golden, [ev("thinking", "thinking_delta")]) != []
    assert stream_mismatches("anthropic", golden + golden, [ev("text", "text_delta"), ev("other", "text_delta")])
