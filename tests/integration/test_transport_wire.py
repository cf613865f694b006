"""HTTPClient against a scripted loopback server that writes exact bytes: the failure modes real
servers produce only by accident (stale keep-alive race, resets mid-body, malformed responses,
interim 1xx, unsolicited bytes), pool limits, cancellation and backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from polyroute.transport import (
    ConnectError,
    ConnectionReset,
    ConnectTimeout,
    HTTPClient,
    PoolClosed,
    ReadTimeout,
    RemoteProtocolError,
)
from polyroute.transport.connection import HIGH_WATER

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Handler = Callable[[int, bytes, asyncio.StreamWriter], Awaitable[bool]]


class Wire:
    """Each request (numbered from 1 across connections) goes to `handler`, which writes what it
    likes and returns whether to keep reading requests on that connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed_by_client = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Wire:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/x"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_client.set()
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                if not await self.handler(len(self.requests), head + body, writer):
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@contextlib.asynccontextmanager
async def wire(handler: Handler) -> AsyncIterator[Wire]:
    w = await Wire(handler).start()
    try:
        yield w
    finally:
        await w.stop()


async def until(cond: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll a condition the event loop makes true (bounded; fails the test when it never does)."""
    for _ in range(int(seconds / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached in time")


async def answer_ok(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
    w.write(OK)
    return True


# --- the stale keep-alive race -------------------------------------------------------------------


async def test_stale_keepalive_is_retried_once_on_a_fresh_connection() -> None:
    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        if n == 2:
            return False  # the race: the server closes the idle connection as the request arrives
        w.write(OK)
        return True

    async with wire(h) as srv:
        c = HTTPClient()
        assert (await c.request("POST", srv.url, body=b"one")).body == b"ok"
        r = await c.request("POST", srv.url, body=b"two")
        assert r.status == 200 and r.body == b"ok"
        assert c.stats()["stale_retries"] == 1 and c.stats()["opened"] == 2
        assert len(srv.requests) == 3 and srv.requests[1] == srv.requests[2]
        await c.close()


async def test_no_retry_once_response_bytes_arrived() -> None:
    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        if n == 2:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Le")
            await w.drain()
            return False
        w.write(OK)
        return True

    async with wire(h) as srv:
        c = HTTPClient()
        await c.request("POST", srv.url, body=b"one")
        with pytest.raises(ConnectionReset):
            await c.request("POST", srv.url, body=b"two")
        assert len(srv.requests) == 2 and c.stats()["stale_retries"] == 0
        await c.close()


async def test_a_new_connection_closed_without_answer_is_not_retried() -> None:
    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        return False

    async with wire(h) as srv:
        c = HTTPClient()
        with pytest.raises(ConnectionReset):
            await c.request("POST", srv.url, body=b"x")
        assert len(srv.requests) == 1
        await c.close()


# --- bodies that end badly, malformed responses --------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_body_cut_short_is_an_error_and_the_data_before_it_is_delivered(reply: bytes) -> None:
    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(reply)
        await w.drain()
        return False

    async with wire(h) as srv:
        c = HTTPClient()
        with pytest.raises(ConnectionReset):
            await c.request("GET", srv.url)
        resp = await c.stream("GET", srv.url)
        got = b""
        with pytest.raises(ConnectionReset):
            async for chunk in resp:
                got += chunk
        assert got in (b"0123456789", b"hello")
        assert c.stats()["connections"] == 0
        await c.close()


@pytest.mark.parametrize(
    "reply",
    [b"HTTP/1.1 abc OK\r\n\r\n", b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"],
)
async def test_malformed_responses_are_protocol_errors(reply: bytes) -> None:
    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(reply)
        return True

    async with wire(h) as srv:
        c = HTTPClient()
        with pytest.raises(RemoteProtocolError):
            await c.request("GET", srv.url)
        assert c.stats()["connections"] == 0
        await c.close()


async def test_interim_1xx_is_skipped() -> None:
    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + OK)
        return True

    async with wire(h) as srv:
        c = HTTPClient()
        for _ in range(2):
            r = await c.request("GET", srv.url)
            assert r.status == 200 and r.body == b"ok" and "link" not in r.headers
        assert c.stats()["opened"] == 1
        await c.close()


@pytest.mark.parametrize("status_line", [b"HTTP/1.0 200 OK", b"HTTP/1.1 200 OK\r\nConnection: close"])
async def test_close_delimited_body(status_line: bytes) -> None:
    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(status_line + b"\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n" + b"z" * 70000)
        await w.drain()
        return False

    async with wire(h) as srv:
        c = HTTPClient()
        for _ in range(2):
            r = await c.request("GET", srv.url)
            assert r.body == b"z" * 70000 and r.headers.getall("set-cookie") == ["a=1", "b=2"]
        assert c.stats()["opened"] == 2 and c.stats()["connections"] == 0
        await c.close()


async def test_head_and_204_have_no_body_and_keep_the_connection() -> None:
    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        if req.startswith(b"HEAD"):
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        elif b"/empty" in req.split(b"\r\n")[0]:
            w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        else:
            w.write(OK)
        return True

    async with wire(h) as srv:
        c = HTTPClient()
        r = await c.request("HEAD", srv.url)
        assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "1000"
        assert (await c.request("GET", srv.url)).body == b"ok"
        assert (await c.request("DELETE", srv.url + "/empty")).status == 204
        assert (await c.request("GET", srv.url)).body == b"ok"
        assert c.stats()["opened"] == 1
        await c.close()


async def test_bytes_on_an_idle_connection_retire_it() -> None:
    sent_late = asyncio.Event()

    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(OK)
        if n == 1:
            await w.drain()
            await sent_late.wait()
            w.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
        return True

    async with wire(h) as srv:
        c = HTTPClient()
        await c.request("GET", srv.url)
        sent_late.set()
        await until(lambda: c.stats()["idle"] == 0)
        assert (await c.request("GET", srv.url)).body == b"ok"
        assert c.stats()["opened"] == 2
        await c.close()


# --- pool: expiry, limits, waiters ---------------------------------------------------------------


async def test_expired_idle_connections_are_not_reused_and_get_closed() -> None:
    async with wire(answer_ok) as srv:
        c = HTTPClient(keepalive_expiry=30)
        await c.request("GET", srv.url)
        (pool,) = c._pools.values()
        (conn,) = pool.idle
        conn.idle_since -= 31  # as if idle for 31 s
        await c.request("GET", srv.url)
        assert c.stats()["opened"] == 2
        await until(srv.closed_by_client.is_set)
        # The sweep closes what aged in the pool.
        (conn,) = pool.idle
        conn.idle_since -= 31
        pool._sweep()
        assert c.stats() == {"connections": 0, "idle": 0, "opened": 2, "stale_retries": 0}
        await c.close()


async def test_pool_is_bounded_and_a_cancelled_waiter_frees_nothing_it_did_not_hold() -> None:
    release = asyncio.Event()

    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        await release.wait()
        w.write(OK)
        return True

    async with wire(h) as srv:
        c = HTTPClient(max_connections=2)
        tasks = [asyncio.ensure_future(c.request("POST", srv.url, body=b"%d" % i)) for i in range(6)]
        await until(lambda: len(srv.requests) == 2)
        (pool,) = c._pools.values()
        await until(lambda: len(pool.waiters) == 4)
        tasks[5].cancel()
        await asyncio.gather(tasks[5], return_exceptions=True)
        release.set()
        done = await asyncio.gather(*tasks[:5])
        assert [r.body for r in done] == [b"ok"] * 5
        assert srv.connections == 2 and c.stats()["opened"] == 2 and c.stats()["connections"] == 2
        assert not pool.waiters and len(srv.requests) == 5
        await c.close()


# --- timeouts, cancellation, closing -------------------------------------------------------------


async def hang(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
    await asyncio.Event().wait()
    return False


async def test_cancelled_while_waiting_for_headers_closes_the_connection() -> None:
    async with wire(hang) as srv:
        c = HTTPClient()
        task = asyncio.ensure_future(c.request("POST", srv.url, body=b"x"))
        await until(lambda: len(srv.requests) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert c.stats()["connections"] == 0
        await c.close()


async def test_silent_server_is_a_read_timeout() -> None:
    async with wire(hang) as srv:
        c = HTTPClient(read_timeout=0.2)
        with pytest.raises(ReadTimeout, match=r"sent nothing for 0\.2 s"):
            await c.request("POST", srv.url, body=b"x")
        assert c.stats()["connections"] == 0
        await c.close()


async def test_slow_body_gap_is_a_read_timeout_but_steady_data_is_not() -> None:
    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(6):  # 6 x 0.1 s: longer than the timeout in total, never silent for it
            w.write(b"1\r\na\r\n")
            await w.drain()
            await asyncio.sleep(0.1)
        if n == 2:
            await asyncio.Event().wait()
        w.write(b"0\r\n\r\n")
        return True

    async with wire(h) as srv:
        c = HTTPClient(read_timeout=0.35)
        assert (await c.request("GET", srv.url)).body == b"a" * 6
        resp = await c.stream("GET", srv.url)
        with pytest.raises(ReadTimeout):
            async for _ in resp:
                pass
        await c.close()


async def test_closing_the_client_fails_a_stream_being_read() -> None:
    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await asyncio.Event().wait()
        return False

    async with wire(h) as srv:
        c = HTTPClient()
        resp = await c.stream("GET", srv.url)
        assert await anext(aiter(resp)) == b"abc"
        await c.close()
        with pytest.raises(PoolClosed):
            await anext(aiter(resp))
        with pytest.raises(PoolClosed):
            await c.request("GET", srv.url)


async def test_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = HTTPClient()
    with pytest.raises(ConnectError, match="cannot connect"):
        await c.request("GET", f"http://127.0.0.1:{port}/")
    assert c.stats()["connections"] == 0
    await c.close()


async def test_tls_handshake_that_never_answers_is_a_connect_timeout() -> None:
    async with wire(hang) as srv:
        c = HTTPClient(connect_timeout=0.2, ssl_context=ssl.create_default_context())
        with pytest.raises(ConnectTimeout):
            await c.request("GET", f"https://127.0.0.1:{srv.port}/")
        assert c.stats()["connections"] == 0
        await c.close()


# --- backpressure --------------------------------------------------------------------------------


async def test_a_lagging_consumer_pauses_the_socket_and_gets_everything() -> None:
    total = 8 * 1024 * 1024
    block = bytes(range(256)) * 256  # 64 KiB

    async def h(n: int, req: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        for _ in range(total // len(block)):
            w.write(block)
            await w.drain()
        return True

    async with wire(h) as srv:
        c = HTTPClient()
        resp = await c.stream("GET", srv.url)
        conn = resp._conn
        assert conn is not None
        await until(lambda: conn._paused)
        # Reading stopped near the high-water mark, not at the 8 MiB the server wants to send.
        assert HIGH_WATER < resp._size < HIGH_WATER + 1024 * 1024
        got = 0
        async for chunk in resp:
            got += len(chunk)
        assert got == total and resp.complete
        assert c.stats()["idle"] == 1  # fully read: back in the pool
        await c.close()
