"""HTTP mechanics shared by the three emulators: JSON bodies, SSE streams and injected failures."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from aiohttp import web

from .behaviour import Behaviour
from .core import Emulator

# What a client sees for `malformed` non-streaming answers: JSON cut in the middle.
TRUNCATED_JSON = b'{"id": "emulated-malformed", "choices": [{"index": 0, "message": {"role": "assis'


@dataclass(frozen=True)
class Event:
    """One server-sent event; `data` is the already serialised payload."""

    data: str
    event: str | None = None

    def encode(self, sep: str) -> bytes:
        head = f"event: {self.event}{sep}" if self.event else ""
        return f"{head}data: {self.data}{sep}{sep}".encode()


def dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (optional request fields)."""
    return value if isinstance(value, dict) else {}


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:length]


def json_response(payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload, ensure_ascii=False).encode(),
                        content_type="application/json", headers=headers)


def retry_headers(behaviour: Behaviour) -> dict[str, str]:
    if behaviour.retry_after is None:
        return {}
    seconds = behaviour.retry_after
    headers = {"retry-after": str(math.ceil(seconds))}
    if seconds != int(seconds):
        # Sub-second waits only survive in the millisecond header, which the OpenAI and
        # Anthropic SDKs read first.
        headers["retry-after-ms"] = str(round(seconds * 1000))
    return headers


async def read_json(request: web.Request) -> tuple[Any, bool]:
    """(body, ok): ok is False when the body is not JSON."""
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8")), True
    except (ValueError, UnicodeDecodeError):
        return None, False


def abort(request: web.Request) -> NoReturn:
    """Drop the TCP connection without finishing the response (no terminating chunk)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # Cancelling the handler stops aiohttp from trying to finish a response on a dead socket.
    raise asyncio.CancelledError


async def before_answer(request: web.Request, emu: Emulator, behaviour: Behaviour, *, stream: bool,
                        error: Callable[[Behaviour], web.Response]) -> web.StreamResponse | None:
    """Apply the failures that happen before an answer starts; None means go on and answer."""
    if behaviour.headers_delay:
        await asyncio.sleep(behaviour.headers_delay)
    if behaviour.hang:
        await emu.wait_shutdown()
        abort(request)
    if behaviour.status is not None and (behaviour.error_after is None or not stream):
        return error(behaviour)
    if not stream:
        if behaviour.first_token_delay:
            await asyncio.sleep(behaviour.first_token_delay)
        if behaviour.disconnect_after is not None:
            abort(request)
        if behaviour.malformed is not None:
            return web.Response(status=200, body=TRUNCATED_JSON, content_type="application/json")
    return None


async def send_events(request: web.Request, behaviour: Behaviour, events: Sequence[Event], *,
                      headers: dict[str, str], sep: str = "\n",
                      error_event: Callable[[], Event] | None = None) -> web.StreamResponse:
    """Stream `events`, applying the behaviour's pace and mid-stream failures.

    Failures counted in events: `disconnect_after`, `error_after`, `malformed_after` = K means
    K events are delivered whole first (K >= len(events) means after the last one).
    """
    response = web.StreamResponse(status=200, headers=headers)
    await response.prepare(request)
    try:
        if behaviour.first_token_delay:
            await asyncio.sleep(behaviour.first_token_delay)
        for index in range(len(events) + 1):
            # Failures keep the pace: they come where the next event would have.
            if 0 < index < len(events) and behaviour.chunk_delay:
                await asyncio.sleep(behaviour.chunk_delay)
            if await _inject(request, response, behaviour, events, index, sep, error_event):
                return response
            if index == len(events):
                break
            await response.write(events[index].encode(sep))
        await response.write_eof()
    except ConnectionError:
        # The client went away mid-stream; nothing left to do.
        pass
    return response


def _due(after: int | None, index: int, total: int) -> bool:
    return after is not None and (index == after or (index == total and after > total))


async def _inject(request: web.Request, response: web.StreamResponse, behaviour: Behaviour,
                  events: Sequence[Event], index: int, sep: str, error_event: Callable[[], Event] | None) -> bool:
    total = len(events)
    if _due(behaviour.disconnect_after, index, total):
        abort(request)
    if error_event is not None and _due(behaviour.error_after, index, total):
        await response.write(error_event().encode(sep))
        await response.write_eof()
        return True
    if behaviour.malformed is not None and _due(behaviour.malformed_after, index, total):
        # Named-event streams (Anthropic) skip unnamed events, so the bad one borrows a real name.
        name = events[min(index, total - 1)].event if events else None
        head = f"event: {name}{sep}" if name else ""
        if behaviour.malformed == "invalid_json":
            await response.write(f"{head}data: {{not json at all{sep}{sep}".encode())
        else:
            await response.write(f'{head}data: {{"type": "emulated-trunc'.encode())
        await response.write_eof()
        return True
    return False
