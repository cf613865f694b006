"""The image fetcher (used by the Gemini adapter) against a real loopback HTTP server: the
resolver-level SSRF guard, redirects, size limit, content checks."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from polyroute.providers.image_fetch import ImageFetcher, ImageFetchError, is_public_address

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def cat(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def unlabelled(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="application/octet-stream")

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=PNG + b"\0" * 5000, content_type="image/png")

    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def to_metadata(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    app = web.Application()
    for path, handler in {"/cat.png": cat, "/raw": unlabelled, "/big.png": big, "/page": html, "/loop": loop,
                          "/meta": to_metadata}.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_fetch_allowed_loopback(server: str) -> None:
    f = ImageFetcher(allow_private=True, max_bytes=1000)
    try:
        assert await f.fetch(f"{server}/cat.png") == ("image/png", base64.b64encode(PNG).decode())
        assert (await f.fetch(f"{server}/raw"))[0] == "image/png"  # sniffed from the bytes
        with pytest.raises(ImageFetchError, match="larger than 1000"):
            await f.fetch(f"{server}/big.png")
        with pytest.raises(ImageFetchError, match="did not return an image"):
            await f.fetch(f"{server}/page")
        with pytest.raises(ImageFetchError, match="redirected more than"):
            await f.fetch(f"{server}/loop")
        with pytest.raises(ImageFetchError, match="HTTP 404"):
            await f.fetch(f"{server}/missing")
    finally:
        await f.close()


async def test_guard_refuses_private_targets(server: str) -> None:
    f = ImageFetcher()
    try:
        with pytest.raises(ImageFetchError, match="non-public"):
            await f.fetch(f"{server}/cat.png")
        port = server.rsplit(":", 1)[1]
        with pytest.raises(ImageFetchError):
            await f.fetch(f"http://localhost:{port}/cat.png")
    finally:
        await f.close()


async def test_redirect_to_private_address_is_refused(server: str) -> None:
    class TrustTestServer(ImageFetcher):
        """Lets the first hop reach the loopback test server; every other hop is guarded."""

        def check_url(self, url: str) -> None:
            if not url.startswith(server):
                super().check_url(url)

    f = TrustTestServer()
    try:
        with pytest.raises(ImageFetchError, match=r"169\.254\.169\.254"):
            await f.fetch(f"{server}/meta")
    finally:
        await f.close()


async def test_resolver_checks_names_it_resolves(server: str) -> None:
    """A host *name* (not a literal) that resolves to a non-public address is refused by the
    resolver, on the address actually connected to."""
    name = socket.gethostname()
    try:
        addrs = {str(a[4][0]) for a in socket.getaddrinfo(name, None)}
    except OSError:
        pytest.skip("the machine's own host name does not resolve")
    if any(is_public_address(a) for a in addrs):
        pytest.skip("the machine's host name resolves to a public address")
    f = ImageFetcher()
    try:
        with pytest.raises(ImageFetchError, match="non-public"):
            await f.fetch(f"http://{name}:{server.rsplit(':', 1)[1]}/cat.png")
    finally:
        await f.close()
