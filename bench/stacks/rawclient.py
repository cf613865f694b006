"""A hand-written pooled HTTP/1.1 client on asyncio.Protocol + httptools: the ceiling reference.

Not a recommendation to ship (no TLS, proxies, redirects, retries): it shows how much of the
per-request cost is the general-purpose client library rather than unavoidable work.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools
from hotpath import UPSTREAM_HEADERS


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.queue: asyncio.Queue[bytes | None] | None = None
        self.done: asyncio.Future[None] | None = None
        self.keep_alive = True
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transport is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.queue is not None:
            self.queue.put_nowait(None)

    def on_body(self, body: bytes) -> None:
        assert self.queue is not None
        self.queue.put_nowait(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        assert self.queue is not None
        self.queue.put_nowait(None)


class _Pool:
    def __init__(self, url: str) -> None:
        u = urlsplit(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        self.idle: deque[_Conn] = deque()
        hdrs = "".join(f"{k}: {v}\r\n" for k, v in UPSTREAM_HEADERS.items())
        self.head = f"POST {u.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{hdrs}".encode()

    async def acquire(self) -> _Conn:
        while self.idle:
            c = self.idle.pop()
            if not c.lost:
                return c
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_Conn, self.host, self.port)
        return proto

    async def request(self, body: bytes) -> AsyncIterator[bytes]:
        c = await self.acquire()
        c.queue = asyncio.Queue()
        assert c.transport is not None
        c.transport.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        while (chunk := await c.queue.get()) is not None:
            yield chunk
        if c.keep_alive and not c.lost:
            self.idle.append(c)
        else:
            c.transport.close()


class RawUpstream:
    def __init__(self) -> None:
        self._pools: dict[str, _Pool] = {}

    def _pool(self, url: str) -> _Pool:
        pool = self._pools.get(url)
        if pool is None:
            pool = self._pools[url] = _Pool(url)
        return pool

    async def post(self, url: str, body: bytes) -> bytes:
        return b"".join([c async for c in self._pool(url).request(body)])

    def stream(self, url: str, body: bytes) -> AsyncIterator[bytes]:
        return self._pool(url).request(body)
