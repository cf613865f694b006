"""Blocking raw-socket HTTP/1.1 client measuring time to first body byte and to last byte.

Raw sockets keep client overhead to a recv() loop so gateway differences are not hidden behind
client-library cost; one keep-alive connection, requests strictly sequential (concurrency 1).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class StreamSample:
    ttfb_ns: int
    ttlb_ns: int
    body_bytes: int
    status: int


class _Conn:
    def __init__(self, host: str, port: int) -> None:
        self.addr = (host, port)
        self.sock: socket.socket | None = None

    def get(self) -> socket.socket:
        if self.sock is None:
            s = socket.create_connection(self.addr, timeout=30)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = s
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _request_bytes(path: str, host: str, body: bytes, headers: dict[str, str]) -> bytes:
    h = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\n{h}Content-Length: {len(body)}\r\n\r\n").encode() + body


def one(conn: _Conn, req: bytes) -> StreamSample:
    sock = conn.get()
    t0 = time.perf_counter_ns()
    sock.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before headers")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])}
    chunked = hdrs.get(b"transfer-encoding", b"").lower() == b"chunked"
    length = int(hdrs[b"content-length"]) if b"content-length" in hdrs else None
    close = hdrs.get(b"connection", b"").lower() == b"close"
    while not body:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before body")
        body += chunk
    t_first = time.perf_counter_ns()
    received = len(body)

    def complete() -> bool:
        if chunked:
            return body.endswith(b"\r\n0\r\n\r\n") or body == b"0\r\n\r\n"
        if length is not None:
            return received >= length
        return False

    tail = body[-16:]
    while not complete():
        chunk = sock.recv(262144)
        if not chunk:
            if length is None and not chunked:
                break
            raise ConnectionError("closed mid-body")
        received += len(chunk)
        body = tail + chunk
        tail = body[-16:]
    t_last = time.perf_counter_ns()
    if close or (length is None and not chunked):
        conn.close()
    return StreamSample(t_first - t0, t_last - t0, received, status)


def run(url: str, body: bytes, headers: dict[str, str], count: int, max_seconds: float,
        warmup: int = 20) -> list[StreamSample]:
    """Sequential streamed POSTs: at most `count` measured samples and at most `max_seconds`."""
    u = urlsplit(url)
    assert u.hostname == "127.0.0.1", url
    conn = _Conn(u.hostname, u.port or 80)
    req = _request_bytes(u.path or "/", f"{u.hostname}:{u.port}", body, headers)
    out: list[StreamSample] = []
    deadline = time.monotonic() + max_seconds
    try:
        for i in range(warmup + count):
            if time.monotonic() > deadline:
                break
            s = one(conn, req)
            if s.status != 200:
                raise RuntimeError(f"HTTP {s.status} from {url}")
            if i >= warmup:
                out.append(s)
    finally:
        conn.close()
    return out
