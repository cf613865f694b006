"""JSON Schema -> Gemini's OpenAPI subset."""

from __future__ import annotations

from typing import Any

from polyroute.providers.schema_sanitize import gemini_schema

ALLOWED = {
    "type", "format", "title", "description", "nullable", "enum", "items", "properties", "required",
    "minItems", "maxItems", "minimum", "maximum", "minLength", "maxLength", "pattern", "anyOf",
    "minProperties", "maxProperties", "propertyOrdering",
}


def keywords(node: Any) -> set[str]:
    """Every keyword used anywhere in a sanitized schema (property names excluded)."""
    if isinstance(node, list):
        return set().union(*(keywords(x) for x in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    out = set(node)
    for k, v in node.items():
        if k == "properties":
            out |= set().union(*(keywords(s) for s in v.values())) if v else set()
        elif k in ("items", "anyOf"):
            out |= keywords(v)
    return out


def test_pydantic_style_schema() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {
            "Address": {
                "type": "object",
                "title": "Address",
                "properties": {"city": {"type": "string", "default": "Paris", "examples": ["Rome"]}},
                "required": ["city"],
                "additionalProperties": False,
            }
        },
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "format": "email"},
            "age": {"anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "null"}], "description": "years"},
            "home": {"$ref": "#/$defs/Address", "description": "where"},
            "tags": {"type": ["array", "null"], "items": {"type": "string", "const": "x"}},
            "when": {"type": "string", "format": "date-time"},
            "kind": {"enum": ["a", "b", None]},
            "level": {"type": "integer", "enum": [1, 2, 3]},
        },
        "required": ["name", "ghost"],
    }
    out = gemini_schema(schema)
    assert keywords(out) <= ALLOWED
    assert out["type"] == "OBJECT"
    assert out["required"] == ["name"]  # undeclared properties dropped
    p = out["properties"]
    assert p["name"] == {"type": "STRING", "minLength": 1}  # unknown format dropped
    assert p["age"] == {"type": "INTEGER", "nullable": True, "description": "years"}
    assert p["home"] == {
        "type": "OBJECT",
        "title": "Address",
        "description": "where",
        "properties": {"city": {"type": "STRING"}},
        "required": ["city"],
    }
    assert p["tags"] == {"type": "ARRAY", "nullable": True, "items": {"type": "STRING", "enum": ["x"]}}
    assert p["when"] == {"type": "STRING", "format": "date-time"}
    assert p["kind"] == {"type": "STRING", "enum": ["a", "b"], "nullable": True}
    assert p["level"]["type"] == "INTEGER" and "enum" not in p["level"]
    assert "1, 2, 3" in p["level"]["description"]


def test_recursive_ref_does_not_loop() -> None:
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}, "v": {"type": "number"}}}},
        "$ref": "#/$defs/Node",
    }
    out = gemini_schema(schema)
    assert out["properties"]["v"] == {"type": "NUMBER"}
    child = out["properties"]["child"]
    assert child["type"] == "OBJECT" and "child" not in child.get("properties", {})
    assert keywords(out) <= ALLOWED


def test_one_of_all_of_and_type_unions() -> None:
    schema = {
        "type": "object",
        "properties": {
            "x": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            "y": {"allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]}, {"properties": {"b": {"type": "boolean"}}}]},
            "z": {"type": ["string", "integer"]},
            "t": {"type": "array", "prefixItems": [{"type": "string"}]},
            "f": {"type": "number", "format": "double", "multipleOf": 2},
        },
    }
    p = gemini_schema(schema)["properties"]
    assert p["x"] == {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]}
    assert p["y"] == {"type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "BOOLEAN"}}, "required": ["a"]}
    assert p["z"] == {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}
    assert p["t"] == {"type": "ARRAY", "items": {"type": "STRING"}}
    assert p["f"] == {"type": "NUMBER", "format": "double"}


def test_input_is_not_modified() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}, "additionalProperties": False}
    before = repr(schema)
    gemini_schema(schema)
    assert repr(schema) == before
