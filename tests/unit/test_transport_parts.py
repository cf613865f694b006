"""The client's pieces that need no server: headers, body decoders, request encoding, DNS cache,
the choice between the fast client and aiohttp, and how HTTPProvider maps transport errors."""

from __future__ import annotations

import asyncio
import gzip
import socket
import zlib
from typing import Any

import aiohttp
import pytest

from polyroute.config.schema import ProviderConfig
from polyroute.core import errors as e
from polyroute.providers.base import HTTPProvider, parse_retry_after
from polyroute.transport import (
    AiohttpUpstream,
    BodyTooLarge,
    ConnectError,
    ConnectionReset,
    ConnectTimeout,
    Headers,
    HTTPClient,
    ReadTimeout,
    RemoteProtocolError,
    TransportError,
    open_upstream,
)
from polyroute.transport.decoding import decoder_for
from polyroute.transport.dns import Resolver
from polyroute.transport.upstream import ProxyRouting, map_aiohttp_error

# --- headers -------------------------------------------------------------------------------------


def test_headers_are_case_insensitive_and_multi_valued() -> None:
    h = Headers([(b"Content-Type", b"application/json"), (b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2"),
                 (b"Retry-After", b" 3 ")])
    assert h["content-type"] == h.get("CONTENT-TYPE") == "application/json"
    assert h.getall("Set-Cookie") == ["a=1", "b=2"] and h.get("set-cookie") == "a=1"
    assert "retry-after" in h and "x-missing" not in h and h.get("x-missing") is None
    assert parse_retry_after(h) == 3.0
    assert sorted(h) == ["content-type", "retry-after", "set-cookie"] and len(h) == 3
    with pytest.raises(KeyError):
        h["nope"]


# --- decoders ------------------------------------------------------------------------------------


def decode_in_pieces(encoding: bytes, data: bytes, size: int) -> bytes:
    d = decoder_for(encoding)
    assert d is not None
    out = b"".join(d.decompress(data[i : i + size]) for i in range(0, len(data), size))
    return out + d.flush()


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_gzip_in_any_pieces_and_multi_member(size: int) -> None:
    text = b"polyroute " * 5000
    assert decode_in_pieces(b"gzip", gzip.compress(text), size) == text
    assert decode_in_pieces(b"x-gzip", gzip.compress(b"one ") + gzip.compress(b"two"), size) == b"one two"


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS])
def test_deflate_zlib_wrapped_or_raw(wbits: int) -> None:
    text = b"deflate me " * 1000
    c = zlib.compressobj(wbits=wbits)
    assert decode_in_pieces(b"Deflate", c.compress(text) + c.flush(), 100) == text


def test_truncated_gzip_and_garbage_and_unoffered_encodings_fail() -> None:
    d = decoder_for(b"gzip")
    assert d is not None
    d.decompress(gzip.compress(b"z" * 10000)[:-12])
    with pytest.raises(RemoteProtocolError, match="truncated"):
        d.flush()
    d = decoder_for(b"gzip")
    assert d is not None
    with pytest.raises(RemoteProtocolError):
        d.decompress(b"definitely not gzip")
    with pytest.raises(RemoteProtocolError, match="br"):
        decoder_for(b"br")
    assert decoder_for(b"identity") is None


# --- request encoding ----------------------------------------------------------------------------


async def encoded(client: HTTPClient, method: str, url: str, headers: dict[str, str] | None = None,
                  body: bytes = b"") -> bytes:
    return client._encode(client._target(method, url), headers, body)


async def test_request_line_host_and_default_headers() -> None:
    c = HTTPClient(headers={"OpenAI-Organization": "org-1"})
    wire = await encoded(c, "POST", "https://api.example.com/v1/chat/completions?x=1", {"Authorization": "Bearer k"}, b"{}")
    head, _, body = wire.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions?x=1 HTTP/1.1"
    assert lines[1] == b"Host: api.example.com"  # default port left out
    assert set(lines[2:]) == {b"User-Agent: polyroute/0.1", b"Accept-Encoding: gzip, deflate",
                              b"OpenAI-Organization: org-1", b"Authorization: Bearer k", b"Content-Length: 2"}
    assert body == b"{}"
    assert (await encoded(c, "GET", "http://[::1]:8080"))[:40].split(b"\r\n")[:2] == [b"GET / HTTP/1.1", b"Host: [::1]:8080"]
    await c.close()


async def test_request_headers_override_defaults_and_framing_is_ours() -> None:
    c = HTTPClient()
    wire = await encoded(c, "POST", "http://h:81/p", {"user-agent": "sdk/2", "Content-Length": "999", "Host": "evil"}, b"abc")
    lines = wire.split(b"\r\n")
    assert b"user-agent: sdk/2" in lines and b"User-Agent: polyroute/0.1" not in lines
    assert b"Content-Length: 3" in lines and b"Content-Length: 999" not in lines
    assert [x for x in lines if x.lower().startswith(b"host:")] == [b"Host: h:81"]
    # Bodiless methods send no Content-Length; POST always does.
    assert b"Content-Length" not in await encoded(c, "GET", "http://h/p")
    assert b"Content-Length: 0" in await encoded(c, "POST", "http://h/p")
    await c.close()


