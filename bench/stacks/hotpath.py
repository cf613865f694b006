"""The minimal per-request work of a gateway hop, shared by every stack candidate.

Every candidate does exactly this so the comparison measures the HTTP server and client, not
differences in application code: parse the inbound JSON, build a fresh upstream body, parse the
upstream answer, build a fresh response; for streams, parse and re-serialise every SSE event.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import orjson

UPSTREAM_PATH = "/v1/chat/completions"
JSON_URL = os.environ.get("STACK_UPSTREAM", "http://127.0.0.1:18080") + UPSTREAM_PATH
SSE_URL = os.environ.get("STACK_UPSTREAM_SSE", "http://127.0.0.1:18082") + UPSTREAM_PATH
SSE_SHORT_URL = os.environ.get("STACK_UPSTREAM_SSE_SHORT", "http://127.0.0.1:18083") + UPSTREAM_PATH
UPSTREAM_HEADERS = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
_PASSTHROUGH = ("temperature", "max_tokens", "top_p", "stop", "tools", "tool_choice", "stream")


def build_upstream_body(raw: bytes) -> tuple[bytes, str | None]:
    """New upstream body, and the SSE URL to use when the request streams (None: not streaming)."""
    req = orjson.loads(raw)
    out: dict[str, object] = {"model": "gpt-4o-mini", "messages": req["messages"]}
    for key in _PASSTHROUGH:
        if key in req:
            out[key] = req[key]
    if not req.get("stream"):
        return orjson.dumps(out), None
    out["stream_options"] = {"include_usage": True}
    return orjson.dumps(out), SSE_SHORT_URL if req["model"].endswith("-short") else SSE_URL


def build_response(raw: bytes, model: str = "bench-model") -> bytes:
    resp = orjson.loads(raw)
    resp["model"] = model
    usage = resp.get("usage") or {}
    # A gateway computes cost from usage on every response; keep that arithmetic in the hot path.
    resp["x_cost_usd"] = usage.get("prompt_tokens", 0) * 0.15e-6 + usage.get("completion_tokens", 0) * 0.6e-6
    return orjson.dumps(resp)


class SSERewriter:
    """Incremental SSE re-writer: feed upstream bytes, get rewritten bytes for what is complete.

    Output for one upstream read is returned as one buffer so the server issues one write per read,
    not one per event (a per-event write is a syscall per token).
    """

    __slots__ = ("_buf", "events", "model")

    def __init__(self, model: str = "bench-model") -> None:
        self._buf = b""
        self.model = model
        self.events = 0

    def feed(self, data: bytes) -> bytes:
        buf = self._buf + data if self._buf else data
        parts = buf.split(b"\n\n")
        self._buf = parts.pop()
        return b"".join(self._rewrite(parts))

    def _rewrite(self, parts: list[bytes]) -> Iterator[bytes]:
        for part in parts:
            if not part.startswith(b"data: "):
                continue
            payload = part[6:]
            if payload == b"[DONE]":
                yield b"data: [DONE]\n\n"
                continue
            obj = orjson.loads(payload)
            obj["model"] = self.model
            self.events += 1
            yield b"data: " + orjson.dumps(obj) + b"\n\n"

    def flush(self) -> bytes:
        rest, self._buf = self._buf, b""
        return b"".join(self._rewrite([rest])) if rest.strip() else b""
