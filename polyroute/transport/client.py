"""HTTPClient: a pooled HTTP/1.1 client for the provider hot path.

    client = HTTPClient(max_connections=256, connect_timeout=5, read_timeout=60)
    resp = await client.request("POST", url, headers={...}, body=b"...")   # body read: resp.body
    resp = await client.stream("POST", url, headers={...}, body=b"...")    # after the headers
    async with resp:
        async for chunk in resp: ...
    await client.close()

Why it exists: on one core the gateway's whole budget at 5,000 req/s is 0.2 ms of CPU per
request, and aiohttp's ClientSession alone costs ~0.16 ms (docs/performance.md, "The provider
HTTP client"). This client does only what provider calls need: HTTP/1.1 with keep-alive, TLS via
the ssl module, bodies framed by Content-Length, chunked or connection close (llhttp does the
parsing), gzip/deflate, timeouts, one retry of the stale keep-alive race. No proxies, redirects,
cookies or HTTP/2: proxied providers use the aiohttp fallback (upstream.py).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Iterable, Mapping
from urllib.parse import quote, urlsplit

from .connection import Response, StaleConnection
from .decoding import ACCEPT_ENCODING
from .dns import Resolver
from .errors import PoolClosed
from .pool import Pool

DEFAULT_PORTS = {"http": 80, "https": 443}
DEFAULT_MAX_BODY = 256 * 1024 * 1024  # large enough for a full batch of embeddings as JSON
DEFAULT_USER_AGENT = "polyroute/0.1"
# Framing headers are the client's business; a caller's value would corrupt the message.
_RESERVED = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_MAX_TARGETS = 4096


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """System CAs, hostname checking, TLS 1.2+; ALPN offers only http/1.1. Built once: loading
    the CA store costs milliseconds."""
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class _Target:
    """One (method, URL): its pool and the pre-encoded request line, Host and default headers."""

    __slots__ = ("head", "line", "no_body", "pool", "prefix")

    def __init__(self, pool: Pool, line: bytes, prefix: bytes, head: bool, no_body: bool) -> None:
        self.pool = pool
        self.line = line
        self.prefix = prefix
        self.head = head
        self.no_body = no_body


class HTTPClient:
    __slots__ = (
        "_closed",
        "_default_block",
        "_default_names",
        "_defaults",
        "_pools",
        "_targets",
        "connect_timeout",
        "keepalive_expiry",
        "max_body_size",
        "max_connections",
        "read_timeout",
        "resolver",
        "ssl_context",
    )

    def __init__(
        self,
        *,
        max_connections: int = 256,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        keepalive_expiry: float = 30.0,
        max_body_size: int = DEFAULT_MAX_BODY,
        ssl_context: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        dns_ttl: float = 60.0,
    ) -> None:
        """`max_connections` is per origin; `read_timeout` bounds every silence of the server
        (waiting for the headers and between body reads: the stream idle timeout);
        `headers` are sent with every request unless a request sets the same name."""
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_expiry = keepalive_expiry
        self.max_body_size = max_body_size
        self.ssl_context = ssl_context if ssl_context is not None else default_ssl_context()
        self.resolver = Resolver(dns_ttl)
        defaults = {"User-Agent": user_agent, "Accept-Encoding": ACCEPT_ENCODING}
        for name, value in (headers or {}).items():
            for existing in [k for k in defaults if k.lower() == name.lower()]:
                del defaults[existing]
            defaults[name] = value
        self._defaults = defaults
        self._default_names = frozenset(k.lower() for k in defaults)
        self._default_block = _encode_headers(defaults.items())
        self._pools: dict[tuple[str, str, int], Pool] = {}
        self._targets: dict[tuple[str, str], _Target] = {}
        self._closed = False

    # --- public API ------------------------------------------------------------------------------

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> Response:
        """Send a request and read the whole (decoded) body: `resp.status`, `resp.headers`, `resp.body`."""
        resp = await self._send(method, url, headers, body, True)
        await resp.read()
        return resp

    async def stream(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> Response:
        """Send a request and return once the response headers arrived; the caller reads the body
        (`async for chunk in resp` or `await resp.read()`) and must `release()` it."""
        return await self._send(method, url, headers, body, False)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> Response:
        """POST and read the whole body (the `Upstream` interface HTTPProvider uses)."""
        resp = await self._send("POST", url, headers, body, True)
        await resp.read()
        return resp

    async def open(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> Response:
        """POST and return after the headers (the `Upstream` interface HTTPProvider uses)."""
        return await self._send("POST", url, headers, body, False)

    async def close(self) -> None:
        """Close every connection; responses still being read fail with PoolClosed."""
        self._closed = True
        pools = list(self._pools.values())
        self._pools.clear()
        self._targets.clear()
        for pool in pools:
            pool.close()
        if pools:
            await asyncio.sleep(0)  # let the transports deliver connection_lost before the loop goes

    def stats(self) -> dict[str, int]:
        """Counters for tests and diagnostics, summed over origins."""
        pools = self._pools.values()
        return {
            "connections": sum(p.size for p in pools),
            "idle": sum(1 for p in pools for c in p.idle if not c.discarded),
            "opened": sum(p.opened for p in pools),
            "stale_retries": sum(p.stale_retries for p in pools),
        }

    # --- internals -------------------------------------------------------------------------------

    async def _send(
        self, method: str, url: str, headers: Mapping[str, str] | None, body: bytes, collect: bool
    ) -> Response:
        target = self._targets.get((method, url))
        if target is None:
            target = self._target(method, url)
        payload = self._encode(target, headers, body)
        pool = target.pool
        conn = pool.take_idle()
        if conn is None:
            conn = await pool.acquire(False)
        resp = Response(pool._loop, collect, self.max_body_size)
        conn.start(resp, payload, target.head)
        while resp.status == 0 and resp._exc is None:
            await resp._wait()
        if resp.status == 0:
            exc = resp._exc
            assert exc is not None
            if not isinstance(exc, StaleConnection):
                raise exc
            # The keep-alive race: the server closed this idle connection as we sent on it, and
            # nothing came back, so the request is sent once more on a new connection.
            pool.stale_retries += 1
            conn = await pool.acquire(True)
            resp = Response(pool._loop, collect, self.max_body_size)
            conn.start(resp, payload, target.head)
            while resp.status == 0 and resp._exc is None:
                await resp._wait()
            if resp.status == 0:
                assert resp._exc is not None
                raise resp._exc
        return resp

    def _target(self, method: str, url: str) -> _Target:
        if self._closed:
            raise PoolClosed("the HTTP client is closed")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"unsupported URL (http and https only): {url!r}")
        host = parts.hostname
        if not host:
            raise ValueError(f"no host in URL {url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials in the URL are not supported; use headers")
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        port = parts.port or DEFAULT_PORTS[scheme]
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        if not path.isascii():
            path = quote(path, safe="/?#[]@!$&'()*+,;=:%~-._")
        if any(c in path for c in " \t\r\n"):
            raise ValueError(f"whitespace in the URL path: {url!r}")
        if not method.isalpha() or not method.isascii():
            raise ValueError(f"invalid HTTP method {method!r}")
        cache_key = (method, url)
        method = method.upper()
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(self, scheme, host, port, asyncio.get_running_loop())
        shown = f"[{host}]" if ":" in host else host
        if port != DEFAULT_PORTS[scheme]:
            shown = f"{shown}:{port}"
        line = f"{method} {path} HTTP/1.1\r\nHost: {shown}\r\n".encode("ascii")
        target = _Target(pool, line, line + self._default_block, method == "HEAD", method in _NO_BODY_METHODS)
        if len(self._targets) >= _MAX_TARGETS:
            self._targets.clear()
        self._targets[cache_key] = target
        return target

    def _encode(self, target: _Target, headers: Mapping[str, str] | None, body: bytes) -> bytes:
        head = target.prefix
        parts = [head]
        if headers:
            lines: list[str] = []
            overridden: set[str] | None = None
            for name, value in headers.items():
                lname = name.lower()
                if lname in _RESERVED:
                    continue
                if lname in self._default_names:
                    if overridden is None:
                        overridden = set()
                    overridden.add(lname)
                lines.append(f"{name}: {value}\r\n")
            block = "".join(lines)
            # One CR and one LF per line, or a name or value smuggled in a header of its own.
            n = len(lines)
            if block.count("\n") != n or block.count("\r") != n:
                raise ValueError("HTTP header names and values must not contain CR or LF")
            if overridden:
                kept = [(k, v) for k, v in self._defaults.items() if k.lower() not in overridden]
                parts[0] = target.line + _encode_headers(kept)
            parts.append(block.encode("utf-8"))
        if body or not target.no_body:
            parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
            parts.append(body)
        else:
            parts.append(b"\r\n")
        return b"".join(parts)


def _encode_headers(items: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"{k}: {v}\r\n" for k, v in items]
    block = "".join(lines)
    if block.count("\n") != len(lines) or block.count("\r") != len(lines):
        raise ValueError("HTTP header names and values must not contain CR or LF")
    return block.encode("utf-8")
