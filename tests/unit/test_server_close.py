"""A stop never hangs on a part that does not close: the app logs where it is stuck and goes on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from typing import Any

import pytest

from polyroute.server import app as app_module
from polyroute.server.app import App


class _Gateway:
    def __init__(self, close: Any) -> None:
        self.close = close


async def _stuck_forever() -> None:
    await asyncio.Event().wait()


async def _fails() -> None:
    raise RuntimeError("pool already gone")


async def _shutdown(gateway: _Gateway) -> list[MutableMapping[str, Any]]:
    app = App(gateway, max_body_bytes=1)  # type: ignore[arg-type]
    inbox = [{"type": "lifespan.shutdown"}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(msg: MutableMapping[str, Any]) -> None:
        sent.append(msg)

    await asyncio.wait_for(app.lifespan(receive, send), 10)
    return sent


async def test_a_close_that_never_ends_is_abandoned_with_a_stack_dump(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(app_module, "CLOSE_LIMIT", 0.2)
    with caplog.at_level(logging.ERROR, logger="polyroute.server"):
        sent = await _shutdown(_Gateway(_stuck_forever))
    assert sent == [{"type": "lifespan.shutdown.complete"}]
    [record] = [r for r in caplog.records if "closing took over" in r.getMessage()]
    # The dump names the coroutine that was still waiting, down to its await.
    assert "in _stuck_forever" in record.getMessage()


async def test_a_close_that_fails_is_logged_and_the_stop_completes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="polyroute.server"):
        sent = await _shutdown(_Gateway(_fails))
    assert sent == [{"type": "lifespan.shutdown.complete"}]
    [record] = [r for r in caplog.records if r.getMessage() == "closing failed"]
    assert record.exc_info is not None and "pool already gone" in str(record.exc_info[1])
