"""Loopback port allocation and readiness polling (bounded in time)."""

from __future__ import annotations

import socket
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, method: str = "GET", body: bytes | None = None,
              headers: dict[str, str] | None = None, alive: object = None) -> bool:
    """Poll `url` until it answers 2xx or `timeout` passes; `alive()` returning False aborts early."""
    assert url.startswith("http://127.0.0.1"), url
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(alive) and not alive():
            return False
        try:
            req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as r:
                if 200 <= r.status < 300:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False
