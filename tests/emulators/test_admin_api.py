"""The admin HTTP API (/_emulator/...) that drives an emulator from outside Python."""

from __future__ import annotations

import pytest

from polyroute.emulators import EmulatorServer

from .rawhttp import RawResponse, request

pytestmark = pytest.mark.integration

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def post(emu: EmulatorServer, path: str, body: object = None) -> RawResponse:
    return request(emu.base_url, "POST", path, body=body)


def test_default_behaviour_and_queue_over_http(openai_emulator: EmulatorServer) -> None:
    answer = post(openai_emulator, "/_emulator/behaviour", {
        "default": {"text": "from admin"},
        "enqueue": [{"status": 429, "retry_after": 2}, {"tool_calls": [{"name": "f", "arguments": {"a": 1}}]}]})
    assert answer.status == 200
    state = answer.json()
    assert state["default"]["text"] == "from admin" and len(state["queue"]) == 2

    first = post(openai_emulator, "/v1/chat/completions", CHAT)
    assert first.status == 429 and first.headers["retry-after"] == "2"
    second = post(openai_emulator, "/v1/chat/completions", CHAT).json()
    assert second["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    third = post(openai_emulator, "/v1/chat/completions", CHAT).json()
    assert third["choices"][0]["message"]["content"] == "from admin"
    assert request(openai_emulator.base_url, "GET", "/_emulator/behaviour").json()["queue"] == []


def test_enqueue_times_over_http(openai_emulator: EmulatorServer) -> None:
    assert post(openai_emulator, "/_emulator/behaviour", {"enqueue": [{"status": 500}], "times": 3}).status == 200
    statuses = [post(openai_emulator, "/v1/chat/completions", CHAT).status for _ in range(4)]
    assert statuses == [500, 500, 500, 200]
    assert post(openai_emulator, "/_emulator/behaviour", {"enqueue": [{}], "times": 0}).status == 400


def test_failure_rate_over_http(anthropic_emulator: EmulatorServer) -> None:
    assert post(anthropic_emulator, "/_emulator/behaviour",
                {"failure_rate": {"rate": 1.0, "seed": 3, "behaviour": {"status": 529}}}).status == 200
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    body = {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
    failed = request(anthropic_emulator.base_url, "POST", "/v1/messages", body=body, headers=headers)
    assert failed.status == 529 and failed.json()["error"]["type"] == "overloaded_error"
    assert post(anthropic_emulator, "/_emulator/behaviour", {"failure_rate": None}).json()["failure_rate"] is None
    assert request(anthropic_emulator.base_url, "POST", "/v1/messages", body=body, headers=headers).status == 200


def test_recorded_requests_and_reset_over_http(gemini_emulator: EmulatorServer) -> None:
    body = {"contents": [{"parts": [{"text": "remember me"}]}]}
    request(gemini_emulator.base_url, "POST", "/v1beta/models/gemini-2.5-flash:generateContent", body=body,
            query={"key": "abc"}, headers={"X-Custom": "yes"})
    recorded = request(gemini_emulator.base_url, "GET", "/_emulator/requests").json()["requests"]
    assert len(recorded) == 1  # admin calls are not recorded
    item = recorded[0]
    assert item["method"] == "POST" and item["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert item["query"] == {"key": "abc"} and item["headers"]["x-custom"] == "yes" and item["body"] == body
    assert request(gemini_emulator.base_url, "DELETE", "/_emulator/requests").status == 200
    assert gemini_emulator.requests == []
    post(gemini_emulator, "/_emulator/behaviour", {"default": {"text": "x"}})
    assert post(gemini_emulator, "/_emulator/reset").json() == {"status": "reset"}
    assert gemini_emulator.emulator.behaviours.snapshot()["default"]["text"] is None


@pytest.mark.parametrize("body", [
    {"default": {"no_such_field": 1}},
    {"enqueue": {"status": 500}},
    {"enqueue": [{"status": 200}]},
    {"failure_rate": {"rate": 2}},
    {"default": {"chunks": 0}},
    {"default": {"error_after": 2}},
    {"something": True},
    [1, 2],
])
def test_bad_admin_bodies_change_nothing(openai_emulator: EmulatorServer, body: object) -> None:
    answer = post(openai_emulator, "/_emulator/behaviour", body)
    assert answer.status == 400 and answer.json()["error"]
    assert openai_emulator.emulator.behaviours.snapshot() == {
        "default": openai_emulator.emulator.behaviours.snapshot()["default"], "queue": [], "failure_rate": None}
    assert openai_emulator.emulator.behaviours.snapshot()["default"]["text"] is None


def test_health(openai_emulator: EmulatorServer) -> None:
    assert request(openai_emulator.base_url, "GET", "/_emulator/health").json() == {"kind": "openai", "status": "ok"}
