"""The few ASGI primitives the gateway needs: read a bounded body, send JSON, stream SSE.

No framework: a gateway has a dozen routes, and every microsecond of framework on the hot path
is latency added to every call (see docs/performance.md for the measurements).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from polyroute.core.errors import BodyTooLarge, InvalidRequest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_CT = (b"content-type", b"application/json")
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ClientDisconnected(Exception):
    pass


def new_request_id() -> str:
    """"req_", 14 hex digits of UNIX microseconds, 10 random ones. Ids that grow with time are
    appended at the end of the ledger's primary-key index instead of landing on a random page of
    it: with random ids the writer's CPU per row was 35 µs in an empty ledger and 79 µs at 200,000
    rows, against 22-25 µs (bench/ops/ledger_insert_cost.py). The random part keeps ids from workers
    and instances apart; it comes from `random` (re-seeded in every forked worker), not
    os.urandom: ids are not secrets, and a system call on every request lets the ledger writer's
    thread take the GIL in the middle of the request."""
    return f"req_{time.time_ns() // 1000:014x}{_random_bits(40):010x}"


_random_bits = random.getrandbits


def header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    cl = header(scope, b"content-length")
    if cl is not None:
        try:
            declared = int(cl)
        except ValueError:
            raise InvalidRequest("invalid Content-Length header") from None
        if declared > limit:
            raise BodyTooLarge(f"request body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientDisconnected
        body = msg.get("body", b"")
        if body:
            size += len(body)
            if size > limit:
                raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
            chunks.append(body)
        if not msg.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json_object(scope: Scope, receive: Receive, limit: int) -> dict[str, Any]:
    """A request body that must be a JSON object (an empty body is {}): the admin API's and the
    dashboard's bodies."""
    raw = await read_body(scope, receive, limit)
    try:
        parsed = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body must be a JSON object") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("the body must be a JSON object")
    return parsed


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, obj: Any, headers: Headers | None = None) -> None:
    body = orjson.dumps(obj)
    h = [JSON_CT, (b"content-length", str(len(body)).encode())]
    if headers:
        h.extend(headers)
    await send_bytes(send, status, body, h)


async def send_stream(
    receive: Receive, send: Send, headers: Headers, chunks: AsyncIterator[bytes]
) -> None:
    """Stream chunks, racing them against the client's disconnect.

    A client that goes away must cancel the upstream call, not leave it running to the end: the
    watcher cancels the task that is pulling chunks, which closes the upstream stream.
    """
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    task = asyncio.current_task()
    assert task is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                disconnected = True
                task.cancel()
                return

    watcher = asyncio.create_task(watch())
    try:
        async for chunk in chunks:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    except asyncio.CancelledError:
        if not disconnected:
            raise
        task.uncancel()
    finally:
        watcher.cancel()
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


class DisconnectGuard:
    """Cancels the current task when the client disconnects during a slow upstream call.

    The watcher is armed only after `arm_after` seconds: a watcher task for every request would
    cost about a tenth of the hot path's CPU budget, while a call that ends within that time
    costs the vendor little even if the client has left. Streams have their own watcher
    (send_stream) once the first byte is sent.
    """

    __slots__ = ("_handle", "_receive", "_task", "_watcher", "arm_after", "disconnected")

    def __init__(self, receive: Receive, arm_after: float = 0.5) -> None:
        self._receive = receive
        self.arm_after = arm_after
        self.disconnected = False
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None

    def __enter__(self) -> DisconnectGuard:
        self._task = asyncio.current_task()
        self._handle = asyncio.get_running_loop().call_later(self.arm_after, self._arm)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._watcher is not None:
            self._watcher.cancel()

    def _arm(self) -> None:
        self._handle = None
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        msg = await self._receive()
        if msg["type"] == "http.disconnect" and self._task is not None:
            self.disconnected = True
            self._task.cancel()
