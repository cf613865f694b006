"""Every API request an emulator receives, kept for assertions."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    """One received request. Header names are lower-cased; `body` is the parsed JSON or None."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw_body: str
    received_at: float = field(default_factory=time.time)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "raw_body": self.raw_body,
            "received_at": self.received_at,
        }


def make_record(method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes) -> RecordedRequest:
    text = raw.decode("utf-8", errors="replace")
    body: Any = None
    if text.strip():
        try:
            body = json.loads(text)
        except ValueError:
            body = None
    return RecordedRequest(method, path, query, {k.lower(): v for k, v in headers.items()}, body, text)


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def append(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)

    def items(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
