"""Shared test set-up: the emulators' fixtures and the gateway runner."""

from __future__ import annotations

import pytest

try:  # the emulators' fixtures (openai_emulator, anthropic_emulator, gemini_emulator)
    from polyroute.emulators.pytest_plugin import *  # noqa: F403
except ImportError:  # pragma: no cover - while the emulators are being built
    pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.keywords or "slow" in item.keywords:
            continue
        if "tests/unit" not in str(item.fspath):
            item.add_marker(pytest.mark.integration)
