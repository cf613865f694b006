"""The whole gateway on each provider HTTP client (`http_client: fast | aiohttp`) against the OpenAI,
Anthropic and Gemini emulators, plus the proxy fallback: a provider behind a proxy (configured, or
from HTTP_PROXY) is served through aiohttp while loopback providers stay on the fast client. The
emulator itself plays the proxy: it answers absolute-form requests for a host that does not exist."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from polyroute.emulators.behaviour import Behaviour
from polyroute.emulators.testing import EmulatorServer
from polyroute.transport import AiohttpUpstream, HTTPClient
from polyroute.transport.upstream import ProxyRouting
from tests.helpers.gateway import RunningGateway, run_gateway

pytestmark = pytest.mark.integration

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def config(kind: str, oai: EmulatorServer, anth: EmulatorServer, gem: EmulatorServer) -> str:
    return f"""
providers:
  o: {{type: openai, base_url: '{oai.sdk_base_url}', api_key: k, http_client: {kind}, timeouts: {{idle: 0.5}}}}
  a: {{type: anthropic, base_url: '{anth.base_url}', api_key: k, http_client: {kind}}}
  g: {{type: gemini, base_url: '{gem.base_url}', api_key: k, http_client: {kind}}}
  r: {{type: openai, base_url: '{oai.sdk_base_url}', api_key: k, http_client: {kind}}}
models:
  mo: {{deployments: [{{provider: o, model: gpt-4o-mini}}]}}
  ma: {{deployments: [{{provider: a, model: claude-sonnet-4-5}}]}}
  mg: {{deployments: [{{provider: g, model: gemini-2.5-flash}}]}}
  mr: {{deployments: [{{provider: r, model: gpt-4o-mini}}]}}
  emb: {{kind: embedding, deployments: [{{provider: o, model: text-embedding-3-small}}]}}
"""


@pytest.fixture(scope="module", params=["fast", "aiohttp"])
def gw(
    request: pytest.FixtureRequest,
    polyroute_openai_emulator_session: EmulatorServer,
    polyroute_anthropic_emulator_session: EmulatorServer,
    polyroute_gemini_emulator_session: EmulatorServer,
) -> Iterator[RunningGateway]:
    cfg = config(request.param, polyroute_openai_emulator_session, polyroute_anthropic_emulator_session,
                 polyroute_gemini_emulator_session)
    with run_gateway(cfg) as g:
        yield g


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key="k", max_retries=0)


def test_the_configured_client_is_used(gw: RunningGateway) -> None:
    kind = gw.gateway.config.providers["o"].http_client
    session = gw.gateway.catalog.providers["o"]._session  # type: ignore[attr-defined]
    assert isinstance(session, HTTPClient if kind == "fast" else AiohttpUpstream)


@pytest.mark.parametrize("model", ["mo", "ma", "mg"])
def test_chat_and_stream_through_every_vendor_format(
    client: openai.OpenAI, model: str, openai_emulator: EmulatorServer, anthropic_emulator: EmulatorServer,
    gemini_emulator: EmulatorServer,
) -> None:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "echo this back"}])
    assert "echo this back" in (reply.choices[0].message.content or "")
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "stream these words"}], stream=True
        )
        if c.choices
    )
    assert "stream these words" in text


def test_embeddings(client: openai.OpenAI, openai_emulator: EmulatorServer) -> None:
    out = client.embeddings.create(model="emb", input=["a", "b"])
    assert len(out.data) == 2 and len(out.data[0].embedding) > 0


def test_upstream_errors_are_mapped_and_name_the_provider(client: openai.OpenAI, openai_emulator: EmulatorServer) -> None:
    # A deployment of its own: the 429 puts it in cooldown.
    openai_emulator.set_behaviour(status=429, retry_after=3)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="mr", messages=[{"role": "user", "content": "x"}])
    assert "'r'" in str(info.value)
    openai_emulator.set_behaviour(status=500)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="mo", messages=[{"role": "user", "content": "x"}], stream=True)
    assert err.value.status_code == 502 and "'o'" in str(err.value)


def test_stream_idle_timeout_mid_stream(client: openai.OpenAI, openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(text="a b c", chunks=3, chunk_delay=2)
    with pytest.raises(openai.APIError, match=r"timed out|sent no stream chunk|connection failed"):
        for _ in client.chat.completions.create(model="mo", messages=[{"role": "user", "content": "x"}], stream=True):
            pass


def test_disconnect_mid_stream_is_an_upstream_error(client: openai.OpenAI, openai_emulator: EmulatorServer) -> None:
    openai_emulator.set_behaviour(Behaviour(text="one two three four", chunks=4, disconnect_after=2))
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="mo", messages=[{"role": "user", "content": "x"}], stream=True):
            pass
    # The broken connection was not kept: the next call works.
    openai_emulator.set_behaviour(Behaviour())
    assert client.chat.completions.create(model="mo", messages=[{"role": "user", "content": "ok"}]).choices


def test_anthropic_sdk_streams_through_the_gemini_provider(gw: RunningGateway, gemini_emulator: EmulatorServer) -> None:
    c = anthropic.Anthropic(base_url=gw.base_url, api_key="k", max_retries=0)
    with c.messages.stream(model="mg", max_tokens=64, messages=[{"role": "user", "content": "through gemini"}]) as s:
        text = "".join(s.text_stream)
    assert "through gemini" in text


# --- proxies -------------------------------------------------------------------------------------


def test_configured_proxy_goes_through_aiohttp(openai_emulator: EmulatorServer) -> None:
    cfg = f"""
providers:
  far: {{type: openai, base_url: 'http://api.upstream.test/v1', api_key: k, proxy: '{openai_emulator.base_url}'}}
models:
  m: {{deployments: [{{provider: far, model: gpt-4o-mini}}]}}
"""
    with run_gateway(cfg) as g:
        assert isinstance(g.gateway.catalog.providers["far"]._session, AiohttpUpstream)  # type: ignore[attr-defined]
        c = openai.OpenAI(base_url=g.openai_base, api_key="k", max_retries=0)
        reply = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "via proxy"}])
        assert "via proxy" in (reply.choices[0].message.content or "")
    assert openai_emulator.requests[-1].header("host") == "api.upstream.test"


def test_environment_proxy_only_for_hosts_it_covers(openai_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", openai_emulator.base_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    cfg = f"""
providers:
  far: {{type: openai, base_url: 'http://api.upstream.test/v1', api_key: k}}
  near: {{type: openai, base_url: '{openai_emulator.sdk_base_url}', api_key: k}}
models:
  far: {{deployments: [{{provider: far, model: gpt-4o-mini}}]}}
  near: {{deployments: [{{provider: near, model: gpt-4o-mini}}]}}
"""
    with run_gateway(cfg) as g:
        session = g.gateway.catalog.providers["far"]._session  # type: ignore[attr-defined]
        assert isinstance(session, ProxyRouting)
        c = openai.OpenAI(base_url=g.openai_base, api_key="k", max_retries=0)
        for model in ("far", "near"):
            reply = c.chat.completions.create(model=model, messages=[{"role": "user", "content": f"to {model}"}])
            assert f"to {model}" in (reply.choices[0].message.content or "")
        hosts = [r.header("host") for r in openai_emulator.requests[-2:]]
        assert hosts == ["api.upstream.test", f"127.0.0.1:{openai_emulator.port}"]
        assert isinstance(session.pick(openai_emulator.sdk_base_url + "/chat/completions"), HTTPClient)
