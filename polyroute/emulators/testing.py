"""Run an emulator in a background thread, for tests and scripts.

    with EmulatorServer("anthropic", api_key="k") as emu:
        client = anthropic.Anthropic(base_url=emu.sdk_base_url, api_key="k")
        emu.enqueue(Behaviour(status=529))
        ...
        assert emu.requests[-1].body["max_tokens"] == 64

The server has its own event loop in its own thread, so it serves sync and async clients alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from .behaviour import Behaviour
from .core import Emulator
from .recording import RecordedRequest
from .serving import RunningServer

START_TIMEOUT = 10.0


class EmulatorServer:
    def __init__(self, kind: str = "openai", port: int = 0, api_key: str | None = None, *,
                 host: str = "127.0.0.1", models: Sequence[str] | None = None,
                 behaviour: Behaviour | None = None) -> None:
        self.emulator = Emulator(kind, api_key=api_key, models=models)
        if behaviour is not None:
            self.emulator.set_behaviour(behaviour)
        self.kind = kind
        self.host = host
        self._requested_port = port
        self._server: RunningServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> EmulatorServer:
        if self._thread is not None:
            return self
        self._server = RunningServer(self.emulator, self.host, self._requested_port)
        self._thread = threading.Thread(target=self._run, name=f"polyroute-emulator-{self.kind}", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("the emulator did not start in time")
        if self._error is not None:
            raise RuntimeError("the emulator failed to start") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        assert self._server is not None
        try:
            loop.run_until_complete(self._server.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            # Handlers still running (hung or slow requests) must finish their cancellation before
            # the loop closes, or Python reports them as destroyed while pending.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        thread, loop, server = self._thread, self._loop, self._server
        if thread is None or loop is None or server is None:
            return
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(server.stop(), loop)
            future.result(timeout=START_TIMEOUT)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT)
        self._thread = self._loop = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return self._server.port

    @property
    def base_url(self) -> str:
        """Scheme, host and port, no trailing slash: http://127.0.0.1:PORT"""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return self._server.base_url

    @property
    def sdk_base_url(self) -> str:
        """What the vendor's official SDK takes as `base_url` (OpenAI's includes /v1)."""
        return self.base_url + "/v1" if self.kind == "openai" else self.base_url

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # -- behaviours and recordings ---------------------------------------------------------------
    def set_behaviour(self, behaviour: Behaviour | None = None, **fields: Any) -> None:
        self.emulator.set_behaviour(behaviour, **fields)

    def enqueue(self, *behaviours: Behaviour, times: int = 1) -> None:
        self.emulator.enqueue(*behaviours, times=times)

    def set_failure_rate(self, rate: float, *, seed: int = 0, behaviour: Behaviour | None = None) -> None:
        self.emulator.set_failure_rate(rate, seed=seed, behaviour=behaviour)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.emulator.requests

    @property
    def last_request(self) -> RecordedRequest:
        items = self.emulator.requests
        if not items:
            raise AssertionError("the emulator has received no request")
        return items[-1]

    def clear_requests(self) -> None:
        self.emulator.clear_requests()

    def reset(self) -> None:
        self.emulator.reset()
