"""Run a real gateway on a loopback port inside the test process (real HTTP, real uvicorn)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import uvicorn

from polyroute.config.load import config_hash, parse_config
from polyroute.config.schema import Config
from polyroute.core.gateway import Gateway
from polyroute.core.policy import Policy
from polyroute.server.app import App
from polyroute.server.factory import build_policies, install_routes
from polyroute.server.protocol import CoalescingHttpToolsProtocol


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningGateway:
    def __init__(self, app: App, server: uvicorn.Server, port: int) -> None:
        self.app = app
        self.server = server
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.openai_base = f"{self.base_url}/v1"

    @property
    def gateway(self) -> Gateway:
        return self.app.gateway


@contextmanager
def run_gateway(
    config: str | Config,
    env: dict[str, str] | None = None,
    extra_policies: Sequence[Policy] = (),
    **app_kwargs: Any,
) -> Iterator[RunningGateway]:
    """Start a gateway for `config` (YAML text or a Config) in a thread; stop it on exit.

    `extra_policies` run after the configured ones: tests use them to observe each request's
    final RequestContext."""
    cfg = parse_config(config, "<test config>", env=env or {}) if isinstance(config, str) else config
    policies = [*build_policies(cfg), *extra_policies]
    app = App(Gateway(cfg, config_hash(cfg), policies), **app_kwargs)
    install_routes(app)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, loop="asyncio", http=CoalescingHttpToolsProtocol, lifespan="on",
                       log_level="warning", access_log=False, timeout_graceful_shutdown=10)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("gateway failed to start (see log output)")
        if time.monotonic() > deadline:
            raise RuntimeError("gateway did not start within 60 s")
        time.sleep(0.01)
    try:
        yield RunningGateway(app, server, port)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