@pytest.mark.parametrize("headers", [{"X-A": "v\r\nInjected: 1"}, {"X-A\nB": "v"}, {"X-A": "v\rw"}])
async def test_header_injection_is_refused(headers: dict[str, str]) -> None:
    c = HTTPClient()
    with pytest.raises(ValueError, match="CR or LF"):
        await encoded(c, "POST", "http://h/p", headers)
    await c.close()


@pytest.mark.parametrize("url", ["ftp://h/p", "http:///p", "http://user:pw@h/p", "http://h/a b"])
async def test_bad_urls_are_refused(url: str) -> None:
    c = HTTPClient()
    with pytest.raises(ValueError):
        await encoded(c, "POST", url)
    await c.close()


# --- DNS -----------------------------------------------------------------------------------------


async def test_dns_is_cached_shared_and_forgettable(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    calls: list[str] = []
    gate = asyncio.Event()

    async def fake_getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        calls.append(host)
        await gate.wait()
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    r = Resolver(ttl=300)
    waiting = [asyncio.ensure_future(r.resolve("provider.test", 443)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiting)
    assert calls == ["provider.test"]  # five concurrent look-ups, one call
    assert all(res == [(socket.AF_INET, "127.0.0.1")] for res in results)  # duplicates dropped
    await r.resolve("provider.test", 443)
    assert calls == ["provider.test"]  # cached
    r.forget("provider.test", 443)
    await r.resolve("provider.test", 443)
    assert len(calls) == 2
    assert await r.resolve("::1", 1) == [(socket.AF_INET6, "::1")] and len(calls) == 2  # literals skip DNS


class HangingResolver(Resolver):
    async def resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        await asyncio.Event().wait()
        return []


async def test_connect_timeout_covers_a_hanging_resolver() -> None:
    c = HTTPClient(connect_timeout=0.05)
    c.resolver = HangingResolver()
    with pytest.raises(ConnectTimeout):
        await c.request("GET", "http://provider.test/")
    assert c.stats()["connections"] == 0
    await c.close()


# --- choosing the client -------------------------------------------------------------------------


async def test_fast_by_default_aiohttp_when_asked_or_proxied(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    ups = [open_upstream(), open_upstream(kind="aiohttp"), open_upstream(proxy="http://127.0.0.1:3128")]
    assert [type(u) for u in ups] == [HTTPClient, AiohttpUpstream, AiohttpUpstream]
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    routed = open_upstream()
    assert isinstance(routed, ProxyRouting)
    assert isinstance(routed.pick("https://api.openai.com/v1/chat/completions"), AiohttpUpstream)
    assert isinstance(routed.pick("https://127.0.0.1:9/v1"), HTTPClient)
    assert isinstance(routed.pick("http://api.openai.com/v1"), HTTPClient)  # only https is proxied
    for u in [*ups, routed]:
        await u.close()


def test_provider_config_field() -> None:
    assert ProviderConfig(type="openai").http_client == "fast"
    assert ProviderConfig(type="openai", http_client="aiohttp").http_client == "aiohttp"


# --- error mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected", "text"),
    [
        (ReadTimeout("x sent nothing for 60 s"), e.UpstreamTimeout, "timed out"),
        (ConnectTimeout("slow"), e.UpstreamTimeout, "timed out"),
        (ConnectError("refused"), e.UpstreamError, "connection failed: ConnectError"),
        (ConnectionReset("closed"), e.UpstreamError, "connection failed: ConnectionReset"),
        (BodyTooLarge("big"), e.UpstreamError, "too large"),
    ],
)
def test_provider_maps_transport_errors_naming_itself(exc: TransportError, expected: type[e.GatewayError], text: str) -> None:
    p = HTTPProvider("acme", ProviderConfig(type="openai"))
    err = p.connection_error(exc)
    assert type(err) is expected and err.provider == "acme" and "'acme'" in err.message and text in err.message


def test_aiohttp_errors_map_to_the_same_set() -> None:
    assert isinstance(map_aiohttp_error(aiohttp.ServerTimeoutError("t")), ReadTimeout)
    assert isinstance(map_aiohttp_error(aiohttp.ConnectionTimeoutError("t")), ConnectTimeout)
    assert isinstance(map_aiohttp_error(aiohttp.ServerDisconnectedError()), ConnectionReset)
    assert isinstance(map_aiohttp_error(aiohttp.ClientPayloadError("p")), ConnectionReset)
    # Adapters catch ConnectionError/TimeoutError around stream iteration: both families qualify.
    assert issubclass(ReadTimeout, TimeoutError) and issubclass(TransportError, ConnectionError)
