"""CoalescingTransport: a response head waits for its body, and never longer than one turn."""

from __future__ import annotations

import asyncio
from typing import Any

from polyroute.server.protocol import CoalescingTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


def run(body: Any) -> Recorder:
    async def main() -> Recorder:
        rec = Recorder()
        await body(CoalescingTransport(rec, asyncio.get_running_loop()), rec)  # type: ignore[arg-type]
        return rec

    return asyncio.run(main())


def test_head_and_body_go_out_in_one_write() -> None:
    async def body(tr: CoalescingTransport, rec: Recorder) -> None:
        tr.write(HEAD)
        assert rec.writes == []
        tr.write(b"{}")
        assert rec.writes == [HEAD + b"{}"]

    run(body)


def test_a_head_without_body_goes_out_at_the_end_of_the_turn() -> None:
    # HEAD requests, 204s and streams whose first event comes later write no body at once.
    async def body(tr: CoalescingTransport, rec: Recorder) -> None:
        tr.write(HEAD)
        await asyncio.sleep(0)
        assert rec.writes == [HEAD]
        tr.write(b"{}")
        assert rec.writes == [HEAD, b"{}"]

    run(body)


def test_close_and_other_transport_calls_flush_first() -> None:
    async def body(tr: CoalescingTransport, rec: Recorder) -> None:
        tr.write(HEAD)
        assert tr.get_extra_info("peername") == ("127.0.0.1", 1)
        assert rec.writes == [HEAD]
        tr.write(HEAD)
        tr.close()
        assert rec.writes == [HEAD, HEAD] and rec.closed

    run(body)


def test_body_bytes_pass_straight_through() -> None:
    async def body(tr: CoalescingTransport, rec: Recorder) -> None:
        tr.write(b"data: {}\n\n")
        assert rec.writes == [b"data: {}\n\n"]

    run(body)
