"""uvicorn's httptools protocol, writing a response's head and body in one send().

ASGI hands a response over in two messages (start, then body) and uvicorn writes each at once:
two send() system calls per small response. On loopback a send() also runs the receiver's TCP
processing, so the second one costs about as much as all the JSON work of a request
(docs/performance.md). Here the head is held back and goes out with the first body bytes; if
nothing follows within the same turn of the event loop (HEAD, 204, a stream whose first event
is slow), a callback sends it alone, as before. Everything else is uvicorn's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD_START = b"HTTP/1.1 "
_HEAD_END = b"\r\n\r\n"


class CoalescingTransport:
    """A transport whose first write of a response head waits for the next write (or the end of
    this turn of the event loop). Any other use of the transport flushes what is held first."""

    __slots__ = ("_held", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._scheduled = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(_HEAD_START) and data.endswith(_HEAD_END):
            # uvicorn writes a response head as one piece, starting with the status line; a body
            # that happened to look the same would only be delayed to the end of this turn.
            self._held = data
            if not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._flush_soon)
        else:
            self._transport.write(data)

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        # Reads of transport state (get_extra_info, pause_reading, set_protocol, ...): whatever
        # the caller does next must not overtake the held head.
        self.flush()
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # FlowControl keeps the real transport (it pauses reading and watches write buffers);
        # every response goes through the wrapper, which RequestResponseCycle gets from here.
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
