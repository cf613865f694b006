"""Reject what the Gemini API (generativelanguage v1beta) rejects in `Schema` objects.

`functionDeclarations[].parameters`, `.response` and `generationConfig.responseSchema` are the
protobuf message `Schema`, "a select subset of an OpenAPI 3.0 schema object". Protobuf JSON
parsing refuses every field the message does not declare, with
`Invalid JSON payload received. Unknown name "X" at 'path': Cannot find field.`
So the accepted keys are exactly the fields of `Schema` in the v1beta reference (and in the
google-genai SDK's `types.Schema`, minus the Vertex-only `additionalProperties`/`defs`/`ref`, which
the SDK itself refuses in Gemini Developer API mode), each in lowerCamel or snake_case spelling:

  type format title description nullable enum maxItems minItems properties required
  minProperties maxProperties minLength maxLength pattern example anyOf propertyOrdering
  default items minimum maximum

Everything else is refused: `additionalProperties`, `$schema`, `$ref`, `$defs`, `definitions`,
`$id`, `const`, `oneOf`, `allOf`, `not`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`,
`patternProperties`, `propertyNames`, `uniqueItems`, `examples`, `prefixItems`, ...
A JSON-Schema type list (`"type": ["string", "null"]`) is refused too (the field is not repeated).
The type name is accepted in any case ("object" or "OBJECT"), as the REST examples use lower case.
`parametersJsonSchema` / `responseJsonSchema` take full JSON Schema and are not checked.
Paths in the messages use the proto's snake_case names and index map entries
(`properties[2].value`), as the real API does.
"""

from __future__ import annotations

import re
from typing import Any

SCHEMA_FIELDS: frozenset[str] = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf",
    "propertyOrdering", "default", "items", "minimum", "maximum",
})
TYPE_NAMES: frozenset[str] = frozenset({
    "TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL",
})


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_BY_SPELLING: dict[str, str] = {**{f: f for f in SCHEMA_FIELDS}, **{_snake(f): f for f in SCHEMA_FIELDS}}


def schema_violations(schema: Any, path: str) -> list[tuple[str, str]]:
    """(field path, description) for every problem in `schema`; empty when it is acceptable."""
    out: list[tuple[str, str]] = []
    _walk(schema, path, out)
    return out


def _walk(schema: Any, path: str, out: list[tuple[str, str]]) -> None:
    if not isinstance(schema, dict):
        out.append((path, f"Invalid JSON payload received. Expected an object at '{path}'."))
        return
    for key, value in schema.items():
        field = _BY_SPELLING.get(key)
        if field is None:
            out.append((path, f"Invalid JSON payload received. Unknown name \"{key}\" at '{path}': "
                              "Cannot find field."))
            continue
        if field == "type":
            if isinstance(value, list):
                out.append((f"{path}.type", "Invalid JSON payload received. Proto field is not repeating, "
                                            f"cannot start list. at '{path}.type'"))
            elif not isinstance(value, str) or value.upper() not in TYPE_NAMES:
                out.append((f"{path}.type", f"Invalid value at '{path}.type' "
                                            f"(type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "
                                            f"\"{value}\""))
        elif field == "properties" and isinstance(value, dict):
            for i, sub in enumerate(value.values()):
                _walk(sub, f"{path}.properties[{i}].value", out)
        elif field == "items":
            _walk(value, f"{path}.items", out)
        elif field == "anyOf" and isinstance(value, list):
            for i, sub in enumerate(value):
                _walk(sub, f"{path}.any_of[{i}]", out)


def request_violations(body: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for t, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict):
            continue
        declarations = tool.get("functionDeclarations", tool.get("function_declarations")) or []
        for d, decl in enumerate(declarations):
            if not isinstance(decl, dict):
                continue
            base = f"tools[{t}].function_declarations[{d}]"
            has_schema = "parameters" in decl
            has_json = "parametersJsonSchema" in decl or "parameters_json_schema" in decl
            if has_schema and has_json:
                out.append((base, f"Invalid value at '{base}': parameters and parameters_json_schema are "
                                  "mutually exclusive."))
            if has_schema:
                out.extend(schema_violations(decl["parameters"], f"{base}.parameters"))
            if "response" in decl:
                out.extend(schema_violations(decl["response"], f"{base}.response"))
    config = body.get("generationConfig", body.get("generation_config"))
    if isinstance(config, dict):
        schema = config.get("responseSchema", config.get("response_schema"))
        if schema is not None:
            out.extend(schema_violations(schema, "generation_config.response_schema"))
    return out
