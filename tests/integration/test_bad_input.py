"""Malformed requests: each gets the right status and a clear body in the API's own error format.

Never a 500 with a traceback, never a hang (every request here has a client-side timeout).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from tests.helpers.gateway import RunningGateway, run_gateway

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def gw(polyroute_openai_emulator_session: EmulatorServer) -> Iterator[RunningGateway]:
    emu = polyroute_openai_emulator_session
    cfg = f"""
server: {{max_body_bytes: {LIMIT}}}
providers:
  up: {{type: openai, base_url: '{emu.sdk_base_url}', api_key: sk-secret-upstream}}
  deep: {{type: deepseek, base_url: '{emu.sdk_base_url}', api_key: sk-secret-deep}}
models:
  good: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
  noimg: {{deployments: [{{provider: deep, model: deepseek-chat}}]}}
  emb: {{kind: embedding, deployments: [{{provider: up, model: text-embedding-3-small}}]}}
"""
    with run_gateway(cfg) as g:
        yield g


def call(gw: RunningGateway, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"content-type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


MSG = [{"role": "user", "content": "hi"}]


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


CHAT = "/v1/chat/completions"
# (name, path, body, status, words expected in the message, param)
CASES: list[tuple[str, str, bytes, int, str, str | None]] = [
    ("empty body", CHAT, b"", 400, "empty", None),
    ("not json", CHAT, b"{nope", 400, "not valid JSON", None),
    ("truncated json", CHAT, b'{"model": "good", "messages": [', 400, "not valid JSON", None),
    ("json array", CHAT, b"[1, 2]", 400, "JSON object", None),
    ("missing model", CHAT, j({"messages": MSG}), 400, "model", None),
    ("missing messages", CHAT, j({"model": "good"}), 400, "messages", None),
    ("model not a string", CHAT, j({"model": 5, "messages": MSG}), 400, "str", "model"),
    ("messages not a list", CHAT, j({"model": "good", "messages": "hi"}), 400, "array", "messages"),
    ("empty messages", CHAT, j({"model": "good", "messages": []}), 400, "at least one", "messages"),
    ("unknown role", CHAT, j({"model": "good", "messages": [{"role": "wizard", "content": "x"}]}), 400, "wizard", "messages[0].role"),
    ("content wrong type", CHAT, j({"model": "good", "messages": [{"role": "user", "content": 7}]}), 400, "got `int`", "messages[0].content"),
    ("tool msg without id", CHAT, j({"model": "good", "messages": [{"role": "tool", "content": "x"}]}), 400, "tool_call_id", None),
    ("unknown part type", CHAT, j({"model": "good", "messages": [{"role": "user", "content": [{"type": "video", "video": 1}]}]}), 400, "video", None),
    ("temperature out of range", CHAT, j({"model": "good", "messages": MSG, "temperature": 9}), 400, "between 0 and 2", "temperature"),
    ("temperature wrong type", CHAT, j({"model": "good", "messages": MSG, "temperature": "hot"}), 400, "float", "temperature"),
    ("max_tokens zero", CHAT, j({"model": "good", "messages": MSG, "max_tokens": 0}), 400, "at least 1", "max_tokens"),
    ("n zero", CHAT, j({"model": "good", "messages": MSG, "n": 0}), 400, "between 1", "n"),
    ("bad tool_choice", CHAT, j({"model": "good", "messages": MSG, "tool_choice": "maybe"}), 400, "tool_choice", "tool_choice"),
    ("bad response_format", CHAT, j({"model": "good", "messages": MSG, "response_format": {"type": "yaml"}}), 400, "yaml", "response_format.type"),
    ("tools not a list", CHAT, j({"model": "good", "messages": MSG, "tools": {"a": 1}}), 400, "array", "tools"),
    ("stream_options without stream", CHAT, j({"model": "good", "messages": MSG, "stream_options": {"include_usage": True}}), 400, "stream", "stream_options"),
    ("unknown model lists available", CHAT, j({"model": "gpt-9", "messages": MSG}), 404, "available models: emb, good, noimg", "model"),
    ("image to a provider without images", CHAT, j({"model": "noimg", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}), 400, "does not support image", None),
    ("body over the limit", CHAT, j({"model": "good", "messages": [{"role": "user", "content": "x" * (LIMIT + 10)}]}), 413, "over the limit", None),
    ("embeddings empty input", "/v1/embeddings", j({"model": "emb", "input": []}), 400, "empty", "input"),
    ("embeddings token arrays", "/v1/embeddings", j({"model": "emb", "input": [[1, 2, 3]]}), 400, "token arrays", "input"),
    ("embeddings unknown encoding", "/v1/embeddings", j({"model": "emb", "input": "a", "encoding_format": "hex"}), 400, "hex", "encoding_format"),
    ("unknown route", "/v1/completions/legacy", j({}), 404, "no route", None),
]


@pytest.mark.parametrize(("name", "path", "body", "status", "words", "param"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(gw: RunningGateway, openai_emulator: EmulatorServer, name: str, path: str, body: bytes,
                   status: int, words: str, param: str | None) -> None:
    code, payload, headers = call(gw, "POST", path, body)
    assert code == status, payload
    err = payload["error"]
    assert words in err["message"], err
    if param is not None:
        assert err["param"] == param
    assert err["type"] and "Traceback" not in err["message"]
    assert headers["x-should-retry"] == "false"
    assert openai_emulator.requests == []  # nothing malformed reaches the vendor


def test_wrong_method(gw: RunningGateway) -> None:
    code, payload, _ = call(gw, "GET", CHAT, None)
    assert code == 405 and "not allowed" in payload["error"]["message"]


@pytest.mark.parametrize(("upstream", "status", "kind"), [
    (Behaviour(status=400, error_message="context too long"), 400, "invalid_request_error"),
    (Behaviour(status=404, error_message="no such model"), 404, "not_found_error"),
    (Behaviour(status=422, error_message="unprocessable"), 422, "invalid_request_error"),
    (Behaviour(status=500), 502, "api_error"),
    (Behaviour(status=503), 503, "overloaded_error"),
    (Behaviour(status=401), 502, "api_error"),
    (Behaviour(malformed="invalid_json"), 502, "api_error"),
])
def test_upstream_failures_in_openai_format(gw: RunningGateway, openai_emulator: EmulatorServer,
                                            upstream: Behaviour, status: int, kind: str) -> None:
    openai_emulator.set_behaviour(upstream)
    code, payload, headers = call(gw, "POST", CHAT, j({"model": "good", "messages": MSG}))
    assert code == status and payload["error"]["type"] == kind
    assert "'up'" in payload["error"]["message"]  # names the provider
    assert "sk-secret-upstream" not in json.dumps(payload)  # never the upstream key
    assert headers["x-polyroute-provider"] == "up"
