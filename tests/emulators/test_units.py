"""Pure functions of the emulators: behaviours, token arithmetic, schema handling."""

from __future__ import annotations

from typing import Any

import pytest

from polyroute.emulators import Behaviour, BehaviourError, ToolCall
from polyroute.emulators.behaviour import BehaviourController
from polyroute.emulators.gemini_schema import schema_violations
from polyroute.emulators.schema_example import example_for_schema
from polyroute.emulators.tokens import count_in, count_tokens, split_text, token_pieces, truncate_to_tokens
from polyroute.emulators.vectors import embed_text


def test_token_counting_rules() -> None:
    assert count_tokens("echo: Hello, world!") == 6
    assert count_tokens("") == 0 and count_tokens("   ") == 0
    assert count_tokens("naïve café") == 2
    assert count_in({"role": "user", "content": [{"type": "text", "text": "a b", "cache_control": {"type": "x"}}]}) == 4
    assert truncate_to_tokens("one, two three", 2) == "one,"
    assert truncate_to_tokens("one two", 5) == "one two"


def test_streaming_splits_reassemble() -> None:
    text = "echo: Hello there, world!"
    assert split_text(text, None) == ["echo: ", "Hello ", "there, ", "world!"]
    for n in (1, 2, 3, 7, 100):
        pieces = split_text(text, n)
        assert "".join(pieces) == text and len(pieces) == min(n, len(text))
    assert "".join(token_pieces(text)) == text
    assert split_text("", 3) == [""]


def test_behaviour_from_dict_round_trip_and_validation() -> None:
    b = Behaviour.from_dict({"text": "x", "tool_calls": [{"name": "f", "arguments": {"a": 1}}], "chunks": 2})
    assert b.tool_calls == (ToolCall("f", {"a": 1}),)
    assert Behaviour.from_dict(b.to_dict()) == b
    bad: dict[str, Any]
    for bad in ({"status": 200}, {"chunks": 0}, {"chunk_delay": -1}, {"malformed": "weird"},
                {"error_after": 1}, {"tool_calls": [{"arguments": {}}]}, {"nope": 1}):
        with pytest.raises(BehaviourError):
            Behaviour.from_dict(bad)
    assert Behaviour.rate_limited(3) == Behaviour(status=429, retry_after=3)
    assert Behaviour.tool_call("f").tool_calls == (ToolCall("f", {}),)


def test_controller_order_queue_then_rate_then_default() -> None:
    controller = BehaviourController()
    controller.set_default(Behaviour(text="default"))
    controller.enqueue(Behaviour(text="q1"), Behaviour(text="q2"))
    controller.set_failure_rate(0.5, seed=7)
    picked = [controller.next() for _ in range(40)]
    assert [b.text for b in picked[:2]] == ["q1", "q2"]
    rest = picked[2:]
    assert {b.status for b in rest} == {None, 503}
    controller.set_failure_rate(0.5, seed=7)
    assert [b.status for b in (controller.next() for _ in range(38))] == [b.status for b in rest]
    controller.reset()
    assert controller.next() == Behaviour()


def test_schema_examples() -> None:
    schema = {"type": "object", "properties": {
        "s": {"type": "string"}, "i": {"type": "integer", "minimum": 3}, "e": {"enum": ["a", "b"]},
        "n": {"type": ["null", "number"]}, "arr": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "ref": {"$ref": "#/$defs/Inner"}, "any": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
        "when": {"type": "string", "format": "date-time"}},
        "$defs": {"Inner": {"type": "object", "properties": {"x": {"type": "STRING"}}}}}
    assert example_for_schema(schema, "t") == {"s": "t", "i": 3, "e": "a", "n": 0.0, "arr": ["t", "t"],
                                               "ref": {"x": "t"}, "any": False, "when": "1970-01-01T00:00:00Z"}
    # Recursive schemas terminate (the depth is bounded) instead of recursing forever.
    tree = {"type": "object", "properties": {"label": {"type": "string"}, "child": {"$ref": "#"}}}
    value = example_for_schema(tree, "x")
    depth = 0
    while isinstance(value, dict):
        value, depth = value["child"], depth + 1
    assert value is None and 3 < depth < 20


def test_gemini_schema_paths() -> None:
    assert schema_violations({"type": "object", "properties": {"a": {"type": "string"}}}, "p") == []
    problems = schema_violations({"type": "OBJECT", "properties": {"a": {"type": "string"}, "b": {
        "type": "object", "properties": {"c": {"type": "string", "minimum": 1, "oneOf": []}}}}}, "p")
    assert problems == [("p.properties[1].value.properties[0].value",
                         "Invalid JSON payload received. Unknown name \"oneOf\" at "
                         "'p.properties[1].value.properties[0].value': Cannot find field.")]
    assert schema_violations({"type": "text"}, "p")[0][0] == "p.type"


def test_embedding_vectors_are_deterministic_unit_vectors() -> None:
    a, b = embed_text("Hello world", 64), embed_text("hello WORLD", 64)
    assert a == b and sum(x * x for x in a) == pytest.approx(1.0)
    assert embed_text("", 8) == embed_text("   ", 8)
