"""HTTPClient against uvicorn (h11) serving an ASGI app that streams piece by piece: chunks are
delivered as they are sent, SSE events split across reads come out whole, silences are read
timeouts, and a consumer that is cancelled or lets go mid-body closes the connection (the server
sees the disconnect) while a body read to the end returns it to the pool."""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import uvicorn

from polyroute.transport import HTTPClient, ReadTimeout, SSEDecoder
from tests.helpers.services import free_port

pytestmark = pytest.mark.integration

SSE_PIECES = [
    b'data: {"a"',
    b":1}\r",  # the CR of a CRLF at the end of a read
    b"\n\r\n",
    b"event: x\ndata: l1\n",
    b"data: l2\n\n: comment\n\ndata: [DONE]\n\n",
]


class App:
    """ASGI app. /gated sends piece i only after the test released gate i (so each piece is
    a separate read); /stall sends one chunk and then waits for the client to go away."""

    def __init__(self) -> None:
        self.gates = threading.Semaphore(0)
        self.disconnected = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        loop = asyncio.get_running_loop()
        if path == "/gated":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
            for piece in SSE_PIECES:
                if not await loop.run_in_executor(None, self.gates.acquire, True, 10):
                    return
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif path == "/stall":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnected.set()
        elif path == "/slow-headers":
            await asyncio.sleep(0.6)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"late"})
        elif path == "/deflate":
            raw = scope["query_string"] == b"raw"
            c = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
            data = c.compress(b"deflated " * 3000) + c.flush()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-encoding", b"deflate")]})
            for i in range(0, len(data), 100):  # many small chunks
                await send({"type": "http.response.body", "body": data[i : i + 100], "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            body = b"x" * 1000
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
            await send({"type": "http.response.body", "body": body})


class Server:
    def __init__(self, app: App) -> None:
        self.app = app
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, http="h11", loop="asyncio",
                                                    lifespan="on", log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server(App())
    s.thread.start()
    deadline = time.monotonic() + 20
    while not s.server.started:
        if not s.thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.01)
    yield s
    s.server.should_exit = True
    s.thread.join(10)


async def until(cond: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll a condition the event loop makes true (bounded; fails the test when it never does)."""
    for _ in range(int(seconds / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached in time")


@pytest.fixture
async def client() -> AsyncIterator[HTTPClient]:
    c = HTTPClient(read_timeout=0.4)
    yield c
    await c.close()


async def test_chunks_arrive_as_sent_and_sse_events_come_out_whole(server: Server, client: HTTPClient) -> None:
    resp = await client.stream("POST", server.url("/gated"), body=b"{}")
    decoder = SSEDecoder()
    per_read: list[list[tuple[str | None, bytes]]] = []
    it = aiter(resp)
    for _ in SSE_PIECES:
        server.app.gates.release()  # the server sends the next piece only now
        per_read.append(decoder.feed(await anext(it)))
    assert per_read == [[], [], [(None, b'{"a":1}')], [], [("x", b"l1\nl2"), (None, b"[DONE]")]]
    with pytest.raises(StopAsyncIteration):
        await anext(it)
    assert resp.complete and client.stats()["idle"] == 1


async def test_fully_read_responses_return_the_connection(server: Server, client: HTTPClient) -> None:
    for _ in range(10):
        assert (await client.request("GET", server.url("/plain"))).body == b"x" * 1000
    assert client.stats()["opened"] == 1


@pytest.mark.parametrize("query", ["", "?raw"])
async def test_deflate_streamed_in_small_chunks(server: Server, client: HTTPClient, query: str) -> None:
    resp = await client.stream("GET", server.url("/deflate" + query))
    assert b"".join([c async for c in resp]) == b"deflated " * 3000


async def test_slow_headers_are_a_read_timeout(server: Server, client: HTTPClient) -> None:
    with pytest.raises(ReadTimeout):
        await client.request("GET", server.url("/slow-headers"))
    assert client.stats()["connections"] == 0


async def test_silence_mid_stream_is_a_read_timeout_and_closes_the_connection(server: Server, client: HTTPClient) -> None:
    server.app.disconnected.clear()
    resp = await client.stream("GET", server.url("/stall"))
    with pytest.raises(ReadTimeout):
        async for chunk in resp:
            assert chunk == b"first"
    assert client.stats()["connections"] == 0
    assert await asyncio.to_thread(server.app.disconnected.wait, 5)


async def test_cancelled_consumer_closes_the_connection(server: Server) -> None:
    c = HTTPClient(read_timeout=60)
    server.app.disconnected.clear()
    got: list[bytes] = []

    async def consume() -> None:
        resp = await c.stream("GET", server.url("/stall"))
        async for chunk in resp:
            got.append(chunk)

    task = asyncio.ensure_future(consume())
    await until(lambda: bool(got))
    task.cancel()  # the gateway's client went away
    with pytest.raises(asyncio.CancelledError):
        await task
    assert c.stats()["connections"] == 0
    assert await asyncio.to_thread(server.app.disconnected.wait, 5)
    await c.close()


async def test_released_mid_body_closes_the_connection(server: Server) -> None:
    c = HTTPClient(read_timeout=60)
    server.app.disconnected.clear()
    async with await c.stream("GET", server.url("/stall")) as resp:
        assert await anext(aiter(resp)) == b"first"
    assert c.stats()["connections"] == 0
    assert await asyncio.to_thread(server.app.disconnected.wait, 5)
    assert (await c.request("GET", server.url("/plain"))).status == 200
    await c.close()
