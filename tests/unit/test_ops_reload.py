"""Reload: validate first, switch atomically, carry unchanged providers and routing state over,
close replaced providers only once the requests using them are done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from polyroute.config.load import load_config, parse_config
from polyroute.core.gateway import Gateway
from polyroute.ops.policy import OpsPolicy
from polyroute.ops.reload import Reloader, ReloadError

CFG = """
providers:
  a: {{type: openai, base_url: 'http://127.0.0.1:9/v1', api_key: key-a-0123456789}}
  b: {{type: openai, base_url: 'http://127.0.0.1:9/v1', api_key: {key_b}}}
models:
  ma: {{deployments: [{{provider: a, model: x}}]}}
  mb: {{deployments: [{{provider: b, model: y}}]}}
{extra}
"""


def write(path: Path, key_b: str = "key-b-0123456789", extra: str = "") -> None:
    path.write_text(CFG.format(key_b=key_b, extra=extra))


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Reloader, Path]]:
    path = tmp_path / "polyroute.yaml"
    write(path)
    cfg, digest = load_config(path)
    policy = OpsPolicy(cfg)
    gw = Gateway(cfg, digest, [policy])
    await gw.start()
    assert policy.reloader is not None
    policy.reloader.path = str(path)
    try:
        yield gw, policy.reloader, path
    finally:
        await gw.close()


async def settle(r: Reloader) -> None:
    while r._tasks:
        await asyncio.gather(*list(r._tasks), return_exceptions=True)


async def test_unchanged_file_is_a_no_op(running: tuple[Gateway, Reloader, Path]) -> None:
    gw, r, _ = running
    catalog = gw.catalog
    assert (await r.reload())["status"] == "unchanged"
    assert gw.catalog is catalog


async def test_reload_swaps_catalogue_and_keeps_unchanged_providers(running: tuple[Gateway, Reloader, Path]) -> None:
    gw, r, path = running
    old_a, old_b, old_router, old_hash = gw.catalog.providers["a"], gw.catalog.providers["b"], gw.router, gw.config_hash
    write(path, key_b="key-b-rotated-0123456789")
    result = await r.reload()
    assert result["status"] == "reloaded" and result["previous_hash"] == old_hash
    assert result["changes"]["providers"]["changed"] == ["b"]
    assert gw.config_hash == result["config_hash"] != old_hash
    assert gw.router is not old_router
    assert gw.catalog.providers["a"] is old_a  # same pool, nothing reconnects
    new_b = gw.catalog.providers["b"]
    assert new_b is not old_b and new_b.config.api_key == "key-b-rotated-0123456789"
    # Every deployment of the new catalogue points at the new catalogue's providers.
    assert gw.catalog.routes["ma"].deployments[0].provider is old_a
    assert gw.catalog.routes["mb"].deployments[0].provider is new_b
    await settle(r)
    assert old_b._session is None and old_a._session is not None  # type: ignore[attr-defined]


async def test_replaced_providers_close_only_after_inflight_requests(running: tuple[Gateway, Reloader, Path]) -> None:
    gw, r, path = running
    old_b = gw.catalog.providers["b"]
    gen = r.enter()  # a request that started before the reload
    write(path, key_b="key-b-rotated-0123456789")
    result = await r.reload()
    assert result["draining_requests"] == 1
    await asyncio.sleep(0)  # let the drain task run up to its wait
    assert old_b._session is not None  # type: ignore[attr-defined]
    assert len(r.retired) == 1
    gen.done()
    await settle(r)
    assert old_b._session is None  # type: ignore[attr-defined]
    assert r.retired == []


async def test_drain_timeout_closes_anyway(running: tuple[Gateway, Reloader, Path]) -> None:
    gw, r, path = running
    old_b = gw.catalog.providers["b"]
    r.drain_timeout = 0.01
    r.enter()  # never finishes
    write(path, key_b="key-b-rotated-0123456789")
    await r.reload()
    await settle(r)
    assert old_b._session is None  # type: ignore[attr-defined]


async def test_invalid_file_leaves_everything_running(running: tuple[Gateway, Reloader, Path]) -> None:
    gw, r, path = running
    catalog, digest = gw.catalog, gw.config_hash
    path.write_text(path.read_text().replace("model: y}", "model: y, wieght: 2}"))
    with pytest.raises(ReloadError) as info:
        await r.reload()
    err = info.value
    assert err.status == 400 and err.field == "models.mb.deployments[0]" and "wieght" in (err.problem or "")
    assert err.fix and "misspelt" in err.fix
    body = err.body()["error"]
    assert body["file"] == str(path) and body["field"] == err.field
    assert gw.catalog is catalog and gw.config_hash == digest
    assert r.status()["last_reload_error"]


async def test_router_level_errors_are_refused_too(running: tuple[Gateway, Reloader, Path]) -> None:
    gw, r, path = running
    path.write_text(path.read_text() + "  emb: {kind: embedding, deployments: [{provider: a, model: e}]}\n")
    path.write_text(path.read_text().replace("ma: {deployments:", "ma: {fallbacks: [emb], deployments:"))
    catalog = gw.catalog
    with pytest.raises(ReloadError) as info:
        await r.reload()
    assert info.value.status == 400 and info.value.field == "models.ma.fallbacks[0]"
    assert gw.catalog is catalog


@pytest.fixture(params=["memory", "redis"])
async def running_with_state(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Gateway, Reloader, Path, str]]:
    """A running gateway with routing state in this process, or shared through Redis; also the
    config's `routing_state` line, for rewrites of the file to keep. The Redis is unreachable:
    the handles, which this is about, are the same whether it answers or not."""
    path = tmp_path / "polyroute.yaml"
    extra = ""
    if request.param == "redis":
        extra = "routing_state: {backend: redis, redis_url: 'redis://127.0.0.1:1/0'}"
    write(path, extra=extra)
    cfg, digest = load_config(path)
    policy = OpsPolicy(cfg)
    gw = Gateway(cfg, digest, [policy])
    await gw.start()
    assert type(gw.router.state).__name__ == {"memory": "MemoryState", "redis": "RedisState"}[request.param]
    assert policy.reloader is not None
    policy.reloader.path = str(path)
    try:
        yield gw, policy.reloader, path, extra
    finally:
        await gw.close()


async def test_routing_state_carries_over_for_unchanged_deployments(
    running_with_state: tuple[Gateway, Reloader, Path, str],
) -> None:
    gw, r, path, extra = running_with_state
    breaker_a = gw.router.routes["ma"].targets[0].breaker
    breaker_b = gw.router.routes["mb"].targets[0].breaker
    write(path, key_b="key-b-rotated-0123456789", extra=extra)
    assert (await r.reload())["status"] == "reloaded"
    assert gw.router.routes["ma"].targets[0].breaker is breaker_a
    # b's provider changed but its breaker settings did not: its health history is kept too.
    assert gw.router.routes["mb"].targets[0].breaker is breaker_b
    path.write_text(path.read_text().replace("api_key: key-a-0123456789}", "api_key: key-a-0123456789, breaker: {cooldown: 3}}"))
    await r.reload()
    assert gw.router.routes["ma"].targets[0].breaker is not breaker_a


async def test_sections_read_at_start_are_reported(running: tuple[Gateway, Reloader, Path]) -> None:
    _, r, path = running
    write(path, extra="server: {port: 9999}")
    result = await r.reload()
    assert result["restart_required"] == ["server"]


async def test_no_file_to_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYROUTE_CONFIG", raising=False)
    r = Reloader(Gateway(parse_config("providers: {}\nmodels: {}\n", "<test>"), "h"))
    with pytest.raises(ReloadError) as info:
        await r.reload()
    assert info.value.status == 409


async def test_a_removed_deployment_comes_back_with_fresh_state(
    running_with_state: tuple[Gateway, Reloader, Path, str],
) -> None:
    gw, r, path, _ = running_with_state
    breaker_b = gw.router.routes["mb"].targets[0].breaker
    text = path.read_text()
    path.write_text(text.replace("  mb: {deployments: [{provider: b, model: y}]}\n", ""))
    assert (await r.reload())["status"] == "reloaded" and "mb" not in gw.router.routes
    path.write_text(text)
    assert (await r.reload())["status"] == "reloaded"
    assert gw.router.routes["mb"].targets[0].breaker is not breaker_b
