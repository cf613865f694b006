"""pytest fixtures for tests that need a vendor upstream.

Enable with `pytest_plugins = ["polyroute.emulators.pytest_plugin"]` in the root conftest.py
(or import the fixtures into a conftest). Fixtures:

  openai_emulator, anthropic_emulator, gemini_emulator
      An `EmulatorServer` shared by the session (accepting any API key), reset before and after
      each test, so each test starts from the echo behaviour with no recorded requests.
  emulator_factory
      `emulator_factory(kind, api_key=None, **kwargs) -> EmulatorServer`: a private, started
      server for this test (for a configured API key, a fixed port, ...); stopped afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .testing import EmulatorServer


def _session_server(kind: str) -> Iterator[EmulatorServer]:
    server = EmulatorServer(kind).start()
    try:
        yield server
    finally:
        server.stop()


def _fresh(server: EmulatorServer) -> Iterator[EmulatorServer]:
    server.reset()
    try:
        yield server
    finally:
        server.reset()


@pytest.fixture(scope="session")
def polyroute_openai_emulator_session() -> Iterator[EmulatorServer]:
    yield from _session_server("openai")


@pytest.fixture(scope="session")
def polyroute_anthropic_emulator_session() -> Iterator[EmulatorServer]:
    yield from _session_server("anthropic")


@pytest.fixture(scope="session")
def polyroute_gemini_emulator_session() -> Iterator[EmulatorServer]:
    yield from _session_server("gemini")


@pytest.fixture
def openai_emulator(polyroute_openai_emulator_session: EmulatorServer) -> Iterator[EmulatorServer]:
    yield from _fresh(polyroute_openai_emulator_session)


@pytest.fixture
def anthropic_emulator(polyroute_anthropic_emulator_session: EmulatorServer) -> Iterator[EmulatorServer]:
    yield from _fresh(polyroute_anthropic_emulator_session)


@pytest.fixture
def gemini_emulator(polyroute_gemini_emulator_session: EmulatorServer) -> Iterator[EmulatorServer]:
    yield from _fresh(polyroute_gemini_emulator_session)


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., EmulatorServer]]:
    started: list[EmulatorServer] = []

    def make(kind: str, api_key: str | None = None, **kwargs: Any) -> EmulatorServer:
        server = EmulatorServer(kind, api_key=api_key, **kwargs).start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()
