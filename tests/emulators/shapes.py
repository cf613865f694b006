"""Shape-level comparison of emulator output with golden transcripts (see tests/data/transcripts)."""

from __future__ import annotations

from typing import Any


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def mismatches(golden: Any, actual: Any, path: str = "$") -> list[str]:
    """Differences of structure between `golden` and `actual`; empty when the shapes agree."""
    gk, ak = _kind(golden), _kind(actual)
    if gk != ak:
        return [f"{path}: expected {gk}, got {ak} ({actual!r:.80})"]
    if gk == "object":
        out = []
        missing = sorted(set(golden) - set(actual))
        extra = sorted(set(actual) - set(golden))
        if missing:
            out.append(f"{path}: missing keys {missing}")
        if extra:
            out.append(f"{path}: unexpected keys {extra}")
        for key in sorted(set(golden) & set(actual)):
            out.extend(mismatches(golden[key], actual[key], f"{path}.{key}"))
        return out
    if gk == "array":
        if golden and all(_kind(g) not in ("object", "array") for g in golden):
            return [f"{path}[{i}]: expected {_kind(golden[0])}, got {_kind(a)}"
                    for i, a in enumerate(actual) if _kind(a) != _kind(golden[0])]
        if len(golden) != len(actual):
            return [f"{path}: expected {len(golden)} items, got {len(actual)}"]
        out = []
        for i, (g, a) in enumerate(zip(golden, actual, strict=True)):
            out.extend(mismatches(g, a, f"{path}[{i}]"))
        return out
    return []


def event_kind(vendor: str, event: dict[str, Any]) -> str:
    """A label for a stream event, so runs of the same label can be collapsed."""
    data = event["data"]
    if not isinstance(data, dict):
        return f"raw:{data}"
    if vendor == "anthropic":
        label = str(data.get("type"))
        if label == "content_block_start":
            label += ":" + str(data["content_block"].get("type"))
        if label == "content_block_delta":
            label += ":" + str(data["delta"].get("type"))
        return f"{event['event']}/{label}"
    if vendor == "openai":
        if not data.get("choices"):
            return "usage" if data.get("usage") else "no-choices"
        delta = data["choices"][0]["delta"]
        parts = []
        if "role" in delta:
            parts.append("role")
        elif "content" in delta:
            parts.append("content")
        if delta.get("tool_calls"):
            parts.append("tool_call_start" if "id" in delta["tool_calls"][0] else "tool_call_args")
        if data["choices"][0].get("finish_reason"):
            parts.append("finish")
        return "+".join(parts) or "empty"
    # gemini
    candidate = data["candidates"][0]
    parts = candidate["content"]["parts"]
    label = "thought" if parts and parts[0].get("thought") else \
        "function_call" if parts and "functionCall" in parts[0] else "text"
    return label + ("+finish" if candidate.get("finishReason") else "")


def runs(vendor: str, events: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for event in events:
        kind = event_kind(vendor, event)
        if out and out[-1][0] == kind:
            out[-1][1].append(event)
        else:
            out.append((kind, [event]))
    return out


def stream_mismatches(vendor: str, golden: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[str]:
    g_runs, a_runs = runs(vendor, golden), runs(vendor, actual)
    g_kinds, a_kinds = [k for k, _ in g_runs], [k for k, _ in a_runs]
    if g_kinds != a_kinds:
        return [f"event sequence differs:\n  golden: {g_kinds}\n  actual: {a_kinds}"]
    out = []
    for (kind, g_events), (_, a_events) in zip(g_runs, a_runs, strict=True):
        for label, g, a in (("first", g_events[0], a_events[0]), ("last", g_events[-1], a_events[-1])):
            if g["event"] != a["event"]:
                out.append(f"{kind} ({label}): event name {a['event']!r}, expected {g['event']!r}")
            out.extend(mismatches(g["data"], a["data"], f"{kind}({label})"))
    return out
