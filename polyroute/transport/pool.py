"""Keep-alive connections to one origin (scheme, host, port), at most `limit` of them.

Idle connections are reused last-in first-out (the warmest socket first; the coldest ones age out),
checked for closure and age before reuse, and closed by a sweep once idle longer than the
keep-alive expiry. A request that finds the pool full waits for a connection to come back.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from functools import partial
from typing import TYPE_CHECKING

from .connection import Connection
from .dns import is_ip_literal
from .errors import ConnectError, ConnectTimeout, PoolClosed

if TYPE_CHECKING:
    from .client import HTTPClient


class Pool:
    __slots__ = (
        "_factory",
        "_literal",
        "_loop",
        "_sweeper",
        "client",
        "closed",
        "conns",
        "host",
        "idle",
        "label",
        "limit",
        "opened",
        "port",
        "server_hostname",
        "size",
        "ssl",
        "stale_retries",
        "waiters",
    )

    def __init__(self, client: HTTPClient, scheme: str, host: str, port: int, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.host = host
        self.port = port
        self.label = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
        self.ssl: ssl.SSLContext | None = client.ssl_context if scheme == "https" else None
        self.server_hostname = host if self.ssl is not None else None
        self.limit = client.max_connections
        self._loop = loop
        self._literal = is_ip_literal(host)
        self._factory = partial(Connection, self, loop, client.read_timeout)
        self.idle: deque[Connection] = deque()
        self.waiters: deque[asyncio.Future[Connection | None]] = deque()
        self.conns: set[Connection] = set()
        self.size = 0  # connections owned: connecting, busy or idle
        self._sweeper: asyncio.TimerHandle | None = None
        self.closed = False
        self.opened = 0
        self.stale_retries = 0

    def take_idle(self) -> Connection | None:
        idle = self.idle
        if not idle:
            return None
        now = self._loop.time()
        expiry = self.client.keepalive_expiry
        while idle:
            conn = idle.pop()
            if conn.discarded:
                continue
            if conn.usable(now, expiry):
                return conn
            self.discard(conn, abort=False)
        return None

    async def acquire(self, fresh: bool) -> Connection:
        """An idle connection (unless `fresh`), a new one, or the next one released when full."""
        while True:
            if self.closed:
                raise PoolClosed(f"the HTTP client for {self.label} is closed")
            if not fresh:
                conn = self.take_idle()
                if conn is not None:
                    return conn
            if self.size < self.limit:
                self.size += 1
                try:
                    return await self._connect()
                except BaseException:
                    self.size -= 1
                    self._wake_one()
                    raise
            fut: asyncio.Future[Connection | None] = self._loop.create_future()
            self.waiters.append(fut)
            try:
                got = await fut
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    # Handed something just as we were cancelled: pass it on.
                    handed = fut.result()
                    if handed is not None:
                        self.release(handed)
                    else:
                        self._wake_one()
                else:
                    try:
                        self.waiters.remove(fut)
                    except ValueError:
                        pass
                raise
            if got is not None:
                return got
            # None: a slot was freed (a connection closed); loop and take it if still free.

    def release(self, conn: Connection) -> None:
        """A connection whose response completed and may be kept alive."""
        if self.closed or conn.lost or conn.discarded:
            self.discard(conn, abort=False)
            return
        conn.reused = True
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        conn.idle_since = self._loop.time()
        self.idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self._loop.call_at(conn.idle_since + self.client.keepalive_expiry, self._sweep)

    def discard(self, conn: Connection, abort: bool) -> None:
        """Close a connection and free its slot (idempotent)."""
        if conn.discarded:
            conn.close(abort)
            return
        conn.discarded = True
        self.size -= 1
        self.conns.discard(conn)
        conn.close(abort)
        self._wake_one()

    def close(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.conns):
            conn.detach(PoolClosed(f"the HTTP client for {self.label} was closed"))
        self.idle.clear()
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(PoolClosed(f"the HTTP client for {self.label} was closed"))

    def _wake_one(self) -> None:
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._loop.time()
        expiry = self.client.keepalive_expiry
        keep: deque[Connection] = deque()
        for conn in self.idle:
            if conn.discarded:
                continue
            if conn.usable(now, expiry):
                keep.append(conn)
            else:
                self.discard(conn, abort=False)
        self.idle = keep
        if keep:
            self._sweeper = self._loop.call_at(min(c.idle_since for c in keep) + expiry, self._sweep)

    async def _connect(self) -> Connection:
        client = self.client
        loop = self._loop
        try:
            async with asyncio.timeout(client.connect_timeout):
                if self._literal:
                    addrs = [(0, self.host)]
                else:
                    addrs = await client.resolver.resolve(self.host, self.port)
                last: OSError | None = None
                for family, addr in addrs:
                    try:
                        _, conn = await loop.create_connection(
                            self._factory, addr, self.port, family=family, ssl=self.ssl,
                            server_hostname=self.server_hostname,
                        )
                    except OSError as exc:  # ssl.SSLError is an OSError too
                        last = exc
                        continue
                    break
                else:
                    if not self._literal:
                        client.resolver.forget(self.host, self.port)
                    raise last or OSError("no address to connect to")
        except TimeoutError:
            raise ConnectTimeout(
                f"connecting to {self.label} took longer than {client.connect_timeout:g} s"
            ) from None
        except ssl.SSLError as exc:
            raise ConnectError(f"TLS handshake with {self.label} failed: {exc}") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self.label}: {exc}") from None
        if self.closed:
            conn.close(abort=True)
            raise PoolClosed(f"the HTTP client for {self.label} is closed")
        if conn.lost:
            raise ConnectError(f"{self.label} closed the connection right after accepting it")
        self.opened += 1
        conn.discarded = False
        self.conns.add(conn)
        return conn
