"""Stream lifecycle: client disconnect cancels the upstream, silent upstreams time out,
errors after the first byte end the stream cleanly, unsupported parameters are dropped on request."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import openai
import pytest

from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from tests.helpers.gateway import RunningGateway, run_gateway
from tests.helpers.observe import Recorder


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def gw(polyroute_openai_emulator_session: EmulatorServer, recorder: Recorder) -> Iterator[RunningGateway]:
    emu = polyroute_openai_emulator_session
    cfg = f"""
providers:
  up: {{type: openai, base_url: '{emu.sdk_base_url}', api_key: k, timeouts: {{idle: 0.5, first_token: 2}}}}
  mis: {{type: mistral, base_url: '{emu.sdk_base_url}', api_key: k, drop_unsupported_params: true}}
models:
  m: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
  mis: {{deployments: [{{provider: mis, model: mistral-small-latest}}]}}
"""
    with run_gateway(cfg, extra_policies=[recorder]) as g:
        yield g


def test_client_disconnect_cancels_upstream(gw: RunningGateway, openai_emulator: EmulatorServer, recorder: Recorder) -> None:
    # 40 chunks, 0.25 s apart: the whole stream would take 10 s upstream.
    openai_emulator.set_behaviour(text=" ".join(f"w{i}" for i in range(40)), chunks=40, chunk_delay=0.25)
    before = len(recorder.finished)
    body = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}'
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 + f"content-length: {len(body)}\r\n\r\n".encode() + body)
    got = b""
    while b"w0" not in got:
        got += sock.recv(65536)
    started = time.monotonic()
    sock.close()
    ctx = recorder.wait_for(before + 1, timeout=5)[-1]
    # The request ended long before the upstream stream would have: the upstream call was cancelled.
    assert time.monotonic() - started < 5
    assert ctx.status == 499 and ctx.usage is not None and ctx.usage.estimated


def test_silent_upstream_times_out_mid_stream(gw: RunningGateway, openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(text="a b c", chunks=3, chunk_delay=3)
    client = openai.OpenAI(base_url=gw.openai_base, api_key="k", max_retries=0)
    with pytest.raises(openai.APIError, match=r"timed out|connection failed"):
        for _ in client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True):
            pass


def test_slow_first_token_times_out_before_any_byte(gw: RunningGateway, openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(Behaviour(first_token_delay=5))
    client = openai.OpenAI(base_url=gw.openai_base, api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
    assert ei.value.status_code == 504


def test_unsupported_params_dropped_when_configured(gw: RunningGateway, openai_emulator: EmulatorServer) -> None:
    client = openai.OpenAI(base_url=gw.openai_base, api_key="k", max_retries=0)
    reply = client.chat.completions.create(model="mis", messages=[{"role": "user", "content": "x"}], logprobs=True, top_logprobs=2)
    assert reply.choices[0].message.content
    sent = openai_emulator.requests[-1].body
    assert "logprobs" not in sent and "top_logprobs" not in sent


def test_client_disconnect_cancels_non_streaming_upstream(gw: RunningGateway, openai_emulator: EmulatorServer, recorder: Recorder) -> None:
    # The upstream takes 1.5 s before it answers (inside the 2 s limit); the client leaves first.
    openai_emulator.set_behaviour(Behaviour(first_token_delay=1.5))
    before = len(recorder.finished)
    body = b'{"model":"m","messages":[{"role":"user","content":"x"}]}'
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 + f"content-length: {len(body)}\r\n\r\n".encode() + body)
    openai_emulator_seen = time.monotonic() + 5
    while not openai_emulator.requests and time.monotonic() < openai_emulator_seen:
        time.sleep(0.01)  # polling for the upstream to receive the call, not hoping for timing
    sock.close()
    ctx = recorder.wait_for(before + 1, timeout=5)[-1]
    assert ctx.status == 499
    assert ctx.attempts and ctx.attempts[-1].status in (0, 499)
