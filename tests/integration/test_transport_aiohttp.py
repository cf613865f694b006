"""HTTPClient against aiohttp.web: close-delimited bodies, chunked streams with compression, and the
keep-alive race against a server whose idle timeout closes connections: the client's loop is held
still while the server closes, so the next request really is sent on the dead connection and must
be retried once. The same scenarios through the aiohttp fallback (`open_upstream(kind="aiohttp")`)
show that both sit behind one interface."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from polyroute.transport import HTTPClient, TransportError, open_upstream
from polyroute.transport.sse import SSEDecoder

pytestmark = pytest.mark.integration


class CloseDelimited(web.StreamResponse):
    # No Content-Length and no chunking: the body ends when the server closes (as HTTP/1.0 did).
    _length_check = False


async def close_delimited(request: web.Request) -> web.StreamResponse:
    resp = CloseDelimited(headers={"Content-Type": "text/plain"})
    resp.force_close()
    await resp.prepare(request)
    for i in range(50):
        await resp.write(b"part %02d\n" % i)
    await resp.write_eof()
    return resp


async def events(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    resp.enable_compression()
    await resp.prepare(request)
    for i in range(30):
        await resp.write(b'data: {"i": %d}\n\n' % i)
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def plain(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=b"got " + body, headers={"X-Seen": "1"})


async def fail(request: web.Request) -> web.Response:
    return web.json_response({"error": {"message": "nope"}}, status=429, headers={"Retry-After": "2"})


class Server:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/close", close_delimited)
        app.router.add_post("/events", events)
        app.router.add_post("/plain", plain)
        app.router.add_post("/fail", fail)
        # Idle keep-alive connections are closed by the server after 0.2 s.
        self.runner = web.AppRunner(app, keepalive_timeout=0.2, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def connections(self) -> int:
        assert self.runner is not None and self.runner.server is not None
        return len(self.runner.server.connections)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    s.thread.start()
    assert s.ready.wait(10)
    yield s
    s.loop.call_soon_threadsafe(s.loop.stop)
    s.thread.join(10)


async def test_close_delimited_body(server: Server) -> None:
    c = HTTPClient()
    expected = b"".join(b"part %02d\n" % i for i in range(50))
    for _ in range(3):
        r = await c.request("GET", server.url("/close"))
        assert r.body == expected and "content-length" not in r.headers and "transfer-encoding" not in r.headers
    assert c.stats()["opened"] == 3 and c.stats()["connections"] == 0
    resp = await c.stream("GET", server.url("/close"))
    assert b"".join([x async for x in resp]) == expected
    await c.close()


async def test_compressed_chunked_event_stream(server: Server) -> None:
    c = HTTPClient()
    resp = await c.stream("POST", server.url("/events"), body=b"{}")
    assert resp.headers["content-encoding"] in ("gzip", "deflate")
    decoder = SSEDecoder()
    got = [ev for chunk in [x async for x in resp] for ev in decoder.feed(chunk)]
    assert got == [(None, b'{"i": %d}' % i) for i in range(30)] + [(None, b"[DONE]")]
    await c.close()


def test_server_idle_close_race_is_retried_on_a_fresh_connection(server: Server) -> None:
    loop = asyncio.new_event_loop()
    try:
        c = HTTPClient(keepalive_expiry=60)
        first = loop.run_until_complete(c.request("POST", server.url("/plain"), body=b"1"))
        assert first.body == b"got 1"
        # While this loop is not running the client cannot see the server's FIN, exactly like a
        # request that is sent in the instant the server's keep-alive timer fires.
        deadline = time.monotonic() + 5
        while server.connections():
            assert time.monotonic() < deadline, "aiohttp.web did not close the idle connection"
            time.sleep(0.01)
        second = loop.run_until_complete(c.request("POST", server.url("/plain"), body=b"2"))
        assert second.status == 200 and second.body == b"got 2"
        assert c.stats()["stale_retries"] == 1 and c.stats()["opened"] == 2
        loop.run_until_complete(c.close())
    finally:
        loop.close()


@pytest.mark.parametrize("kind", ["fast", "aiohttp"])
async def test_both_clients_offer_the_same_interface(server: Server, kind: str) -> None:
    up = open_upstream(kind=kind, headers={"User-Agent": "polyroute/0.1"})  # type: ignore[arg-type]
    r = await up.post(server.url("/plain"), b"body", {"Content-Type": "text/plain"})
    assert r.status == 200 and r.body == b"got body" and r.headers.get("x-seen") == "1"
    bad = await up.post(server.url("/fail"), b"{}", None)
    assert bad.status == 429 and bad.headers.get("Retry-After") == "2" and b"nope" in bad.body
    s = await up.open(server.url("/events"), b"{}", None)
    assert s.status == 200
    decoder = SSEDecoder()
    got = [ev async for chunk in s for ev in decoder.feed(chunk)]
    s.release()
    assert len(got) == 31 and got[-1] == (None, b"[DONE]")
    err = await up.open(server.url("/fail"), b"{}", None)
    assert err.status == 429 and b"nope" in await err.read()
    err.release()
    with pytest.raises(TransportError):  # nothing listens on port 1
        await up.post("http://127.0.0.1:1/", b"", None)
    await up.close()
