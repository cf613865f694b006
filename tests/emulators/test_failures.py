"""Injected failures as the official SDKs see them: disconnects, malformed streams, hangs, pace."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors, types

from polyroute.emulators import Behaviour, EmulatorServer

from .rawhttp import request

pytestmark = pytest.mark.integration

MESSAGES: list[Any] = [{"role": "user", "content": "one two three four five"}]
ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def oa(emu: EmulatorServer, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.sdk_base_url, api_key="k", max_retries=0, timeout=timeout)


def an(emu: EmulatorServer, timeout: float = 5.0) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=emu.sdk_base_url, api_key="k", max_retries=0, timeout=timeout)


# -- mid-stream disconnect -------------------------------------------------------------------------

def test_openai_disconnect_after_k_chunks(openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(disconnect_after=3)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oa(openai_emulator).chat.completions.create(model="m", messages=MESSAGES, stream=True):
            received.append(chunk)
    assert len(received) == 3
    with pytest.raises(openai.APIConnectionError), \
            oa(openai_emulator).chat.completions.stream(model="m", messages=MESSAGES) as stream:
        stream.get_final_completion()


def test_anthropic_disconnect_after_k_events(anthropic_emulator: EmulatorServer) -> None:
    anthropic_emulator.set_behaviour(disconnect_after=4)
    types_seen: list[str] = []
    # The SDK lets the transport error through unwrapped while iterating a stream.
    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)):
        for event in an(anthropic_emulator).messages.create(model="claude-haiku-4-5", max_tokens=64,
                                                            messages=MESSAGES, stream=True):
            types_seen.append(event.type)
    # 4 events on the wire: message_start, content_block_start, ping (dropped by the SDK), one delta.
    assert types_seen == ["message_start", "content_block_start", "content_block_delta"]


def test_gemini_disconnect_after_k_chunks(gemini_emulator: EmulatorServer) -> None:
    gemini_emulator.set_behaviour(disconnect_after=2)
    c = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=gemini_emulator.base_url,
                                                                  api_version="v1beta"))
    received = []
    with pytest.raises(httpx2.RemoteProtocolError):
        for chunk in c.models.generate_content_stream(model="gemini-2.5-flash", contents="a b c d"):
            received.append(chunk.text)
    assert received == ["echo: ", "a "]


def test_non_streaming_disconnect_is_a_connection_error(openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(disconnect_after=0)
    with pytest.raises(openai.APIConnectionError):
        oa(openai_emulator).chat.completions.create(model="m", messages=MESSAGES)


# -- malformed bodies ------------------------------------------------------------------------------

def test_truncated_sse_has_no_terminal_event(openai_emulator: EmulatorServer,
                                             anthropic_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(malformed="truncated_sse", malformed_after=2)
    raw = request(openai_emulator.base_url, "POST", "/v1/chat/completions",
                  body={"model": "m", "messages": MESSAGES, "stream": True})
    assert raw.status == 200 and not raw.text.endswith("\n\n") and "[DONE]" not in raw.text
    # The SDK ends quietly on a cut stream: the completion has no finish_reason.
    chunks = list(oa(openai_emulator).chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert len(chunks) == 2 and all(c.choices[0].finish_reason is None for c in chunks)

    anthropic_emulator.set_behaviour(malformed="truncated_sse", malformed_after=5)
    with an(anthropic_emulator).messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES) as s:
        partial = s.get_final_message()
    # Five whole events: message_start, content_block_start, ping and two text deltas.
    assert partial.stop_reason is None and partial.content[0].text == "echo: one "  # type: ignore[union-attr]


def test_invalid_json_in_stream_and_body(openai_emulator: EmulatorServer,
                                         anthropic_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(malformed="invalid_json", malformed_after=1)
    with pytest.raises(ValueError):
        list(oa(openai_emulator).chat.completions.create(model="m", messages=MESSAGES, stream=True))
    with pytest.raises(ValueError):
        oa(openai_emulator).chat.completions.create(model="m", messages=MESSAGES)
    anthropic_emulator.set_behaviour(malformed="invalid_json", malformed_after=1)
    with pytest.raises(ValueError):
        list(an(anthropic_emulator).messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES,
                                                    stream=True))


def test_gemini_malformed_stream(gemini_emulator: EmulatorServer) -> None:
    gemini_emulator.set_behaviour(malformed="invalid_json", malformed_after=1)
    c = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=gemini_emulator.base_url,
                                                                  api_version="v1beta"))
    with pytest.raises(errors.UnknownApiResponseError):
        list(c.models.generate_content_stream(model="gemini-2.5-flash", contents="x"))


# -- hangs and pace --------------------------------------------------------------------------------

def test_hang_until_client_timeout(openai_emulator: EmulatorServer, anthropic_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(hang=True)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        oa(openai_emulator, timeout=0.3).chat.completions.create(model="m", messages=MESSAGES)
    assert time.monotonic() - started >= 0.25
    anthropic_emulator.enqueue(Behaviour(hang=True))
    with pytest.raises(anthropic.APITimeoutError):
        an(anthropic_emulator, timeout=0.3).messages.create(model="claude-haiku-4-5", max_tokens=8,
                                                            messages=MESSAGES)


def test_hanging_request_is_released_when_the_server_stops() -> None:
    emu = EmulatorServer("openai", behaviour=Behaviour(hang=True)).start()
    client = oa(emu, timeout=30.0)
    errors_seen: list[BaseException] = []

    def call() -> None:
        try:
            client.chat.completions.create(model="m", messages=MESSAGES)
        except BaseException as exc:
            errors_seen.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    deadline = time.monotonic() + 5
    while not emu.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    emu.stop()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - started < 5
    assert isinstance(errors_seen[0], openai.APIConnectionError)


def test_first_token_and_chunk_delays(openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(first_token_delay=0.2, chunk_delay=0.05, chunks=4)
    started = time.monotonic()
    stream = oa(openai_emulator).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    first = next(iter(stream))
    first_at = time.monotonic() - started
    rest = list(stream)
    total = time.monotonic() - started
    # role chunk, 4 content chunks, finish chunk, [DONE]: 6 gaps of 0.05 s after the first event.
    assert first.choices[0].delta.role == "assistant" and len(rest) == 5
    assert first_at >= 0.2 and total >= 0.2 + 6 * 0.05


def test_headers_delay_applies_to_plain_requests(anthropic_emulator: EmulatorServer) -> None:
    anthropic_emulator.enqueue(Behaviour(headers_delay=0.25))
    started = time.monotonic()
    an(anthropic_emulator).messages.create(model="claude-haiku-4-5", max_tokens=8, messages=MESSAGES)
    assert time.monotonic() - started >= 0.25


# -- failure rates ---------------------------------------------------------------------------------

def test_seeded_failure_rate_is_repeatable(openai_emulator: EmulatorServer) -> None:
    def run() -> list[int]:
        openai_emulator.reset()
        openai_emulator.set_failure_rate(0.2, seed=42)
        return [request(openai_emulator.base_url, "POST", "/v1/chat/completions",
                        body={"model": "m", "messages": MESSAGES}).status for _ in range(60)]

    first, second = run(), run()
    assert first == second
    failures = first.count(503)
    assert set(first) == {200, 503} and 4 <= failures <= 20
    rng = random.Random(42)
    assert [503 if rng.random() < 0.2 else 200 for _ in range(60)] == first


def test_queue_takes_precedence_over_rate_and_default(openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(text="default")
    openai_emulator.set_failure_rate(1.0, behaviour=Behaviour(status=502))
    openai_emulator.enqueue(Behaviour(text="queued"))
    client = oa(openai_emulator)
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "queued"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    openai_emulator.set_failure_rate(0.0)
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "default"
