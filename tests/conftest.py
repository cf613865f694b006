"""Shared test set-up. The emulators' fixtures (openai_emulator, anthropic_emulator,
gemini_emulator, emulator_factory) come from polyroute's pytest11 entry point."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything outside tests/unit talks to real servers over loopback: the integration tier.
    for item in items:
        if "tests/unit" not in str(item.fspath) and "integration" not in item.keywords:
            item.add_marker(pytest.mark.integration)
