"""Build a small JSON value that satisfies a JSON schema (or Gemini's OpenAPI subset).

Used to answer structured-output requests with something the client's parser accepts:
every declared property is filled (strict modes require all of them), strings get `text`.
"""

from __future__ import annotations

from typing import Any

_MAX_DEPTH = 12


def example_for_schema(schema: Any, text: str = "") -> Any:
    root = schema if isinstance(schema, dict) else {}
    return _example(root, root, text, 0)


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node if isinstance(node, dict) else {}


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if isinstance(k, str) and k.lower() != "null"]
        kind = non_null[0] if non_null else "null"
    if isinstance(kind, str):
        return kind.lower()
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return None


def _example(schema: dict[str, Any], root: dict[str, Any], text: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _example(_resolve(str(schema["$ref"]), root), root, text, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "any_of", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            typed = [o for o in options if isinstance(o, dict) and _type_of(o) != "null"]
            return _example((typed or options)[0], root, text, depth + 1)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        merged: dict[str, Any] = {}
        for part in all_of:
            if isinstance(part, dict):
                part = _resolve(str(part["$ref"]), root) if "$ref" in part else part
                for key, value in part.items():
                    if key == "properties" and isinstance(value, dict):
                        merged.setdefault("properties", {}).update(value)
                    else:
                        merged.setdefault(key, value)
        return _example(merged, root, text, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {name: _example(sub if isinstance(sub, dict) else {}, root, text, depth + 1)
                for name, sub in props.items()}
    if kind == "array":
        items = schema.get("items")
        count = schema.get("minItems", schema.get("min_items", 0))
        try:
            count = int(count)
        except (TypeError, ValueError):
            count = 0
        sub = items if isinstance(items, dict) else {}
        return [_example(sub, root, text, depth + 1) for _ in range(min(count, 8))]
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return "1970-01-01T00:00:00Z"
        if fmt == "date":
            return "1970-01-01"
        return text
    if kind == "integer":
        return int(schema.get("minimum", 0) or 0)
    if kind == "number":
        return float(schema.get("minimum", 0) or 0)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return text
