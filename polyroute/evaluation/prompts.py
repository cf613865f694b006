"""The prompts file of `polyroute compare`: JSONL, one prompt per line.

    {"prompt": "What is 2+2?", "reference": "4", "task": "math", "id": "q1"}
    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}]}

`prompt` (a user message) or `messages` (OpenAI chat messages) is required; `reference` (the
correct answer), `task` (a label for reports), `id` (default: the line number) and `match` (the
reference scoring method for this line, see `scoring.METHODS`) are optional.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from polyroute.core import types as t
from polyroute.core.errors import GatewayError
from polyroute.evaluation.scoring import METHODS
from polyroute.inbound.openai_chat import parse_request

_FIELDS = {"prompt", "messages", "reference", "task", "id", "match"}


class PromptsError(ValueError):
    """The prompts file is not valid; the message names the file and the line."""


@dataclass(frozen=True)
class PromptItem:
    id: str
    messages: list[t.Message]
    reference: str | None = None
    task: str = ""
    match: str | None = None

    @property
    def text(self) -> str:
        """The prompt as routing records carry it (the same text `ChatRequest.prompt_text` gives)."""
        return "\n".join(m.text() for m in self.messages)


def parse_messages(raw: Any) -> list[t.Message]:
    """OpenAI chat messages -> canonical messages, through the inbound translator itself."""
    body = orjson.dumps({"model": "-", "messages": raw})
    return parse_request(body).messages


def parse_item(obj: Any, default_id: str) -> PromptItem:
    if not isinstance(obj, dict):
        raise ValueError("each line must be a JSON object")
    unknown = set(obj) - _FIELDS
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)} (allowed: {sorted(_FIELDS)})")
    prompt, raw_messages = obj.get("prompt"), obj.get("messages")
    if (prompt is None) == (raw_messages is None):
        raise ValueError("give exactly one of 'prompt' (a string) or 'messages' (a list)")
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("'prompt' must be a non-empty string")
        messages = [t.Message(role="user", content=[t.TextPart(text=prompt)])]
    else:
        if not isinstance(raw_messages, list) or not raw_messages:
            raise ValueError("'messages' must be a non-empty list of chat messages")
        try:
            messages = parse_messages(raw_messages)
        except GatewayError as exc:
            raise ValueError(f"'messages' is not valid: {exc.message}") from None
    reference = obj.get("reference")
    if reference is not None and not isinstance(reference, str | int | float):
        raise ValueError("'reference' must be a string (or a number)")
    match = obj.get("match")
    if match is not None and match not in METHODS:
        raise ValueError(f"'match' must be one of {list(METHODS)}")
    item_id = obj.get("id", default_id)
    return PromptItem(
        id=str(item_id),
        messages=messages,
        reference=None if reference is None else str(reference),
        task=str(obj.get("task") or ""),
        match=match,
    )


def load_prompts(path: str | Path) -> list[PromptItem]:
    items: list[PromptItem] = []
    seen: set[str] = set()
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise PromptsError(f"{path}: cannot read the prompts file ({exc.strerror})") from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = parse_item(json.loads(line), str(lineno))
            except (ValueError, json.JSONDecodeError) as exc:
                raise PromptsError(f"{path}:{lineno}: {exc}") from None
            if item.id in seen:
                raise PromptsError(f"{path}:{lineno}: duplicate id {item.id!r}")
            seen.add(item.id)
            items.append(item)
    if not items:
        raise PromptsError(f"{path}: no prompts")
    return items
