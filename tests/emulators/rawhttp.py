"""Plain HTTP for tests that must send what no SDK would (bad bodies, unknown schema keywords)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    def sse(self) -> list[dict[str, Any]]:
        """Server-sent events as [{"event": name-or-None, "data": parsed-or-raw-string}]."""
        events: list[dict[str, Any]] = []
        for block in self.text.replace("\r\n", "\n").split("\n\n"):
            if not block.strip():
                continue
            name = None
            data_lines = []
            for line in block.split("\n"):
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data_lines.append(line[5:].lstrip(" "))
            data = "\n".join(data_lines)
            try:
                parsed: Any = json.loads(data)
            except ValueError:
                parsed = data
            events.append({"event": name, "data": parsed})
        return events


def request(base_url: str, method: str, path: str, *, body: Any = None, raw: bytes | None = None,
            headers: dict[str, str] | None = None, query: dict[str, str] | None = None,
            timeout: float = 10.0) -> RawResponse:
    url = base_url + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return RawResponse(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                               resp.read().decode("utf-8"))
    except urllib.error.HTTPError as err:
        return RawResponse(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read().decode("utf-8"))
