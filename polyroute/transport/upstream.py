"""The small interface HTTPProvider talks to, and how one is chosen.

    http = open_upstream(kind="fast", proxy=None, max_connections=256, connect_timeout=5,
                         read_timeout=60, headers={"User-Agent": "polyroute/0.1"})
    resp = await http.post(url, body, headers)     # .status, .headers, .body
    resp = await http.open(url, body, headers)     # .status, .headers, read(), release(), async for chunk
    await http.close()

"fast" is this package's HTTPClient. "aiohttp" is aiohttp's ClientSession behind the same
interface, with its errors mapped to this package's; it is also what serves any provider that goes
through a proxy (an explicit `proxy`, or HTTP(S)_PROXY/ALL_PROXY in the environment and the host not
in NO_PROXY), because the fast client does not speak to proxies.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Literal, Protocol
from urllib.parse import urlsplit
from urllib.request import getproxies_environment

import aiohttp

from .client import DEFAULT_MAX_BODY, HTTPClient
from .errors import (
    BodyTooLarge,
    ConnectError,
    ConnectionReset,
    ConnectTimeout,
    ReadTimeout,
    RemoteProtocolError,
    TransportError,
)

ClientKind = Literal["fast", "aiohttp"]


class BufferedResponse(Protocol):
    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def body(self) -> bytes: ...


class StreamResponse(Protocol):
    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    async def read(self) -> bytes: ...
    def release(self) -> None: ...
    def __aiter__(self) -> AsyncIterator[bytes]: ...


class Upstream(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> BufferedResponse: ...
    async def open(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> StreamResponse: ...
    async def close(self) -> None: ...


def open_upstream(
    *,
    kind: ClientKind = "fast",
    proxy: str | None = None,
    max_connections: int = 256,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_body_size: int = DEFAULT_MAX_BODY,
) -> Upstream:
    """Call inside the running event loop (aiohttp binds its session to it)."""

    def aiohttp_upstream(trust_env: bool) -> AiohttpUpstream:
        return AiohttpUpstream(
            max_connections=max_connections, connect_timeout=connect_timeout, read_timeout=read_timeout,
            headers=headers, proxy=proxy, trust_env=trust_env, ssl_context=ssl_context, max_body_size=max_body_size,
        )

    proxies = env_proxies()
    if kind == "aiohttp" or proxy:
        # trust_env costs a proxy and .netrc look-up on every request: only when there is a proxy
        # in the environment to honour (an explicit `proxy` wins over it).
        return aiohttp_upstream(trust_env=proxy is None and bool(proxies))
    fast = HTTPClient(
        max_connections=max_connections, connect_timeout=connect_timeout, read_timeout=read_timeout,
        headers=headers, ssl_context=ssl_context, max_body_size=max_body_size,
    )
    if proxies:
        return ProxyRouting(fast, lambda: aiohttp_upstream(trust_env=True), proxies)
    return fast


def env_proxies() -> dict[str, str]:
    """The proxy settings in the environment (empty when none applies to http/https)."""
    proxies = getproxies_environment()
    return proxies if any(k in proxies for k in ("http", "https", "all")) else {}


def uses_proxy(url: str, proxies: Mapping[str, str]) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in proxies and "all" not in proxies:
        return False
    # proxy_bypass_environment applies NO_PROXY the way urllib (and aiohttp's trust_env) do.
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # untyped in typeshed
    return not bypass(parts.hostname or "", proxies)


class ProxyRouting:
    """Per URL (decided once per URL): the environment's proxy through aiohttp, or direct."""

    __slots__ = ("_direct", "_make_proxied", "_proxied", "_proxies", "_route")

    def __init__(self, direct: HTTPClient, make_proxied: Callable[[], AiohttpUpstream], proxies: Mapping[str, str]) -> None:
        self._direct = direct
        self._make_proxied = make_proxied
        self._proxied: AiohttpUpstream | None = None
        self._proxies = dict(proxies)
        self._route: dict[str, Upstream] = {}

    def pick(self, url: str) -> Upstream:
        up = self._route.get(url)
        if up is None:
            if uses_proxy(url, self._proxies):
                if self._proxied is None:
                    self._proxied = self._make_proxied()
                up = self._proxied
            else:
                up = self._direct
            if len(self._route) > 4096:
                self._route.clear()
            self._route[url] = up
        return up

    async def post(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> BufferedResponse:
        return await self.pick(url).post(url, body, headers)

    async def open(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> StreamResponse:
        return await self.pick(url).open(url, body, headers)

    async def close(self) -> None:
        await self._direct.close()
        if self._proxied is not None:
            await self._proxied.close()


# --- aiohttp behind the same interface ---------------------------------------------------------


def map_aiohttp_error(exc: BaseException) -> TransportError:
    what = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(what)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return ReadTimeout(what)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientProxyConnectionError):
        return ConnectError(what)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError):
        return ConnectionReset(what)
    if isinstance(exc, aiohttp.ClientResponseError):
        return RemoteProtocolError(what)
    return TransportError(what)


class _Buffered:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class AiohttpStream:
    """An aiohttp ClientResponse with the fast client's Response surface and error types."""

    __slots__ = ("_resp",)

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_aiohttp_error(exc) from None

    def release(self) -> None:
        self._resp.release()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_aiohttp_error(exc) from None


class AiohttpUpstream:
    __slots__ = ("_max_body", "_proxy", "_session")

    def __init__(
        self,
        *,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        headers: Mapping[str, str] | None,
        proxy: str | None = None,
        trust_env: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        max_body_size: int = DEFAULT_MAX_BODY,
    ) -> None:
        connector = aiohttp.TCPConnector(
            limit=max_connections, keepalive_timeout=30, ttl_dns_cache=300, enable_cleanup_closed=True,
            ssl=ssl_context if ssl_context is not None else True,
        )
        # sock_read bounds the silence between two reads, which is exactly the idle gap between
        # stream chunks; the total per-request deadline is enforced by the caller.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=True, trust_env=trust_env,
            skip_auto_headers=("User-Agent",), headers=dict(headers or {}),
        )
        self._proxy = proxy
        self._max_body = max_body_size

    async def post(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> BufferedResponse:
        try:
            async with self._session.post(url, data=body, headers=headers, proxy=self._proxy) as resp:
                parts: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_any():
                    size += len(chunk)
                    if size > self._max_body:
                        raise BodyTooLarge(f"response body larger than {self._max_body} bytes")
                    parts.append(chunk)
                return _Buffered(resp.status, resp.headers, b"".join(parts))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_aiohttp_error(exc) from None

    async def open(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> StreamResponse:
        try:
            resp = await self._session.post(url, data=body, headers=headers, proxy=self._proxy)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_aiohttp_error(exc) from None
        return AiohttpStream(resp)

    async def close(self) -> None:
        await self._session.close()
