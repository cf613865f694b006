"""One HTTP/1.1 connection (asyncio.Protocol, responses parsed by httptools/llhttp) and the
response it is currently reading.

Life of a request on a connection: `start()` writes the request in one write; the parser's
callbacks fill the `Response`; the consumer waits on one future that is resolved only when it has
something new to look at. When the message completes, the connection goes straight back to its
pool (the body is already buffered in the Response), or is closed if the server asked for that.

Failure rules:
- Nothing of the response arrived and the connection was a reused keep-alive one that the server
  closed: `StaleConnection`, which the client retries once on a fresh connection.
- Anything else (reset mid-body, malformed bytes, read timeout, a consumer cancelled or gone)
  closes the connection; it never returns to the pool with a response half read.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from .decoding import Decoder, decoder_for
from .errors import (
    BodyTooLarge,
    ConnectionReset,
    ReadTimeout,
    RemoteProtocolError,
    TransportError,
)
from .headers import Headers

if TYPE_CHECKING:
    from .pool import Pool

# A streaming consumer that falls this far behind stops the socket being read (TCP backpressure
# to the provider) until it catches up.
HIGH_WATER = 256 * 1024


class StaleConnection(ConnectionReset):
    """A reused connection was closed by the server before any byte of the response arrived."""


class Connection(asyncio.Protocol):
    __slots__ = (
        "_encoding",
        "_eof_body",
        "_framed",
        "_got_bytes",
        "_head",
        "_interim",
        "_last_rx",
        "_loop",
        "_parser",
        "_paused",
        "_raw_headers",
        "_read_timeout",
        "_resp",
        "_timer",
        "_write_paused",
        "discarded",
        "idle_since",
        "lost",
        "pool",
        "reused",
        "transport",
    )

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self.pool = pool
        self._loop = loop
        self._read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._resp: Response | None = None
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._encoding: bytes | None = None
        self._framed = False
        self._eof_body = False
        self._head = False
        self._interim = False
        self._got_bytes = False
        self._last_rx = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._write_paused = False
        self.reused = False
        self.lost = False
        # True until the pool has counted it (a connect that fails half-way must not free a slot).
        self.discarded = True
        self.idle_since = 0.0

    # --- used by the pool and the client ---------------------------------------------------

    def start(self, resp: Response, payload: bytes, head: bool) -> None:
        """Send one request; `resp` receives its answer."""
        self._resp = resp
        resp._conn = self
        self._raw_headers = []
        self._encoding = None
        self._framed = False
        self._eof_body = False
        self._head = head
        self._got_bytes = False
        loop = self._loop
        self._last_rx = now = loop.time()
        self._timer = loop.call_at(now + self._read_timeout, self._on_timer)
        assert self.transport is not None
        self.transport.write(payload)

    def usable(self, now: float, expiry: float) -> bool:
        tr = self.transport
        return not self.lost and tr is not None and not tr.is_closing() and now - self.idle_since < expiry

    def close(self, abort: bool) -> None:
        tr = self.transport
        if tr is not None and not tr.is_closing():
            if abort:
                tr.abort()
            else:
                tr.close()

    def detach(self, exc: TransportError | None = None) -> None:
        """Stop reading for the current response and close the connection (consumer gone)."""
        self._stop_timer()
        resp = self._resp
        self._resp = None
        if resp is not None and exc is not None:
            resp._fail(exc)
        self.pool.discard(self, abort=True)

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        if self._resp is None:
            # Bytes while idle (a 408 before the server's idle close, or garbage): unusable.
            self.pool.discard(self, abort=True)
            return
        self._got_bytes = True
        self._last_rx = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(RemoteProtocolError(f"{self.pool.label} switched protocols, which was not asked for"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, TransportError):
                self._fail(cause)
            else:
                self._fail(RemoteProtocolError(f"malformed HTTP response from {self.pool.label}: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._stop_timer()
        resp = self._resp
        if resp is not None:
            self._resp = None
            if resp.status == 0:
                if self.reused and not self._got_bytes:
                    resp._fail(StaleConnection(f"{self.pool.label} closed a kept-alive connection before answering"))
                else:
                    resp._fail(ConnectionReset(f"{self.pool.label} closed the connection before the response headers"))
            elif self._eof_body and exc is None:
                resp._finish()  # a body without Content-Length or chunking ends when the server closes
            else:
                resp._fail(ConnectionReset(f"{self.pool.label} closed the connection before the response body ended"))
        self.pool.discard(self, abort=True)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False

    # --- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))
        n = len(name)
        if n == 16 or n == 14 or n == 17:
            lname = name.lower()
            if lname == b"content-encoding":
                self._encoding = value
            elif lname == b"content-length" or lname == b"transfer-encoding":
                self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            # 1xx interim answer (100 Continue, 103 Early Hints): the real response follows.
            self._interim = True
            self._raw_headers = []
            self._encoding = None
            self._framed = False
            return
        resp = self._resp
        assert resp is not None
        resp.status = status
        resp.headers = Headers(self._raw_headers)
        bodiless = self._head or status == 204 or status == 304
        if self._encoding is not None and not bodiless:
            resp._decoder = decoder_for(self._encoding)
        if self._head:
            # llhttp cannot be told that this answers a HEAD and would wait for a body: finish
            # here and give the connection a fresh parser for its next response.
            keep = self._parser.should_keep_alive()
            self._parser = httptools.HttpResponseParser(self)
            self._complete(keep)
            return
        self._eof_body = not self._framed and not bodiless
        resp._wake()

    def on_body(self, body: bytes) -> None:
        self._resp._feed(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete(self._parser.should_keep_alive())

    # --- internals ---------------------------------------------------------------------------

    def _complete(self, keep_alive: bool) -> None:
        resp = self._resp
        self._resp = None
        self._stop_timer()
        if self._paused:
            self.resume()
        if resp is not None:
            resp._finish()
        if keep_alive:
            self.pool.release(self)
        else:
            self.pool.discard(self, abort=False)

    def _fail(self, exc: TransportError) -> None:
        self.detach(exc)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        resp = self._resp
        if resp is None:
            return
        now = self._loop.time()
        if self._paused or self._write_paused or (resp._chunks and not resp._collect):
            # Our consumer (or our own upload) is the slow side, not the server.
            self._last_rx = now
        deadline = self._last_rx + self._read_timeout
        if deadline > now:
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        self._fail(ReadTimeout(f"{self.pool.label} sent nothing for {self._read_timeout:g} s"))


class Response:
    """Status and headers once `HTTPClient.stream` returns; the body by `read()` or by iterating
    (`async for chunk in resp`: each step returns everything that arrived since the last one).

    `release()` (or `async with`) ends it: a body read to the end has already given its
    connection back to the pool; one abandoned part-way closes the connection."""

    __slots__ = (
        "_body",
        "_chunks",
        "_collect",
        "_conn",
        "_decoder",
        "_done",
        "_exc",
        "_limit",
        "_loop",
        "_max_body",
        "_size",
        "_waiter",
        "headers",
        "status",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, collect: bool, max_body: int) -> None:
        self._loop = loop
        self.status = 0
        self.headers: Headers = _NO_HEADERS
        self._conn: Connection | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._collect = collect
        self._max_body = max_body
        self._limit = max_body if collect else HIGH_WATER
        self._done = False
        self._exc: TransportError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Decoder | None = None
        self._body: bytes | None = None

    # --- consumer side -----------------------------------------------------------------------

    @property
    def body(self) -> bytes:
        """The whole body, after `read()` (HTTPClient.request reads it for you)."""
        if self._body is None:
            raise RuntimeError("the body has not been read; await read() first")
        return self._body

    async def read(self) -> bytes:
        """The rest of the body (decoded), bounded by the client's max_body_size."""
        if self._body is not None:
            return self._body
        if not self._collect:
            self._collect = True
            self._limit = self._max_body
            if self._size > self._limit:
                self._abandon(BodyTooLarge(f"response body larger than {self._max_body} bytes"))
            elif self._conn is not None:
                self._conn.resume()
        while not self._done and self._exc is None:
            await self._wait()
        if self._exc is not None:
            raise self._exc
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        self._body = body
        return body

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        chunks = self._chunks
        while not chunks:
            if self._exc is not None:
                raise self._exc
            if self._done:
                raise StopAsyncIteration
            await self._wait()
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        conn = self._conn
        if conn is not None and conn._paused:
            conn.resume()
        return data

    def release(self) -> None:
        """Done with this response. Closes the connection if the body was not read to the end."""
        if not self._done:
            self._abandon(TransportError("the response was released before its body ended"))

    async def aclose(self) -> None:
        self.release()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    @property
    def complete(self) -> bool:
        """The whole message arrived (its connection is back in the pool or closed)."""
        return self._done

    def __repr__(self) -> str:
        return f"<Response {self.status} done={self._done}>"

    # --- producer side (the connection) --------------------------------------------------------

    async def _wait(self) -> None:
        w = self._loop.create_future()
        self._waiter = w
        try:
            await w
        except BaseException:
            # Cancelled (client gone, deadline): the connection is mid-response and cannot be reused.
            self._abandon(TransportError("the request was cancelled"))
            raise
        finally:
            self._waiter = None

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.decompress(data)
            if not data:
                return
        self._chunks.append(data)
        self._size += len(data)
        if self._size > self._limit:
            if self._collect:
                raise BodyTooLarge(f"response body larger than {self._max_body} bytes")
            if self._conn is not None:
                self._conn.pause()
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _finish(self) -> None:
        if self._decoder is not None:
            try:
                tail = self._decoder.flush()
            except RemoteProtocolError as exc:
                self._exc = exc
                tail = b""
            if tail:
                self._chunks.append(tail)
                self._size += len(tail)
        self._done = True
        self._conn = None
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, exc: TransportError) -> None:
        if self._exc is None and not self._done:
            self._exc = exc
        self._conn = None
        self._wake()

    def _abandon(self, exc: TransportError) -> None:
        conn = self._conn
        self._conn = None
        self._chunks.clear()
        self._size = 0
        if self._exc is None and not self._done:
            self._exc = exc
        if conn is not None:
            conn.detach()


_NO_HEADERS = Headers()
