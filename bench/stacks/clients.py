"""Pooled keep-alive upstream clients behind one tiny interface, selected by STACK_CLIENT.

Each client is created lazily inside the server's running event loop (servers differ in when
their loop exists) and reused for every request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

from hotpath import UPSTREAM_HEADERS

POOL = 256


class Upstream(Protocol):
    async def post(self, url: str, body: bytes) -> bytes: ...

    def stream(self, url: str, body: bytes) -> AsyncIterator[bytes]: ...


class AiohttpUpstream:
    def __init__(self) -> None:
        import aiohttp

        conn = aiohttp.TCPConnector(limit=POOL, limit_per_host=POOL, keepalive_timeout=300, ttl_dns_cache=None)
        self._s = aiohttp.ClientSession(
            connector=conn,
            headers=UPSTREAM_HEADERS,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def post(self, url: str, body: bytes) -> bytes:
        async with self._s.post(url, data=body) as r:
            return await r.read()

    async def stream(self, url: str, body: bytes) -> AsyncIterator[bytes]:
        async with self._s.post(url, data=body) as r:
            async for chunk in r.content.iter_any():
                yield chunk


class HttpxUpstream:
    """httpx (module name given so httpx and the httpx2 fork can both be measured)."""

    def __init__(self, module: str = "httpx") -> None:
        mod: Any = __import__(module)
        limits = mod.Limits(max_connections=POOL, max_keepalive_connections=POOL, keepalive_expiry=300)
        self._c = mod.AsyncClient(headers=UPSTREAM_HEADERS, limits=limits, timeout=60)

    async def post(self, url: str, body: bytes) -> bytes:
        r = await self._c.post(url, content=body)
        return r.content

    async def stream(self, url: str, body: bytes) -> AsyncIterator[bytes]:
        async with self._c.stream("POST", url, content=body) as r:
            async for chunk in r.aiter_raw():
                yield chunk


class PyreqwestUpstream:
    def __init__(self) -> None:
        from pyreqwest.client import ClientBuilder

        self._c: Any = (
            ClientBuilder().default_headers(UPSTREAM_HEADERS).max_connections(POOL).error_for_status(True).build()
        )

    async def post(self, url: str, body: bytes) -> bytes:
        r = await self._c.post(url).body_bytes(body).build().send()
        return bytes(await r.bytes())

    async def stream(self, url: str, body: bytes) -> AsyncIterator[bytes]:
        async with self._c.post(url).body_bytes(body).build_streamed() as r:
            while (chunk := await r.body_reader.read_chunk()) is not None:
                yield bytes(chunk)


class AiosonicUpstream:
    def __init__(self) -> None:
        import aiosonic
        from aiosonic.connectors import TCPConnector
        from aiosonic.pools import PoolConfig

        conn = TCPConnector(pool_configs={":default": PoolConfig(size=POOL)})
        self._c: Any = aiosonic.HTTPClient(connector=conn)

    async def post(self, url: str, body: bytes) -> bytes:
        r = await self._c.post(url, data=body, headers=UPSTREAM_HEADERS)
        return bytes(await r.content())

    async def stream(self, url: str, body: bytes) -> AsyncIterator[bytes]:
        r = await self._c.post(url, data=body, headers=UPSTREAM_HEADERS)
        async for chunk in r.read_chunks():
            yield bytes(chunk)


_client: Upstream | None = None
_lock: asyncio.Lock | None = None


def make(name: str) -> Upstream:
    if name == "aiohttp":
        return AiohttpUpstream()
    if name in ("httpx", "httpx2"):
        return HttpxUpstream(name)
    if name == "pyreqwest":
        return PyreqwestUpstream()
    if name == "aiosonic":
        return AiosonicUpstream()
    if name == "raw":
        from rawclient import RawUpstream

        return RawUpstream()
    raise ValueError(f"unknown STACK_CLIENT {name!r}")


def get(name: str) -> Upstream:
    global _client
    if _client is None:
        _client = make(name)
    return _client
