"""The emulators answer like the golden transcripts (tests/data/transcripts), at shape level."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from polyroute.emulators import Behaviour, EmulatorServer

from .rawhttp import request
from .shapes import mismatches, stream_mismatches

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "data" / "transcripts"
FILES = sorted(TRANSCRIPTS.glob("*/*.json"))

pytestmark = pytest.mark.integration


def test_every_vendor_has_transcripts() -> None:
    assert {p.parent.name for p in FILES} == {"openai", "anthropic", "gemini"}
    assert len(FILES) >= 25


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_emulator_matches_transcript(path: Path, request_fixture: Callable[[str], EmulatorServer],
                                     emulator_factory: Callable[..., EmulatorServer]) -> None:
    transcript: dict[str, Any] = json.loads(path.read_text())
    vendor = path.parent.name
    assert transcript["sources"], "a transcript names its sources"
    settings = transcript.get("emulator") or {}
    server = emulator_factory(vendor, **settings) if settings else request_fixture(vendor)
    if transcript.get("behaviour"):
        server.set_behaviour(Behaviour.from_dict(transcript["behaviour"]))

    sent = transcript["request"]
    answer = request(server.base_url, sent["method"], sent["path"], body=sent.get("body"),
                     headers=sent.get("headers"), query=sent.get("query"))
    expected = transcript["response"]
    assert answer.status == expected["status"], answer.text
    for header in expected.get("headers", []):
        assert header in answer.headers, f"missing header {header}"
    if "stream" in expected:
        assert answer.headers["content-type"].startswith("text/event-stream")
        problems = stream_mismatches(vendor, expected["stream"], answer.sse())
    else:
        problems = mismatches(expected["body"], answer.json())
    assert not problems, "\n".join(problems)

    recorded = server.last_request
    assert recorded.path == sent["path"]
    assert recorded.body == sent.get("body")


@pytest.fixture
def request_fixture(openai_emulator: EmulatorServer, anthropic_emulator: EmulatorServer,
                    gemini_emulator: EmulatorServer) -> Callable[[str], EmulatorServer]:
    servers = {"openai": openai_emulator, "anthropic": anthropic_emulator, "gemini": gemini_emulator}
    return servers.__getitem__
