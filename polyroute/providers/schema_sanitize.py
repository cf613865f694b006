"""JSON Schema -> the OpenAPI 3.0 subset Gemini accepts for `functionDeclarations.parameters`
and `generationConfig.responseSchema`.

Gemini answers 400 to keywords outside its Schema object (`additionalProperties`, `$schema`,
`$ref`/`$defs`, `const`, `default`, `examples`, `exclusiveMinimum`, `oneOf`/`allOf`, type arrays,
non-string enums, unknown formats...). Clients write ordinary JSON Schema (Pydantic emits `$defs`,
`anyOf` with null, `title`, `default`), so the schema is rewritten, meaning-preserving where
possible:
- `$ref` into `$defs`/`definitions` is inlined (a recursive reference, which cannot be inlined,
  becomes an untyped object with the reference's description);
- `type: [X, "null"]`, `anyOf: [X, {type: null}]` and `enum` with null become `nullable: true`;
- `const` becomes a one-value `enum`; `oneOf` becomes `anyOf`; `allOf` is merged;
- non-string `enum` values (Gemini only takes string enums) are dropped and listed in the
  description; `format` is kept only where Gemini knows it; `required` keeps only declared
  properties;
- every other keyword is dropped.
"""

from __future__ import annotations

from typing import Any

KEEP = frozenset(
    {
        "description",
        "title",
        "nullable",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minProperties",
        "maxProperties",
        "propertyOrdering",
    }
)
_FORMATS: dict[str, frozenset[str]] = {
    "STRING": frozenset({"enum", "date-time"}),
    "NUMBER": frozenset({"float", "double"}),
    "INTEGER": frozenset({"int32", "int64"}),
}
_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
MAX_DEPTH = 32


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            defs.update({f"#/{key}/{name}": s for name, s in schema[key].items()})
    return _clean(schema, defs, (), 0)


def _resolve(node: dict[str, Any], defs: dict[str, Any], stack: tuple[str, ...]) -> tuple[dict[str, Any], tuple[str, ...]] | None:
    """Inline one `$ref` (siblings such as `description` override the target's)."""
    ref = node["$ref"]
    target = defs.get(ref) if isinstance(ref, str) else None
    if target is None and ref == "#":
        return None
    if not isinstance(target, dict) or ref in stack:
        return None
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return merged, (*stack, ref)


def _clean(node: Any, defs: dict[str, Any], stack: tuple[str, ...], depth: int) -> dict[str, Any]:
    if not isinstance(node, dict) or depth > MAX_DEPTH:
        return {}
    while "$ref" in node:
        resolved = _resolve(node, defs, stack)
        if resolved is None:
            out: dict[str, Any] = {"type": "OBJECT"}
            desc = node.get("description")
            out["description"] = desc if isinstance(desc, str) else f"(recursive reference {node['$ref']})"
            return out
        node, stack = resolved

    out = {}
    nullable = bool(node.get("nullable"))

    if isinstance(node.get("allOf"), list):
        node = _merge_all_of(node, defs, stack)

    variants = node.get("anyOf") if isinstance(node.get("anyOf"), list) else node.get("oneOf")
    if isinstance(variants, list):
        kept = [v for v in variants if not (isinstance(v, dict) and v.get("type") == "null")]
        nullable = nullable or len(kept) < len(variants)
        if len(kept) == 1:
            # X | null: the one variant, nullable (siblings such as description are kept).
            inner = _clean(kept[0], defs, stack, depth + 1)
            for k in KEEP:
                if k in node and k not in inner:
                    inner[k] = node[k]
            if nullable:
                inner["nullable"] = True
            return inner
        if kept:
            out["anyOf"] = [_clean(v, defs, stack, depth + 1) for v in kept]

    gtype = _type(node.get("type"))
    if isinstance(node.get("type"), list) and "null" in node["type"]:
        nullable = True
    if gtype is None and isinstance(node.get("type"), list):
        # Several non-null types: anyOf of each (Gemini has no type unions).
        types = [x for x in node["type"] if isinstance(x, str) and x in _TYPES]
        if types:
            base = {k: v for k, v in node.items() if k not in ("type", "anyOf", "oneOf")}
            out["anyOf"] = [_clean({**base, "type": x}, defs, stack, depth + 1) for x in types]
    if gtype is None and "anyOf" not in out:
        if isinstance(node.get("properties"), dict):
            gtype = "OBJECT"
        elif "items" in node:
            gtype = "ARRAY"
    if gtype is not None:
        out["type"] = gtype

    for k in KEEP:
        if k in node and k != "nullable":
            out[k] = node[k]

    enum = node.get("enum")
    if "const" in node:
        enum = [node["const"]]
    if isinstance(enum, list):
        if None in enum:
            nullable = True
            enum = [v for v in enum if v is not None]
        if enum and all(isinstance(v, str) for v in enum):
            out["enum"] = enum
            out["type"] = "STRING"
            gtype = "STRING"
        elif enum:
            listed = ", ".join(repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v) for v in enum)
            out["description"] = (f"{out['description']} " if out.get("description") else "") + f"(one of: {listed})"

    fmt = node.get("format")
    if isinstance(fmt, str) and gtype is not None and fmt in _FORMATS.get(gtype, ()):
        out["format"] = fmt

    props = node.get("properties")
    if isinstance(props, dict):
        out["properties"] = {name: _clean(s, defs, stack, depth + 1) for name, s in props.items()}
        req = node.get("required")
        if isinstance(req, list):
            kept_req = [r for r in req if r in props]
            if kept_req:
                out["required"] = kept_req
        if "propertyOrdering" in out:
            out["propertyOrdering"] = [p for p in out["propertyOrdering"] if p in props]

    items = node.get("items")
    if isinstance(items, dict):
        out["items"] = _clean(items, defs, stack, depth + 1)
    elif isinstance(items, list) and items:
        # Tuple validation (draft 4 form) has no Gemini equivalent: the first item's schema.
        out["items"] = _clean(items[0], defs, stack, depth + 1)
    elif gtype == "ARRAY" and isinstance(node.get("prefixItems"), list) and node["prefixItems"]:
        out["items"] = _clean(node["prefixItems"][0], defs, stack, depth + 1)

    if nullable:
        out["nullable"] = True
    return out


def _type(value: Any) -> str | None:
    if isinstance(value, str):
        return value.upper() if value in _TYPES else None
    if isinstance(value, list):
        rest = [v for v in value if v != "null"]
        if len(rest) == 1 and isinstance(rest[0], str) and rest[0] in _TYPES:
            return rest[0].upper()
    return None


def _merge_all_of(node: dict[str, Any], defs: dict[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
    """allOf: the parts' properties and required lists merged into the node (the common use)."""
    merged = {k: v for k, v in node.items() if k != "allOf"}
    for part in node["allOf"]:
        while isinstance(part, dict) and "$ref" in part:
            resolved = _resolve(part, defs, stack)
            if resolved is None:
                break
            part = resolved[0]
        if not isinstance(part, dict):
            continue
        for k, v in part.items():
            if k == "properties" and isinstance(v, dict):
                merged["properties"] = {**(merged.get("properties") or {}), **v}
            elif k == "required" and isinstance(v, list):
                merged["required"] = [*(merged.get("required") or []), *v]
            elif k not in merged:
                merged[k] = v
    return merged
