"""Fixtures for the emulator tests: the public pytest plugin's fixtures, plus raw HTTP helpers."""

from __future__ import annotations

from polyroute.emulators.pytest_plugin import (  # noqa: F401  (fixtures are found by name)
    anthropic_emulator,
    emulator_factory,
    gemini_emulator,
    openai_emulator,
    polyroute_anthropic_emulator_session,
    polyroute_gemini_emulator_session,
    polyroute_openai_emulator_session,
)
