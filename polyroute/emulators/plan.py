"""Decide, vendor-neutrally, what the emulated model says to one request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .behaviour import Behaviour, ToolCall
from .schema_example import example_for_schema
from .tokens import count_tokens, truncate_to_tokens


@dataclass(frozen=True)
class Intent:
    """What the request asks for, extracted by each vendor module from its own wire format."""

    user_text: str = ""
    forced_tool: str | None = None
    json_mode: bool = False
    json_schema: Any = None
    thinking_requested: bool = False
    max_output_tokens: int | None = None


@dataclass(frozen=True)
class Answer:
    text: str | None
    tool_calls: tuple[ToolCall, ...]
    thinking: str | None
    truncated: bool

    @property
    def output_tokens(self) -> int:
        """Visible output: text plus each call's name and JSON arguments (thinking excluded)."""
        total = count_tokens(self.text or "")
        for call in self.tool_calls:
            total += count_tokens(call.name) + count_tokens(arguments_json(call))
        return total

    @property
    def thinking_tokens(self) -> int:
        return count_tokens(self.thinking or "")


def arguments_json(call: ToolCall) -> str:
    return json.dumps(call.arguments, separators=(",", ":"), ensure_ascii=False)


def plan_answer(behaviour: Behaviour, intent: Intent) -> Answer:
    thinking = behaviour.thinking
    if thinking is None and intent.thinking_requested:
        thinking = f"Thinking about: {intent.user_text}"

    text: str | None
    calls: tuple[ToolCall, ...] = ()
    if behaviour.tool_calls:
        calls = tuple(behaviour.tool_calls)
        text = behaviour.text
    elif intent.forced_tool is not None:
        calls = (ToolCall(intent.forced_tool, dict(behaviour.forced_tool_arguments or {})),)
        text = None
    elif intent.json_mode:
        value = behaviour.json_output
        if value is None:
            value = (example_for_schema(intent.json_schema, intent.user_text)
                     if intent.json_schema is not None else {"echo": intent.user_text})
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = behaviour.text if behaviour.text is not None else behaviour.echo_prefix + intent.user_text

    truncated = behaviour.max_tokens_reached
    limit = intent.max_output_tokens
    if text is not None and limit is not None and count_tokens(text) > limit:
        text = truncate_to_tokens(text, limit)
        truncated = True
    return Answer(text=text, tool_calls=calls, thinking=thinking, truncated=truncated)
