"""Fetching images named by URL, for vendors that only take inline image bytes (Gemini).

The gateway fetches a URL a client chose, from inside the operator's network: without a guard
that is a server-side request forgery hole (cloud metadata at 169.254.169.254, admin ports on
localhost, the private LAN). So:
- only http and https;
- every address a host name resolves to must be public (not private, loopback, link-local,
  multicast, reserved, unspecified, shared, or an IPv4-mapped form of those), and the connection
  is made by a resolver that applies the same check, so DNS cannot answer differently between
  the check and the connect (rebinding);
- redirects are followed by hand (at most MAX_REDIRECTS), each hop checked again;
- the body is read up to a size limit, and must be an image.
`allow_private=True` lifts the address check; only tests use it, to fetch from a loopback server.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
from typing import Any
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from polyroute.core.errors import InvalidRequest

MAX_BYTES = 20 * 1024 * 1024  # Gemini's limit for a whole inline request
MAX_REDIRECTS = 3
TIMEOUT = 15.0
# Opt-in for tests against loopback emulators; never set it in production.
ALLOW_PRIVATE_ENV = "POLYROUTE_IMAGE_FETCH_ALLOW_PRIVATE"

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class ImageFetchError(InvalidRequest):
    """The client's image URL cannot be used: the client's fault, so a 400, never retried."""


def is_public_address(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
        elif ip.teredo is not None:
            ip = ip.teredo[1]
    return ip.is_global and not ip.is_multicast


def _ip_literal(host: str) -> str | None:
    """The address a host written as an IP literal means, including legacy IPv4 spellings
    (0x7f000001, 127.1, 017700000001) that resolvers also accept."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return str(ipaddress.IPv4Address(socket.inet_aton(host)))
    except OSError:
        return None


def allow_private_from_env() -> bool:
    return os.environ.get(ALLOW_PRIVATE_ENV) == "1"


def parse_data_url(url: str) -> tuple[str, str]:
    """(media type, base64 data) of a `data:` URL."""
    head, sep, data = url.partition(",")
    if not sep:
        raise ImageFetchError("image data URL has no ',' before its data")
    media = head[5:].split(";")[0] or "image/png"
    if ";base64" in head:
        return media, data
    return media, base64.b64encode(unquote_to_bytes(data)).decode()


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses non-public addresses."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            bad = [r["host"] for r in results if not is_public_address(r["host"])]
            if bad:
                raise ImageFetchError(f"image URL host '{host}' resolves to a non-public address ({bad[0]})")
        return results

    async def close(self) -> None:
        await self._inner.close()


def sniff(head: bytes) -> str | None:
    for magic, media in _MAGIC:
        if head.startswith(magic):
            return media
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


class ImageFetcher:
    """One pooled session for image downloads, separate from the vendor's API session."""

    def __init__(self, *, allow_private: bool = False, max_bytes: int = MAX_BYTES, timeout: float = TIMEOUT) -> None:
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allow_private), limit=32, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": "polyroute/0.1 (image fetch)", "Accept": "image/*"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ImageFetchError(f"image URL scheme '{parts.scheme}' is not allowed (use http, https or data:)")
        host = parts.hostname
        if not host:
            raise ImageFetchError("image URL has no host")
        if self.allow_private:
            return
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            raise ImageFetchError(f"image URL host '{host}' is not allowed")
        literal = _ip_literal(host)
        # aiohttp does not call the resolver for IP literals: they are checked here; names are
        # checked by the resolver, on the addresses actually connected to.
        if literal is not None and not is_public_address(literal):
            raise ImageFetchError(f"image URL host '{host}' is a non-public address")

    async def fetch(self, url: str) -> tuple[str, str]:
        """(media type, base64 data) of the image at `url` (http, https or data:)."""
        if url.startswith("data:"):
            return parse_data_url(url)
        session = self._get_session()
        for _ in range(MAX_REDIRECTS + 1):
            self.check_url(url)
            try:
                async with session.get(url, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308):
                        loc = resp.headers.get("Location")
                        if not loc:
                            raise ImageFetchError(f"image URL redirected without a Location ({resp.status})")
                        url = urljoin(url, loc)
                        continue
                    if resp.status >= 400:
                        raise ImageFetchError(f"fetching the image URL failed: HTTP {resp.status}")
                    return await self._read(resp)
            except ImageFetchError:
                raise
            except aiohttp.ClientConnectorError as exc:
                inner: Any = exc.os_error
                if isinstance(inner, ImageFetchError):
                    raise inner from None
                raise ImageFetchError(f"fetching the image URL failed: {exc}") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ImageFetchError(f"fetching the image URL failed: {type(exc).__name__}: {exc}") from None
        raise ImageFetchError(f"image URL redirected more than {MAX_REDIRECTS} times")

    async def _read(self, resp: aiohttp.ClientResponse) -> tuple[str, str]:
        length = resp.content_length
        if length is not None and length > self.max_bytes:
            raise ImageFetchError(f"image is larger than {self.max_bytes} bytes")
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(65536):
            buf += chunk
            if len(buf) > self.max_bytes:
                raise ImageFetchError(f"image is larger than {self.max_bytes} bytes")
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        media = ctype if ctype.startswith("image/") else sniff(bytes(buf[:16]))
        if media is None:
            raise ImageFetchError(f"image URL did not return an image (content type '{ctype or 'none'}')")
        return media, base64.b64encode(bytes(buf)).decode()
