"""Start and stop an emulator's HTTP server on the current event loop."""

from __future__ import annotations

import socket

from aiohttp import web

from .app import build_app
from .core import Emulator

SHUTDOWN_TIMEOUT = 1.0


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class RunningServer:
    """An emulator served on a bound socket; `port` is known even when 0 was asked for."""

    def __init__(self, emu: Emulator, host: str, port: int) -> None:
        self.emulator = emu
        self.host = host
        self._sock = bind_socket(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return url_for(self.host, self.port)

    async def start(self) -> None:
        self._runner = web.AppRunner(build_app(self.emulator), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self._runner.setup()
        site = web.SockSite(self._runner, self._sock)
        await site.start()

    async def stop(self) -> None:
        # Release hanging handlers first, or cleanup would wait for them.
        self.emulator.begin_shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._sock.close()
